"""The result row as every stage reads it: one schema, one rule for live parts, one reader; and
the schema growing.

Adding a config field to a study that already has rows: no trial reruns, no curve appears twice.
The field is added as a later change would add it: one line in a copy of trainables/config.py,
declaring the value that reproduces what trials did before it (see VALUES_BEFORE there). The rows
are written by this code; the copy with the new field opens and analyses their store.
"""

import json
import os
import shutil
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


# --------------------------------------------------------------------------- a field added

NEW_FIELD = (
    '    grown_field: str = setting("{default}", READING, Options(("1024", "8f")), before="8f")\n'
)
CURVES = [{"dataset": "digits", "filters": 8, "model": model} for model in ("dae", "vae")]
OLD_TRIALS = [{**curve, "latent": latent} for curve in CURVES for latent in (4, 8)]
NEW_TRIAL = {**CURVES[0], "latent": 16}  # one more point on the DAE curve, run by the new code

# Run by the code with the new field: what it makes of the old store, as JSON on stdout.
AFTER_THE_CHANGE = """
import json, sys
import pandas as pd
from analysis.optimum import find_optima, latent_stats
from analysis.results import load, usable
from study import grids
from study.store import ResultStore
from trainables.config import make_config
from trainables.schema import RESULT_COLUMNS

store = sys.argv[1]
old_trials = json.loads(sys.argv[2])
new_trial = json.loads(sys.argv[3])
seen = {
    "ids": [make_config(o).trial_id() for o in old_trials],
    "ids_as_before": [make_config({**o, "grown_field": "8f"}).trial_id() for o in old_trials],
    "read_before_opening": sorted(set(load(store)["grown_field"])),
}
with ResultStore(store) as results:
    trials = grids.expand(grids.Grid("old", old_trials, "the old grid"))
    seen["to_run"] = [cfg.trial_id() for cfg in trials if cfg.trial_id() not in results.done()]
    cfg = make_config(new_trial)
    row = dict.fromkeys(RESULT_COLUMNS)
    row.update(cfg.science(), trial_id=cfg.trial_id(), status="ok", fd_mvg=1.0, fd_gmm=1.0)
    results.write(row)
seen["plain_pandas"] = pd.read_parquet(store)["grown_field"].tolist()
optima = find_optima(latent_stats(usable(load(store))))
mvg = optima[optima["sampler"] == "mvg"]
seen["curves"] = sorted(
    [curve.model, curve.grown_field, curve.n_latents] for curve in mvg.itertuples()
)
print(json.dumps(seen))
"""


def scored_row(overrides: dict) -> dict:
    cfg = make_config(overrides)
    row = dict.fromkeys(RESULT_COLUMNS)
    row.update(cfg.science(), trial_id=cfg.trial_id(), status="ok", grid="old", search="grid")
    return {**row, "fid": False, "fd_mvg": float(cfg.latent), "fd_gmm": float(cfg.latent)}


def with_new_field(tmp_path: Path, default: str) -> Path:
    """A copy of the three stages whose TrialConfig has one more field, grown_field."""
    root = tmp_path / "grown"
    for stage in ("trainables", "study", "analysis"):
        shutil.copytree(REPO / stage, root / stage, ignore=shutil.ignore_patterns("__pycache__"))
    config = root / "trainables" / "config.py"
    anchor = "class TrialConfig:\n"
    assert config.read_text().count(anchor) == 1
    config.write_text(
        config.read_text().replace(anchor, anchor + NEW_FIELD.format(default=default))
    )
    return root


@pytest.mark.parametrize("default", ["8f", "1024"])
def test_a_new_field_keeps_every_trial_id_and_every_curve_once(tmp_path, default):
    """default "8f" keeps the old behaviour; "1024" changes it, for new trials only."""
    store = tmp_path / "results.parquet"
    with ResultStore(store) as results:
        for overrides in OLD_TRIALS:
            results.write(scored_row(overrides))
    old_ids = [make_config(overrides).trial_id() for overrides in OLD_TRIALS]
    code = with_new_field(tmp_path, default)
    result = subprocess.run(
        [sys.executable, "-c", AFTER_THE_CHANGE, str(store), json.dumps(OLD_TRIALS)]
        + [json.dumps(NEW_TRIAL)],
        cwd=code,
        env={**os.environ, "PYTHONPATH": str(code)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["ids_as_before"] == old_ids  # the old trials are the old experiments
    assert seen["read_before_opening"] == ["8f"]  # the analysis fills the old rows' column
    # so does the store, rewriting the old parts when the launcher opens it
    assert sorted(seen["plain_pandas"]) == sorted(["8f"] * len(OLD_TRIALS) + [default])
    if default == "8f":  # the new DAE point joins the old curve
        assert seen["ids"] == old_ids and seen["to_run"] == []  # a relaunch runs nothing
        assert seen["curves"] == [["dae", "8f", 3], ["vae", "8f", 2]]
    else:  # a new experiment: new trial ids, and the new point starts a curve of its own
        assert not set(seen["ids"]) & set(old_ids) and len(seen["to_run"]) == len(OLD_TRIALS)
        assert seen["curves"] == [["dae", "1024", 1], ["dae", "8f", 2], ["vae", "8f", 2]]
