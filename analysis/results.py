"""Reading the results store, and the words every analysis shares: curves, metrics, baselines.

A curve is every ok row that shares all config fields but `latent` and `seed`: replicates (seeds)
of one latent size are pooled, and rows from a grid and an Optuna search of the same config meet on
one curve.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from trainables.config import PROTOCOL_FIELDS, TrialConfig
from trainables.schema import SCORED_SETS, StoreError, live_parts, read_store

PAPER = TrialConfig()  # its defaults are the paper's protocol
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
    `metric` column.

    Only Inception features make an FID; any other extractor is named, e.g. "FD (digits-cnn)".
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
        metric=np.where(fid, "FID", "FD (" + ok["feature_extractor"].astype(str) + ")")
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


def protocol(curve) -> str:
    """'paper', or the fields where a curve departs from the paper's training and scoring."""
    changed = [
        f"{field}={curve[field]:g}"
        for field in PROTOCOL_FIELDS
        if curve[field] != getattr(PAPER, field)
    ]
    return ", ".join(changed) or "paper"


def add_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds the human-facing `label` and `protocol` columns to a frame with the curve fields."""
    return frame.assign(
        label=[
            model_label(m, n) for m, n in zip(frame["model"], frame["latent_norm"], strict=True)
        ],
        protocol=[protocol(row) for _, row in frame.iterrows()],
    )
