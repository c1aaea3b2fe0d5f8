"""The results store: a directory of one-row Parquet part files that pandas reads as one table.

    results.parquet/
        <trial_id>.parquet     the live row of that trial (file name = trial id: one live row each)
        _superseded/           rows a rerun replaced (failed/diverged ones), kept, never overwritten
        _corrupt/              part files that could not be read when the store opened
        _foreign/              readable Parquet files that are not one row of this study
        _tune/                 Ray Tune's own experiment state (study/runner.py), not results
        _samples/              each trial's PNG grid of samples and reconstructions (<trial_id>.png)
        .lock                  flock of the one launcher writing here; holds its pid
        .tmp-<id>.parquet.partial  a part being written (gone once renamed into place)

pyarrow skips names starting with "_" or ".", and a `*.parquet` glob (DuckDB, Polars) skips the
subfolders and the temp files, whose names end in ".partial": either way a reader sees only the live
rows (trainables.schema.live_parts), at any moment. Each part is written to its temp file, fsynced,
then renamed into place (over the row it replaces, whose file was first hard-linked
into _superseded/, so a crash at any point leaves a trial with its old row or its new one, never
none). Parts carry page checksums, and opening the store reads every part in full, so a damaged one
is moved aside and reported instead of trusted; so is a file that is not a row of this study, and a
second live row of one trial (the worse of the two: see STATUS_RANK). Only the driver writes, so
workers on other nodes need no shared filesystem.
"""

import datetime
import fcntl
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trainables.files import atomic_write
from trainables.schema import (
    RESULT_SCHEMA,
    SAMPLE_GRID,
    StoreError,
    conform,
    live_parts,
    read_store,
    stray_files,
    to_table,
)

SUPERSEDED = "_superseded"
CORRUPT = "_corrupt"
FOREIGN = "_foreign"
SAMPLES = "_samples"
LOCK = ".lock"
# Leading ".": pyarrow skips it; trailing ".partial": a "*.parquet" glob does (DuckDB's and Polars'
# globs match hidden files). Opening the store deletes every TEMP_PREFIX file: none is a row.
TEMP_PREFIX = ".tmp-"
# Outcomes of the experiment itself, which a relaunch keeps: a diverged trial is a result (the seed
# fixes it), while "failed" says the machinery broke (a lost worker, a bad file, out of memory) and
# the trial runs again.
FINISHED = frozenset({"ok", "diverged"})
# Of two rows of one trial, the live one is the better outcome (then the later start): a stale
# failed row, copied back into the store or written by a retry, never hides an ok one.
STATUS_RANK = {"failed": 0, "diverged": 1, "ok": 2}
_NEVER = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


class StoreWriteError(StoreError):
    """Writing to the store failed (read-only, full, a file where a folder belongs): the launch
    stops, since every row after this one would be lost too."""


class UnstorableRow(StoreError):
    """A row holds a value its column cannot (the store is fine; the next row may well fit)."""


def read_part(part: Path) -> pa.Table:
    """One part file in full, its page checksums verified; OSError or ArrowException when it is
    damaged."""
    return pq.read_table(part, page_checksum_verification=True)


@dataclass(frozen=True)
class LivePart:
    """A part that holds one row of this study."""

    path: Path
    trial_id: str
    status: str
    started_at: datetime.datetime | None
    current: bool  # needs no upgrade (else rewritten as today's RESULT_SCHEMA when the store opens)

    def merit(self, store: Path) -> tuple:
        """What decides between two rows of one trial, deterministically: outcome, start, then a
        file named for its trial at the top of the store, then the path."""
        canonical = self.path == store / f"{self.trial_id}.parquet"
        return STATUS_RANK[self.status], self.started_at or _NEVER, canonical, str(self.path)


@dataclass
class Survey:
    """What a store holds, read without changing it: its live rows (one per trial) and the files
    that opening it sets aside or warns about."""

    live: dict[str, LivePart] = field(default_factory=dict)
    # what opening the store moves: to _corrupt/, to _foreign/ ((part, why)), to _superseded/
    unreadable: list[Path] = field(default_factory=list)
    foreign: list[tuple[Path, str]] = field(default_factory=list)
    outranked: list[LivePart] = field(default_factory=list)
    stray: list[Path] = field(default_factory=list)  # not Parquet: a warning, never moved


def survey(path: Path) -> Survey:
    """Read every live part of the store in full (page checksums, schema, one row each)."""
    found = Survey(stray=stray_files(path) if path.is_dir() else [])
    for part in live_parts(path) if path.is_dir() else []:
        try:
            table = read_part(part)
        except (OSError, pa.ArrowException):  # truncated, not Parquet, a bad checksum
            found.unreadable.append(part)
            continue
        try:
            row = _one_row(table, part)
        except StoreError as exc:
            found.foreign.append((part, str(exc)))
            continue
        best = found.live.setdefault(row.trial_id, row)
        if best is not row:
            loser, winner = sorted((best, row), key=lambda p: p.merit(path))
            found.live[row.trial_id] = winner
            found.outranked.append(loser)
    return found


def _one_row(table: pa.Table, part: Path) -> LivePart:
    """The part's row, or StoreError saying why the file is not one row of this study."""
    newer = not set(table.column_names) <= set(RESULT_SCHEMA.names)  # read, never rewritten
    current = newer or table.schema.equals(RESULT_SCHEMA, check_metadata=True)
    if not table.schema.equals(RESULT_SCHEMA):
        table = conform(table, part)  # StoreError: lacks identity columns, or a column won't cast
    if table.num_rows != 1:
        raise StoreError(f"{part} holds {table.num_rows} rows; a part of the store holds one")
    (row,) = table.select(["trial_id", "status", "started_at"]).to_pylist()
    if not row["trial_id"] or row["status"] not in STATUS_RANK:
        raise StoreError(
            f"{part}: trial_id {row['trial_id']!r}, status {row['status']!r} (expected one of "
            f"{', '.join(STATUS_RANK)})"
        )
    return LivePart(part, row["trial_id"], row["status"], row["started_at"], current)


class ResultStore:
    """Opened by one launcher at a time; `status` maps every live trial_id to its status.

    Opening it sets aside what cannot be a live row, listing each in `corrupt` (where an unreadable
    part went), `foreign` ((why, where) for a part that is no row of this study) and `outranked`
    ((part, where) for a second row of a trial), and lists in `stray` the files that are not
    Parquet at all (left in place: they may be someone's notes).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().absolute()
        self._lock_file = self._lock()
        self.written = 0  # rows this handle has made live
        for temp in self.path.glob(f"{TEMP_PREFIX}*"):  # never renamed into place: never a row
            temp.unlink()
        found = survey(self.path)
        self.corrupt = [self._move_aside(part, CORRUPT) for part in found.unreadable]
        self.foreign = [(why, self._move_aside(part, FOREIGN)) for part, why in found.foreign]
        self.outranked = [(p.path, self._move_aside(p.path, SUPERSEDED)) for p in found.outranked]
        self.stray = found.stray
        self._live = found.live
        for part in found.live.values():
            if not part.current:
                self._upgrade(part.path)
        self.status = {trial_id: part.status for trial_id, part in found.live.items()}

    def _lock(self):
        _check_folder(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            # held open (and locked) for the launcher's lifetime
            lock_file = open(self.path / LOCK, "a+")
        except OSError as exc:
            raise StoreError(
                f"cannot write the results store {self.path}: {exc.strerror or exc}; {FIX}"
            ) from None
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise StoreError(_held_by(holder, self.path)) from None
        lock_file.truncate(0)
        lock_file.write(str(os.getpid()))
        lock_file.flush()
        return lock_file

    def close(self) -> None:
        self._lock_file.close()  # releases the flock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def part(self, trial_id: str) -> Path:
        return self.path / f"{trial_id}.parquet"

    def _aside(self, part: Path, folder: str) -> Path:
        target = self.path / folder / f"{part.stem}.{time.time_ns()}.parquet"
        target.parent.mkdir(exist_ok=True)
        return target

    def _move_aside(self, part: Path, folder: str) -> Path:
        target = self._aside(part, folder)
        os.replace(part, target)
        return target

    def _upgrade(self, part: Path) -> None:
        """Rewrite a part written before a column was added or retyped, as schema.conform reads it.

        pyarrow takes a directory's schema from one of its files, so one old part could hide a new
        column from every reader.
        """
        os.replace(self._write_temp(conform(pq.read_table(part), part), part), part)

    def _temp(self, part: Path) -> Path:
        return self.path / f"{TEMP_PREFIX}{part.name}.partial"

    def _write_temp(self, table: pa.Table, part: Path) -> Path:
        """A complete, fsynced file under a hidden name; renaming it over `part` publishes it. A
        write that fails (or is interrupted) takes its temp file with it."""
        temp = self._temp(part)
        try:
            with open(temp, "wb") as f:
                pq.write_table(table, f, write_page_checksum=True)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return temp

    def done(self, finished: frozenset[str] = FINISHED) -> set[str]:
        """Trials a relaunch skips: those whose live row has one of the `finished` statuses."""
        return {trial_id for trial_id, status in self.status.items() if status in finished}

    def write(self, row: dict) -> Path:
        """Publish one row atomically; a row already live for this trial is kept in _superseded/.

        The old file is hard-linked there first and then replaced in one rename, so the trial has a
        live row at every instant (a crash in between leaves the old row live, a spare copy aside).
        A row worse than the live one (STATUS_RANK: a failed retry of an ok trial) goes straight to
        _superseded/. A row's sample grid (SAMPLE_GRID) is written to _samples/ before the row that
        names it; that of a row going to _superseded/ is dropped, the live row's grid kept.
        UnstorableRow: a value no column can hold; StoreWriteError: the disk refused.
        """
        row = dict(row)
        grid = row.pop(SAMPLE_GRID, None)
        unknown = set(row) - set(RESULT_SCHEMA.names)
        if unknown:
            raise UnstorableRow(f"row has columns the store does not know: {sorted(unknown)}")
        if row.get("status") not in STATUS_RANK:
            raise UnstorableRow(f"row has status {row.get('status')!r}")
        current = self._live.get(row["trial_id"])
        outranked = current is not None and STATUS_RANK[row["status"]] < STATUS_RANK[current.status]
        if grid is not None and not outranked:
            row["samples_png"] = f"{SAMPLES}/{row['trial_id']}.png"
        try:
            table = to_table([row])
        except _VALUE_ERRORS as exc:
            raise UnstorableRow(f"{_unstorable(row)}: {type(exc).__name__}: {exc}") from None
        part = self.part(row["trial_id"])
        try:
            if outranked:
                aside = self._aside(part, SUPERSEDED)
                os.replace(self._write_temp(table, part), aside)
                return aside
            if row.get("samples_png"):
                # in one rename, as the parts: a reader never sees half a picture
                atomic_write(self.path / row["samples_png"], lambda f: f.write(grid))
            return self._publish(table, part, current)
        except BaseException as exc:  # a full disk, or an interrupt: no temp file stays behind
            self._temp(part).unlink(missing_ok=True)
            if not isinstance(exc, OSError):
                raise
            where = f": {exc.filename}" if exc.filename else ""
            raise StoreWriteError(
                f"cannot write to the results store {self.path}: {exc.strerror or exc}{where}"
            ) from None

    def _publish(self, table: pa.Table, part: Path, current: LivePart | None) -> Path:
        temp = self._write_temp(table, part)
        if current and current.path.exists():
            try:
                os.link(current.path, self._aside(current.path, SUPERSEDED))
            except OSError:  # a filesystem without hard links: a copy keeps the same guarantee
                shutil.copyfile(current.path, self._aside(current.path, SUPERSEDED))
        os.replace(temp, part)
        if current and current.path != part:  # the old row lived in a subfolder
            current.path.unlink()
        row = table.select(["trial_id", "status", "started_at"]).to_pylist()[0]
        self._live[row["trial_id"]] = LivePart(part, **row, current=True)
        self.status[row["trial_id"]] = row["status"]
        self.written += 1
        return part

    def read(self) -> pd.DataFrame:
        """All live rows (what pandas.read_parquet(path) gives), with every column even when
        empty."""
        return read_store(self.path)


_VALUE_ERRORS = (pa.ArrowException, OverflowError, TypeError, ValueError)


def _unstorable(row: dict) -> str:
    """The columns whose value in `row` their type cannot hold, for the message."""
    bad = []
    for name, value in row.items():
        try:
            to_table([{name: value}])
        except _VALUE_ERRORS:
            bad.append(name)
    return ", ".join(bad) or "the row"


def _held_by(holder: str, path: Path) -> str:
    return (
        f"another launcher (pid {holder}) is writing to {path}; "
        "wait for it to finish, stop it, or pass a different --results"
    )


FIX = "pass --results a folder you can write (it is created if missing)"


def _check_folder(path: Path) -> None:
    """StoreError unless `path` is a folder that can be written, or can be made in one."""
    if path.exists() and not path.is_dir():
        raise StoreError(
            f"cannot use {path} as the results store: it is a file, not a folder; {FIX}"
        )
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    if not existing.is_dir():
        raise StoreError(f"cannot write the results store {path}: {existing} is a file; {FIX}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write the results store {path}: permission denied; {FIX}")


def check_usable(path: Path) -> None:
    """StoreError unless a launcher could open the store at `path` now: a folder that can be
    written (or made) and that no other launcher holds. Creates and locks nothing (a dry run)."""
    _check_folder(path)
    if not (path / LOCK).is_file():
        return
    with open(path / LOCK) as held:  # flock works on a read-only descriptor
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(_held_by(held.read().strip() or "unknown", path)) from None
