"""Mid-trial checkpoints, data handed to trials, and per-epoch reports, in-process (seconds each).

The launched versions (a worker SIGKILLed and retried by Ray, a worker node lost and restarted)
are in tests/test_cluster_resume.py.
"""

import math
import warnings
from dataclasses import asdict
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from fixtures import TIMING
from ray.tune.search.optuna import OptunaSearch

from study import launch, runner
from study.grids import SMOKE_BASE
from study.layout import live_parts
from trainables import checkpoints, data, trial
from trainables.config import make_config
from trainables.trial import run_trial

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the trials here are tiny
# Columns that differ between two runs of the same trial whatever they compute: times, and whether
# the trial resumed.
PER_RUN = {*TIMING, "resumed_from_epoch"}


class Interrupted(Exception):
    """Stands in for a lost worker: raised from the per-epoch callback after a checkpoint."""


@pytest.fixture
def config(tmp_path, untrained_digits_cnn):
    """A tiny digits trial of 4 epochs with a checkpoint every 2, an untrained digits-cnn cached
    (the scores here judge equality, not quality)."""
    untrained_digits_cnn(tmp_path)
    return {
        **SMOKE_BASE,
        "epochs": 4,
        "decoder_width": "8f",
        "n_samples": 50,
        "gmm_components": 2,
        "cache_dir": str(tmp_path),
        "checkpoint_every": 2,
        "checkpoint_dir": str(tmp_path / "checkpoints"),
    }


@pytest.fixture(scope="module")
def digits():
    """A fifth of digits, handed to run_trial as the launcher hands datasets over: a second of
    training instead of five."""
    full = data.load_for_config(make_config({"dataset": "digits"}))
    return data.Dataset("digits", full.train[:256], full.test[:128])


def interrupt_after(epochs: int):
    def on_epoch(done: int, loss: float) -> None:
        if done == epochs:
            raise Interrupted(f"lost after epoch {done}")

    return on_epoch


def same_result(row: dict, reference: dict) -> bool:
    """Every column equal but the per-run ones: the restored state is bit for bit the saved one,
    and on one device with one thread the remaining epochs repeat the same float operations, so
    the loss history and the scores are equal exactly, not just close."""
    return {k: v for k, v in row.items() if k not in PER_RUN} == {
        k: v for k, v in reference.items() if k not in PER_RUN
    }


@pytest.mark.parametrize("where", ["folder", "fsspec"])
def test_a_trial_interrupted_mid_training_resumes_and_ends_with_the_uninterrupted_row(
    config, digits, where
):
    if where == "fsspec":  # a protocol pyarrow lacks, through fsspec: the way to any filesystem
        config = {**config, "checkpoint_dir": "memory://dae-study-test/checkpoints"}
    uninterrupted = run_trial({**config, "checkpoint_every": 0}, digits)
    assert uninterrupted["status"] == "ok" and uninterrupted["resumed_from_epoch"] is None

    lost = run_trial(config, digits, on_epoch=interrupt_after(3))
    assert lost["status"] == "failed" and "lost after epoch 3" in lost["error"]
    saved = checkpoints.for_config(make_config(config)).load()
    assert len(saved["losses"]) == 2  # the one from epoch 2; epoch 3's work is lost

    reported = []
    resumed = run_trial(config, digits, on_epoch=lambda done, loss: reported.append((done, loss)))
    assert resumed["status"] == "ok" and resumed["resumed_from_epoch"] == 2
    assert reported == list(enumerate(uninterrupted["loss_history"], 1))[2:]
    assert same_result(resumed, uninterrupted)


def test_a_trial_lost_while_scoring_resumes_without_training_again(config, digits):
    """The last epoch is checkpointed too, so a worker lost after training keeps its training."""
    first = run_trial(config, digits)
    assert first["status"] == "ok"
    store = checkpoints.for_config(make_config(config))
    assert len(store.load()["losses"]) == 4  # still there: the launcher removes it, not the trial
    again = run_trial(config, digits)
    assert again["resumed_from_epoch"] == 4 and same_result(again, first)
    store.remove()
    assert store.load() is None


def test_an_unusable_checkpoint_is_ignored_with_a_warning_and_the_trial_starts_over(config, digits):
    cfg = make_config(config)
    store = checkpoints.for_config(cfg)
    reference = run_trial({**config, "checkpoint_every": 0}, digits)
    run_trial(config, digits, on_epoch=interrupt_after(3))
    good = store.load()
    for name, broken in {
        "truncated": lambda path: path.write_bytes(path.read_bytes()[:100]),
        "from another kind of device": lambda path: torch.save(
            {**good, "device_type": "cuda"}, path
        ),
    }.items():
        path = make_config(config).checkpoint_dir + f"/{cfg.trial_id()}.pt"
        broken(Path(path))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            row = run_trial(config, digits)
        assert row["resumed_from_epoch"] is None, name
        assert any("checkpoint" in str(w.message) for w in caught), name
        assert same_result(row, reference), name


def test_a_trial_given_its_images_reads_no_data_root(config, digits, monkeypatch):
    """What the launcher hands over through Ray's object store: uint8 arrays, copied out of the
    store's read-only memory."""
    reference = run_trial({**config, "checkpoint_every": 0}, digits)

    def no_disk(cfg):
        raise AssertionError("the trial read its data root")

    monkeypatch.setattr(trial, "load_for_config", no_disk)
    train, test = digits.train.numpy().copy(), digits.test.numpy().copy()
    train.flags.writeable = test.flags.writeable = False  # as ray.get gives them
    given = data.from_arrays("digits", train, test)
    row = run_trial({**config, "checkpoint_every": 0, "data_root": "/nowhere"}, given)
    assert same_result(row, reference)
    given.train.add_(0)  # a copy: writable, unlike the store's memory
    wrong = run_trial(config, data.Dataset("cifar10", given.train, given.test))
    assert wrong["status"] == "failed" and "not of digits" in wrong["error"]


def test_each_epoch_is_reported_to_tune_and_the_row_comes_last(config, digits, monkeypatch):
    reported = []
    monkeypatch.setattr(runner.tune, "report", reported.append)
    monkeypatch.setattr(runner.ray, "get", lambda ref: ref)  # the "object store" holds the arrays
    cfg = make_config({**config, "epochs": 2})
    shared = {data.source(cfg): (digits.train.numpy(), digits.test.numpy())}
    runner.train_one({"trial": asdict(cfg)}, 1, "fd_mvg", {}, shared)
    *epochs, final = reported
    assert [(r[runner.EPOCH_KEY], r[runner.LOSS_KEY]) for r in epochs] == list(
        enumerate(final[runner.ROW_KEY]["loss_history"], 1)
    )
    assert all(math.isnan(r[runner.SCORE_KEY]) and runner.ROW_KEY not in r for r in epochs)
    assert final[runner.SCORE_KEY] == final[runner.ROW_KEY]["fd_mvg"]


def test_optunas_searcher_takes_every_report_a_failed_trials_too(monkeypatch):
    """Each epoch's report and a failed trial's last one carry a NaN score (None made Optuna raise
    inside Tune's loop, ending the launch); the failed trial gives the search no value."""
    reported = []
    monkeypatch.setattr(runner.tune, "report", reported.append)

    def fails_after_an_epoch(overrides, images, on_epoch):
        on_epoch(1, 0.5)
        raise RuntimeError("a worker whose code differs from the driver's")

    monkeypatch.setattr(runner, "run_trial", fails_after_an_epoch)
    cfg = make_config(SMOKE_BASE)
    runner.train_one({"trial": asdict(cfg), "latent": 8}, 1, "fd_mvg", {})
    space = {"latent": optuna.distributions.IntDistribution(4, 16, log=True)}
    searcher = OptunaSearch(space=space, metric=runner.SCORE_KEY, mode="min", seed=0)
    searcher.suggest("t")
    for iteration, result in enumerate(reported, 1):
        searcher.on_trial_result("t", {**result, "training_iteration": iteration})
    searcher.on_trial_complete("t", reported[-1])
    (trial_,) = searcher._ot_study.trials
    assert trial_.values is None and trial_.state != optuna.trial.TrialState.COMPLETE


def test_the_store_callback_skips_epoch_reports_and_removes_a_finished_trials_checkpoint(
    config, tmp_path
):
    from test_runner import FakeTrial

    tracker = runner.StoreCallback(
        runner.ResultStore(tmp_path / "results.parquet"), 3, grid="g", search="grid"
    )
    for status in ("failed", "ok"):
        cfg = make_config({**config, "latent": 8 if status == "ok" else 4})
        store = checkpoints.for_config(cfg)
        store.save({"any": "state"})
        trial_ = FakeTrial({"trial": asdict(cfg)})
        epoch = {runner.EPOCH_KEY: 1, runner.LOSS_KEY: 0.5, runner.SCORE_KEY: math.nan}
        before = len(live_parts(tmp_path / "results.parquet"))
        tracker.on_trial_result(0, [trial_], trial_, epoch)
        assert len(live_parts(tmp_path / "results.parquet")) == before
        row = {**trial.new_row(cfg), "status": status, "error": "x", "fd_mvg": 1.0, "wall_s": 1}
        tracker.on_trial_result(0, [trial_], trial_, {runner.ROW_KEY: row, runner.SCORE_KEY: 1})
        # a failed row keeps it: the relaunch that reruns the trial resumes from it
        assert (store.load() is None) == (status == "ok")
    assert sorted(pd.read_parquet(tmp_path / "results.parquet")["status"]) == ["failed", "ok"]


def test_the_launcher_puts_checkpoints_in_the_store_or_where_it_is_told(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = launch._plan(launch._parse_args(["--grid", "smoke", "--results", "r"]))
    assert {cfg.checkpoint_dir for cfg in plan} == {str(tmp_path / "r" / "_checkpoints")}
    for given, expected in (("ck", str(tmp_path / "ck")), ("memory://b/p", "memory://b/p")):
        args = launch._parse_args(["--grid", "smoke", "--checkpoint-dir", given])
        assert {cfg.checkpoint_dir for cfg in launch._plan(args)} == {expected}
    with pytest.raises(ValueError, match="nosuchfs://b"):
        launch._plan(launch._parse_args(["--grid", "smoke", "--checkpoint-dir", "nosuchfs://b"]))
