"""The store read by other tools the way the README says: pyarrow.dataset on the folder, DuckDB and
Polars on `<store>/*.parquet`. Each sees the live rows only, whatever else the store holds, and even
while a launch writes to it."""

import os
import shutil
import threading
import time
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pytest
from launching import start
from test_launch import env, smoke_ids  # noqa: F401  (env is a fixture)
from test_store import make_row

from study.store import ResultStore


def read_by_every_tool(path) -> dict[str, tuple[list[str], list[str]]]:
    """tool -> (the files it read, the trial_ids of its rows)."""
    dataset = ds.dataset(path, format="parquet")
    query = f"SELECT filename, trial_id FROM read_parquet('{path}/*.parquet', filename = true)"
    duck = duckdb.sql(query).fetchall()
    polars = pl.scan_parquet(f"{path}/*.parquet", include_file_paths="file").collect()
    return {
        "pyarrow.dataset": (dataset.files, dataset.to_table()["trial_id"].to_pylist()),
        "duckdb": ([file for file, _ in duck], [trial_id for _, trial_id in duck]),
        "polars": (polars["file"].to_list(), polars["trial_id"].to_list()),
    }


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


@pytest.mark.slow
def test_readers_during_a_launch_see_whole_rows_only(env, sessions, tmp_path):  # noqa: F811
    path = tmp_path / "results.parquet"
    launcher = start(
        env, sessions, "--grid", "smoke", "--limit", "2", "--results", str(path), cwd=tmp_path
    )
    reads = []
    errors = []

    def read_until_done():
        while launcher.poll() is None:
            time.sleep(0.05)  # leaves the launch most of a core on a small machine
            if not any(path.glob("*.parquet")):  # before the first row: nothing to glob
                continue
            try:
                reads.append(read_by_every_tool(path))
            except Exception as exc:  # what the test is about: a reader that fails
                errors.append(exc)

    reader = threading.Thread(target=read_until_done)
    reader.start()
    assert launcher.wait(timeout=240) == 0
    reader.join()
    assert not errors, errors[:3]
    reads.append(read_by_every_tool(path))
    for read in reads:
        for tool, (files, trial_ids) in read.items():
            assert all(f.endswith(".parquet") and "/." not in f for f in files), (tool, files)
            assert len(set(trial_ids)) == len(trial_ids) == len(files), tool
    assert sorted(reads[-1]["duckdb"][1]) == sorted(smoke_ids(2))
