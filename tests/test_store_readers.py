"""The store read by other tools the way the README says: pyarrow.dataset on the folder, DuckDB and
Polars on `<store>/*.parquet`. Each sees the live rows only, whatever else the store holds; the
killed-launcher test in test_reliability.py reads with all three while a launch writes."""

import os
import shutil
from pathlib import Path

from launching import read_by_every_tool
from test_store import make_row

from study.store import ResultStore


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
