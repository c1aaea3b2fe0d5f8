"""The Tune callback and resources without a cluster: fake trials stand in for Tune's."""

import math
from dataclasses import asdict, dataclass

import pandas as pd
import pytest
import torch

from study import layout, runner
from study.grids import expand
from study.layout import SUPERSEDED
from study.resources import estimated_seconds, gpu_fraction, longest_first
from study.store import ResultStore
from trainables.config import make_config
from trainables.errors import StoreWriteError
from trainables.schema import RESULT_COLUMNS

CFG = make_config({"dataset": "digits", "latent": 8, "seed": 1})


@dataclass
class FakeTrial:
    config: dict
    trial_id: str = "tune_00000"  # Tune's own id: must never reach the store
    status: str = "RUNNING"
    num_failures: int = 3
    error_text: str | None = (  # what Tune's error.txt holds after three lost workers
        "Failure # 1 (occurred at 2026-11-25_17-15-39)\n"
        "The actor died unexpectedly before finishing this task.\n"
        "Failure # 3 (occurred at 2026-11-25_17-15-50)\nThe actor died: node lost.\n\tpid: 17428\n"
    )

    def get_error(self):
        return self.error_text


def callback(tmp_path, total=2):
    return runner.StoreCallback(
        ResultStore(tmp_path / "results.parquet"), total, grid="g", search="grid"
    )


def test_a_reported_row_lands_with_our_trial_id_and_leaves_tunes_result(tmp_path):
    row = dict.fromkeys(RESULT_COLUMNS)
    row.update(
        CFG.science(), trial_id=CFG.trial_id(), status="ok", fd_mvg=3.0, fd_gmm=2.0, wall_s=1.0
    )
    # with Tune's own keys, as Tune sends it
    result = {runner.ROW_KEY: row, runner.SCORE_KEY: 3.0, "trial_id": "tune_00000"}
    trial = FakeTrial({"trial": asdict(CFG)})
    callback(tmp_path).on_trial_result(0, [trial], trial, result)
    assert runner.ROW_KEY not in result  # Tune keeps only the small result
    stored = pd.read_parquet(tmp_path / "results.parquet").iloc[0]
    assert (stored.trial_id, stored.grid, stored.search, stored.replicate) == (
        CFG.trial_id(),
        "g",
        "grid",
        1,
    )


def test_a_worker_lost_for_good_becomes_a_failed_row(tmp_path):
    trial = FakeTrial({"trial": asdict(CFG)})
    tracker = callback(tmp_path)
    tracker.on_trial_error(0, [trial], trial)
    stored = pd.read_parquet(tmp_path / "results.parquet").iloc[0]
    assert (stored.trial_id, stored.status, stored.latent) == (CFG.trial_id(), "failed", 8)
    assert stored.error == "worker lost 3 times; last: The actor died: node lost."
    assert "Failure # 1" in stored.traceback
    assert tracker.failed == 1


def test_an_error_after_the_row_arrived_keeps_the_row(tmp_path):
    row = dict.fromkeys(RESULT_COLUMNS)
    row.update(CFG.science(), trial_id=CFG.trial_id(), status="ok", fd_mvg=3.0, wall_s=1.0)
    trial = FakeTrial({"trial": asdict(CFG)})
    tracker = callback(tmp_path)
    tracker.on_trial_result(0, [trial], trial, {runner.ROW_KEY: row, runner.SCORE_KEY: 3.0})
    tracker.on_trial_error(0, [trial], trial)
    assert pd.read_parquet(tmp_path / "results.parquet")["status"].tolist() == ["ok"]


def test_a_search_suggestion_overrides_the_curves_latent():
    assert runner.trial_overrides({"trial": asdict(CFG), "latent": 37})["latent"] == 37
    assert runner.trial_overrides({"trial": asdict(CFG)})["latent"] == 8


def test_gpu_shares_grow_with_the_model_and_ask_for_gpus_only_when_used():
    small = make_config({"dataset": "digits", "filters": 32})
    medium = make_config({"dataset": "digits", "filters": 128})
    large = make_config({"dataset": "digits", "filters": 256, "depth": 2})
    assert 0 < gpu_fraction(small) < gpu_fraction(medium) < gpu_fraction(large) == 1.0
    assert gpu_fraction(small.replace(depth=2)) == 2 * gpu_fraction(small)
    for dataset in ("cifar10", "celeba"):  # packed, a graphed trial trains no faster
        assert gpu_fraction(make_config({"dataset": dataset, "filters": 32})) == 1.0
    config = {"trial": asdict(small)}
    table = runner.trial_resources(runner.Resources(2, "table", None))(config)
    cpu_only = runner.trial_resources(runner.Resources(2, 0.0, None))(config)
    assert table.bundles == [{"CPU": 2, "GPU": gpu_fraction(small)}]
    assert cpu_only.bundles == [{"CPU": 2}]


def test_an_error_around_run_trial_becomes_a_failed_row_not_a_tune_retry(tmp_path, monkeypatch):
    """Tune retries whatever a trainable raises, so a deterministic error must come back as a row
    instead."""
    reported = []
    monkeypatch.setattr(runner.tune, "report", reported.append)
    monkeypatch.setattr(
        runner,
        "run_trial",
        lambda overrides, *rest: {}["a key a stale worker's code does not have"],
    )
    # returns, raises nothing
    runner.train_one({"trial": asdict(CFG)}, cpus=1, metric="fd_mvg", measured={})
    (result,) = reported
    assert math.isnan(result[runner.SCORE_KEY])
    trial = FakeTrial({"trial": asdict(CFG)})
    tracker = callback(tmp_path)
    # the driver completes the row from the trial's config
    tracker.on_trial_result(0, [trial], trial, result)
    stored = pd.read_parquet(tmp_path / "results.parquet").iloc[0]
    assert (stored.trial_id, stored.status, stored.latent, stored.grid) == (
        CFG.trial_id(),
        "failed",
        8,
        "g",
    )
    assert stored.error.startswith("KeyError: ") and "in <lambda>" in stored.traceback
    assert tracker.failed == 1


def test_a_row_no_column_can_hold_is_stored_as_failed_and_the_next_row_lands(tmp_path):
    """A value too big for int64 in one row: that trial is a failed row naming the column, and the
    launch goes on storing the others (it used to die in the callback, losing them)."""
    other = make_config({"dataset": "digits", "latent": 16, "seed": 1})
    tracker = callback(tmp_path)
    for cfg, extra in ((CFG, {"n_reference": 2**70}), (other, {})):
        row = dict.fromkeys(RESULT_COLUMNS)
        row.update(cfg.science(), trial_id=cfg.trial_id(), status="ok", fd_mvg=3.0, wall_s=1.0)
        trial = FakeTrial({"trial": asdict(cfg)})
        result = {runner.ROW_KEY: {**row, **extra}, runner.SCORE_KEY: 3.0}
        tracker.on_trial_result(0, [trial], trial, result)
    stored = pd.read_parquet(tmp_path / "results.parquet").set_index("latent")
    assert stored.loc[8, "status"] == "failed" and stored.loc[16, "status"] == "ok"
    assert stored.loc[8, "error"].startswith("the row could not be stored: n_reference: Overflow")
    assert (tracker.failed, tracker.ok) == (1, 1)


def test_a_store_that_refuses_a_write_stops_the_launch_past_tunes_error_handling(tmp_path):
    """Tune turns an Exception from a callback into a TuneError with two tracebacks; the store's
    error must reach the launcher as it is (study/launch.py then exits 3)."""
    tracker = callback(tmp_path)
    trial = FakeTrial({"trial": asdict(CFG)})
    tracker.on_trial_error(0, [trial], trial)  # a failed row, that a rerun will supersede
    (tmp_path / "results.parquet" / SUPERSEDED).write_text("a file where the folder belongs")
    with pytest.raises(runner.Abort) as stop:
        tracker.on_trial_error(0, [trial], FakeTrial({"trial": asdict(CFG)}, trial_id="t2"))
    assert not isinstance(stop.value, Exception)  # Tune's `except Exception` cannot catch it
    assert isinstance(stop.value.error, StoreWriteError)
    assert str(tmp_path / "results.parquet" / SUPERSEDED) in str(stop.value.error)
    assert not list((tmp_path / "results.parquet").glob(".tmp-*"))


def test_ray_tunes_own_state_failing_to_write_is_a_store_write_error(tmp_path, monkeypatch):
    """Tune keeps its state in the store's _tune/, and a full or read-only disk may trip Tune
    before the next row: that too is the store's error, naming it (study/launch.py exits 3)."""
    store = ResultStore(tmp_path / "results.parquet")
    (store.path / layout.TUNE).write_text("a file where the folder belongs")
    # with_parameters puts its values in Ray's object store: not needed to get as far as Tune's
    monkeypatch.setattr(runner.tune, "with_parameters", lambda trainable, **values: trainable)
    with pytest.raises(StoreWriteError, match=f"results store {store.path} \\(_tune/\\): .*Not a"):
        runner.run_grid(store, "g", [CFG], runner.Resources(1, 0.0, None))
    assert not runner.ray.is_initialized()


def test_the_longest_trials_start_first(tmp_path, monkeypatch):
    """Estimated cost grows with the dataset's images and pixels, the filters, the depth and the
    epochs; equal estimates keep the grid's order, and Tune is handed the grid in that order."""
    small = make_config({"filters": 32})
    assert estimated_seconds(small) < estimated_seconds(small.replace(filters=64))
    assert estimated_seconds(small) < estimated_seconds(small.replace(depth=2))
    assert estimated_seconds(small) < estimated_seconds(small.replace(epochs=200))
    assert estimated_seconds(small) < estimated_seconds(small.replace(dataset="celeba"))
    table1 = expand("table1")
    ordered = longest_first(table1)
    costs = [estimated_seconds(cfg) for cfg in ordered]
    assert costs == sorted(costs, reverse=True) and sorted(ordered, key=table1.index) == table1
    assert (ordered[0].dataset, ordered[0].filters, ordered[0].latent) == ("celeba", 128, 16)
    assert ordered[-1].filters == 32 and ordered[-1].dataset == "cifar10"

    handed = []
    monkeypatch.setattr(runner, "_fit", lambda store, cb, res, space, **kw: handed.append(space))
    store = ResultStore(tmp_path / "results.parquet")
    runner.run_grid(store, "g", table1[::-1], runner.Resources(1, 0.0, None))
    grid = handed[0]["trial"]["grid_search"]
    assert [make_config(trial) for trial in grid] == longest_first(table1[::-1])


def test_a_trial_given_a_gpu_without_working_cuda_fails_instead_of_training_on_the_cpu(
    monkeypatch,
):
    """As on a node whose NVIDIA driver is older than torch's CUDA build: Ray gave the trial a GPU,
    torch finds no CUDA. The row says so; nothing trains."""
    reported = []
    monkeypatch.setattr(runner.tune, "report", reported.append)
    monkeypatch.setattr(runner.ray, "is_initialized", lambda: True)  # as in a Ray worker
    monkeypatch.setattr(runner.ray, "get_gpu_ids", lambda: ["0"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    runner.train_one({"trial": asdict(CFG)}, cpus=1, metric="fd_mvg", measured={})
    (result,) = reported
    row = result[runner.ROW_KEY]
    assert (row["status"], row["train_s"]) == ("failed", None)
    assert math.isnan(result[runner.SCORE_KEY])  # what Optuna's searcher skips
    assert row["error"].startswith("RuntimeError: device 'cuda' was asked for but CUDA is not")
    assert "does not fall back to the CPU" in row["error"]


def test_only_a_trial_given_a_gpu_is_held_to_cuda():
    auto = {"latent": 8}
    assert runner.on_given_gpu(auto, ["0"])["device"] == "cuda"
    assert runner.on_given_gpu(auto, []) == auto  # CPU trials keep auto
    for explicit in ("cpu", "cuda:0"):  # what the user asked for stands
        assert runner.on_given_gpu({"device": explicit}, ["0"])["device"] == explicit


def search_suggestions(tmp_path, monkeypatch, seed: int, n: int = 8) -> list[int]:
    """The latents the launcher's Optuna search would try first on a curve of seed `seed` (empty
    store, nothing measured): its searcher, caught on its way to Tune, asked n times."""
    caught = {}
    monkeypatch.setattr(runner, "_fit", lambda *args, **kwargs: caught.update(kwargs))
    curve = [CFG.replace(latent=latent, seed=seed) for latent in (4, 8, 16, 32, 64)]
    store = ResultStore(tmp_path / f"results-{seed}-{len(list(tmp_path.iterdir()))}.parquet")
    runner._run_search(store, "g", curve, runner.Resources(1, 0.0, None), n, "fd_mvg", None)
    searcher = caught["search_alg"]
    return [searcher.suggest(f"trial-{i}")["latent"] for i in range(n)]


def test_the_optuna_search_is_seeded_by_the_replicate(tmp_path, monkeypatch):
    """Two searches of one curve and seed try the same latents in the same order; another seed
    tries others (eight draws over 4..64 coinciding by chance is vanishingly unlikely)."""
    first = search_suggestions(tmp_path, monkeypatch, seed=0)
    assert all(4 <= latent <= 64 for latent in first)
    assert search_suggestions(tmp_path, monkeypatch, seed=0) == first
    assert search_suggestions(tmp_path, monkeypatch, seed=1) != first
