"""The results store on disk: what each file and folder is, which files are rows, how it reads.

    results.parquet/
        <trial_id>.parquet     the live row of that trial (file name = trial id: one live row each)
        _superseded/           rows a rerun replaced (failed/diverged ones), kept, never overwritten
        _corrupt/              part files that could not be read when the store opened
        _foreign/              readable Parquet files that are not one row of this study
        _samples/              each trial's PNG grid of samples and reconstructions (<trial_id>.png)
        _checkpoints/          mid-trial checkpoints of trials still running or interrupted
        _tune/                 Ray Tune's own experiment state (study/runner.py), not results
        _launch.json           the plan of the last launch: its trials and curves (study/status.py)
        .lock                  flock of the one launcher writing here; holds its pid
        .tmp-<id>.parquet.partial  a part being written (gone once renamed into place)

pyarrow skips names starting with "_" or ".", and a `*.parquet` glob (DuckDB, Polars) skips the
subfolders and the temp files, whose names end in ".partial": either way a reader sees only the live
rows, at any moment. Writing the store is study/store.py's (the launcher's); reading it is here, for
the launcher and the analysis alike. No torch or Ray here.
"""

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trainables.errors import StoreError
from trainables.schema import RESULT_SCHEMA, conform

SUPERSEDED = "_superseded"
CORRUPT = "_corrupt"
FOREIGN = "_foreign"
SAMPLES = "_samples"
CHECKPOINTS = "_checkpoints"
TUNE = "_tune"
PLAN = "_launch.json"
LOCK = ".lock"
# Leading ".": pyarrow skips it; trailing ".partial": a "*.parquet" glob does (DuckDB's and Polars'
# globs match hidden files). Opening the store deletes every TEMP_PREFIX file: none is a row.
TEMP_PREFIX = ".tmp-"


def part_name(trial_id: str) -> str:
    return f"{trial_id}.parquet"


def temp_name(part: Path) -> str:
    return f"{TEMP_PREFIX}{part.name}.partial"


def sample_grid(trial_id: str) -> str:
    """Where a trial's sample grid lives, relative to the store (the row's samples_png)."""
    return f"{SAMPLES}/{trial_id}.png"


def is_live(name: str) -> bool:
    return not name.startswith(("_", "."))


def live_parts(store: Path) -> list[Path]:
    """The part files that pandas.read_parquet(store) reads as rows, sorted.

    pyarrow skips every file or folder whose name starts with '_' or '.': temp files, superseded
    and corrupt rows, Ray Tune's state and the lock are never rows.
    """
    return [path for path in _read_by_pyarrow(store) if path.name.endswith(".parquet")]


def stray_files(store: Path) -> list[Path]:
    """Files that pandas.read_parquet(store) would try to read but that are not Parquet parts
    (notes, a report written into the store): it fails on them, so they are worth a warning."""
    return [path for path in _read_by_pyarrow(store) if not path.name.endswith(".parquet")]


def _read_by_pyarrow(store: Path) -> list[Path]:
    files = []
    for folder, subfolders, names in os.walk(store):
        subfolders[:] = [name for name in subfolders if is_live(name)]
        files += [Path(folder) / name for name in names if is_live(name)]
    return sorted(files)


def read_part(part: Path) -> pa.Table:
    """One part file in full, its page checksums verified; OSError or ArrowException when it is
    damaged."""
    return pq.read_table(part, page_checksum_verification=True)


def read_store(path: str | Path, empty_ok: bool = True) -> pd.DataFrame:
    """Every live row of a store (a folder of parts, or one Parquet file), typed as declared.

    What pandas.read_parquet(path) gives for a store the launcher keeps, and the same for stores
    with parts from before a column existed: each part is conformed, so old and new rows meet.
    StoreError for a store that is absent, holds a part that is no result row, or (unless
    empty_ok) holds no rows.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"no results store at {path} (run study/launch.py to fill one)")
    parts = [path] if path.is_file() else live_parts(path)
    if not parts and not empty_ok:
        raise StoreError(f"the results store {path} holds no Parquet part files yet")
    tables = []
    for part in parts:
        try:
            table = pq.read_table(part)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"cannot read the part {part}: {exc}") from None
        tables.append(conform(table, part))
    if not tables:
        return RESULT_SCHEMA.empty_table().to_pandas()
    rows = pa.concat_tables(tables, promote_options="permissive")
    rows = rows.replace_schema_metadata(RESULT_SCHEMA.metadata).to_pandas()
    if rows.empty and not empty_ok:
        raise StoreError(f"the results store {path} holds no rows")
    return rows
