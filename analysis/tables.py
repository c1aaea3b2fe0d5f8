"""Tables 2 and 3 with our scores beside the paper's, the per-curve Gaussianity table (Hypothesis 2)
and the status of every curve; and how every table of the report is written.

Ours are means over replicates; `_diff` is ours minus the paper's. A published value is set beside
ours only when ours is an FID too (the join includes the `metric` column): the digits default's
FD (digits-cnn) lives in another feature space and keeps the paper columns empty. Paper rows we have
no results for stay, with our columns empty; our rows the paper does not have stay, with its
columns empty. A score that rests on a GMM fit that did not converge is marked in the Markdown.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.optimum import find_optima, latent_stats
from analysis.results import KEYS, add_labels, baseline, per_curve
from trainables import data, published
from trainables.config import choices
from trainables.curves import CURVE_FIELDS
from trainables.scored_sets import SAMPLERS, SCORED_SETS

# How rows are ordered where a column's values have a natural order (others sort by value)
ORDER = {
    "dataset": list(data.DATASETS),
    "model": ["DAE", "DAE (BN)", "DAE (SN)", "DAE (LN)", "VAE", "WAE", "RAE", "EAE", "GMM-DAE"],
    "best_for": list(SAMPLERS),
    "sampler": list(SAMPLERS),
    "bce_reduction": list(choices("bce_reduction")),
}
TABLE_2_KEYS = ["dataset", "filters", "model", "latent", "metric"]
TABLE_3_SCORES = published.TABLE_3_SETS  # Table 3 as printed: no Train R
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
INTEGER_COLUMNS = [
    "filters",
    "latent",
    "latent_ours",
    "latent_paper",
    "n",
    "n_latents",
    "gmm_unconverged",
    "latent_dae",
    "latent_vae",
    "n_dae",
    "n_vae",
]
UNCONVERGED_MARK = "†"
PICKED_FOR_OTHERS = "‡ picked for MVG/GMM"
UNCONVERGED_NOTE = (
    f"{UNCONVERGED_MARK}: the GMM fit of gmm_unconverged of the rows behind this value stopped at"
    " gmm_max_iter iterations without converging: the value rests on an unfinished fit."
)
SORTED_CURVES = ["dataset", "model", "filters", "depth", "noise_std", "freeze_latent", "protocol"]
STATUS_ORDER = ["ok", "failed", "diverged"]
ERROR_CHARS = 160  # of an error's first line, in the status table


def make_table_2(ok: pd.DataFrame) -> pd.DataFrame:
    """Each filter width and model at the paper's comparison latent (CIFAR-10 128, CelebA 64),
    depth 1."""
    rows = baseline(ok, latent_norm=("none", "bn"))
    rows = rows[rows["latent"] == rows["dataset"].map(published.COMPARISON_LATENT)]
    table = beside(
        readable_curves(replicate_means(rows), keep=()),
        published.table_2(),
        TABLE_2_KEYS,
        list(published.PUBLISHED_SETS),
    )
    values = [
        *(f"{name}_{side}" for name in published.PUBLISHED_SETS for side in ("ours", "paper")),
        *(name for name in SCORED_SETS if name not in published.PUBLISHED_SETS),
    ]
    return table.dropna(how="all", subset=values).reset_index(drop=True)


def replicate_means(rows: pd.DataFrame, also=()) -> pd.DataFrame:
    """Per curve and latent size: the mean of each score (and of the columns in `also`) over its
    replicates, their number n, and how many of them have a GMM that did not converge."""
    groups = rows.groupby([*KEYS, "latent"], dropna=False)
    means = groups[[*(f"fd_{name}" for name in SCORED_SETS), *also]].agg("mean")
    means = means.assign(n=groups.size(), gmm_unconverged=groups["gmm_unconverged"].sum())
    return means.reset_index()


def make_table_3(ok: pd.DataFrame) -> pd.DataFrame:
    """Each depth-1 curve at its best latent size for each sampler, beside the paper's best for
    that sampler."""
    stats = latent_stats(baseline(ok))
    shown = stats[stats["score"].isin(TABLE_3_SCORES)]
    means = shown.pivot_table(index=[*KEYS, "latent"], columns="score", values="mean")
    means = means.reset_index().reindex(columns=[*KEYS, "latent", *TABLE_3_SCORES])
    gmm = shown.loc[shown["score"] == "gmm", [*KEYS, "latent", "gmm_unconverged"]]
    optima = find_optima(stats)[[*KEYS, "sampler", "latent", "fit_latent", "n"]].rename(
        columns={"sampler": "best_for"}
    )
    ours = optima.merge(means, on=[*KEYS, "latent"]).merge(gmm, on=[*KEYS, "latent"], how="left")
    keys = ["dataset", "filters", "model", "metric", "best_for"]
    return beside(
        readable_curves(ours, keep=()),
        paper_optima(),
        keys,
        ["latent", "paper_pick", *TABLE_3_SCORES],
        differences=TABLE_3_SCORES,
    )


def paper_optima() -> pd.DataFrame:
    """The paper's best row of each filter width and model for each sampler (the bold cells of
    Table 3), with `paper_pick` saying how it was picked.

    The paper chose its Table 3 rows for MVG and GMM sampling: it gives no DAE's best N(0,I)
    latent, and a VAE's "best" N(0,I) row here is only the lowest N(0,I) among the rows it picked
    for the other two samplers (paper_pick PICKED_FOR_OTHERS), a comparison it never made."""
    paper = published.table_3()
    best = []
    for sampler in published.PUBLISHED_SAMPLERS:
        candidates = paper[paper["model"] != "DAE"] if sampler == "normal" else paper
        groups = candidates.groupby(["dataset", "filters", "model"])[f"fd_{sampler}"]
        pick = PICKED_FOR_OTHERS if sampler == "normal" else "the paper's best"
        best.append(candidates.loc[groups.idxmin()].assign(best_for=sampler, paper_pick=pick))
    return pd.concat(best, ignore_index=True)


def table_3_notes(table: pd.DataFrame) -> list[str]:
    notes = comparability_notes(table)
    if (table.get("paper_pick") == PICKED_FOR_OTHERS).any():
        notes.append(
            f"paper_pick '{PICKED_FOR_OTHERS}': the paper picked its Table 3 rows for MVG and GMM "
            "sampling and never a latent size for N(0,I); its value beside our N(0,I) optimum is "
            "the lowest N(0,I) score among those rows, a comparison the paper did not make."
        )
    return notes


def readable_curves(
    frame: pd.DataFrame, keep=("depth", "noise_std", "freeze_latent")
) -> pd.DataFrame:
    """The curve fields of a frame as a reader names them: the paper's model names (DAE, VAE,
    DAE (BN)), the fields in `keep`, the precision, and the protocol: every other curve field where
    the curve departs from its dataset's default config."""
    front = ["dataset", "label", "filters", *keep, "precision", "protocol"]
    rest = [c for c in frame.columns if c not in (*CURVE_FIELDS, *front)]
    return add_labels(frame, keep)[[*front, *rest]].rename(columns={"label": "model"})


def beside(ours, paper, keys, quantities, differences=None) -> pd.DataFrame:
    """Outer join on keys; `q_ours`, `q_paper` and `q_diff` (ours - paper) for each quantity."""
    strip = {f"fd_{name}": name for name in SCORED_SETS}
    ours = ours.rename(columns=strip)
    paper = paper.rename(columns=strip)
    paper = paper[[*keys, *(q for q in quantities if q in paper.columns)]]
    table = ours.merge(paper, on=keys, how="outer", suffixes=("_ours", "_paper"))
    for quantity in quantities if differences is None else differences:
        table[f"{quantity}_diff"] = table[f"{quantity}_ours"] - table[f"{quantity}_paper"]
    table = sort_rows(table, ["dataset", "filters", "model", "best_for", "protocol"])
    front = [*keys, *(c for c in ("precision", "protocol", "n") if c in table.columns)]
    return table[[*front, *(c for c in table.columns if c not in front)]]


def sort_rows(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Rows sorted by the columns of `by` the table has, in ORDER where a column has one."""
    return table.sort_values(
        [column for column in by if column in table.columns],
        key=lambda column: _rank(column, ORDER.get(column.name)),
        kind="stable",
    ).reset_index(drop=True)


def _rank(column: pd.Series, order: list | None) -> pd.Series:
    """Sort key: the position in `order` (unknown values last), or without one the values."""
    return (
        column
        if order is None
        else column.map({v: i for i, v in enumerate(order)}).fillna(len(order))
    )


def make_gaussianity_table(ok: pd.DataFrame) -> pd.DataFrame:
    """Per curve: mean and std, over its latent sizes and seeds, of the Gaussianity statistics of
    the codes (gmm_unconverged: rows whose GMM, behind the held-out log-likelihood gap, did not
    converge)."""
    present = [c for c in (*GAUSSIANITY, *CODE_SHAPE) if c in ok.columns]
    if ok.empty or not present:
        return pd.DataFrame(columns=[*KEYS, "n", "latents", "gmm_unconverged"])
    numbers = ok.assign(**{c: pd.to_numeric(ok[c]) for c in present})
    groups = numbers.groupby(KEYS, dropna=False)
    table = groups[present].agg(["mean", "std"])
    table.columns = [f"{column}_{stat}" for column, stat in table.columns]
    return table.assign(
        n=groups.size(),
        latents=groups["latent"].agg(span),
        gmm_unconverged=groups["gmm_unconverged"].sum(),
    ).reset_index()


def span(latents: pd.Series) -> str:
    """'32-256', or '128' for a single size."""
    return f"{latents.min()}-{latents.max()}" if latents.nunique() > 1 else str(latents.min())


def make_status_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per curve, every row whatever its status: how many ended in each status, and each distinct
    error (its first line) with how many rows gave it."""
    curve = per_curve(rows, lambda first: first.name)  # the index of the curve's first row
    groups = rows.groupby(curve)
    counts = pd.crosstab(curve, rows["status"].fillna("unknown"))
    statuses = [*STATUS_ORDER, *sorted(set(counts.columns) - set(STATUS_ORDER))]
    counts = counts.reindex(columns=statuses, fill_value=0)
    table = rows.loc[counts.index, list(CURVE_FIELDS)].assign(
        latents=groups["latent"].agg(span),
        rows=counts.sum(axis=1),
        **{status: counts[status] for status in statuses},
        errors=groups["error"].agg(_errors),
    )
    return sort_rows(readable_curves(table), SORTED_CURVES)


def _errors(errors: pd.Series) -> str:
    """'2 x first line; 1 x another' for the distinct errors of a curve's rows."""
    lines = errors.dropna().astype(str).map(lambda e: e.strip().split("\n")[0][:ERROR_CHARS])
    return "; ".join(f"{n} x {line}" for line, n in lines.value_counts().items())


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


def write_table(
    table: pd.DataFrame, stem: Path, title: str, notes: list[str], gmm_based=("gmm",)
) -> list[Path]:
    """table -> STEM.csv (every column, full precision), STEM.md ('ours / paper (diff)' cells).

    In the Markdown, the cells of the `gmm_based` columns get UNCONVERGED_MARK where the row's
    gmm_unconverged count is above 0, with a note saying what it means."""
    csv = stem.with_suffix(".csv")
    md = stem.with_suffix(".md")
    _typed(table).to_csv(csv, index=False)
    shown, notes = shown_table(table, notes, gmm_based)
    bullets = "".join(f"- {note}\n" for note in notes)
    md.write_text(f"# {title}\n\n{bullets}\n{markdown_table(shown)}\n")
    return [md, csv]


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    return table.astype({c: "Int64" for c in INTEGER_COLUMNS if c in table.columns})


def shown_table(
    table: pd.DataFrame, notes: list[str], gmm_based=("gmm",)
) -> tuple[pd.DataFrame, list[str]]:
    """(the table as the report shows it, every cell as text, in the rows' order; its notes, with
    UNCONVERGED_NOTE where a cell is marked): what write_table's Markdown and the report's page
    show."""
    table = _typed(table)
    shown = _side_by_side(table)
    if "gmm_unconverged" in table.columns:
        marked = table["gmm_unconverged"].fillna(0).to_numpy() > 0
        for column in [c for c in gmm_based if c in shown.columns]:
            shown[column] = [
                f"{_cell(value)} {UNCONVERGED_MARK}" if mark else value
                for value, mark in zip(shown[column], marked, strict=True)
            ]
        if marked.any():
            notes = [*notes, UNCONVERGED_NOTE]
    return shown.map(_cell), notes


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


def markdown_table(frame: pd.DataFrame) -> str:
    """A Markdown table of a frame of text cells."""
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + " --- |" * len(frame.columns)]
    lines += [
        "| " + " | ".join(value.replace("|", "\\|") for value in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"
    return str(value)
