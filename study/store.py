"""The results store's writer: one launcher at a time publishes one-row Parquet parts into it.

The layout (which file is what, which are rows, how the store reads) is study/layout.py's. Each part
is written to its temp file, fsynced, then renamed into place (over the row it replaces, whose file
was first hard-linked into _superseded/, so a crash at any point leaves a trial with its old row or
its new one, never none). Parts carry page checksums, and opening the store reads every part in
full, so a damaged one is moved aside and reported instead of trusted; so is a file that is not a
row of this study, and a second live row of one trial (the worse of the two: see STATUS_RANK). Only
the driver writes, so workers on other nodes need no shared filesystem.
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

from study import layout
from study.layout import CORRUPT, FOREIGN, LOCK, SUPERSEDED, TEMP_PREFIX
from trainables.errors import StoreError, StoreUnusable, StoreWriteError, UnstorableRow
from trainables.files import atomic_write, write_synced
from trainables.schema import RESULT_SCHEMA, SAMPLE_GRID, Status, conform, to_table

# Outcomes of the experiment itself, which a relaunch keeps; a FAILED trial runs again.
FINISHED = frozenset({Status.OK, Status.DIVERGED})
# Of two rows of one trial, the live one is the better outcome (then the later start): a stale
# failed row, copied back into the store or written by a retry, never hides an ok one.
STATUS_RANK = {Status.FAILED: 0, Status.DIVERGED: 1, Status.OK: 2}
_NEVER = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


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
        canonical = self.path == store / layout.part_name(self.trial_id)
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
    found = Survey(stray=layout.stray_files(path) if path.is_dir() else [])
    for part in layout.live_parts(path) if path.is_dir() else []:
        try:
            table = layout.read_part(part)
        except (OSError, pa.ArrowException):  # truncated, not Parquet, a bad checksum
            found.unreadable.append(part)
            continue
        try:
            row = one_row(table, part)
        except StoreError as exc:
            found.foreign.append((part, str(exc)))
            continue
        best = found.live.setdefault(row.trial_id, row)
        if best is not row:
            loser, winner = sorted((best, row), key=lambda p: p.merit(path))
            found.live[row.trial_id] = winner
            found.outranked.append(loser)
    return found


def one_row(table: pa.Table, part: Path) -> LivePart:
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
            raise StoreUnusable(
                f"cannot write the results store {self.path}: {exc.strerror or exc}; {FIX}"
            ) from None
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise StoreUnusable(_held_by(holder, self.path)) from None
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
        return self.path / layout.part_name(trial_id)

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
        return self.path / layout.temp_name(part)

    def _write_temp(self, table: pa.Table, part: Path) -> Path:
        """A complete, fsynced file under a hidden name; renaming it over `part` publishes it. A
        write that fails (or is interrupted) takes its temp file with it."""
        temp = self._temp(part)
        write_synced(temp, lambda f: pq.write_table(table, f, write_page_checksum=True))
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
            row["samples_png"] = layout.sample_grid(row["trial_id"])
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
        return layout.read_store(self.path)


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
    """StoreUnusable unless `path` is a folder that can be written, or can be made in one."""
    if path.exists() and not path.is_dir():
        raise StoreUnusable(
            f"cannot use {path} as the results store: it is a file, not a folder; {FIX}"
        )
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    if not existing.is_dir():
        raise StoreUnusable(f"cannot write the results store {path}: {existing} is a file; {FIX}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StoreUnusable(f"cannot write the results store {path}: permission denied; {FIX}")


def check_usable(path: Path) -> None:
    """StoreUnusable unless a launcher could open the store at `path` now: a folder that can be
    written (or made) and that no other launcher holds. Creates and locks nothing (a dry run)."""
    _check_folder(path)
    if not (path / LOCK).is_file():
        return
    with open(path / LOCK) as held:  # flock works on a read-only descriptor
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreUnusable(_held_by(held.read().strip() or "unknown", path)) from None
