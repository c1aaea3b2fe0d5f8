import math

import pytest
import torch

from trainables.config import make_config
from trainables.models import build_model
from trainables.train import learning_rate, train


@pytest.mark.parametrize(
    "epoch, expected",
    [(0, 1e-4), (1, 1e-3), (32, 1e-3), (33, 1e-4), (65, 1e-4), (66, 1e-5), (99, 1e-5)],
)
def test_paper_schedule_at_its_boundaries(epoch, expected):
    assert learning_rate(epoch, 100, 1e-3) == pytest.approx(expected)


def test_schedule_scales_with_shorter_runs():
    assert [learning_rate(e, 10, 1e-3) for e in range(10)] == pytest.approx(
        [1e-4, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-5, 1e-5, 1e-5]
    )


def tiny_run(**overrides):
    cfg = make_config({"filters": 4, "latent": 4, "batch_size": 16, "epochs": 3, **overrides})
    torch.manual_seed(cfg.seed)
    images = (torch.rand(64, 3, 32, 32) * 255).to(torch.uint8)
    model = build_model(cfg)
    return model, train(model, images, cfg)


def test_loss_decreases_and_is_recorded_per_epoch():
    _, result = tiny_run(epochs=4)
    assert len(result.losses) == 4 and result.diverged_epoch is None
    assert result.losses[-1] < result.losses[0]
    assert result.seconds > 0


def test_same_seed_same_losses():
    assert tiny_run()[1].losses == tiny_run()[1].losses
    assert tiny_run()[1].losses != tiny_run(seed=1)[1].losses


def test_non_finite_loss_stops_training():
    _, result = tiny_run(lr=1e30, epochs=5)
    assert result.diverged_epoch is not None
    assert not math.isfinite(result.losses[-1])
    assert len(result.losses) == result.diverged_epoch + 1


def test_vae_trains():
    _, result = tiny_run(model="vae")
    assert all(math.isfinite(v) for v in result.losses)
