"""study/store.py: rows in and out of the results store, reruns, two rows of one trial, files that
are not rows, write errors; read by other tools the way docs/store.md says (pyarrow.dataset on the
folder, DuckDB and Polars on `<store>/*.parquet`), each seeing the live rows only; and a writer
SIGKILLed at random moments. test_watchdog.py reads with all three while a launch writes."""

import errno
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from launching import REPO, read_by_every_tool

from study.layout import CORRUPT, FOREIGN, SAMPLES, SUPERSEDED, live_parts
from study.store import ResultStore, check_usable
from trainables.config import make_config
from trainables.errors import StoreError, StoreWriteError, UnstorableRow
from trainables.schema import RESULT_COLUMNS, RESULT_SCHEMA, SAMPLE_GRID, to_table


def make_row(latent: int = 4, status: str = "ok", **values) -> dict:
    """A row as run_trial shapes it: every column, most of them None."""
    cfg = make_config({"dataset": "digits", "latent": latent})
    row = dict.fromkeys(RESULT_COLUMNS)
    row.update(
        cfg.science(),
        trial_id=cfg.trial_id(),
        status=status,
        grid="test",
        replicate=0,
        search="grid",
    )
    return {**row, **values}


def test_rows_read_back_as_one_table_with_the_declared_types(tmp_path):
    full = make_row(
        4, fd_mvg=12.5, loss_history=[3.0, 2.0], code_sample_dims=[0, 2], code_sample=[[0.1, 0.2]]
    )
    # every score, list and provenance column None
    sparse = make_row(8, status="failed", error="boom")
    with ResultStore(tmp_path / "results.parquet") as store:
        store.write(full)
        store.write(sparse)
    df = pd.read_parquet(tmp_path / "results.parquet")  # plain pandas, no help from us
    assert list(df.columns) == list(RESULT_COLUMNS) and len(df) == 2
    by_latent = df.set_index("latent")
    assert by_latent.loc[4, "fd_mvg"] == 12.5 and math.isnan(by_latent.loc[8, "fd_mvg"])
    assert list(by_latent.loc[4, "code_sample"][0]) == [0.1, 0.2]
    for part in (tmp_path / "results.parquet").glob("*.parquet"):
        assert pq.read_schema(part).remove_metadata() == RESULT_SCHEMA  # no null-typed columns


def test_a_leftover_temp_file_is_never_read_and_is_cleared(tmp_path):
    path = tmp_path / "results.parquet"
    with ResultStore(path) as store:
        store.write(make_row(4))
    (path / ".tmp-abc.parquet").write_bytes(b"PAR1 half a file")  # a launcher killed mid-write
    assert len(pd.read_parquet(path)) == 1
    with ResultStore(path) as store:
        assert store.corrupt == [] and not list(path.glob(".tmp-*"))
        assert store.done() == {make_row(4)["trial_id"]}


def test_a_rerun_supersedes_the_old_row_instead_of_overwriting_it(tmp_path):
    path = tmp_path / "results.parquet"
    with ResultStore(path) as store:
        store.write(make_row(4, status="failed", error="first try"))
    with ResultStore(path) as store:
        assert store.done() == set() and store.status == {make_row(4)["trial_id"]: "failed"}
        store.write(make_row(4, status="ok", fd_mvg=1.0))
    df = pd.read_parquet(path)
    assert df["status"].tolist() == ["ok"]  # one live row per trial_id
    (old,) = (path / SUPERSEDED).iterdir()
    assert pd.read_parquet(old)["error"].tolist() == ["first try"]


def test_a_corrupt_part_is_moved_aside_and_its_trial_runs_again(tmp_path):
    path = tmp_path / "results.parquet"
    with ResultStore(path) as store:
        store.write(make_row(4))
        store.write(make_row(8))
    bad = store.part(make_row(8)["trial_id"])
    bad.write_bytes(bad.read_bytes()[:100])  # truncated, as by a crash during a copy
    with pytest.raises(pa.ArrowException):  # one bad part makes the whole table unreadable
        pd.read_parquet(path)
    with ResultStore(path) as store:
        assert [p.parent.name for p in store.corrupt] == [CORRUPT]
        assert store.done() == {make_row(4)["trial_id"]}
    assert pd.read_parquet(path)["latent"].tolist() == [4]


def test_parts_from_before_a_new_column_are_upgraded_so_readers_see_it(tmp_path):
    path = tmp_path / "results.parquet"
    path.mkdir()
    old = to_table([make_row(4)]).drop_columns(["fd_gmm", "wall_s"])
    old_part = path / f"{make_row(4)['trial_id']}.parquet"
    pq.write_table(old, old_part)  # written by code without those columns
    with ResultStore(path) as store:
        store.write(make_row(8, fd_gmm=2.0))
    assert pq.read_schema(old_part).names == list(RESULT_COLUMNS)
    df = pd.read_parquet(path)  # whichever file pyarrow takes the schema from, fd_gmm is there
    assert list(df.columns) == list(RESULT_COLUMNS)
    assert sorted(df["fd_gmm"].fillna(-1)) == [-1, 2.0] and len(df) == 2


def test_a_row_with_an_unknown_column_is_refused(tmp_path):
    with ResultStore(tmp_path / "r") as store, pytest.raises(StoreError, match="unknown_column"):
        store.write(make_row(4, unknown_column=1))


def test_an_unwritable_path_is_a_clear_error(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreError, match="cannot write the results store"):
        ResultStore(tmp_path / "a-file" / "results.parquet")


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    path = tmp_path / "results.parquet"
    hold = f"from study.store import ResultStore; s = ResultStore({str(path)!r}); print('held')"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold + "; import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match=f"another launcher \\(pid {holder.pid}\\)"):
            ResultStore(path)
    finally:
        holder.kill()
        holder.wait()
    with ResultStore(path):  # the kernel dropped the lock with the process
        pass


class Killed(BaseException):
    """Stands in for SIGKILL at one precise instant."""


def test_a_crash_while_a_row_is_replaced_leaves_the_old_row_live(tmp_path, monkeypatch):
    """The old part is linked aside before the new one is renamed over it: no instant without a live
    row."""
    path = tmp_path / "results.parquet"
    store = ResultStore(path)
    store.write(make_row(4, status="failed", error="first try"))

    def killed(*args):
        raise Killed

    monkeypatch.setattr(os, "replace", killed)  # the publishing rename never happens
    with pytest.raises(Killed):
        store.write(make_row(4, status="ok"))
    monkeypatch.undo()
    store.close()
    assert pd.read_parquet(path)["error"].tolist() == ["first try"]
    with ResultStore(path) as reopened:  # the relaunch: the trial is still failed, so it runs again
        assert reopened.status == {make_row(4)["trial_id"]: "failed"} and not list(
            path.glob(".tmp-*")
        )
    assert len(list((path / SUPERSEDED).iterdir())) == 1  # a spare copy, never read as live


def test_a_part_with_a_damaged_page_is_caught_by_its_checksum(tmp_path):
    """A flipped byte inside a column chunk leaves the footer (and a two-column read) intact; the
    checksums don't."""
    path = tmp_path / "results.parquet"
    with ResultStore(path) as store:
        # incompressible: its bytes stand in the file as written
        losses = np.random.default_rng(0).random(2000)
        part = store.write(make_row(4, loss_history=losses.tolist()))
    raw = bytearray(part.read_bytes())
    raw[raw.index(losses[1000].tobytes()) + 3] ^= 0xFF  # inside the loss_history page
    part.write_bytes(bytes(raw))
    with ResultStore(path) as store:
        assert [p.parent.name for p in store.corrupt] == [CORRUPT] and store.status == {}


def test_a_relaunch_skips_ok_and_diverged_trials_and_reruns_failed_ones(tmp_path):
    ok = make_row(4)
    diverged = make_row(8, status="diverged")
    failed = make_row(16, status="failed")
    with ResultStore(tmp_path / "results.parquet") as store:
        for row in (ok, diverged, failed):
            store.write(row)
        assert store.done() == {ok["trial_id"], diverged["trial_id"]}
        assert store.done(frozenset({"ok"})) == {ok["trial_id"]}  # --rerun-diverged


# ------------------------------------------------------------------ two rows of one trial


def write_part(path, row: dict, name: str | None = None):
    """A part file as another copy of the store (or a hand) would leave it."""
    part = path / (name or f"{row['trial_id']}.parquet")
    part.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table([row]), part)
    return part


@pytest.mark.parametrize("stale_where", ["copy/", "zz-copy/", "renamed "])
def test_a_stale_failed_row_of_a_trial_never_hides_its_ok_row(tmp_path, stale_where):
    """A second file of one trial (an old store copied into a subfolder, a renamed file): the ok
    row stays live however the files sort, even when the failed one started later."""
    path = tmp_path / "results.parquet"
    ok = make_row(4, status="ok", fd_mvg=1.0, started_at="2024-05-01T12:00:00+00:00")
    failed = make_row(4, status="failed", error="stale", started_at="2024-06-01T12:00:00+00:00")
    write_part(path, ok)
    stale = write_part(path, failed, f"{stale_where}{failed['trial_id']}.parquet")
    moved = []
    for _ in range(2):  # the same choice every time the store opens
        with ResultStore(path) as store:
            assert store.status == {ok["trial_id"]: "ok"} and store.done() == {ok["trial_id"]}
            moved.append([original for original, _ in store.outranked])
    assert moved == [[stale], []]
    df = pd.read_parquet(path)
    assert df["status"].tolist() == ["ok"]
    (aside,) = (path / SUPERSEDED).iterdir()
    assert pd.read_parquet(aside)["error"].tolist() == ["stale"]


def test_of_two_rows_with_the_same_outcome_the_later_start_stays_live(tmp_path):
    path = tmp_path / "results.parquet"
    early = make_row(4, status="failed", error="early", started_at="2024-05-01T12:00:00+00:00")
    late = make_row(4, status="failed", error="late", started_at="2024-06-01T12:00:00+00:00")
    write_part(path, late, "a/x.parquet")
    write_part(path, early)
    with ResultStore(path):
        pass
    assert pd.read_parquet(path)["error"].tolist() == ["late"]


def test_a_failed_retry_of_an_ok_trial_is_kept_aside_not_live(tmp_path):
    path = tmp_path / "results.parquet"
    with ResultStore(path) as store:
        store.write(make_row(4, status="ok", fd_mvg=1.0))
        aside = store.write(make_row(4, status="failed", error="retry"))
        assert aside.parent.name == SUPERSEDED and store.status == {make_row(4)["trial_id"]: "ok"}
    assert pd.read_parquet(path)["status"].tolist() == ["ok"]


def test_a_rerun_replaces_a_row_that_lived_in_a_subfolder(tmp_path):
    path = tmp_path / "results.parquet"
    write_part(path, make_row(4, status="failed", error="old"), "copy/old.parquet")
    with ResultStore(path) as store:
        store.write(make_row(4, status="ok"))
    assert pd.read_parquet(path)["status"].tolist() == ["ok"]
    assert not (path / "copy" / "old.parquet").exists() and len(os.listdir(path / SUPERSEDED)) == 1


# ------------------------------------------------------------------ files that are not rows


def test_parts_that_are_not_rows_of_this_study_are_set_aside_and_named(tmp_path):
    """A foreign table, a column of the wrong type, several rows in one file, an unknown status:
    each moved to _foreign/ with why, so that pandas and the report read the rest."""
    path = tmp_path / "results.parquet"
    write_part(path, make_row(4))
    pq.write_table(pa.table({"a": [1, 2]}), path / "summary.parquet")
    typo = to_table([make_row(8)]).set_column(
        list(RESULT_COLUMNS).index("latent"), "latent", pa.array(["eight"])
    )
    pq.write_table(typo, path / "typed.parquet")
    pq.write_table(to_table([make_row(16), make_row(32)]), path / "merged.parquet")
    write_part(path, make_row(64, status="done"), "status.parquet")
    with ResultStore(path) as store:
        why = {Path(moved).parent.name: [] for _, moved in store.foreign}
        reasons = " | ".join(reason for reason, _ in store.foreign)
        assert store.status == {make_row(4)["trial_id"]: "ok"}
    assert set(why) == {FOREIGN} and len(store.foreign) == 4
    for name, said in [
        ("summary.parquet", "lacks the columns"),
        ("typed.parquet", "column latent is not int64"),
        ("merged.parquet", "holds 2 rows"),
        ("status.parquet", "status 'done'"),
    ]:
        assert re.search(f"{name}[^|]*{said}", reasons), (name, reasons)
    assert pd.read_parquet(path)["latent"].tolist() == [4]


def test_files_that_are_not_parquet_are_listed_and_left_alone(tmp_path):
    path = tmp_path / "results.parquet"
    with ResultStore(path) as store:
        store.write(make_row(4))
    (path / "notes.txt").write_text("my notes")
    (path / "report").mkdir()
    (path / "report" / "table_2.csv").write_text("a,b\n")
    with ResultStore(path) as store:
        assert [p.relative_to(path) for p in store.stray] == [
            Path("notes.txt"),
            Path("report/table_2.csv"),
        ]
        assert store.done() == {make_row(4)["trial_id"]} and len(store.read()) == 1
    assert (path / "notes.txt").exists()


# ------------------------------------------------------------------ write errors


def test_a_failed_write_leaves_no_temp_file_and_says_where(tmp_path, monkeypatch):
    path = tmp_path / "results.parquet"
    store = ResultStore(path)
    store.write(make_row(4, status="failed"))

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StoreWriteError, match=f"results store {path}: No space left on device"):
        store.write(make_row(8))
    monkeypatch.undo()
    (path / SUPERSEDED).mkdir()
    os.rmdir(path / SUPERSEDED)
    (path / SUPERSEDED).write_text("a file where the folder belongs")
    with pytest.raises(StoreWriteError, match=f"File exists: {path / SUPERSEDED}"):
        store.write(make_row(4, status="ok"))
    store.close()
    assert not list(path.glob(".tmp-*")) and store.written == 1
    assert pd.read_parquet(path)["status"].tolist() == ["failed"]  # the old row is still live


def test_a_row_with_a_value_no_column_holds_is_refused_alone(tmp_path):
    with ResultStore(tmp_path / "r") as store:
        with pytest.raises(UnstorableRow, match="n_reference"):
            store.write(make_row(4, n_reference=2**70))
        store.write(make_row(8))  # the store is fine: the next row lands
        assert store.written == 1 and not list(store.path.glob(".tmp-*"))


def test_check_usable_refuses_what_a_launch_would_refuse_and_creates_nothing(tmp_path):
    (tmp_path / "a-file").write_text("")
    for path, said in [
        (tmp_path / "a-file", "it is a file, not a folder"),
        (tmp_path / "a-file" / "r", "is a file"),
    ]:
        with pytest.raises(StoreError, match=said):
            check_usable(path)
    check_usable(tmp_path / "new" / "results.parquet")
    assert not (tmp_path / "new").exists()
    held = tmp_path / "held"
    with ResultStore(held):
        with pytest.raises(StoreError, match=f"another launcher \\(pid {os.getpid()}\\)"):
            check_usable(held)
    check_usable(held)  # released


def test_a_rows_sample_grid_is_a_file_of_its_own_that_no_reader_takes_for_a_row(tmp_path):
    """Written beside the parts, in _samples/, which pyarrow skips; a failed retry of an ok trial
    keeps the ok trial's grid."""
    path = tmp_path / "results.parquet"
    trial_id = make_row(4)["trial_id"]
    with ResultStore(path) as store:
        store.write({**make_row(4), SAMPLE_GRID: b"ok trial's png"})
        store.write({**make_row(4, status="failed"), SAMPLE_GRID: b"failed retry's png"})
        store.write({**make_row(8, status="failed")})  # failed before it drew anything
    rows = pd.read_parquet(path).set_index("latent")
    assert rows.loc[4, "samples_png"] == f"{SAMPLES}/{trial_id}.png"
    assert pd.isna(rows.loc[8, "samples_png"])
    assert (path / rows.loc[4, "samples_png"]).read_bytes() == b"ok trial's png"
    assert [file.name for file in (path / SAMPLES).iterdir()] == [f"{trial_id}.png"]


def test_a_row_is_on_disk_before_its_file_is_renamed_into_place(tmp_path, monkeypatch):
    """os.fsync and os.replace spied: the file renamed onto the trial's part (a first row and a
    rerun's replacement alike) was fsynced first, while open, with the whole row in it: a crash
    after the rename cannot leave an empty or partial part, which a rename alone would allow."""
    events = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd):
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        events.append(("fsync", path, pq.read_table(path).num_rows))
        fsync(fd)

    def spy_replace(source, target):
        events.append(("replace", Path(source), Path(target)))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    store = ResultStore(tmp_path / "results.parquet")
    row = make_row(4)
    part = store.write({**row, "status": "failed"})
    store.write({**row, "status": "ok", "fd_mvg": 1.0})
    renames = [i for i, event in enumerate(events) if event[0] == "replace" and event[2] == part]
    assert len(renames) == 2
    for rename in renames:  # since the rename before it, the renamed file was fsynced, whole
        source = events[rename][1]
        before = max(
            [i for i, event in enumerate(events[:rename]) if event[0] == "replace"] or [-1]
        )
        synced = [event for event in events[before + 1 : rename] if event[:2] == ("fsync", source)]
        assert synced and synced[-1][2] == 1
    assert pd.read_parquet(part)["fd_mvg"].tolist() == [1.0]


# ------------------------------------------------------------------ readers, killed writers


def test_no_reader_sees_a_temp_file_a_superseded_row_or_the_tunes_state(tmp_path, monkeypatch):
    """Read at the instant a new row's complete temp file waits for its rename, and after a launcher
    killed at that instant left it behind (until the next launch opens the store)."""
    path = tmp_path / "results.parquet"
    store = ResultStore(path)
    store.write(make_row(4, status="failed"))
    store.write(make_row(4))  # the failed row goes to _superseded/
    (path / "_tune").mkdir()
    (path / "_tune" / "state.parquet").write_bytes(b"not a row")
    publish = os.replace
    seen = {}

    def read_then_publish(temp, part):
        seen["reads"] = read_by_every_tool(path)
        seen["temp"] = Path(temp).name
        shutil.copyfile(temp, tmp_path / "kept")
        publish(temp, part)

    monkeypatch.setattr(os, "replace", read_then_publish)
    store.write(make_row(8))
    monkeypatch.undo()
    store.close()
    assert seen["temp"].startswith(".tmp-") and not seen["temp"].endswith(".parquet")
    shutil.copyfile(tmp_path / "kept", path / seen["temp"])  # as a SIGKILL before the rename
    live = make_row(4)["trial_id"]
    for reads, trial_ids in ((seen["reads"], [live]), (read_by_every_tool(path), None)):
        for tool, (files, read_ids) in reads.items():
            expected = sorted(trial_ids or [live, make_row(8)["trial_id"]])
            assert sorted(os.path.basename(f) for f in files) == [f"{t}.parquet" for t in expected]
            assert sorted(read_ids) == expected, tool
    with ResultStore(path):
        assert not list(path.glob(".tmp-*"))


WRITER = """
import sys
from study.store import ResultStore
from trainables.config import make_config
from trainables.schema import RESULT_COLUMNS
store = ResultStore(sys.argv[1])
for i in range(100_000):  # eight trials, each row rewritten over and over (superseding the last)
    cfg = make_config({"dataset": "digits", "latent": 1 + i % 8})
    row = dict.fromkeys(RESULT_COLUMNS)
    row.update(cfg.science(), trial_id=cfg.trial_id(), status="failed", error=f"write {i}")
    row["loss_history"] = [1.0] * 500
    store.write(row)
    if i == 7:
        print("all eight written", flush=True)
"""


def test_a_store_writer_killed_at_random_moments_never_leaves_a_broken_table(tmp_path):
    """SIGKILL lands mid-write: readers never see a partial part, and every trial written keeps a
    live row."""
    path = tmp_path / "results.parquet"
    rng = np.random.default_rng(0)
    for _ in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline() == "all eight written\n"
        time.sleep(rng.uniform(0.3, 0.8))
        writer.kill()
        writer.wait()
        assert len(pd.read_parquet(path)) == len(live_parts(path))
        with ResultStore(path) as store:  # what a relaunch sees
            assert store.corrupt == [] and len(store.status) == 8
    assert list((path / SUPERSEDED).iterdir())  # it did rewrite rows while being killed
