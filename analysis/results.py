"""Reading the results store, and the words every analysis shares: curves, samplers, metrics, baselines.

A curve is every ok row that shares all config fields but `latent` and `seed`: replicates (seeds) of one
latent size are pooled, and rows from a grid and an Optuna search of the same config meet on one curve.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trainables.config import CURVE_FIELDS, PROTOCOL_FIELDS, TrialConfig

PAPER = TrialConfig()  # its defaults are the paper's protocol
CONFIG_FIELDS = tuple(PAPER.science())
CURVE_KEYS = CURVE_FIELDS
SAMPLERS = {"normal": "N(0,I)", "mvg": "MVG", "gmm": "GMM"}
SCORES = {"train_recon": "Train R", "test_recon": "Test R", **SAMPLERS}
REQUIRED = (*CONFIG_FIELDS, "trial_id", "status", *(f"fd_{score}" for score in SCORES))
PLAIN = {
    "latent_norm": "none",
    "noise_std": 0.0,
    "freeze_latent": False,
}  # the paper's plain architecture
DATASET_NAMES = {"cifar10": "CIFAR-10", "celeba": "CelebA", "digits": "digits"}


class StoreError(Exception):
    """The store cannot be analysed at all (absent, empty, or missing the columns a row must have)."""


def load(path) -> pd.DataFrame:
    """Every live row of the store, whatever its status.

    Like pandas.read_parquet on the directory, files and folders whose names start with '.' or '_' are not
    rows (temporary files, rows a rerun superseded). Part files are read one by one and concatenated with
    permissive type promotion, so a column that is all-null in one file or new in later ones reads fine.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"no results store at {path} (run study/launch.py to fill one)")
    files = (
        [path]
        if path.is_file()
        else sorted(f for f in path.rglob("*.parquet") if live(f.relative_to(path)))
    )
    if not files:
        raise StoreError(f"the results store {path} holds no Parquet part files yet")
    rows = pa.concat_tables(
        [pq.read_table(f) for f in files], promote_options="permissive"
    ).to_pandas()
    if rows.empty:
        raise StoreError(f"the results store {path} holds no rows")
    absent = [column for column in REQUIRED if column not in rows.columns]
    if absent:
        raise StoreError(f"the results store {path} lacks the columns {', '.join(absent)}")
    return rows


def live(relative: Path) -> bool:
    return not any(part.startswith((".", "_")) for part in relative.parts)


def usable(rows: pd.DataFrame) -> pd.DataFrame:
    """The ok rows, one per trial_id (the latest, should a trial have been run twice), with a `metric` column.

    Only Inception features make an FID; any other extractor is named, e.g. "FD (digits-cnn)".
    """
    ok = rows[rows["status"] == "ok"]
    if "started_at" in ok.columns:
        ok = ok.sort_values("started_at", kind="stable")
    ok = ok.drop_duplicates("trial_id", keep="last").reset_index(drop=True)
    ok = ok.assign(**{f"fd_{score}": pd.to_numeric(ok[f"fd_{score}"]) for score in SCORES})
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
    """The paper's plain architecture (no latent noise, nothing frozen) at depth 1 and no latent norm by default."""
    return pick(rows, **{**PLAIN, "latent_norm": latent_norm, "depth": depth})


def model_label(model: str, latent_norm: str) -> str:
    """The paper's row names: DAE, VAE, DAE (BN), ..."""
    return model.upper() + ("" if latent_norm == "none" else f" ({latent_norm.upper()})")


def protocol(curve) -> str:
    """'paper' or the fields where a curve departs from the paper's training and scoring protocol."""
    changed = [
        f"{field}={curve[field]:g}"
        for field in PROTOCOL_FIELDS
        if curve[field] != getattr(PAPER, field)
    ]
    return ", ".join(changed) or "paper"


def describe(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds the human-facing `label` and `protocol` columns to a frame with the curve keys."""
    return frame.assign(
        label=[
            model_label(m, n) for m, n in zip(frame["model"], frame["latent_norm"], strict=True)
        ],
        protocol=[protocol(row) for _, row in frame.iterrows()],
    )
