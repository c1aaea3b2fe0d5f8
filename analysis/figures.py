"""The paper's figures drawn from the store, with the encodings its captions give, and figures of
its claims beyond them.

Every function takes the ok rows and returns the figures it drew as (file suffix, setting, Figure),
or raises Needs naming the rows it would be drawn from. Latent axes are log2; the y label names the
metric, FID only for Inception features (otherwise e.g. "FD (digits-cnn)"). Where a point has
replicates, the line is their mean and the band (or bar) its 95% t-interval.

One figure never mixes protocols. Each figure encodes some curve fields in its legend (Figure 1:
model and filters) or picks one value of them itself (the scatter plots: one width); its curves are
split by every other curve field where they depart from their dataset's default config
(results.setting) and by metric, into one figure per setting. The setting closest to the
default keeps the plain file name; every other one gets a suffix naming where it differs from that
one, e.g. figure_1_digits__epochs-2.png. The setting and the precision are in the title, and where
the curves of one figure differ in precision, it is in their labels too. A GMM score whose fit did
not converge is ringed in red.
"""

import functools

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.optimum import latent_stats, replicate_stats
from analysis.results import (
    KEYS,
    PLAIN,
    as_text,
    at_comparison_latent,
    baseline,
    dataset_name,
    metric_name,
    model_label,
    per_curve,
    pick,
    setting,
    slug,
)
from analysis.tables import GAUSSIANITY, make_gaussianity_table
from trainables import published
from trainables.config import stage_depths
from trainables.curves import CURVE_FIELDS
from trainables.scored_sets import LABELS, SAMPLERS, SCORED_SETS

matplotlib.use("Agg")  # files only; the figures are Figure objects and never go through pyplot

PAPER_DATASETS = published.PAPER_DATASETS
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
SAMPLER_STYLES = {name: SCORED_SETS[name].style for name in SAMPLERS}  # Figure 4
FROZEN_SAMPLER_STYLES = {**SAMPLER_STYLES, "gmm": ":"}  # Figure 3's caption: GMM dotted
MODEL_STYLES = {"dae": ":", "vae": "-"}  # Figure 1's encoding, kept by the figures against width
PRECISION_MARKERS = {"fp32": "o", "bf16": "^"}  # where one figure holds both
# dataset: (figure, filters, latent, colours of the DAE's and VAE's pairs of latent units)
SCATTERS = {
    "cifar10": ("A.1", 128, 128, {"dae": ("blue", "red"), "vae": ("green",)}),
    "celeba": ("A.2", 128, 64, {"dae": ("blue",), "vae": ("red",)}),
}
PLAIN_TEXT = "no latent norm, noise or freezing"
UNCONVERGED = "GMM fit not converged"

Drawn = list[tuple[str, str, Figure]]  # (file suffix, setting, figure)


class Needs(Exception):
    """The store lacks the rows a figure is drawn from; the message names them."""


def _require(rows: pd.DataFrame, what: str) -> pd.DataFrame:
    if rows.empty:
        raise Needs(what)
    return rows


def _filter_colour(filters: int) -> str:
    return FILTER_COLOURS.get(filters) or OTHER_COLOURS[int(np.log2(filters)) % len(OTHER_COLOURS)]


def per_setting(rows: pd.DataFrame, encoded: tuple, title: str, needs: str, draw) -> Drawn:
    """draw(rows of one setting) -> Figure, for each setting of the rows that it can draw.

    A setting is a metric and the departures from the dataset's default config in every curve field
    but the `encoded` ones. The drawable setting with the fewest departures (FID first, then the
    most rows) is the main one and keeps the plain file name; each other one is suffixed with the
    fields where it differs from the main one ('__epochs-2', '__lr-default'), and its metric where
    that differs. Needs(needs) when no setting can be drawn."""
    _require(rows, needs)
    same = per_curve(rows, lambda curve: (curve["metric"], *setting(curve, encoded).items()))
    groups = sorted(
        rows.groupby(same, sort=False),
        key=lambda item: (len(item[0]), item[0][0] != "FID", -len(item[1]), item[0]),
    )
    drawn = []
    main = None
    for (metric, *changed), group in groups:
        try:
            figure = draw(group)
        except Needs:
            continue
        changed = dict(changed)
        main = main or (metric, changed)
        text = _setting_text(group, changed)
        figure.suptitle(f"{title}\n{text}")
        drawn.append((_suffix(metric, changed, *main), text, figure))
    if not drawn:
        raise Needs(needs)
    return drawn


def _suffix(metric: str, changed: dict, main_metric: str, main_changed: dict) -> str:
    """'' for the main setting; else '__field-value' for each field where a setting differs from it
    ('__field-default' where only the main one departs), then its metric if that differs."""
    parts = [
        f"{field}={changed.get(field, 'default')}"
        for field in CURVE_FIELDS
        if changed.get(field) != main_changed.get(field)
    ]
    parts += [metric] if metric != main_metric else []
    return "".join(f"__{slug(part)}" for part in parts)


def _setting_text(rows: pd.DataFrame, changed: dict) -> str:
    """e.g. 'paper protocol; precision fp32' or 'epochs=2; precision in the labels'."""
    default = "paper protocol" if set(rows["dataset"]) <= set(PAPER_DATASETS) else "default config"
    precisions = _precisions(rows)
    precision = f"precision {precisions[0]}" if len(precisions) == 1 else "precision in the labels"
    return f"{', '.join(as_text(changed)) or default}; {precision}"


def _precisions(rows: pd.DataFrame) -> list[str]:
    return sorted(rows["precision"].fillna("unrecorded").astype(str).unique())


def precision_style(curve: dict, rows: pd.DataFrame) -> tuple[str, dict]:
    """(' bf16', {'marker': '^'}) where the rows differ in precision, else ('', {})."""
    if len(_precisions(rows)) == 1:
        return "", {}
    precision = str(curve["precision"])
    return f" {precision}", {"marker": PRECISION_MARKERS.get(precision, "s")}


def _ring_unconverged(ax, x, y, unconverged) -> None:
    """Red rings on the points whose GMM fit did not converge, one legend entry per axis."""
    flagged = np.asarray(unconverged, dtype=float) > 0
    if not flagged.any():
        return
    labelled = UNCONVERGED in [line.get_label() for line in ax.get_lines()]
    ax.plot(
        np.asarray(x)[flagged],
        np.asarray(y)[flagged],
        linestyle="none",
        marker="o",
        markersize=11,
        color="red",
        markerfacecolor="none",
        markeredgewidth=1.5,
        label="_nolegend_" if labelled else UNCONVERGED,
    )


def _score_figure(rows: pd.DataFrame, panels: list[list[str]], style, marks=()) -> Figure:
    """Score vs latent size, one panel per list of samplers.

    style(curve, sampler) -> (legend label, plot kwargs) for each curve; marks: (label, sampler,
    latent, score) crosses, drawn only when the rows are FIDs like the paper's numbers they show.
    """
    stats = latent_stats(rows)
    metric = metric_name(rows)
    marks = [mark for mark in marks if np.isfinite(mark[3])] if metric == "FID" else []
    fig = Figure(figsize=(max(6.5 * len(panels), 9), 5.4), layout="constrained")
    for ax, samplers in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        for sampler in samplers:
            for key, points in stats[stats["score"] == sampler].groupby(KEYS, dropna=False):
                curve = dict(zip(KEYS, key, strict=True))
                name, kwargs = style(curve, sampler)
                suffix, marker = precision_style(curve, rows)
                ax.plot(
                    points["latent"],
                    points["mean"],
                    **{"marker": "o", "markersize": 3, **marker, **kwargs},
                    label=name + suffix,
                )
                if (points["n"] > 1).any():
                    ax.fill_between(
                        points["latent"],
                        points["ci_low"],
                        points["ci_high"],
                        alpha=0.15,
                        color=kwargs["color"],
                    )
                _ring_unconverged(ax, points["latent"], points["mean"], points["gmm_unconverged"])
            for name, _, latent, score in (mark for mark in marks if mark[1] == sampler):
                ax.plot([latent], [score], "x", markersize=9, mew=2, label=f"{name} (paper)")
        _log2_axis(ax, stats["latent"], "latent units")
        names = " / ".join(LABELS[s] for s in samplers)
        ax.set(
            title=f"{names} samples", ylabel=f"{metric} ({names})" if len(samplers) == 1 else metric
        )
        ax.legend(fontsize="x-small", ncol=2)
    return fig


def _log2_axis(ax, values, name: str) -> None:
    """A log2 x axis ticked at the values measured."""
    ticks = sorted(set(int(value) for value in values))
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel(f"{name} (log scale)")


def _model_line(curve: dict, sampler: str) -> tuple[str, dict]:
    """Figure 1: colour by filter width, VAE solid, DAE dotted."""
    return f"{curve['model'].upper()} {curve['filters']}", {
        "color": _filter_colour(curve["filters"]),
        "linestyle": MODEL_STYLES.get(curve["model"], "-"),
    }


def figure_1(ok: pd.DataFrame, dataset: str) -> Drawn:
    rows = pick(baseline(ok), dataset=dataset)
    others = published.table_2()
    others = others[
        (others["dataset"] == dataset) & others["model"].isin(["WAE", "RAE", "EAE", "GMM-DAE"])
    ]
    marks = [
        (row.model, sampler, row.latent, getattr(row, f"fd_{sampler}"))
        for row in others.itertuples()
        for sampler in ("mvg", "gmm")
    ]
    title = f"Figure 1 ({dataset_name(dataset)}): DAE dotted, VAE solid; colour = filters"
    return per_setting(
        rows,
        ("model", "filters"),
        title,
        f"ok {dataset} rows at depth 1, {PLAIN_TEXT} "
        "(DAE and/or VAE, any filter width, several latent sizes)",
        lambda group: _score_figure(group, [["mvg"], ["gmm"]], _model_line, marks),
    )


def figure_2_5(ok: pd.DataFrame) -> Drawn:
    """Figures 2 and 5 (their captions give the same data and encodings): DAE depth vs a
    128-filter VAE."""
    rows = pick(ok, dataset="cifar10", filters=(64, 128, 256), **PLAIN)
    rows = pd.concat([pick(rows, model="dae"), pick(rows, model="vae", depth="1", filters=128)])
    needs = (
        f"ok cifar10 DAE rows at depth 2, 3 or 3-3-2-1 with 64, 128 or 256 filters, {PLAIN_TEXT}"
    )

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

    def draw(group):
        _require(pick(group, model="dae").query("depth != '1'"), needs)
        return _score_figure(group, [["mvg"], ["gmm"]], style, marks)

    title = (
        "Figures 2 and 5 (CIFAR-10): depth 1 solid, 2 dashed, 3 / [3,3,2,1] dotted; "
        "VAE baseline black"
    )
    return per_setting(rows, ("model", "filters", "depth"), title, needs, draw)


def figure_3(ok: pd.DataFrame) -> Drawn:
    rows = pick(
        ok,
        dataset="cifar10",
        model="dae",
        filters=128,
        depth=("1", "2"),
        latent_norm="none",
        noise_std=0.0,
    )
    needs = "ok cifar10 DAE rows, 128 filters, depth 1 or 2, freeze_latent=True"

    def style(curve, sampler):
        frozen = " frozen" if curve["freeze_latent"] else ""
        colour = FROZEN_COLOURS[(curve["depth"], bool(curve["freeze_latent"]))]
        line = FROZEN_SAMPLER_STYLES[sampler]
        return f"depth {curve['depth']}{frozen} {LABELS[sampler]}", {
            "color": colour,
            "linestyle": line,
        }

    def draw(group):
        _require(group[group["freeze_latent"].astype(bool)], needs)
        return _score_figure(group, [["mvg", "gmm"]], style)

    title = (
        "Figure 3 (CIFAR-10, DAE 128): depth 1 green / 2 blue, frozen purple / orange; "
        "MVG solid, GMM dotted"
    )
    return per_setting(rows, ("depth", "freeze_latent"), title, needs, draw)


def figure_4(ok: pd.DataFrame) -> Drawn:
    rows = pick(ok, dataset="cifar10", filters=128, depth="1", noise_std=0.0, freeze_latent=False)
    needs = "ok cifar10 DAE rows, 128 filters, depth 1, latent_norm bn, sn or ln"

    def style(curve, sampler):
        colour = "orange" if curve["model"] == "vae" else NORM_COLOURS[curve["latent_norm"]]
        name = model_label(curve["model"], curve["latent_norm"])
        return f"{name} {LABELS[sampler]}", {
            "color": colour,
            "linestyle": SAMPLER_STYLES[sampler],
        }

    def draw(group):
        _require(group[group["latent_norm"] != "none"], needs)
        return _score_figure(group, [["mvg", "gmm", "normal"]], style)

    title = "Figure 4 (CIFAR-10, 128 filters): DAE red, VAE orange, BN green, SN blue, LN black"
    return per_setting(rows, ("model", "latent_norm"), title, needs, draw)


def figure_noise(ok: pd.DataFrame) -> Drawn:
    rows = pick(
        ok, dataset="cifar10", filters=128, depth="1", latent_norm="none", freeze_latent=False
    )
    rows = pd.concat([pick(rows, model="dae"), pick(rows, model="vae", noise_std=0.0)])
    needs = "ok cifar10 DAE rows, 128 filters, depth 1, noise_std 0.1, 0.5 or 1"

    def style(curve, sampler):
        if curve["model"] == "vae":
            return "VAE (baseline)", {"color": "black", "linestyle": "-"}
        colour = NOISE_COLOURS.get(curve["noise_std"], "grey")
        return f"DAE noise std {curve['noise_std']:g}", {"color": colour, "linestyle": "--"}

    def draw(group):
        _require(group[group["noise_std"] > 0], needs)
        return _score_figure(group, [["mvg"], ["gmm"]], style)

    title = (
        "Gaussian noise at the decoder input (CIFAR-10, 128 filters, depth 1) vs the VAE baseline"
    )
    return per_setting(rows, ("model", "noise_std"), title, needs, draw)


def noise_recon(ok: pd.DataFrame, dataset: str) -> Drawn:
    """The noise experiment's reconstructions: Test R and test BCE against the noise std, one line
    per latent size."""
    rows = pick(ok, dataset=dataset, latent_norm="none", freeze_latent=False)
    needs = (
        f"ok {dataset} rows of curves that differ only in noise_std (2 or more), "
        "no latent norm, nothing frozen"
    )

    def draw(group):
        if group["noise_std"].nunique() < 2:
            raise Needs(needs)
        fig = Figure(figsize=(12, 5.4), layout="constrained")
        panels = {"fd_test_recon": "Test R", "test_recon_bce": "test BCE per image (pixel sum)"}
        latents = sorted(group["latent"].unique())
        colours = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(latents)))
        for ax, (column, name) in zip(fig.subplots(1, 2), panels.items(), strict=True):
            stats = replicate_stats(group.assign(gmm_unconverged=False), [*KEYS, "latent"], column)
            for key, points in stats.groupby(["latent", "precision"], dropna=False):
                latent = key[0]
                suffix, marker = precision_style(dict(precision=key[1]), group)
                _mean_line(
                    ax,
                    points.sort_values("noise_std"),
                    "noise_std",
                    f"latent {latent}{suffix}",
                    color=colours[latents.index(latent)],
                    **{"markersize": 4, **marker},
                )
            ylabel = f"{metric_name(group)} ({name})" if column.startswith("fd_") else name
            ax.set(title=name, xlabel="std of the noise at the decoder input", ylabel=ylabel)
            ax.set_xticks(sorted(group["noise_std"].unique()))
            ax.legend(fontsize="x-small", ncol=2)
        return fig

    title = (
        f"Noise experiment ({dataset_name(dataset)}): "
        "reconstruction of the test images vs the decoder-input noise"
    )
    return per_setting(rows, ("noise_std",), title, needs, draw)


def _mean_line(ax, points: pd.DataFrame, x: str, label: str, **style) -> None:
    """A stats frame's means against column x, their t-intervals as error bars (none for n=1)."""
    yerr = (points["mean"] - points["ci_low"]).fillna(0)
    ax.errorbar(
        points[x], points["mean"], yerr=yerr, capsize=3, label=label, **{"marker": "o", **style}
    )


def _against_width(ax, stats: pd.DataFrame, rows: pd.DataFrame, paper=None) -> None:
    """One line per model (DAE dotted, VAE solid) of a per-curve stats frame against filters; the
    paper's values (model -> {filters: value}) as crosses."""
    for key, points in stats.groupby(["model", "precision"], dropna=False):
        model = key[0]
        suffix, marker = precision_style(dict(precision=key[1]), rows)
        points = points.sort_values("filters")
        _mean_line(
            ax,
            points,
            "filters",
            f"{model.upper()}{suffix}",
            color="blue" if model == "dae" else "red",
            linestyle=MODEL_STYLES.get(model, "-"),
            **marker,
        )
        _ring_unconverged(ax, points["filters"], points["mean"], points["gmm_unconverged"])
    for model, values in (paper or {}).items():
        ax.plot(
            list(values),
            list(values.values()),
            "x",
            markersize=9,
            mew=2,
            color="blue" if model == "DAE" else "red",
            label=f"{model} (paper)",
        )
    _log2_axis(ax, stats["filters"], "filters")
    ax.legend(fontsize="x-small")


def _width_rows(ok: pd.DataFrame, dataset: str) -> pd.DataFrame:
    return at_comparison_latent(baseline(pick(ok, dataset=dataset)))


def _two_widths(group: pd.DataFrame, needs: str) -> pd.DataFrame:
    """The rows, if some model has 2 or more filter widths among them; else Needs."""
    widths = group.groupby("model")["filters"].nunique()
    if widths.empty or widths.max() < 2:
        raise Needs(needs)
    return group


def _latent_text(group: pd.DataFrame) -> str:
    return f"{group['latent'].iloc[0]} latents"


def gap_width(ok: pd.DataFrame, dataset: str) -> Drawn:
    """Hypothesis 2: MVG - GMM score against filters at the comparison latent, per model."""
    needs = (
        f"ok {dataset} rows at depth 1, {PLAIN_TEXT}, of one model at 2 or more filter widths "
        "at the comparison latent (CIFAR-10 128, CelebA 64)"
    )
    paper = published.table_2()
    paper = paper[(paper["dataset"] == dataset) & paper["model"].isin(["DAE", "VAE"])]
    paper_gaps = {
        model: dict(zip(group["filters"], group["fd_mvg"] - group["fd_gmm"], strict=True))
        for model, group in paper.dropna(subset=["fd_mvg", "fd_gmm"]).groupby("model")
    }

    def draw(group):
        group = _two_widths(group, needs)
        gaps = group.assign(gap=group["fd_mvg"] - group["fd_gmm"])
        stats = replicate_stats(gaps, [*KEYS, "latent"], "gap")
        fig = Figure(figsize=(7.5, 5.4), layout="constrained")
        ax = fig.subplots()
        _against_width(ax, stats, group, paper_gaps if metric_name(group) == "FID" else None)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set(
            title=f"MVG - GMM at {_latent_text(group)}: 0 when one Gaussian is enough",
            ylabel=f"{metric_name(group)} (MVG) - {metric_name(group)} (GMM)",
        )
        return fig

    title = f"Hypothesis 2 ({dataset_name(dataset)}): the MVG - GMM gap vs width"
    return per_setting(_width_rows(ok, dataset), ("model", "filters"), title, needs, draw)


def interp_width(ok: pd.DataFrame, dataset: str) -> Drawn:
    """Hypothesis 1 tested directly: what decoding the midpoints of encoded test pairs costs beyond
    decoding their ends (Interp - Endpoints) against filters, beside both, at the comparison
    latent."""
    needs = (
        f"ok {dataset} rows with fd_interp and fd_endpoints, depth 1, {PLAIN_TEXT}, of one model "
        "at 2 or more filter widths at the comparison latent (CIFAR-10 128, CelebA 64)"
    )

    def draw(group):
        group = _two_widths(group.dropna(subset=["interp_excess"]), needs)
        stats = latent_stats(group)
        excess = replicate_stats(group, [*KEYS, "latent"], "interp_excess")
        fig = Figure(figsize=(16, 5.4), layout="constrained")
        first, *others = fig.subplots(1, 3)
        _against_width(first, excess, group)
        first.axhline(0, color="grey", linewidth=0.8)
        metric = metric_name(group)
        first.set(
            title=f"Interp - Endpoints at {_latent_text(group)}: near 0 for a smooth latent space",
            ylabel=f"{metric} (Interp) - {metric} (Endpoints)",
        )
        for ax, score in zip(others, ("interp", "endpoints"), strict=True):
            _against_width(ax, stats[stats["score"] == score], group)
            ax.set(
                title=f"{LABELS[score]} at {_latent_text(group)}",
                ylabel=f"{metric} ({LABELS[score]})",
            )
        return fig

    title = (
        f"Interpolation ({dataset_name(dataset)}): decoded midpoints of encoded test pairs, "
        "beyond decoding the pairs' ends, vs width"
    )
    return per_setting(_width_rows(ok, dataset), ("model", "filters"), title, needs, draw)


def scatter(ok: pd.DataFrame, dataset: str) -> Drawn:
    """A.1 / A.2: encoded training images on pairs of latent units, DAE vs VAE (from the rows'
    code_sample)."""
    figure, filters, latent, colours = SCATTERS.get(
        dataset, ("A.1-style", None, None, SCATTERS["cifar10"][3])
    )
    rows = baseline(pick(ok, dataset=dataset))
    rows = rows[rows["code_sample"].notna()] if "code_sample" in rows.columns else rows.iloc[:0]
    size = (
        f"{filters} filters and {latent} latents" if latent else "one filter width and latent size"
    )
    needs = f"ok {dataset} rows with code_sample, depth 1, {PLAIN_TEXT}, {size}"

    def draw(group):
        width, units = (filters, latent) if filters else _widest_shared(group)
        group = _require(pick(group, filters=width, latent=units), needs)
        fig = Figure(figsize=(6.5, 6.2), layout="constrained")
        ax = fig.subplots()
        for model, models in group.sort_values("seed").groupby("model"):
            row = models.iloc[0]
            codes = np.stack([np.asarray(point, dtype=float) for point in row["code_sample"]])
            dims = list(row["code_sample_dims"])
            for colour, (a, b) in zip(colours[model], ((0, 1), (2, 3)), strict=False):
                if b < codes.shape[1]:
                    label = f"{model.upper()} units {dims[a]} vs {dims[b]}"
                    ax.scatter(codes[:, a], codes[:, b], s=3, alpha=0.4, color=colour, label=label)
        ax.set(xlabel="first latent unit of the pair", ylabel="second latent unit of the pair")
        ax.legend(fontsize="small", markerscale=3)
        ax.set_title(f"{width} filters, {units} latents")
        return fig

    name = dataset_name(dataset)
    title = f"Figure {figure} ({name}): encoded training images"
    return per_setting(rows, ("model", "filters"), title, needs, draw)  # it picks one width


def _widest_shared(rows: pd.DataFrame) -> tuple[int, int]:
    """For a dataset the paper did not use: the widest filters, and the middle latent size with
    the most models."""
    filters = rows["filters"].max()
    models = rows[rows["filters"] == filters].groupby("latent")["model"].nunique()
    latents = sorted(models[models == models.max()].index)
    return filters, latents[len(latents) // 2]


def _encoder_convs(depth: str) -> int:
    return sum(stage_depths(depth))


def gaussianity(ok: pd.DataFrame, axis: str) -> Drawn:
    """Hypothesis 2: Gaussianity of the encoded test set against width (axis='filters') or
    depth (axis='depth').

    Each point is one curve: mean and std over its latent sizes and seeds. One line per dataset,
    model and depth (or width) with at least two values on the axis; depths are ordered by their
    encoder convolutions."""
    present = [stat for stat in GAUSSIANITY if stat in ok.columns]
    family = ["dataset", "model", "depth" if axis == "filters" else "filters", "precision"]
    needs = (
        f"ok rows with the Gaussianity columns, {PLAIN_TEXT}, "
        f"of one dataset and model at 2 or more {axis}"
    )

    def draw(group):
        table = make_gaussianity_table(group)
        lines = [
            (key, line)
            for key, line in table.groupby(family, dropna=False)
            if line[axis].nunique() > 1
        ]
        if not lines:
            raise Needs(needs)
        values = sorted(table[axis].unique(), key=_encoder_convs if axis == "depth" else None)
        position = {value: value if axis == "filters" else i for i, value in enumerate(values)}
        fig = Figure(figsize=(5.2 * len(present), 5), layout="constrained")
        for ax, stat in zip(fig.subplots(1, len(present), squeeze=False)[0], present, strict=True):
            for i, ((dataset, model, other, precision), line) in enumerate(lines):
                line = line.assign(x=line[axis].map(position)).sort_values("x")
                suffix, marker = precision_style({"precision": precision}, group)
                name = f"{dataset} {model.upper()} " + (
                    f"depth {other}" if axis == "filters" else f"{other} filters"
                )
                style = {
                    "marker": "o",
                    "capsize": 3,
                    "color": f"C{i}",  # the same line has the same colour in every panel
                    "linestyle": MODEL_STYLES.get(model, "-"),
                }
                ax.errorbar(
                    line["x"],
                    line[f"{stat}_mean"],
                    yerr=line[f"{stat}_std"].fillna(0),
                    label=name + suffix,
                    **{**style, **marker},
                )
                if stat == "heldout_ll_gap_per_dim":  # the one statistic that rests on the GMM
                    _ring_unconverged(ax, line["x"], line[f"{stat}_mean"], line["gmm_unconverged"])
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
        return fig

    title = (
        f"Hypothesis 2: Gaussianity of the encoded test set vs {axis} "
        "(mean ± std over latent sizes)"
    )
    rows = pick(ok, **PLAIN) if present else ok.iloc[:0]
    encoded = ("model", "filters", "depth")
    return per_setting(rows, encoded, title, needs, draw)


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
    (
        "gap_width_{}",
        "Hypothesis 2 ({}): MVG - GMM score vs filters at the comparison latent, per model",
        gap_width,
    ),
    (
        "interp_width_{}",
        "Hypothesis 1 ({}): Interp - Endpoints (what decoding the midpoints of encoded test "
        "pairs costs beyond decoding their ends) vs filters, beside both",
        interp_width,
    ),
    (
        "noise_recon_{}",
        "Noise experiment ({}): Test R and test BCE vs the decoder-input noise, per latent size",
        noise_recon,
    ),
]
FIXED = [  # (file stem, description, the dataset it draws (None: any), builder(ok))
    (
        "figure_2_5",
        "Figures 2 and 5: CIFAR-10 DAE depth 1 / 2 / 3 / [3,3,2,1] per filter width vs the VAE",
        "cifar10",
        figure_2_5,
    ),
    (
        "figure_3",
        "Figure 3: CIFAR-10 DAE, 128 filters, depth 1 and 2, latent layer trained vs frozen",
        "cifar10",
        figure_3,
    ),
    (
        "figure_4",
        "Figure 4: CIFAR-10, 128 filters, latent BN / SN / LN vs plain DAE and VAE, all samplers",
        "cifar10",
        figure_4,
    ),
    (
        "figure_noise",
        "Noise: CIFAR-10 DAE with decoder-input noise 0 / 0.1 / 0.5 / 1 vs the VAE",
        "cifar10",
        figure_noise,
    ),
    (
        "gaussianity_width",
        "Hypothesis 2: |skew|, excess kurtosis and GMM - MVG held-out log-likelihood vs filters",
        None,
        functools.partial(gaussianity, axis="filters"),
    ),
    (
        "gaussianity_depth",
        "Hypothesis 2: the same statistics vs depth",
        None,
        functools.partial(gaussianity, axis="depth"),
    ),
]


def figure_list(ok: pd.DataFrame) -> list[tuple[str, str, str | None, object]]:
    """(file stem, one-line description, the dataset it draws (None: any), zero-argument builder
    -> Drawn) for every figure the report tries to draw."""
    datasets = [*PAPER_DATASETS, *sorted(set(ok["dataset"]) - set(PAPER_DATASETS))]
    return [
        *(
            (
                stem.format(d),
                text.format(dataset_name(d)),
                d,
                functools.partial(build, ok, d),
            )
            for stem, text, build in PER_DATASET
            for d in datasets
        ),
        *((stem, text, d, functools.partial(build, ok)) for stem, text, d, build in FIXED),
    ]
