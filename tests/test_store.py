import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from study.store import CORRUPT, SUPERSEDED, ResultStore, StoreError
from trainables.config import make_config
from trainables.schema import RESULT_COLUMNS, RESULT_SCHEMA, to_table


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
