"""study/resources.py: how much of a GPU a trial asks Ray for, which trials start first (as the
runner hands them to Tune), and where compiling pays: the rule with known numbers, the launcher's
--compile (its dry run lists the trials that compile), and where a compiling trial keeps Inductor's
cache."""

import os
from dataclasses import asdict

import pytest
import torch

from study import launch, resources, runner
from study.grids import expand
from study.resources import (
    CompileCost,
    compile_pays,
    estimated_seconds,
    expected_compile_s,
    gpu_fraction,
    longest_first,
    model_key,
)
from study.store import ResultStore
from trainables import train
from trainables.config import make_config
from trainables.models import build_model

CIFAR10_F128 = make_config({"filters": 128})  # 100 epochs x 391 batches: 39,100 steps
# saves 39.1 s over a trial's steps; compiling costs 40 s with the cache empty, 4 s with it warm
COST = CompileCost({"filters": 128}, saving_s=1e-3, first_s=40.0, cached_s=4.0, source="a test")


@pytest.fixture
def measured(monkeypatch):
    """COMPILE_COSTS holding COST alone."""
    monkeypatch.setattr(resources, "COMPILE_COSTS", (COST,))


def test_a_trials_share_of_compiling_counts_one_empty_cache_per_node():
    assert expected_compile_s(COST, trials=10, nodes=2) == pytest.approx((2 * 40 + 8 * 4) / 10)
    assert expected_compile_s(COST, trials=1, nodes=1) == 40.0
    assert expected_compile_s(COST, trials=3, nodes=5) == 40.0  # more nodes than trials
    assert expected_compile_s(COST, trials=10, nodes=None) == 40.0  # a cluster: any node may be new
    uncached = CompileCost({"filters": 128}, 1e-3, 40.0, None, "a test")
    assert expected_compile_s(uncached, trials=10, nodes=1) == 40.0


def test_a_trial_compiles_where_its_steps_save_more_than_its_share_of_compiling(measured):
    assert resources.training_steps(CIFAR10_F128) == 39_100
    assert compile_pays([CIFAR10_F128], nodes=1) == [False]  # 39.1 s saved < 40 s
    assert compile_pays([CIFAR10_F128] * 2, nodes=1) == [True, True]  # < (40 + 4) / 2
    assert compile_pays([CIFAR10_F128] * 2, nodes=None) == [False, False]
    longer = CIFAR10_F128.replace(epochs=103)  # 40,273 steps: 40.3 s saved
    assert compile_pays([longer], nodes=1) == [True]


def test_only_a_measured_model_with_graphed_steps_on_a_gpu_compiles(measured):
    others = [
        CIFAR10_F128.replace(latent=512),  # the latent size: the same model
        CIFAR10_F128.replace(model="vae"),
        CIFAR10_F128.replace(decoder_width="8f"),
        CIFAR10_F128.replace(cuda_graph=False),
        CIFAR10_F128.replace(device="cpu"),
        CIFAR10_F128.replace(train_loop="plain"),
    ]
    assert compile_pays([CIFAR10_F128] * 4 + others, nodes=1) == [True] * 5 + [False] * 5


def test_every_measured_cost_is_a_model_of_its_own_and_says_where_it_came_from():
    keys = [model_key(make_config(cost.model)) for cost in resources.COMPILE_COSTS]
    assert len(set(keys)) == len(keys)
    for cost in resources.COMPILE_COSTS:
        assert cost.source and cost.first_s > 0 and (cost.cached_s or 0) >= 0


def test_the_model_key_ignores_the_latent_size_and_the_noises_amount():
    assert model_key(CIFAR10_F128) == model_key(CIFAR10_F128.replace(latent=16))
    noisy = [CIFAR10_F128.replace(noise_std=std) for std in (0.1, 1.0)]
    assert model_key(noisy[0]) == model_key(noisy[1]) != model_key(CIFAR10_F128)
    assert len({model_key(cfg) for cfg in expand("table1")}) == 24


def dry_run(capsys, tmp_path, *args: str) -> str:
    argv = ["--grid", "digits", "--dry-run", "--results", str(tmp_path / "r"), *args]
    assert launch.main(argv) == 0
    return capsys.readouterr().out


@pytest.fixture
def a_gpu(monkeypatch, tmp_path):
    """A machine with one GPU, as far as the launcher asks; digits DAEs measured to pay."""
    monkeypatch.setenv("DAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    digits = {"dataset": "digits", "filters": 8, "batch_size": 32}  # the digits grid's DAEs
    pays = CompileCost(digits, saving_s=1.0, first_s=1.0, cached_s=None, source="a test")
    monkeypatch.setattr(resources, "COMPILE_COSTS", (pays,))


def test_the_dry_run_lists_the_trials_that_compile(a_gpu, capsys, tmp_path):
    out = dry_run(capsys, tmp_path)
    assert "torch.compile (--compile auto): 4 of 8 trials" in out
    assert "digits dae f8 d1" in out.split("torch.compile")[1]
    assert "digits vae" not in out.split("torch.compile")[1]  # no measurement: not compiled
    assert "torch.compile (--compile off): 0 of 8 trials" in dry_run(
        capsys, tmp_path, *["--compile", "off"]
    )
    assert "torch.compile (--compile on): 8 of 8 trials" in dry_run(
        capsys, tmp_path, *["--compile", "on"]
    )


def test_auto_compiles_nothing_without_a_gpu_for_the_trials(a_gpu, capsys, tmp_path, monkeypatch):
    no_share = dry_run(capsys, tmp_path, "--gpus-per-trial", "0")
    assert "torch.compile (--compile auto): 0 of 8 trials" in no_share
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert "torch.compile (--compile auto): 0 of 8 trials" in dry_run(capsys, tmp_path)


def test_compile_is_set_by_the_flag_not_by_set(capsys, tmp_path):
    argv = ["--grid", "digits", "--dry-run", "--set", "compile=true"]
    assert launch.main(argv + ["--results", str(tmp_path / "r")]) == 2
    assert "--compile auto|on|off decides it" in capsys.readouterr().err


def test_a_compiling_trial_keeps_inductors_cache_in_its_cache_folder(monkeypatch, tmp_path):
    """Inductor reads TORCHINDUCTOR_CACHE_DIR when it compiles: it must name the trial's cache
    folder by then (benchmarks/compile_cost.py, run by tests/test_gpu_check.py, compiles for real
    and counts the files it leaves there)."""
    seen = []

    def record(fn, **options):
        seen.append(os.environ["TORCHINDUCTOR_CACHE_DIR"])
        return fn

    monkeypatch.setattr(torch, "compile", record)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    cfg = make_config(
        {"dataset": "digits", "filters": 4, "latent": 4, "batch_size": 8, "compile": True}
        | {"device": "cpu", "cache_dir": str(tmp_path / "node")}
    )
    images = torch.zeros(16, 1, 32, 32, dtype=torch.uint8)
    train.prepare(build_model(cfg), images, cfg)
    assert seen == [str(tmp_path / "node" / train.INDUCTOR_CACHE)]


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
