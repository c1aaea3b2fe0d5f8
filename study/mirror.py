"""--results-mirror URI: a copy of the results store that outlives the machine the store is on.

The local store stays the working copy (its lock and its atomic renames need a local disk). The
mirror (s3://bucket/prefix, gs://..., file:///folder, a folder: whatever trainables/filesystems.py
opens) holds the same layout (study/layout.py): every live part, sample grid and superseded row and
the launch's plan, each copied right after it lands locally, and at the end of a launch Ray Tune's
_tune/ too. So pandas.read_parquet(URI), `dae-study report URI` and `dae-study status URI` read it
as they read a store, and a launch whose store lacks rows the mirror has (a fresh head) starts by
pulling them: it runs only what is missing.

A finished row is never lost on the way. A copy that fails leaves it in the local store with a
warning, and everything the mirror lacks is copied at the next row and at the end of the launch,
whose summary says whether the mirror is still behind. A row of the mirror that a better local one
replaces is first copied to the mirror's _superseded/, as the store keeps its own. What the mirror
holds is judged as a launch opens it (rows by their content, other files by name and size); from
then on a local file is copied again whenever it changes.
"""

import contextlib
import itertools
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from study import layout
from study.layout import PLAN, SAMPLES, SUPERSEDED, TUNE
from study.store import LivePart, ResultStore, one_row
from trainables.errors import BadInput, StoreError, UnstorableRow
from trainables.filesystems import filesystem
from trainables.schema import SAMPLE_GRID, conform

FLAG = "--results-mirror"
COPY_ERRORS = (OSError, pa.ArrowException)  # pyarrow's S3 errors are OSErrors


class Mirror:
    """Where the mirror is: its filesystem and its root. Paths in it are relative to the root."""

    def __init__(self, uri: str):
        self.uri = uri
        try:
            self.fs, root = filesystem(uri, FLAG)
        except ValueError as exc:  # it names the flag and the URI
            raise BadInput(str(exc)) from None
        except OSError as exc:
            raise BadInput(f"{FLAG} {uri}: {exc}") from None
        self.root = root.rstrip("/")

    def check(self, store: Path) -> None:
        """BadInput unless the mirror can be written (a probe file is written and deleted) and is
        apart from the store: a mirror inside the store would read as rows of it, and the other
        way round."""
        local = Path(self.root) if self.fs.type_name == "local" else None
        if local is not None and (
            local == store or store in local.parents or local in store.parents
        ):
            raise BadInput(f"{FLAG} {self.uri}: the mirror and the store {store} overlap")
        probe = f".probe-{socket.gethostname()}-{os.getpid()}"
        try:
            self.fs.create_dir(self.root, recursive=True)
            self.write(probe, b"")
            self.fs.delete_file(self._path(probe))
        except COPY_ERRORS as exc:
            raise BadInput(f"{FLAG} {self.uri}: cannot write there: {exc}") from None

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def files(self) -> dict[str, int]:
        """Every file in the mirror -> its size."""
        return {name: info.size for name, info in layout.files_under(self.fs, self.root).items()}

    def read(self, relative: str) -> bytes:
        with self.fs.open_input_file(self._path(relative)) as source:
            return source.read()

    def write(self, relative: str, data: bytes) -> None:
        """Written under a hidden name beside its own and moved there, as the store's parts: a
        reader of the mirror finds the old file or the whole new one."""
        target = self._path(relative)
        folder = target.rpartition("/")[0]
        temp = f"{folder}/{layout.temp_name(Path(relative))}"
        self.fs.create_dir(folder, recursive=True)
        try:
            with self.fs.open_output_stream(temp) as sink:
                sink.write(data)
            self.fs.move(temp, target)
        except BaseException:
            with contextlib.suppress(*COPY_ERRORS):
                self.fs.delete_file(temp)
            raise

    def retire(self, relative: str) -> str:
        """Set a part of the mirror aside and delete it: its trial's live row is another file."""
        aside = self.set_aside(relative)
        self.fs.delete_file(self._path(relative))
        return aside

    def set_aside(self, relative: str) -> str:
        """Copy a part of the mirror into its _superseded/, named as the store names its own."""
        aside = f"{SUPERSEDED}/{Path(relative).stem}.{time.time_ns()}.parquet"
        self.fs.create_dir(self._path(SUPERSEDED), recursive=True)
        self.fs.copy_file(self._path(relative), self._path(aside))
        return aside

    def live_rows(self, names) -> tuple[dict[str, tuple[str, LivePart, pa.Table]], list[str]]:
        """The mirror's live parts among `names`, read in full -> ({trial_id: (relative path, the
        part, its table)} with the better row of a trial that has two, [the other ones' paths]). A
        file that is no row of this study is named on stderr and left alone."""
        best: dict[str, tuple[str, LivePart, pa.Table]] = {}
        outranked = []
        for relative in sorted(filter(layout.is_row_file, names)):
            try:
                table = layout.read_part(self._path(relative), self.fs)
                part = one_row(table, Path(relative))
            except (*COPY_ERRORS, StoreError) as exc:
                _warn(f"{self.uri}/{relative} is no row of this study ({exc}); left there")
                continue
            found = (relative, part, table)
            kept = best.setdefault(part.trial_id, found)
            if kept is not found:
                loser, winner = sorted((kept, found), key=lambda each: _merit(each[1]))
                best[part.trial_id] = winner
                outranked.append(loser[0])
        return best, outranked


def _merit(part: LivePart) -> tuple:
    """What decides between a row of the mirror and one of the store: outcome, then start."""
    return part.merit(Path())[:2]


class MirroredStore(ResultStore):
    """A ResultStore that copies everything it writes to a Mirror, and that opens by pulling the
    rows the mirror has and it lacks (or holds worse ones of: see STATUS_RANK), as rows it writes.

    `pulled` counts those; `written` only the rows this launch's trials stored. `behind` says why
    the mirror lacks a file, while it does.
    """

    def __init__(self, path: str | Path, mirror: Mirror):
        super().__init__(path)
        self.mirror = mirror
        self.pulled = 0
        self.behind: str | None = None
        self._synced: dict[str, tuple] = {}  # local file (relative) -> its stamp the mirror holds
        self._stale: list[str] = []  # mirror parts to set aside: the trial's row lives elsewhere
        try:
            self._remote = mirror.files()  # -> size; kept up to date as files are copied there
            self._reconcile()
        except COPY_ERRORS as exc:
            self.close()
            raise BadInput(f"{FLAG} {mirror.uri}: cannot read it: {exc}") from None
        except BaseException:
            self.close()
            raise
        self.written = 0
        self.catch_up()

    def _reconcile(self) -> None:
        """Pull each row the mirror has that is missing here or better than ours, and note which
        local files the mirror holds already: a row by its content; its sample grid with it, by
        name and size; a superseded row or a file of _tune/ by name and size."""
        remote, self._stale = self.mirror.live_rows(self._remote)
        for trial_id, (relative, part, table) in remote.items():
            local = self._live.get(trial_id)
            if local is not None and self._relative(local.path) == relative:
                if layout.read_part(local.path).equals(table, check_metadata=True):
                    self._synced[relative] = _stamp(local.path)
                    self._note_if_there(layout.sample_grid(trial_id))
                    continue
            if local is None or _merit(part) > _merit(local):
                self._pull(relative, table)
            ours = self._live.get(trial_id)  # None: the mirror's could not be pulled; left there
            if ours is not None and self._relative(ours.path) != relative:
                self._stale.append(relative)
        for folder in (SUPERSEDED, TUNE):
            for path in (self.path / folder).rglob("*"):
                self._note_if_there(self._relative(path))

    def _note_if_there(self, relative: str) -> None:
        """Count a local file as in the mirror if the mirror has one of that name and size."""
        path = self.path / relative
        if path.is_file() and self._remote.get(relative) == path.stat().st_size:
            self._synced[relative] = _stamp(path)

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.path).as_posix()

    def _pull(self, relative: str, table: pa.Table) -> None:
        (row,) = conform(table, Path(relative)).to_pylist()
        grid = row.get("samples_png")
        if grid:
            try:
                row[SAMPLE_GRID] = self.mirror.read(grid)
            except COPY_ERRORS as exc:
                _warn(f"{self.mirror.uri}/{grid}: {exc}; its row is pulled without it")
                row["samples_png"] = grid = None
        try:
            part = ResultStore.write(self, row)  # not copied back: the mirror has it
        except UnstorableRow as exc:  # a row of a newer version of this code, say
            _warn(f"{self.mirror.uri}/{relative} cannot be pulled: {exc}")
            return
        self.pulled += 1
        if self._relative(part) == relative:
            self._synced[relative] = _stamp(part)
            if grid:
                self._synced[grid] = _stamp(self.path / grid)

    def write(self, row: dict) -> Path:
        part = super().write(row)
        self.catch_up()
        return part

    def _local_files(self, tune: bool):
        """(relative path, path, stamp) of each local file the mirror keeps, a sample grid before
        the row that names it (a copy that fails stops the rest: see catch_up)."""
        groups = [
            sorted((self.path / SAMPLES).glob("*.png")),
            layout.live_parts(self.path),
            sorted((self.path / SUPERSEDED).rglob("*")),
            [self.path / PLAN],
            sorted((self.path / TUNE).rglob("*")) if tune else [],
        ]
        for path in itertools.chain(*groups):
            if path.name.startswith(".") or not path.is_file():  # a file being written
                continue
            try:
                stamp = _stamp(path)
            except FileNotFoundError:  # renamed away since
                continue
            yield self._relative(path), path, stamp

    def _pending(self, tune: bool) -> list[tuple[str, Path, tuple]]:
        return [each for each in self._local_files(tune) if self._synced.get(each[0]) != each[2]]

    def catch_up(self, tune: bool = False) -> bool:
        """Copy every file the mirror lacks (with tune, _tune/ too); True once it lacks none. The
        first copy that fails ends the round: the mirror is likely out of reach, and a row is
        never copied before its sample grid."""
        relative = None
        try:
            for relative, path, stamp in self._pending(tune):
                try:
                    data = path.read_bytes()
                except FileNotFoundError:  # renamed away since it was listed: nothing to copy
                    continue
                known = relative in self._synced  # the mirror's copy is one the store kept
                if layout.is_row_file(relative) and relative in self._remote and not known:
                    self._remote[self.mirror.set_aside(relative)] = self._remote[relative]
                self.mirror.write(relative, data)
                self._synced[relative] = stamp
                self._remote[relative] = stamp[0]
            while self._stale:
                relative = self._stale[0]
                self._remote[self.mirror.retire(relative)] = self._remote.pop(relative)
                self._stale.pop(0)
        except COPY_ERRORS as exc:
            if self.behind is None:
                _warn(
                    f"cannot copy {relative} to the results mirror {self.mirror.uri}: {exc}; the "
                    "local store keeps it, and what the mirror lacks is copied at the next row "
                    "and at the end of the launch"
                )
            self.behind = f"{relative}: {exc}"
            return False
        if self.behind is not None:
            print(f"the results mirror {self.mirror.uri} has caught up", flush=True)
            self.behind = None
        return True

    def finish(self) -> str:
        """The last catch-up of a launch, _tune/ included -> the summary's line on the mirror."""
        if self.catch_up(tune=True):
            return f"mirror: {self.mirror.uri} holds every row of it and Tune's {TUNE}/"
        lacking = len(self._pending(tune=True)) + len(self._stale)
        return (
            f"mirror: {self.mirror.uri} is BEHIND: it lacks {lacking} files the store has "
            f"(last error: {self.behind}); rerun the same command to copy them (it runs nothing "
            "already done) before this machine goes"
        )


@contextlib.contextmanager
def fetched(uri: str):
    """A mirror's live parts and plan in a temporary folder, with the mirror's modification times:
    a store `dae-study status` can read. StoreError when the mirror cannot be read."""
    fs, root = layout.open_uri(uri)
    with tempfile.TemporaryDirectory(prefix="dae-study-mirror-") as folder:
        try:
            files = layout.files_under(fs, root)
            if not files:
                raise StoreError(f"no results store at {uri}: nothing there")
            for relative, info in files.items():
                if relative != PLAN and not layout.is_row_file(relative):
                    continue
                local = Path(folder) / relative
                local.parent.mkdir(parents=True, exist_ok=True)
                with fs.open_input_file(info.path) as source:
                    local.write_bytes(source.read())
                os.utime(local, ns=(info.mtime_ns, info.mtime_ns))
        except COPY_ERRORS as exc:
            raise StoreError(f"cannot read the results store {uri}: {exc}") from None
        yield Path(folder)


def _stamp(path: Path) -> tuple:
    """What changes whenever the store writes a file: it writes each one anew and renames it."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
