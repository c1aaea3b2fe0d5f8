"""The best latent size of each curve, per sampler: measured, smoothed, and tested against its
neighbours.

Hypothesis 3 of the paper says each architecture has an optimum bottleneck. Three views of it:
- `latent`: the measured latent size with the lowest mean score;
- `fit_latent`: the vertex of a quadratic in log2(latent) through the (up to) FIT_POINTS measured
  sizes around that minimum, which can fall between grid points; NaN, with the reason in
  `fit_note`, when the curve has fewer than 4 sizes, its lowest score is at the smallest or largest
  size measured (the optimum is not bracketed), the fit is not convex or its vertex lies outside
  the fitted sizes;
- `distinguishable`: whether the minimum beats both measured neighbours by a two-sided Welch t-test
  at level ALPHA on the replicates. Welch, not "95% intervals do not overlap": non-overlap is a far
  stricter test (about p < 0.006 for equal spreads), and the spread of a score changes with the
  latent size. Note that picking the lowest of several means favours the winner, so a borderline p
  is weak evidence.

The intervals here are over replicates (seeds): a t-interval of one mean (`replicate_stats`), and
Welch's t-interval of the difference of two (`welch_interval`).
"""

import numpy as np
import pandas as pd
from scipy import stats

from analysis.results import KEYS
from trainables.scored_sets import SAMPLERS, SCORED_SETS

CONFIDENCE = 0.95
ALPHA = 0.05
FIT_POINTS = 5
MIN_FIT_LATENTS = 4
BEST_COLUMNS = ["latent", "mean", "std", "n", "ci_low", "ci_high"]


def replicate_stats(rows: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Per group: mean, std, n and a CONFIDENCE t-interval of `value` over the rows (replicates),
    and gmm_unconverged, the rows flagged so (the caller clears the flag where the value does not
    rest on the GMM)."""
    groups = rows.dropna(subset=[value]).groupby(by, dropna=False)
    table = groups[value].agg(mean="mean", std="std", n="count")
    table = table.assign(gmm_unconverged=groups["gmm_unconverged"].sum()).reset_index()
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, table["n"] - 1) * table["std"] / np.sqrt(table["n"])
    return table.assign(ci_low=table["mean"] - half, ci_high=table["mean"] + half)


def latent_stats(ok: pd.DataFrame) -> pd.DataFrame:
    """Per curve, scored set and latent size: replicate_stats of the score (gmm_unconverged counts
    for the GMM score only)."""
    long = ok.melt(
        id_vars=[*KEYS, "latent", "gmm_unconverged"],
        value_vars=[f"fd_{name}" for name in SCORED_SETS],
        var_name="score",
        value_name="value",
    )
    score = long["score"].str.removeprefix("fd_")
    long = long.assign(score=score, gmm_unconverged=long["gmm_unconverged"] & (score == "gmm"))
    return replicate_stats(long, [*KEYS, "score", "latent"], "value")


def welch_interval(a: dict, b: dict) -> tuple[float, float]:
    """CONFIDENCE Welch t-interval of mean(a) - mean(b) from each side's mean, std and n: NaN
    without 2 replicates on each side; the point itself when neither side has any spread."""
    if min(a["n"], b["n"]) < 2:
        return np.nan, np.nan
    difference = a["mean"] - b["mean"]
    va = a["std"] ** 2 / a["n"]
    vb = b["std"] ** 2 / b["n"]
    if va + vb == 0:
        return difference, difference
    dof = (va + vb) ** 2 / (va**2 / (a["n"] - 1) + vb**2 / (b["n"] - 1))
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * np.sqrt(va + vb)
    return difference - half, difference + half


def find_optima(latent_table: pd.DataFrame) -> pd.DataFrame:
    """One row per curve and sampler (N(0,I), MVG, GMM) from a `latent_stats` table."""
    rows = []
    samplers = latent_table[latent_table["score"].isin(SAMPLERS)]
    for (*key, sampler), points in samplers.groupby([*KEYS, "score"], dropna=False, sort=True):
        points = points.sort_values("latent").reset_index(drop=True)
        best = int(points["mean"].idxmin())
        fit_latent, fit_score, fit_note = _smooth_minimum(
            points["latent"].to_numpy(), points["mean"].to_numpy(), best
        )
        p_below = _welch_p(points, best, best - 1)
        p_above = _welch_p(points, best, best + 1)
        rows.append(
            {
                **dict(zip(KEYS, key, strict=True)),
                "sampler": sampler,
                "n_latents": len(points),
                **points.loc[best, [*BEST_COLUMNS, "gmm_unconverged"]].to_dict(),
                "fit_latent": fit_latent,
                "fit_score": fit_score,
                "fit_note": fit_note,
                "p_below": p_below,
                "p_above": p_above,
                "distinguishable": _distinguishable(p_below, p_above),
            }
        )
    columns = [*KEYS, "sampler", "n_latents", *BEST_COLUMNS, "fit_latent", "fit_score"]
    extra = ["fit_note", "p_below", "p_above", "distinguishable", "gmm_unconverged"]
    table = pd.DataFrame(rows, columns=[*columns, *extra])
    return table.astype(latent_table.dtypes[KEYS].to_dict())  # so that an empty table joins too


def _smooth_minimum(latents: np.ndarray, means: np.ndarray, best: int) -> tuple[float, float, str]:
    """(latent, score, note) at the vertex of a quadratic in log2(latent) around the minimum."""
    if len(latents) < MIN_FIT_LATENTS:
        return np.nan, np.nan, f"only {len(latents)} latent sizes (a fit needs {MIN_FIT_LATENTS})"
    if best in (0, len(latents) - 1):
        return (
            np.nan,
            np.nan,
            f"lowest score at the edge of the measured latents ({latents[best]}): not bracketed",
        )
    start = min(max(best - FIT_POINTS // 2, 0), max(len(latents) - FIT_POINTS, 0))
    window = slice(start, start + FIT_POINTS)
    x = np.log2(latents[window].astype(float))
    y = means[window]
    curvature, slope, intercept = np.polyfit(x, y, 2)
    span = f"{latents[window][0]}-{latents[window][-1]}"
    if curvature <= 0:
        return np.nan, np.nan, f"fit over latents {span} is not convex"
    vertex = -slope / (2 * curvature)
    if not x[0] <= vertex <= x[-1]:
        return np.nan, np.nan, f"fit minimum {2**vertex:.3g} lies outside the fitted latents {span}"
    return (
        float(2**vertex),
        float(np.polyval([curvature, slope, intercept], vertex)),
        f"quadratic over {span}",
    )


def _welch_p(points: pd.DataFrame, best: int, other: int) -> float | None:
    """Two-sided Welch t-test p of the minimum against a neighbour: None where the curve has no such
    neighbour, NaN where either side has fewer than 2 replicates."""
    if not 0 <= other < len(points):
        return None
    a = points.loc[best]
    b = points.loc[other]
    if min(a["n"], b["n"]) < 2:
        return np.nan
    if a["std"] == 0 and b["std"] == 0:  # no spread at all: any difference is certain
        return 0.0 if a["mean"] != b["mean"] else 1.0
    return float(
        stats.ttest_ind_from_stats(
            a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"], False
        ).pvalue
    )


def _distinguishable(*p_values: float | None) -> bool | None:
    """True when every neighbour differs at ALPHA; None when there is none or one is untestable."""
    tested = [p for p in p_values if p is not None]
    if not tested or any(np.isnan(p) for p in tested):
        return None
    return all(p < ALPHA for p in tested)
