"""Tables 2 and 3 with our scores beside the paper's, and the per-curve Gaussianity table
(Hypothesis 2).

Ours are means over replicates; `_diff` is ours minus the paper's. A published value is set beside
ours only when ours is an FID too (the join includes the `metric` column): the digits default's
FD (digits-cnn) lives in another feature space and keeps the paper columns empty. Paper rows we have
no results for stay, with our columns empty; our rows the paper does not have stay, with its
columns empty.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import published
from analysis.optimum import KEYS, find_optima, latent_stats
from analysis.results import add_labels, baseline
from trainables.config import CURVE_FIELDS
from trainables.schema import SAMPLERS, SCORED_SETS

DATASET_ORDER = ["cifar10", "celeba"]
MODEL_ORDER = ["DAE", "DAE (BN)", "VAE", "WAE", "RAE", "EAE", "GMM-DAE"]
TABLE_3_SCORES = ["test_recon", "normal", "mvg", "gmm"]
# 0 for a Gaussian; the last: held-out log-likelihood of the GMM minus the MVG's, per latent unit
GAUSSIANITY = {
    "code_abs_skew": "mean |skew| per latent unit",
    "code_excess_kurtosis": "mean excess kurtosis per latent unit",
    "heldout_ll_gap_per_dim": "GMM - MVG held-out log-lik. per unit",
}
CODE_SHAPE = [
    "code_dead_units",
    "code_std_mean",
    "code_mean_norm",
    "encoder_params",
    "decoder_params",
]
INTEGER_COLUMNS = ["filters", "latent", "latent_ours", "latent_paper", "n", "n_latents"]


def make_table_2(ok: pd.DataFrame) -> pd.DataFrame:
    """Each filter width and model at the paper's comparison latent (CIFAR-10 128, CelebA 64),
    depth 1."""
    rows = baseline(ok, latent_norm=("none", "bn"))
    rows = rows[rows["latent"] == rows["dataset"].map(published.COMPARISON_LATENT)]
    scores = [f"fd_{name}" for name in SCORED_SETS]
    ours = rows.groupby([*KEYS, "latent"], dropna=False)[scores].agg("mean")
    ours = ours.join(rows.groupby([*KEYS, "latent"], dropna=False).size().rename("n")).reset_index()
    table = _beside(
        readable_curves(ours, keep=()),
        published.table_2(),
        ["dataset", "filters", "model", "latent", "metric"],
        list(SCORED_SETS),
    )
    values = [f"{name}_{side}" for name in SCORED_SETS for side in ("ours", "paper")]
    return table.dropna(how="all", subset=values).reset_index(drop=True)


def make_table_3(ok: pd.DataFrame) -> pd.DataFrame:
    """Each depth-1 curve at its best latent size for each sampler, beside the paper's best for
    that sampler."""
    stats = latent_stats(baseline(ok))
    shown = stats[stats["score"].isin(TABLE_3_SCORES)]
    means = shown.pivot_table(index=[*KEYS, "latent"], columns="score", values="mean").reset_index()
    means = means.reindex(columns=[*KEYS, "latent", *TABLE_3_SCORES])
    optima = find_optima(stats)[[*KEYS, "sampler", "latent", "fit_latent", "n"]].rename(
        columns={"sampler": "best_for"}
    )
    ours = readable_curves(optima.merge(means, on=[*KEYS, "latent"]), keep=())
    keys = ["dataset", "filters", "model", "metric", "best_for"]
    return _beside(
        ours, _paper_optima(), keys, ["latent", *TABLE_3_SCORES], differences=TABLE_3_SCORES
    )


def _paper_optima() -> pd.DataFrame:
    """The paper's best row of each filter width and model for each sampler (the bold cells of
    Table 3).

    Its DAE rows were chosen for MVG and GMM sampling; the paper does not give a DAE's best N(0,I)
    latent."""
    paper = published.table_3()
    best = []
    for sampler in SAMPLERS:
        candidates = paper[paper["model"] != "DAE"] if sampler == "normal" else paper
        groups = candidates.groupby(["dataset", "filters", "model"])[f"fd_{sampler}"]
        best.append(candidates.loc[groups.idxmin()].assign(best_for=sampler))
    return pd.concat(best, ignore_index=True)


def readable_curves(
    frame: pd.DataFrame, keep=("depth", "noise_std", "freeze_latent")
) -> pd.DataFrame:
    """The curve fields of a frame as a reader names them: the paper's model names (DAE, VAE,
    DAE (BN)), the protocol they ran under, and the fields in `keep`."""
    front = ["dataset", "label", "filters", *keep, "protocol"]
    rest = [c for c in frame.columns if c not in (*CURVE_FIELDS, *front)]
    return add_labels(frame)[[*front, *rest]].rename(columns={"label": "model"})


def _beside(ours, paper, keys, quantities, differences=None) -> pd.DataFrame:
    """Outer join on keys; `q_ours`, `q_paper` and `q_diff` (ours - paper) for each quantity."""
    strip = {f"fd_{name}": name for name in SCORED_SETS}
    ours = ours.rename(columns=strip)
    paper = paper.rename(columns=strip)
    paper = paper[[*keys, *(q for q in quantities if q in paper.columns)]]
    table = ours.merge(paper, on=keys, how="outer", suffixes=("_ours", "_paper"))
    for quantity in quantities if differences is None else differences:
        table[f"{quantity}_diff"] = table[f"{quantity}_ours"] - table[f"{quantity}_paper"]
    order = {"dataset": DATASET_ORDER, "model": MODEL_ORDER, "best_for": list(SAMPLERS)}
    by = [k for k in ("dataset", "filters", "model", "best_for", "protocol") if k in table.columns]
    table = table.sort_values(
        by, key=lambda column: _rank(column, order.get(column.name)), kind="stable"
    )
    front = [*keys, *(c for c in ("protocol", "n") if c in table.columns)]
    return table[[*front, *(c for c in table.columns if c not in front)]].reset_index(drop=True)


def _rank(column: pd.Series, order: list | None) -> pd.Series:
    """Sort key: the position in `order` (unknown values last), or without one the values."""
    return (
        column
        if order is None
        else column.map({v: i for i, v in enumerate(order)}).fillna(len(order))
    )


def make_gaussianity_table(ok: pd.DataFrame) -> pd.DataFrame:
    """Per curve: mean and std, over its latent sizes and seeds, of the Gaussianity statistics of
    the codes."""
    present = [c for c in (*GAUSSIANITY, *CODE_SHAPE) if c in ok.columns]
    if ok.empty or not present:
        return pd.DataFrame(columns=[*KEYS, "n", "latents"])
    numbers = ok.assign(**{c: pd.to_numeric(ok[c]) for c in present})
    groups = numbers.groupby(KEYS, dropna=False)
    table = groups[present].agg(["mean", "std"])
    table.columns = [f"{column}_{stat}" for column, stat in table.columns]
    spans = groups["latent"].agg(
        lambda s: f"{s.min()}-{s.max()}" if s.nunique() > 1 else str(s.min())
    )
    return table.assign(n=groups.size(), latents=spans).reset_index()


def _has_ours(table: pd.DataFrame) -> pd.Series:
    """The rows of a table that hold a value of ours."""
    return table.filter(like="_ours").notna().any(axis=1)


def comparable(table: pd.DataFrame) -> pd.Series:
    """The rows where an FID of ours can stand beside the paper's."""
    return _has_ours(table) & (table["metric"] == "FID")


def comparability_notes(table: pd.DataFrame) -> list[str]:
    """What a reader must know before comparing a table's columns."""
    fid = comparable(table)
    notes = ["ours: mean over replicates (n rows); diff = ours - paper; '–' = no value."]
    if not fid.any():
        notes.append(
            "The store holds no FID rows for this table: "
            "none of our values here is comparable to the paper's."
        )
    for metric in sorted(table.loc[_has_ours(table) & ~fid, "metric"].unique()):
        notes.append(
            f"Rows in {metric} are in another feature space than FID: "
            "they have no published counterpart."
        )
    return notes


def write_table(table: pd.DataFrame, stem: Path, title: str, notes: list[str]) -> list[Path]:
    """table -> STEM.csv (every column, full precision), STEM.md ('ours / paper (diff)' cells)."""
    csv = stem.with_suffix(".csv")
    md = stem.with_suffix(".md")
    table = table.astype({c: "Int64" for c in INTEGER_COLUMNS if c in table.columns})
    table.to_csv(csv, index=False)
    bullets = "".join(f"- {note}\n" for note in notes)
    md.write_text(f"# {title}\n\n{bullets}\n{_markdown(_side_by_side(table))}\n")
    return [md, csv]


def _side_by_side(table: pd.DataFrame) -> pd.DataFrame:
    """Folds each `q_ours`, `q_paper`, `q_diff` triple into one 'ours / paper (diff)' column."""
    shown = table.copy()
    for quantity in [c.removesuffix("_ours") for c in table.columns if c.endswith("_ours")]:
        mine = f"{quantity}_ours"
        paper = f"{quantity}_paper"
        diff = f"{quantity}_diff"
        if paper not in table.columns:
            continue
        text = [f"{_cell(o)} / {_cell(p)}" for o, p in zip(table[mine], table[paper], strict=True)]
        if diff in table.columns:
            text = [
                t if pd.isna(d) else f"{t} ({d:+.2f})"
                for t, d in zip(text, table[diff], strict=True)
            ]
        position = shown.columns.get_loc(mine)
        shown = shown.drop(columns=[c for c in (mine, paper, diff) if c in shown.columns])
        shown.insert(position, quantity, text)
    return shown


def _markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + " --- |" * len(frame.columns)]
    lines += [
        "| " + " | ".join(_cell(value) for value in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"
    return str(value)
