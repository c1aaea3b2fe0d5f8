"""benchmarks/: the parts of the scripts that are bookkeeping, not timing (each script prints its
figures when run: `python -m benchmarks.<name>`). packing's recommendation and its concurrent
trials on CPU; table1_cost's trials that share a timed model, and a trial's seconds from the
measured pieces; scoring's check for a scipy on which pytorch-fid's distance cannot run."""

import pytest
import torch

from benchmarks import packing
from benchmarks.scoring import sqrtm_failure
from benchmarks.table1_cost import Measured, model_key
from benchmarks.train_step import StepTiming
from study.grids import expand
from trainables.config import make_config
from trainables.scored_sets import SCORED_SETS

# --------------------------------------------------------------------------- packing


def test_packing_recommends_the_smallest_share_near_the_best_rate():
    measured = {1: (100.0, 1.0), 2: (180.0, 1.0), 4: (196.0, 1.0), 8: (200.0, 1.0)}
    measured = {k: {"images_per_s": rate, "peak_gib": gib} for k, (rate, gib) in measured.items()}
    assert packing.recommend(measured, memory_gib=None) == 4  # 196 is within 5% of 200; 180 is not
    assert packing.recommend(measured, memory_gib=4 * (1.0 + packing.EVAL_RESERVE_GIB)) == 4
    assert (
        packing.recommend(measured, memory_gib=2 * (1.0 + packing.EVAL_RESERVE_GIB)) == 2
    )  # 4 would not fit
    assert packing.recommend(measured, memory_gib=1.0) == 1  # nothing fits: one trial per card


def test_packing_runs_concurrent_trials_on_cpu():
    size = {"images": 48, "epochs": 2}  # the first epoch is not counted
    result = packing.measure(filters=4, processes=2, size=size, device=torch.device("cpu"))
    assert result["images_per_s"] > 0 and result["peak_gib"] == 0.0 and result["ran_as"] == "eager"


# --------------------------------------------------------------------------- table1_cost


def test_table1_has_24_models_whatever_the_latent_size_and_amount_of_noise():
    models = {}
    for cfg in expand("table1"):
        models.setdefault(model_key(cfg), []).append(cfg)
    assert len(models) == 24  # CIFAR-10: 4 widths x DAE/VAE + 10 ablations; CelebA: 6
    noisy = [trials for key, trials in models.items() if key[6]]
    assert len(noisy) == 1 and {cfg.noise_std for cfg in noisy[0]} == {0.1, 0.5, 1.0}
    assert len(models[model_key(make_config({"filters": 32}))]) == 17  # the full latent sweep


def test_a_trials_seconds_follow_from_the_measurements():
    cifar10, celeba = make_config({"latent": 520}), make_config({"dataset": "celeba"})
    measured = Measured(
        steps={model_key(cfg): StepTiming("graph", None, 2.0, 0.01) for cfg in (cifar10, celeba)},
        timed_latent={},
        eval_s={model_key(cfg): 1e-4 for cfg in (cifar10, celeba)},
        score_s=1e-3,
        score_label="",
        gmm_s={16: 1.0, 1024: 11.0},
        gmm_codes=50_000,
    )
    seconds = measured.trial_seconds(cifar10)
    assert seconds["train"] == pytest.approx(2.0 + 100 * 391 * 0.01)  # 50,000 = 390 x 128 + 80
    sets = len(SCORED_SETS)  # Train R, Test R, N(0,I), MVG, GMM, Interp
    assert seconds["encode"] == pytest.approx((50_000 + 10_000 + sets * 10_000) * 1e-4)
    assert seconds["score"] == pytest.approx(sets * 10_000 * 1e-3)
    assert seconds["prior"] == pytest.approx(6.0)  # halfway from 16 to 1024
    celeba_prior = measured.trial_seconds(celeba)["prior"]
    assert celeba_prior == pytest.approx((1.0 + 10 * 112 / 1008) * 162_770 / 50_000)


# --------------------------------------------------------------------------- scoring


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_the_scoring_benchmark_knows_when_pytorch_fids_distance_cannot_run(monkeypatch):
    """scipy 1.18 removed sqrtm's `disp`, which pytorch-fid 0.3.0 passes: benchmarks/scoring.py
    then times pytorch-fid's features alone instead of crashing."""
    import scipy.linalg

    sqrtm = scipy.linalg.sqrtm
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda matrix: sqrtm(matrix))  # as scipy 1.18
    assert "disp" in sqrtm_failure() and "fails on scipy" in sqrtm_failure()
