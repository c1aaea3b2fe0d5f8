"""The result row as every stage reads it: one schema, one rule for live parts, one reader."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.results import load
from study.layout import live_parts, read_store
from study.store import ResultStore
from trainables.config import make_config
from trainables.errors import StoreError
from trainables.schema import NULLABLE_INTS, RESULT_COLUMNS, RESULT_SCHEMA

REPO = Path(__file__).resolve().parents[1]


def make_row(latent: int, status: str = "ok", **values) -> dict:
    cfg = make_config({"dataset": "digits", "latent": latent})
    row = dict.fromkeys(RESULT_COLUMNS)
    row.update(cfg.science(), trial_id=cfg.trial_id(), status=status, grid="test", replicate=0)
    return {**row, "started_at": "2024-05-01T12:00:00+00:00", **values}


@pytest.mark.parametrize("module", ["study.store", "analysis.results", "analysis.report"])
def test_the_store_and_the_analysis_load_no_torch(module):
    """They learn the row from trainables.schema, which must not pull torch in on the way."""
    check = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('torch')))"
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture
def store(tmp_path) -> Path:
    """An ok row and a diverged one, as the launcher writes them."""
    path = tmp_path / "results.parquet"
    with ResultStore(path) as results:
        results.write(make_row(4, fd_mvg=3.0, n_train=1347, code_dead_units=0))
        results.write(make_row(8, status="diverged", diverged_epoch=3, error="non-finite"))
    return path


@pytest.mark.parametrize("reader", [pd.read_parquet, read_store, load])
def test_a_timestamp_and_nullable_integers_whoever_reads_the_store(store, reader):
    rows = reader(store)
    assert rows["latent"].dtype == "int64"  # config integers are never empty
    rows = rows.set_index("latent")
    assert str(rows["started_at"].dtype) == "datetime64[us, UTC]"
    assert rows.loc[4, "started_at"] == pd.Timestamp("2024-05-01T12:00:00Z")
    for column in NULLABLE_INTS:
        assert rows[column].dtype == "Int64", column
    assert rows.loc[8, "diverged_epoch"] == 3 and rows.loc[4, "diverged_epoch"] is pd.NA
    assert rows.loc[4, "n_train"] == 1347 and rows.loc[8, "n_train"] is pd.NA


def test_parts_with_started_at_as_text_still_read_and_are_upgraded(tmp_path):
    """Parts from before started_at was a timestamp held its ISO text."""
    path = tmp_path / "results.parquet"
    path.mkdir()
    text_schema = RESULT_SCHEMA.set(
        RESULT_SCHEMA.get_field_index("started_at"), pa.field("started_at", pa.string())
    ).remove_metadata()
    old = make_row(4, fd_mvg=3.0)
    old_part = path / f"{old['trial_id']}.parquet"
    pq.write_table(pa.Table.from_pylist([old], schema=text_schema), old_part)
    assert read_store(path)["started_at"].tolist() == [pd.Timestamp("2024-05-01T12:00:00Z")]
    with ResultStore(path) as results:
        results.write(make_row(8, started_at="2024-05-02T00:00:00+00:00"))
    assert pq.read_schema(old_part).equals(RESULT_SCHEMA, check_metadata=True)
    rows = pd.read_parquet(path)  # plain pandas, after the launcher opened the store
    assert str(rows["started_at"].dtype) == "datetime64[us, UTC]" and len(rows) == 2


def test_live_parts_are_the_files_pyarrow_reads_as_rows(store):
    """pyarrow skips names starting with '_' or '.', at any depth; so does live_parts."""
    for hidden in ("_superseded/x.parquet", "_tune/run/y.parquet", ".tmp-z.parquet"):
        (store / hidden).parent.mkdir(parents=True, exist_ok=True)
        (store / hidden).write_bytes(b"not a row")
    nested = store / "more" / "part.parquet"
    nested.parent.mkdir()
    pq.write_table(pq.read_table(live_parts(store)[0]), nested)
    assert sorted(map(str, live_parts(store))) == sorted(pq.ParquetDataset(store).files)
    assert len(live_parts(store)) == len(pd.read_parquet(store)) == len(read_store(store)) == 3


def test_a_part_that_is_no_result_row_is_named(tmp_path):
    path = tmp_path / "results.parquet"
    path.mkdir()
    pd.DataFrame([{"trial_id": "x", "status": "ok", "latent": "many"}]).to_parquet(
        path / "x.parquet"
    )
    with pytest.raises(StoreError, match=r"x\.parquet lacks the columns dataset, model"):
        read_store(path)
    row = pd.DataFrame([make_row(4)]).assign(latent="many")
    row.to_parquet(path / "x.parquet")
    with pytest.raises(StoreError, match=r"x\.parquet: column latent is not int64"):
        read_store(path)
