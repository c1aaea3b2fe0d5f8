"""Reading the results store, and the words every analysis shares: curves, settings, metrics,
baselines.

A curve is every ok row that shares all config fields but `latent` and `seed` (CURVE_KEYS), and
the metric: replicates (seeds) of one latent size are pooled, and rows from a grid and an Optuna
search of the same config meet on one curve. A curve's setting is where it departs from its
dataset's default config (`departures`); tables name it in their `protocol` column, and figures
draw each setting in a file of its own.
"""

import functools
import re
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import published
from trainables.config import CURVE_FIELDS, DATASETS, VAE_ONLY, make_config
from trainables.schema import SCORED_SETS, StoreError, live_parts, read_store

# Every scientific field but latent and seed, precision included: bf16 and fp32 are never pooled.
CURVE_KEYS = CURVE_FIELDS
PLAIN = {  # the paper's plain architecture
    "latent_norm": "none",
    "noise_std": 0.0,
    "freeze_latent": False,
}
DATASET_NAMES = {"cifar10": "CIFAR-10", "celeba": "CelebA", "digits": "digits"}


def load(path) -> pd.DataFrame:
    """Every live row of the store, whatever its status (trainables.schema.read_store).

    StoreError says what is wrong with a store that cannot be analysed: absent, empty, or holding
    a part that is not a result row.
    """
    path = Path(path)
    if path.is_dir() and not live_parts(path):
        raise StoreError(f"the results store {path} holds no Parquet part files yet")
    rows = read_store(path)
    if rows.empty:
        raise StoreError(f"the results store {path} holds no rows")
    return rows


def usable(rows: pd.DataFrame) -> pd.DataFrame:
    """The ok rows, one per trial_id (the latest, should a trial have been run twice), with a
    `metric` column and a `gmm_unconverged` flag.

    Only Inception features make an FID; any other extractor is named, e.g. "FD (digits-cnn)".
    gmm_unconverged: the GMM fit stopped at gmm_max_iter iterations without converging, so the GMM
    score rests on an unfinished fit (a row that does not say is not flagged).
    """
    ok = rows[rows["status"] == "ok"]
    if "started_at" in ok.columns:
        ok = ok.sort_values("started_at", kind="stable")
    ok = ok.drop_duplicates("trial_id", keep="last").reset_index(drop=True)
    ok = ok.assign(**{f"fd_{name}": pd.to_numeric(ok[f"fd_{name}"]) for name in SCORED_SETS})
    fid = (
        ok["fid"].astype(bool)
        if "fid" in ok.columns
        else ok["feature_extractor"] == "inception-fid"
    )
    return ok.assign(
        metric=np.where(fid, "FID", "FD (" + ok["feature_extractor"].astype(str) + ")"),
        gmm_unconverged=ok["gmm_converged"].eq(False).fillna(False).astype(bool),
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


@functools.cache
def _dataset_defaults(dataset: str) -> dict:
    """The config a dataset starts from (TrialConfig's for a dataset this code does not know)."""
    return make_config({"dataset": dataset} if dataset in DATASETS else {}).science()


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def departures(curve, shown=()) -> dict[str, str]:
    """{field: value as text} for every curve field where a curve departs from its dataset's
    default config, in CURVE_FIELDS order, but those in `shown` and the precision (both named
    elsewhere)."""
    defaults = _dataset_defaults(curve["dataset"])
    return {
        field: _text(curve[field])
        for field in CURVE_FIELDS
        if field not in (*shown, "precision") and curve[field] != defaults[field]
    }


def as_text(changed: dict[str, str]) -> list[str]:
    return [f"{field}={value}" for field, value in changed.items()]


def protocol(curve, shown=()) -> str:
    """The departures of a curve, or 'paper' / 'default' for the paper's protocol (CIFAR-10 and
    CelebA) / another dataset's default config."""
    changed = departures(curve, shown)
    if changed:
        return ", ".join(as_text(changed))
    return "paper" if curve["dataset"] in published.COMPARISON_LATENT else "default"


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
    keys = [key for key in (*CURVE_KEYS, "metric") if key in rows.columns]
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
    setting = per_curve(rows, lambda c: (c["dataset"], c["metric"], *departures(c, shown).items()))
    keep = []
    for (dataset, *_), group in rows.groupby(setting, sort=False):
        latent = published.COMPARISON_LATENT.get(dataset)
        if latent is None:
            sizes = [set(c["latent"]) for _, c in group.groupby(list(CURVE_KEYS), dropna=False)]
            shared = sorted(set.intersection(*sizes))
            latent = shared[len(shared) // 2] if shared else None
        keep.append(group[group["latent"] == latent])
    return pd.concat(keep)
