"""study/resources.py: how much of a GPU a trial asks Ray for, and which trials start first, as the
runner hands them to Tune."""

from dataclasses import asdict

from study import runner
from study.grids import expand
from study.resources import estimated_seconds, gpu_fraction, longest_first
from study.store import ResultStore
from trainables.config import make_config


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
