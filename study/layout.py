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
the launcher and the analysis alike, also where it is a mirror behind a URI (s3://..., file://...:
study/mirror.py keeps one in this same layout). No torch or Ray here.
"""

import functools
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from trainables.errors import StoreError
from trainables.filesystems import filesystem, is_uri
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


def read_part(part: Path | str, filesystem: pafs.FileSystem | None = None) -> pa.Table:
    """One part file in full (on disk, or at a path in `filesystem`), its page checksums verified;
    OSError or ArrowException when it is damaged.

    Read from its path, never from bytes in memory: with torch loaded, a process that read a part
    from an in-memory buffer aborted at exit ("terminate called without an active exception") in
    17 of 30 runs here (pyarrow 26, torch 2.14), and none that read from a path."""
    return pq.read_table(part, filesystem=filesystem, page_checksum_verification=True)


def read_store(path: str | Path, empty_ok: bool = True) -> pd.DataFrame:
    """Every live row of a store (a folder of parts, one Parquet file, or a mirror's URI), typed as
    declared.

    What pandas.read_parquet(path) gives for a store the launcher keeps, and the same for stores
    with parts from before a column existed: each part is conformed, so old and new rows meet.
    StoreError for a store that is absent, holds a part that is no result row, or (unless
    empty_ok) holds no rows.
    """
    if is_uri(path):
        fs, root = open_uri(path)
        try:
            if fs.get_file_info(root).type == pafs.FileType.NotFound:
                raise StoreError(f"no results store at {path}: nothing there")
            parts = [f"{root}/{name}" for name in live_names(fs, root)]
        except OSError as exc:  # no such bucket, no permission, no network
            raise StoreError(f"cannot read the results store {path}: {exc}") from None
        read = functools.partial(pq.read_table, filesystem=fs)
    else:
        path = Path(path)
        if not path.exists():
            raise StoreError(f"no results store at {path} (run study/launch.py to fill one)")
        parts = [path] if path.is_file() else live_parts(path)
        read = pq.read_table
    if not parts and not empty_ok:
        raise StoreError(f"the results store {path} holds no Parquet part files yet")
    tables = []
    for part in parts:
        try:
            table = read(part)
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


def read_file(store: str | Path, relative: str) -> bytes:
    """A file of a store by its path inside it (a row's samples_png), on disk or behind a URI.
    OSError when it cannot be read."""
    if not is_uri(store):
        return (Path(store) / relative).read_bytes()
    fs, root = open_uri(store)
    with fs.open_input_file(f"{root}/{relative}") as source:
        return source.read()


def files_under(fs: pafs.FileSystem, root: str) -> dict[str, pafs.FileInfo]:
    """Every file below `root`: its path relative to root, with "/" between folders -> its info.
    Empty where root does not exist."""
    found = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {
        info.path[len(root) :].lstrip("/"): info
        for info in found
        if info.type == pafs.FileType.File
    }


def live_names(fs: pafs.FileSystem, root: str) -> list[str]:
    """live_parts for a store behind a filesystem: the paths, relative to root and sorted, of the
    parts pyarrow reads as rows."""
    return sorted(filter(is_row_file, files_under(fs, root)))


def is_row_file(relative: str) -> bool:
    """Whether pyarrow reads the file at this path inside a store ("/" between folders) as rows."""
    return relative.endswith(".parquet") and all(map(is_live, relative.split("/")))


def open_uri(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """A store's URI -> (its filesystem, its root there); StoreError if no filesystem opens it."""
    try:
        fs, root = filesystem(str(uri), "the results store")
    except (ValueError, OSError) as exc:
        raise StoreError(f"cannot read the results store {uri}: {exc}") from None
    return fs, root.rstrip("/")
