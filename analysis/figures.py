"""The paper's figures drawn from the store, with the encodings its captions give.

Every function takes the ok rows and returns a matplotlib Figure, or raises Needs naming the rows it
would be drawn from. Latent axes are log2; the y label names the metric, FID only for Inception
features (otherwise e.g. "FD (digits-cnn)"). Where a latent size has replicates, the line is their
mean and the band its 95% t-interval.
"""

import functools

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import published
from analysis.optimum import KEYS, latent_stats
from analysis.results import DATASET_NAMES, PLAIN, baseline, metric_name, model_label, pick
from analysis.tables import GAUSSIANITY, make_gaussianity_table
from trainables.config import TrialConfig
from trainables.schema import SAMPLERS

matplotlib.use("Agg")  # files only; the figures are Figure objects and never go through pyplot

PAPER_DATASETS = ("cifar10", "celeba")
FILTER_COLOURS = {32: "black", 64: "red", 128: "green", 256: "blue"}
OTHER_COLOURS = ("purple", "orange", "brown", "grey", "olive", "cyan", "pink")  # other widths
DEPTH_STYLES = {"1": "-", "2": "--"}  # deeper ones ("3", "3-3-2-1") dotted
FROZEN_COLOURS = {
    ("1", False): "green",
    ("2", False): "blue",
    ("1", True): "purple",
    ("2", True): "orange",
}
NORM_COLOURS = {"none": "red", "bn": "green", "sn": "blue", "ln": "black"}
NOISE_COLOURS = {0.0: "green", 0.1: "blue", 0.5: "purple", 1.0: "red"}
SAMPLER_STYLES = {"mvg": "-", "gmm": "--", "normal": ":"}  # Figure 4
FROZEN_SAMPLER_STYLES = {"mvg": "-", "gmm": ":"}  # Figure 3
# dataset: (figure, filters, latent, colours of the DAE's and VAE's pairs of latent units)
SCATTERS = {
    "cifar10": ("A.1", 128, 128, {"dae": ("blue", "red"), "vae": ("green",)}),
    "celeba": ("A.2", 128, 64, {"dae": ("blue",), "vae": ("red",)}),
}
PLAIN_TEXT = "no latent norm, noise or freezing"


class Needs(Exception):
    """The store lacks the rows a figure is drawn from; the message names them."""


def _require(rows: pd.DataFrame, what: str) -> pd.DataFrame:
    if rows.empty:
        raise Needs(what)
    return rows


def _filter_colour(filters: int) -> str:
    return FILTER_COLOURS.get(filters) or OTHER_COLOURS[int(np.log2(filters)) % len(OTHER_COLOURS)]


def _score_figure(
    rows: pd.DataFrame, title: str, panels: list[list[str]], style, marks=()
) -> Figure:
    """Score vs latent size, one panel per list of samplers.

    style(curve, sampler) -> (legend label, plot kwargs) for each curve; marks: (label, sampler,
    latent, score) crosses, drawn only when the rows are FIDs like the paper's numbers they show.
    """
    stats = latent_stats(rows)
    metric = metric_name(rows)
    marks = [mark for mark in marks if np.isfinite(mark[3])] if metric == "FID" else []
    fig = Figure(figsize=(max(6.5 * len(panels), 9), 5), layout="constrained")
    for ax, samplers in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        for sampler in samplers:
            for key, points in stats[stats["score"] == sampler].groupby(KEYS, dropna=False):
                name, kwargs = style(dict(zip(KEYS, key, strict=True)), sampler)
                ax.plot(
                    points["latent"], points["mean"], marker="o", markersize=3, label=name, **kwargs
                )
                if (points["n"] > 1).any():
                    ax.fill_between(
                        points["latent"],
                        points["ci_low"],
                        points["ci_high"],
                        alpha=0.15,
                        color=kwargs["color"],
                    )
            for name, _, latent, score in (mark for mark in marks if mark[1] == sampler):
                ax.plot([latent], [score], "x", markersize=9, mew=2, label=f"{name} (paper)")
        _latent_axis(ax, stats["latent"])
        names = " / ".join(SAMPLERS[s] for s in samplers)
        ax.set(
            title=f"{names} samples", ylabel=f"{metric} ({names})" if len(samplers) == 1 else metric
        )
        ax.legend(fontsize="x-small", ncol=2)
    fig.suptitle(title)
    return fig


def _latent_axis(ax, latents) -> None:
    ticks = sorted(set(int(latent) for latent in latents))
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("latent units (log scale)")


def _model_line(curve: dict, sampler: str) -> tuple[str, dict]:
    """Figure 1: colour by filter width, VAE solid, DAE dotted."""
    line = ":" if curve["model"] == "dae" else "-"
    return f"{curve['model'].upper()} {curve['filters']}", {
        "color": _filter_colour(curve["filters"]),
        "linestyle": line,
    }


def figure_1(ok: pd.DataFrame, dataset: str) -> Figure:
    rows = _require(
        pick(baseline(ok), dataset=dataset),
        f"ok {dataset} rows at depth 1, {PLAIN_TEXT} "
        "(DAE and/or VAE, any filter width, several latent sizes)",
    )
    others = published.table_2()
    others = others[
        (others["dataset"] == dataset) & others["model"].isin(["WAE", "RAE", "EAE", "GMM-DAE"])
    ]
    marks = [
        (row.model, sampler, row.latent, getattr(row, f"fd_{sampler}"))
        for row in others.itertuples()
        for sampler in ("mvg", "gmm")
    ]
    title = (
        f"Figure 1 ({DATASET_NAMES.get(dataset, dataset)}): DAE dotted, VAE solid; colour = filters"
    )
    return _score_figure(rows, title, [["mvg"], ["gmm"]], _model_line, marks)


def figure_2_5(ok: pd.DataFrame) -> Figure:
    """Figures 2 and 5 (their captions give the same data and encodings): DAE depth vs a
    128-filter VAE."""
    rows = pick(ok, dataset="cifar10", filters=(64, 128, 256), **PLAIN)
    _require(
        pick(rows, model="dae").query("depth != '1'"),
        f"ok cifar10 DAE rows at depth 2, 3 or 3-3-2-1 with 64, 128 or 256 filters, {PLAIN_TEXT}",
    )
    rows = pd.concat([pick(rows, model="dae"), pick(rows, model="vae", depth="1", filters=128)])

    def style(curve, sampler):
        if curve["model"] == "vae":
            return "VAE 128 (baseline)", {"color": "black", "linestyle": "-"}
        colour = _filter_colour(curve["filters"])
        line = DEPTH_STYLES.get(curve["depth"], ":")
        return f"DAE {curve['filters']} depth {curve['depth']}", {
            "color": colour,
            "linestyle": line,
        }

    best = published.BEST
    marks = [
        (f"DAE 128 depth {best['depth']}", s.removeprefix("fd_"), best["latent"], v)
        for s, v in published.BEST_SCORES.items()
    ]
    title = (
        "Figures 2 and 5 (CIFAR-10): depth 1 solid, 2 dashed, 3 / [3,3,2,1] dotted; "
        "VAE baseline black"
    )
    return _score_figure(rows, title, [["mvg"], ["gmm"]], style, marks)


def figure_3(ok: pd.DataFrame) -> Figure:
    rows = pick(
        ok,
        dataset="cifar10",
        model="dae",
        filters=128,
        depth=("1", "2"),
        latent_norm="none",
        noise_std=0.0,
    )
    _require(
        rows[rows["freeze_latent"].astype(bool)],
        "ok cifar10 DAE rows, 128 filters, depth 1 or 2, freeze_latent=True",
    )

    def style(curve, sampler):
        frozen = " frozen" if curve["freeze_latent"] else ""
        colour = FROZEN_COLOURS[(curve["depth"], bool(curve["freeze_latent"]))]
        line = FROZEN_SAMPLER_STYLES[sampler]
        return f"depth {curve['depth']}{frozen} {SAMPLERS[sampler]}", {
            "color": colour,
            "linestyle": line,
        }

    title = (
        "Figure 3 (CIFAR-10, DAE 128): depth 1 green / 2 blue, frozen purple / orange; "
        "MVG solid, GMM dotted"
    )
    return _score_figure(rows, title, [["mvg", "gmm"]], style)


def figure_4(ok: pd.DataFrame) -> Figure:
    rows = pick(ok, dataset="cifar10", filters=128, depth="1", noise_std=0.0, freeze_latent=False)
    _require(
        rows[rows["latent_norm"] != "none"],
        "ok cifar10 DAE rows, 128 filters, depth 1, latent_norm bn, sn or ln",
    )

    def style(curve, sampler):
        colour = "orange" if curve["model"] == "vae" else NORM_COLOURS[curve["latent_norm"]]
        name = model_label(curve["model"], curve["latent_norm"])
        return f"{name} {SAMPLERS[sampler]}", {
            "color": colour,
            "linestyle": SAMPLER_STYLES[sampler],
        }

    title = "Figure 4 (CIFAR-10, 128 filters): DAE red, VAE orange, BN green, SN blue, LN black"
    return _score_figure(rows, title, [["mvg", "gmm", "normal"]], style)


def figure_noise(ok: pd.DataFrame) -> Figure:
    rows = pick(
        ok, dataset="cifar10", filters=128, depth="1", latent_norm="none", freeze_latent=False
    )
    _require(
        rows[rows["noise_std"] > 0],
        "ok cifar10 DAE rows, 128 filters, depth 1, noise_std 0.1, 0.5 or 1",
    )
    rows = pd.concat([pick(rows, model="dae"), pick(rows, model="vae", noise_std=0.0)])

    def style(curve, sampler):
        if curve["model"] == "vae":
            return "VAE (baseline)", {"color": "black", "linestyle": "-"}
        colour = NOISE_COLOURS.get(curve["noise_std"], "grey")
        return f"DAE noise std {curve['noise_std']:g}", {"color": colour, "linestyle": "--"}

    title = (
        "Gaussian noise at the decoder input (CIFAR-10, 128 filters, depth 1) vs the VAE baseline"
    )
    return _score_figure(rows, title, [["mvg"], ["gmm"]], style)


def scatter(ok: pd.DataFrame, dataset: str) -> Figure:
    """A.1 / A.2: encoded training images on pairs of latent units, DAE vs VAE (from the rows'
    code_sample)."""
    figure, filters, latent, colours = SCATTERS.get(
        dataset, ("A.1-style", None, None, SCATTERS["cifar10"][3])
    )
    rows = baseline(pick(ok, dataset=dataset))
    rows = rows[rows["code_sample"].notna()] if "code_sample" in rows.columns else rows.iloc[:0]
    if filters is None and not rows.empty:
        filters, latent = _widest_shared(rows)
    size = (
        f"{filters} filters and {latent} latents" if latent else "one filter width and latent size"
    )
    rows = pick(rows, filters=filters, latent=latent)
    _require(rows, f"ok {dataset} rows with code_sample, depth 1, {PLAIN_TEXT}, {size}")
    fig = Figure(figsize=(6.5, 6), layout="constrained")
    ax = fig.subplots()
    for model, group in rows.sort_values("seed").groupby("model"):
        row = group.iloc[0]
        codes = np.stack([np.asarray(point, dtype=float) for point in row["code_sample"]])
        dims = list(row["code_sample_dims"])
        for colour, (a, b) in zip(colours[model], ((0, 1), (2, 3)), strict=False):
            if b < codes.shape[1]:
                label = f"{model.upper()} units {dims[a]} vs {dims[b]}"
                ax.scatter(codes[:, a], codes[:, b], s=3, alpha=0.4, color=colour, label=label)
    ax.set(xlabel="first latent unit of the pair", ylabel="second latent unit of the pair")
    ax.legend(fontsize="small", markerscale=3)
    name = DATASET_NAMES.get(dataset, dataset)
    fig.suptitle(
        f"Figure {figure} ({name}): encoded training images, {filters} filters, {latent} latents"
    )
    return fig


def _widest_shared(rows: pd.DataFrame) -> tuple[int, int]:
    """For a dataset the paper did not use: the widest filters, and the middle latent size with
    the most models."""
    filters = rows["filters"].max()
    models = rows[rows["filters"] == filters].groupby("latent")["model"].nunique()
    latents = sorted(models[models == models.max()].index)
    return filters, latents[len(latents) // 2]


def _encoder_convs(depth: str) -> int:
    return sum(TrialConfig(depth=depth).stage_depths)


def gaussianity(ok: pd.DataFrame, axis: str) -> Figure:
    """Hypothesis 2: Gaussianity of the encoded test set against width (axis='filters') or
    depth (axis='depth').

    Each point is one curve: mean and std over its latent sizes and seeds. One line per dataset,
    model and depth (or width) with at least two values on the axis; depths are ordered by their
    encoder convolutions."""
    present = [stat for stat in GAUSSIANITY if stat in ok.columns]
    table = make_gaussianity_table(pick(ok, **PLAIN)) if present else pd.DataFrame(columns=KEYS)
    family = ["dataset", "model", "depth" if axis == "filters" else "filters"]
    lines = [(key, group) for key, group in table.groupby(family) if group[axis].nunique() > 1]
    if not lines:
        raise Needs(
            f"ok rows with the Gaussianity columns, {PLAIN_TEXT}, "
            f"of one dataset and model at 2 or more {axis}"
        )
    values = sorted(table[axis].unique(), key=_encoder_convs if axis == "depth" else None)
    position = {value: value if axis == "filters" else i for i, value in enumerate(values)}
    fig = Figure(figsize=(5 * len(present), 4.5), layout="constrained")
    for ax, stat in zip(fig.subplots(1, len(present), squeeze=False)[0], present, strict=True):
        for (dataset, model, other), group in lines:
            group = group.assign(x=group[axis].map(position)).sort_values("x")
            name = f"{dataset} {model.upper()} " + (
                f"depth {other}" if axis == "filters" else f"{other} filters"
            )
            style = {"marker": "o", "capsize": 3, "linestyle": ":" if model == "dae" else "-"}
            ax.errorbar(
                group["x"], group[f"{stat}_mean"], yerr=group[f"{stat}_std"], label=name, **style
            )
        if axis == "filters":
            ax.set_xscale("log", base=2)
        ax.set_xticks([position[v] for v in values], [str(v) for v in values])
        ax.minorticks_off()
        ax.set(
            title=GAUSSIANITY[stat],
            ylabel=stat,
            xlabel="filters (log scale)" if axis == "filters" else "depth",
        )
        ax.legend(fontsize="x-small")
    fig.suptitle(
        f"Hypothesis 2: Gaussianity of the encoded test set vs {axis} "
        "(mean ± std over latent sizes)"
    )
    return fig


# (file stem, description, builder(ok, dataset)) for each dataset present and both of the paper's
PER_DATASET = [
    (
        "figure_1_{}",
        "Figure 1 ({}): MVG and GMM score vs latent size per filter width, DAE dotted, VAE solid",
        figure_1,
    ),
    (
        "scatter_{}",
        "Figure A.1 / A.2 kind ({}): "
        "encoded training images on two pairs of latent units, DAE vs VAE",
        scatter,
    ),
]
FIXED = [  # (file stem, description, builder(ok))
    (
        "figure_2_5",
        "Figures 2 and 5: CIFAR-10 DAE depth 1 / 2 / 3 / [3,3,2,1] per filter width vs the VAE",
        figure_2_5,
    ),
    (
        "figure_3",
        "Figure 3: CIFAR-10 DAE, 128 filters, depth 1 and 2, latent layer trained vs frozen",
        figure_3,
    ),
    (
        "figure_4",
        "Figure 4: CIFAR-10, 128 filters, latent BN / SN / LN vs plain DAE and VAE, all samplers",
        figure_4,
    ),
    (
        "figure_noise",
        "Noise: CIFAR-10 DAE with decoder-input noise 0 / 0.1 / 0.5 / 1 vs the VAE",
        figure_noise,
    ),
    (
        "gaussianity_width",
        "Hypothesis 2: |skew|, excess kurtosis and GMM - MVG held-out log-likelihood vs filters",
        functools.partial(gaussianity, axis="filters"),
    ),
    (
        "gaussianity_depth",
        "Hypothesis 2: the same statistics vs depth",
        functools.partial(gaussianity, axis="depth"),
    ),
]


def figure_list(ok: pd.DataFrame) -> list[tuple[str, str, object]]:
    """(file stem, one-line description, zero-argument builder) for every figure the report
    tries to draw."""
    datasets = [*PAPER_DATASETS, *sorted(set(ok["dataset"]) - set(PAPER_DATASETS))]
    return [
        *(
            (stem.format(d), text.format(DATASET_NAMES.get(d, d)), functools.partial(build, ok, d))
            for stem, text, build in PER_DATASET
            for d in datasets
        ),
        *((stem, text, functools.partial(build, ok)) for stem, text, build in FIXED),
    ]
