"""The results store: a directory of one-row Parquet part files that pandas reads as one table.

    results.parquet/
        <trial_id>.parquet     the live row of that trial (file name = trial id: one live row each)
        _superseded/           rows a rerun replaced (failed/diverged ones), kept, never overwritten
        _corrupt/              part files that could not be read when the store opened
        _tune/                 Ray Tune's own experiment state (study/runner.py), not results
        .lock                  flock of the one launcher writing here; holds its pid

pyarrow skips names starting with "_" or ".", so `pandas.read_parquet("results.parquet")` sees only
the live rows (trainables.schema.live_parts), at any moment: each part is written to a hidden temp
file, fsynced, then renamed into place (over the row it replaces, whose file was first hard-linked
into _superseded/, so a crash at any point leaves a trial with its old row or its new one, never
none). Parts carry page checksums, and opening the store reads every part in full, so a damaged one
is moved aside and reported instead of trusted. Only the driver writes, so workers on other nodes
need no shared filesystem.
"""

import fcntl
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trainables.schema import (
    RESULT_SCHEMA,
    StoreError,
    conform,
    live_parts,
    read_store,
    to_table,
)

SUPERSEDED = "_superseded"
CORRUPT = "_corrupt"
LOCK = ".lock"
# Outcomes of the experiment itself, which a relaunch keeps: a diverged trial is a result (the seed
# fixes it), while "failed" says the machinery broke (a lost worker, a bad file, out of memory) and
# the trial runs again.
FINISHED = frozenset({"ok", "diverged"})


def read_part(part: Path, columns: tuple[str, ...] | None = None) -> pa.Table:
    """One part file, its page checksums verified; OSError or ArrowException when it is damaged."""
    table = pq.read_table(
        part, columns=list(columns) if columns else None, page_checksum_verification=True
    )
    if not {"trial_id", "status"} <= set(table.column_names):
        raise pa.ArrowInvalid(f"{part.name} has no trial_id/status columns")
    return table


def scan(
    path: Path, columns: tuple[str, ...] | None = ("trial_id", "status")
) -> tuple[dict[str, str], list[Path]]:
    """(trial_id -> status of every readable live part, unreadable parts); takes no lock.

    Reads two columns by default (a dry run); columns=None reads each part in full, which is what
    opening the store does, so damage anywhere in a file is found before pandas would trip over it.
    """
    status = {}
    unreadable = []
    for part in live_parts(path):
        try:
            rows = read_part(part, columns).select(["trial_id", "status"]).to_pylist()
        except (OSError, pa.ArrowException):  # truncated, not Parquet, bad checksum, no trial_id
            unreadable.append(part)
            continue
        status.update({row["trial_id"]: row["status"] for row in rows})
    return status, unreadable


class ResultStore:
    """Opened by one launcher at a time; `status` maps every live trial_id to its status."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().absolute()
        self._lock_file = self._lock()
        self.corrupt = self._set_aside_corrupt()
        self._upgrade_old_parts()
        self.status = scan(self.path)[0]

    def _lock(self):
        fix = "pass --results a folder you can write (it is created if missing)"
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(
                f"cannot use {self.path} as the results store: it is a file, not a folder; {fix}"
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            # held open (and locked) for the launcher's lifetime
            lock_file = open(self.path / LOCK, "a+")
        except OSError as exc:
            raise StoreError(
                f"cannot write the results store {self.path}: {exc.strerror or exc}; {fix}"
            ) from None
        if not os.access(self.path, os.W_OK):
            lock_file.close()
            raise StoreError(
                f"cannot write the results store {self.path}: permission denied; {fix}"
            )
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise StoreError(
                f"another launcher (pid {holder}) is writing to {self.path}; "
                "wait for it to finish, stop it, or pass a different --results"
            ) from None
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

    def parts(self) -> list[Path]:
        return live_parts(self.path)

    def _set_aside_corrupt(self) -> list[Path]:
        """Move unreadable parts (a crash mid-copy, a truncated sync, a flipped bit) to _corrupt/.

        Also drops our stale temp files: never renamed into place, they were never in the table.
        """
        for temp in self.path.glob(".tmp-*"):
            temp.unlink()
        return [self._move_aside(part, CORRUPT) for part in scan(self.path, columns=None)[1]]

    def _aside(self, part: Path, folder: str) -> Path:
        target = self.path / folder / f"{part.stem}.{time.time_ns()}.parquet"
        target.parent.mkdir(exist_ok=True)
        return target

    def _move_aside(self, part: Path, folder: str) -> Path:
        target = self._aside(part, folder)
        os.replace(part, target)
        return target

    def _upgrade_old_parts(self) -> None:
        """Rewrite parts written before a column was added or retyped, as schema.conform reads them.

        pyarrow takes a directory's schema from one of its files, so one old part could hide a new
        column from every reader. Parts with columns this code does not know are left alone.
        """
        for part in self.parts():
            schema = pq.read_schema(part)
            current = schema.equals(RESULT_SCHEMA, check_metadata=True)
            if not current and set(schema.names) <= set(RESULT_SCHEMA.names):
                os.replace(self._write_temp(conform(pq.read_table(part), part), part), part)

    def _write_temp(self, table: pa.Table, part: Path) -> Path:
        """A complete, fsynced file under a hidden name; renaming it over `part` publishes it."""
        temp = self.path / f".tmp-{part.name}"
        with open(temp, "wb") as f:
            pq.write_table(table, f, write_page_checksum=True)
            f.flush()
            os.fsync(f.fileno())
        return temp

    def done(self, finished: frozenset[str] = FINISHED) -> set[str]:
        """Trials a relaunch skips: those whose live row has one of the `finished` statuses."""
        return {trial_id for trial_id, status in self.status.items() if status in finished}

    def write(self, row: dict) -> Path:
        """Publish one row atomically; a row already live for this trial is kept in _superseded/.

        The old file is hard-linked there first and then replaced in one rename, so the trial has a
        live row at every instant (a crash in between leaves the old row live, a spare copy aside).
        """
        unknown = set(row) - set(RESULT_SCHEMA.names)
        if unknown:
            raise StoreError(f"row has columns the store does not know: {sorted(unknown)}")
        part = self.part(row["trial_id"])
        temp = self._write_temp(to_table([row]), part)
        if part.exists():
            try:
                os.link(part, self._aside(part, SUPERSEDED))
            except OSError:  # a filesystem without hard links: a copy keeps the same guarantee
                shutil.copyfile(part, self._aside(part, SUPERSEDED))
        os.replace(temp, part)
        self.status[row["trial_id"]] = row["status"]
        return part

    def read(self) -> pd.DataFrame:
        """All live rows (what pandas.read_parquet(path) gives), with every column even when
        empty."""
        return read_store(self.path)
