"""Reading the results store for the analysis, and the words every analysis shares: settings,
metrics, baselines.

A curve is every ok row that shares all config fields but `latent` and `seed`
(trainables/curves.py), and the metric: replicates (seeds) of one latent size are pooled, and rows
from a grid and an Optuna search of the same config meet on one curve. A curve's setting is where
it departs from its dataset's default config (`curves.departures`); tables name it in their
`protocol` column, and figures draw each setting in a file of its own.
"""

import re

import numpy as np
import pandas as pd

from study.layout import read_store
from trainables import data, published
from trainables.config import VAE_ONLY
from trainables.curves import CURVE_FIELDS, departures, protocol
from trainables.schema import Status
from trainables.scored_sets import SCORE_COLUMNS

# What a curve of the analysis shares: its config fields and the feature space it is scored in.
KEYS = [*CURVE_FIELDS, "metric"]
PLAIN = {  # the paper's plain architecture
    "latent_norm": "none",
    "noise_std": 0.0,
    "freeze_latent": False,
}


def load(path) -> pd.DataFrame:
    """Every live row of the store, whatever its status (study.layout.read_store); StoreError says
    what is wrong with a store that cannot be analysed: absent, empty, or holding a part that is
    not a result row."""
    return read_store(path, empty_ok=False)


def dataset_name(dataset: str) -> str:
    """How tables and figures name a dataset (its own name where this code does not know it)."""
    return data.DATASETS[dataset].label if dataset in data.DATASETS else dataset


def usable(rows: pd.DataFrame) -> pd.DataFrame:
    """The ok rows, one per trial_id (the latest, should a trial have been run twice), with a
    `metric` column, a `gmm_unconverged` flag and `interp_excess`.

    Only Inception features make an FID; any other extractor is named, e.g. "FD (digits-cnn)".
    gmm_unconverged: the GMM fit stopped at gmm_max_iter iterations without converging, so the GMM
    score rests on an unfinished fit (a row that does not say is not flagged). interp_excess:
    Interp minus Endpoints, what decoding the midpoints of pairs of encoded test images costs
    beyond decoding the pairs' own ends: hypothesis 1's measure of a latent space's smoothness, free
    of how well the model reconstructs (NaN for rows from before the Endpoints set).
    """
    ok = rows[rows["status"] == Status.OK]
    if "started_at" in ok.columns:
        ok = ok.sort_values("started_at", kind="stable")
    ok = ok.drop_duplicates("trial_id", keep="last").reset_index(drop=True)
    ok = ok.assign(**{column: pd.to_numeric(ok[column]) for column in SCORE_COLUMNS})
    fid = (
        ok["fid"].astype(bool)
        if "fid" in ok.columns
        else ok["feature_extractor"] == "inception-fid"
    )
    return ok.assign(
        metric=np.where(fid, "FID", "FD (" + ok["feature_extractor"].astype(str) + ")"),
        gmm_unconverged=ok["gmm_converged"].eq(False).fillna(False).astype(bool),
        interp_excess=ok["fd_interp"] - ok["fd_endpoints"],
    )


def metric_name(rows: pd.DataFrame) -> str:
    return " / ".join(sorted(rows["metric"].unique()))


def pick(rows: pd.DataFrame, **conditions) -> pd.DataFrame:
    """Rows whose columns equal the given values (a tuple means any of them)."""
    keep = np.ones(len(rows), dtype=bool)
    for column, value in conditions.items():
        keep &= rows[column].isin(value if isinstance(value, tuple) else (value,)).to_numpy()
    return rows[keep]


def baseline(rows: pd.DataFrame, latent_norm=("none",), depth="1") -> pd.DataFrame:
    """The paper's plain architecture (no latent noise, nothing frozen), by default at depth 1 and
    without a latent norm."""
    return pick(rows, **{**PLAIN, "latent_norm": latent_norm, "depth": depth})


def model_label(model: str, latent_norm: str) -> str:
    """The paper's row names: DAE, VAE, DAE (BN), ..."""
    return model.upper() + ("" if latent_norm == "none" else f" ({latent_norm.upper()})")


def setting(curve, encoded=()) -> dict[str, str]:
    """Where a curve departs from its dataset's default config in every field but the `encoded`
    ones and the precision (which titles and labels name): the curves of one table row group or
    one figure share it."""
    return departures(curve, shown=(*encoded, "precision"))


def as_text(changed: dict[str, str]) -> list[str]:
    return [f"{field}={value}" for field, value in changed.items()]


def add_labels(frame: pd.DataFrame, shown=()) -> pd.DataFrame:
    """Adds the human-facing `label` and `protocol` columns to a frame with the curve fields;
    `shown`: the fields a table shows in columns of their own."""
    shown = ("dataset", "model", "latent_norm", "filters", *shown)
    return frame.assign(
        label=[
            model_label(m, n) for m, n in zip(frame["model"], frame["latent_norm"], strict=True)
        ],
        protocol=[protocol(row, shown) for _, row in frame.iterrows()],
    )


def slug(text: str) -> str:
    """Text as part of a file name: 'lr=0.0005' -> 'lr-0.0005', 'FD (x)' -> 'FD-x'."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-")


def per_curve(rows: pd.DataFrame, value) -> pd.Series:
    """value(curve) for each row, computed once per curve (from its first row)."""
    keys = [key for key in KEYS if key in rows.columns]
    curve = rows.groupby(keys, dropna=False, sort=False).ngroup()
    first = ~curve.duplicated()
    values = {
        i: value(row) for i, (_, row) in zip(curve[first], rows[first].iterrows(), strict=True)
    }
    return curve.map(values)


def at_comparison_latent(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows at the latent size where widths and models are compared.

    That is the paper's Table 2 point for CIFAR-10 (128) and CelebA (64). For another dataset it is
    the middle of the latent sizes that every curve of the same dataset and setting measured (the
    setting: every curve field but model, filters and the VAE-only fields), if they share any.
    """
    if rows.empty:
        return rows
    shown = ("model", "filters", *VAE_ONLY)
    same = per_curve(rows, lambda c: (c["dataset"], c["metric"], *setting(c, shown).items()))
    keep = []
    for (dataset, *_), group in rows.groupby(same, sort=False):
        latent = published.COMPARISON_LATENT.get(dataset)
        if latent is None:
            sizes = [set(c["latent"]) for _, c in group.groupby(list(CURVE_FIELDS), dropna=False)]
            shared = sorted(set.intersection(*sizes))
            latent = shared[len(shared) // 2] if shared else None
        keep.append(group[group["latent"] == latent])
    return pd.concat(keep)
