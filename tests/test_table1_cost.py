"""benchmarks/table1_cost.py's bookkeeping: which trials share a timed model, and a trial's seconds
from the measured pieces (no timing here; `python -m benchmarks.table1_cost` runs the rest)."""

import pytest

from benchmarks.table1_cost import Measured, model_key  # noqa: E402
from benchmarks.train_step import StepTiming  # noqa: E402
from study.grids import expand
from trainables.config import make_config
from trainables.scored_sets import SCORED_SETS


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
