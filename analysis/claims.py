"""The paper's claims beyond Tables 2 and 3, as tables: which VAE loss reading reproduces its VAE
row, Hypothesis 2's MVG - GMM gap against width, the noise experiment's reconstructions, parameter
counts against its stated ranges, and which of DAE and VAE wins at each width.

Every score here is a mean over replicates. Published values stand beside ours only where ours are
FIDs (the joins include the `metric` column).
"""

import numpy as np
import pandas as pd

from analysis.optimum import find_optima, latent_stats, replicate_stats, welch_interval
from analysis.results import (
    KEYS,
    at_comparison_latent,
    baseline,
    per_curve,
    pick,
    protocol,
)
from analysis.tables import (
    SORTED_CURVES,
    TABLE_2_KEYS,
    beside,
    paper_optima,
    readable_curves,
    replicate_means,
    sort_rows,
    span,
)
from trainables import published
from trainables.config import VAE_ONLY
from trainables.curves import CURVE_FIELDS
from trainables.scored_sets import SAMPLERS

READINGS_FILTERS = 128  # the VAE row of Table 2 the readings are checked against
PARTS = ("encoder", "decoder")  # of a model, whose parameters are counted
PAPER_KEYS = ["dataset", "filters", "metric", "sampler", "at"]
WINNER_COLUMNS = [
    "dataset",
    "filters",
    *VAE_ONLY,
    "precision",
    "protocol",
    "metric",
    "sampler",
    "at",
    "latent_dae",
    "latent_vae",
    "mean_dae",
    "mean_vae",
    "n_dae",
    "n_vae",
    "difference",
    "ci_low",
    "ci_high",
    "interval",
    "winner",
    "decided",
    "paper_difference",
    "gmm_unconverged",
]

READINGS_NOTES = [
    "Each VAE loss reading (bce_reduction: BCE summed over pixels, averaged over channels, or "
    "averaged over all elements, before + beta * KL) at 128 filters and the paper's comparison "
    "latent, beside the paper's VAE row of Table 2.",
    "mean_abs_diff: mean |ours - paper| over the five scores (FID rows only): the reading with the "
    "smallest one reproduces the paper's VAE best.",
    "test_recon_bce: mean per-image reconstruction BCE (summed over pixels) on the test set.",
]
NOISE_NOTES = [
    "The noise experiment: DAE curves that differ only in the std of the Gaussian noise added to "
    "the decoder input while training (no latent norm, nothing frozen), per latent size.",
    "test_recon: the score of reconstructed test images (Test R); test_bce: mean per-image "
    "reconstruction BCE (summed over pixels) on the test set. ci: 95% t-interval over replicates.",
]
PARAMETER_NOTES = [
    "Each curve's encoder and decoder parameter counts (fewest and most over its latent sizes) "
    "beside the ranges the paper states for its models (section 5).",
    "vs_paper: inside, below or above the paper's range, or partly outside it.",
    "The paper's ranges are its section 5's, for all its models together; which count they are at "
    "(which latent size, which reading of the decoder) it does not say. Our smallest CelebA "
    "encoders (32 filters) hold about 4x fewer parameters than its stated CelebA minimum (5e6): no "
    "reading of the architecture tried so far fits both ends of its CelebA ranges "
    "(docs/readings.md).",
]
WINNER_NOTES = [
    "difference = DAE - VAE: lower scores are better, so a negative difference means the DAE wins."
    " Depth-1 curves without latent norm, noise or freezing; a VAE curve is paired with the DAE "
    "curve of the same setting, one row per VAE reading (bce_reduction, beta).",
    "at: 'comparison latent' = both at the paper's Table 2 latent (CIFAR-10 128, CelebA 64; another"
    " dataset: the middle of the latent sizes its curves share); 'optimum' = each side at its own "
    "best latent size for that sampler.",
    "ci_low, ci_high: the 95% Welch t-interval of the difference over the replicates of each side "
    "('n=1, no interval' where a side has a single replicate); decided: the interval excludes 0. "
    "At 'optimum' the best latents were picked by their means, which the interval ignores.",
    "paper_difference: the same difference from the paper's Tables 2 (comparison latent) and 3 "
    "(optimum; the paper gives no DAE optimum for N(0,I)), FID rows only.",
]


def make_readings_table(ok: pd.DataFrame) -> pd.DataFrame:
    """Each VAE reading at Table 2's 128-filter point, beside the paper's VAE row, with the mean
    absolute difference over the five scores."""
    rows = pick(
        baseline(ok),
        model="vae",
        filters=READINGS_FILTERS,
        dataset=tuple(published.COMPARISON_LATENT),
    )
    rows = rows[rows["latent"] == rows["dataset"].map(published.COMPARISON_LATENT)]
    ours = readable_curves(
        replicate_means(rows, also=("test_recon_bce",)), keep=("bce_reduction", "beta")
    )
    paper = published.table_2()
    paper = paper[(paper["model"] == "VAE") & (paper["filters"] == READINGS_FILTERS)]
    table = beside(ours, paper, TABLE_2_KEYS, list(published.PUBLISHED_SETS))
    diffs = table[[f"{name}_diff" for name in published.PUBLISHED_SETS]].abs()
    table = table.assign(mean_abs_diff=diffs.mean(axis=1))
    front = ["dataset", "bce_reduction", "beta"]
    table = table[[*front, *(c for c in table.columns if c not in front)]]
    return sort_rows(table, ["dataset", "bce_reduction", "beta", "protocol"])


def make_gap_table(ok: pd.DataFrame) -> pd.DataFrame:
    """Hypothesis 2: MVG - GMM score per depth-1 plain curve at the comparison latent (mean and
    t-interval over replicates), beside the paper's from Table 2."""
    rows = at_comparison_latent(baseline(ok))
    gaps = rows.assign(gap=rows["fd_mvg"] - rows["fd_gmm"])
    stats = replicate_stats(gaps, [*KEYS, "latent"], "gap")
    ours = readable_curves(stats.rename(columns=_named("gap", mean="gap")), keep=())
    paper = published.table_2()
    paper = paper[paper["model"].isin(["DAE", "VAE"])]
    paper = paper.assign(gap=paper["fd_mvg"] - paper["fd_gmm"])
    return beside(ours, paper, TABLE_2_KEYS, ["gap"])


def _named(quantity: str, mean: str) -> dict:
    """replicate_stats' columns -> `mean`, QUANTITY_std, QUANTITY_ci_low, QUANTITY_ci_high."""
    return {"mean": mean, **{stat: f"{quantity}_{stat}" for stat in ("std", "ci_low", "ci_high")}}


def gap_trends(table: pd.DataFrame) -> list[str]:
    """One line per dataset, model and setting with 2 or more widths: how the gap changes per
    doubling of filters (least squares in log2(filters)), ours and the paper's."""
    lines = []
    for side in ("ours", "paper"):
        rows = table.dropna(subset=[f"gap_{side}"])
        keys = ["dataset", "model", "metric"] + (
            ["precision", "protocol"] if side == "ours" else []
        )
        for (dataset, model, *setting), line in rows.groupby(keys, dropna=False, sort=False):
            if line["filters"].nunique() < 2:
                continue
            slope = np.polyfit(np.log2(line["filters"].astype(float)), line[f"gap_{side}"], 1)[0]
            lines.append(
                f"{side}: {dataset} {model} ({', '.join(map(str, setting))}): the gap changes by "
                f"{slope:+.2f} per doubling of filters (least squares over "
                f"{line['filters'].min()}-{line['filters'].max()} filters)"
            )
    return lines


def make_noise_table(ok: pd.DataFrame) -> pd.DataFrame:
    """Test R and test BCE per latent size and noise std, for every set of curves that differ only
    in the noise std."""
    rows = pick(ok, latent_norm="none", freeze_latent=False)
    line = [key for key in KEYS if key != "noise_std"]
    levels = rows.groupby(line, dropna=False)["noise_std"].transform("nunique")
    rows = rows[levels > 1].assign(gmm_unconverged=False)  # no GMM behind these
    by = [*KEYS, "latent"]
    recon = replicate_stats(rows, by, "fd_test_recon").drop(columns="gmm_unconverged")
    bce = replicate_stats(rows, by, "test_recon_bce").drop(columns=["n", "gmm_unconverged"])
    table = recon.rename(columns=_named("test_recon", mean="test_recon")).merge(
        bce.rename(columns=_named("test_bce", mean="test_bce")), on=by, how="outer"
    )
    table = readable_curves(table, keep=("noise_std",))
    return sort_rows(table, ["dataset", "model", "filters", "protocol", "latent", "noise_std"])


def make_parameter_table(ok: pd.DataFrame) -> pd.DataFrame:
    """Each curve's encoder and decoder parameter counts beside the paper's stated ranges."""
    counts = ok.assign(**{f"{p}_params": pd.to_numeric(ok[f"{p}_params"]) for p in PARTS})
    table = (
        counts.groupby(list(CURVE_FIELDS), dropna=False)
        .agg(
            latents=("latent", span),
            **{
                f"{part}_{end}": (f"{part}_params", end) for part in PARTS for end in ("min", "max")
            },
        )
        .reset_index()
    )
    for part in PARTS:
        ranges = table["dataset"].map(
            lambda d, part=part: published.PARAMETER_RANGES.get(d, {}).get(part)
        )
        table[f"{part}_paper"] = ranges.map(
            lambda r: "" if r is None else f"{r[0]:.0e} - {r[1]:.0e}"
        )
        table[f"{part}_vs_paper"] = [
            _against(low, high, r)
            for low, high, r in zip(table[f"{part}_min"], table[f"{part}_max"], ranges, strict=True)
        ]
    return sort_rows(readable_curves(table), SORTED_CURVES)


def _against(fewest: float, most: float, paper: tuple | None) -> str:
    if paper is None:
        return ""
    low, high = paper
    if most < low:
        return "below"
    if fewest > high:
        return "above"
    if low <= fewest and most <= high:
        return "inside"
    return "partly outside"


def make_winners_table(ok: pd.DataFrame) -> pd.DataFrame:
    """DAE against VAE at each width, per dataset, setting and sampler: at the comparison latent
    and at each curve's optimum, with the Welch t-interval of the difference."""
    rows = baseline(ok)
    at_latent = latent_stats(at_comparison_latent(rows))
    at_latent = at_latent[at_latent["score"].isin(SAMPLERS)].rename(columns={"score": "sampler"})
    at_best = find_optima(latent_stats(rows))
    sides = pd.concat(
        [at_latent.assign(at="comparison latent"), at_best.assign(at="optimum")], ignore_index=True
    )
    if sides.empty:
        return pd.DataFrame(columns=WINNER_COLUMNS)
    shown = ("dataset", "model", "filters", "latent_norm", *VAE_ONLY)
    sides = sides.assign(protocol=per_curve(sides, lambda curve: protocol(curve, shown)))
    pair = [k for k in KEYS if k not in ("model", *VAE_ONLY)] + ["protocol", "sampler", "at"]
    dae = sides[sides["model"] == "dae"].drop(columns=["model", *VAE_ONLY])
    vae = sides[sides["model"] == "vae"].drop(columns="model")
    pairs = dae.merge(vae, on=pair, suffixes=("_dae", "_vae"))
    intervals = [
        welch_interval(_side(row, "dae"), _side(row, "vae")) for _, row in pairs.iterrows()
    ]
    difference = pairs["mean_dae"] - pairs["mean_vae"]
    ci = pd.DataFrame(intervals, columns=["ci_low", "ci_high"], index=pairs.index)
    pairs = pairs.assign(
        difference=difference,
        ci_low=ci["ci_low"],
        ci_high=ci["ci_high"],
        interval=np.where(ci["ci_low"].isna(), "n=1, no interval", "95% Welch t"),
        winner=np.select([difference < 0, difference > 0], ["DAE", "VAE"], "tie"),
        decided=[
            None if np.isnan(low) else bool(low > 0 or high < 0)
            for low, high in zip(ci["ci_low"], ci["ci_high"], strict=True)
        ],
        gmm_unconverged=pairs["gmm_unconverged_dae"] + pairs["gmm_unconverged_vae"],
    )
    table = pairs.merge(_paper_differences(), on=PAPER_KEYS, how="left")
    by = ["dataset", "filters", "protocol", *VAE_ONLY, "at", "sampler"]
    return sort_rows(table[WINNER_COLUMNS], by)


def _side(row: pd.Series, model: str) -> dict:
    return {stat: row[f"{stat}_{model}"] for stat in ("mean", "std", "n")}


def _paper_differences() -> pd.DataFrame:
    """DAE - VAE in the paper, per dataset, width and sampler: at Table 2's latent and at the
    optima of Table 3."""
    frames = []
    for at, paper in (
        ("comparison latent", published.table_2()),
        ("optimum", paper_optima()),
    ):
        for sampler in published.PUBLISHED_SAMPLERS:
            rows = paper if at == "comparison latent" else paper[paper["best_for"] == sampler]
            by_model = rows.pivot_table(
                index=["dataset", "filters", "metric"], columns="model", values=f"fd_{sampler}"
            )
            if {"DAE", "VAE"} <= set(by_model.columns):
                difference = (by_model["DAE"] - by_model["VAE"]).rename("paper_difference")
                frames.append(difference.reset_index().assign(sampler=sampler, at=at))
    return pd.concat(frames, ignore_index=True)
