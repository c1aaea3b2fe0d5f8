import functools
import math

import pytest
import torch
import torch.nn.functional as F

from trainables.config import make_config
from trainables.cuda_graph import EagerStep
from trainables.models import build_model
from trainables.train import learning_rate, prepare, train


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


# CIFAR-10-shaped; fp32 and an 8x8x8f decoder start (not the defaults) keep it seconds on a CPU
TINY = {
    "filters": 4,
    "latent": 4,
    "batch_size": 16,
    "epochs": 3,
    "precision": "fp32",
    "decoder_width": "8f",
}


def tiny_run(n_images=64, **overrides):
    cfg = make_config({**TINY, **overrides})
    torch.manual_seed(cfg.seed)
    images = (torch.rand(n_images, 3, 32, 32) * 255).to(torch.uint8)
    model = build_model(cfg)
    return model, train(model, images, cfg)


def test_loss_decreases_and_is_recorded_per_epoch():
    _, result = tiny_run(epochs=4)
    assert len(result.losses) == 4 and result.diverged_epoch is None
    assert result.losses[-1] < result.losses[0]
    assert 0 < result.setup_seconds < result.seconds
    assert (result.train_step, result.train_step_error) == ("eager", None)  # no CUDA graph on CPU


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


def test_plain_loop_sees_the_same_batches():
    """The DataLoader baseline draws the fast loop's permutation: on CPU in fp32 the runs are
    bitwise equal."""
    fast_model, fast = tiny_run()
    plain_model, plain = tiny_run(train_loop="plain")
    assert fast.losses == plain.losses
    for a, b in zip(
        fast_model.state_dict().values(), plain_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert len(fast.epoch_seconds) == 3 and fast.compiled is False


@pytest.mark.parametrize("reduction, pixels_per_unit", [("channel-mean", 3), ("mean", 3 * 32 * 32)])
def test_bce_reduction_divides_the_vaes_bce_and_nothing_else(reduction, pixels_per_unit):
    """A reduction that averages over k elements trains on (BCE_sum + k * beta * KL) / k: the loss
    of "sum" at beta * k, divided by k. Checked on the first epoch's loss, which one batch makes
    before any update: the same model and the same reparameterisation noise, so the two differ
    only by float32 rounding of a sum of ~3,000 terms (~1e-6 relative; allowed 1e-5)."""
    one_batch = {"n_images": 16, "epochs": 1, "model": "vae"}
    _, averaged = tiny_run(**one_batch, bce_reduction=reduction)
    _, summed = tiny_run(**one_batch, beta=0.01 * pixels_per_unit)
    assert averaged.losses[0] * pixels_per_unit == pytest.approx(summed.losses[0], rel=1e-5)
    _, plain = tiny_run(**one_batch)
    assert summed.losses[0] > plain.losses[0]  # the KL term is not negligible: the check can fail


def test_bf16_autocast_changes_numerics_not_the_training():
    """precision is an axis of the experiment: bf16 autocast runs on a CPU too (slowly)."""
    _, fp32 = tiny_run()
    _, bf16 = tiny_run(precision="bf16")
    assert bf16.losses != fp32.losses  # autocast really ran
    assert bf16.losses == pytest.approx(fp32.losses, rel=0.02)


def test_compiled_step_is_one_graph_per_batch_size(monkeypatch):
    """torch.compile through dynamo with a recording backend (inductor takes a minute on CPU)."""
    graphs = []

    def recording_backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    monkeypatch.setattr(
        torch, "compile", functools.partial(torch.compile, backend=recording_backend)
    )
    _, eager = tiny_run(n_images=72)  # batches of 16 and a last one of 8
    _, compiled = tiny_run(n_images=72, compile=True)
    assert compiled.compiled and len(graphs) == 2  # no graph breaks; forward + loss in one graph
    assert compiled.losses == pytest.approx(eager.losses, rel=1e-6)


def test_each_epoch_trains_at_the_scheduled_rate(monkeypatch):
    """The rate the optimizer holds at every step, read from its param_groups: the paper's schedule
    for 10 epochs (written out, as above), two steps an epoch."""
    seen = []
    run = EagerStep.run

    def recording_run(step, batch):
        seen.append(step.optimizer.param_groups[0]["lr"])
        run(step, batch)

    monkeypatch.setattr(EagerStep, "run", recording_run)
    tiny_run(n_images=32, epochs=10)
    schedule = [1e-4, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-5, 1e-5, 1e-5]
    assert seen == pytest.approx([rate for rate in schedule for _ in range(2)])


@pytest.mark.parametrize("model, beta", [("vae", 2.0), ("vae", 0.5), ("dae", 2.0)])
def test_the_trained_loss_is_bce_plus_beta_times_kl_for_a_vae_only(model, beta):
    """The step the trainer builds (train.prepare) minimises the batch mean of the summed BCE plus
    beta times the KL, computed here from the model's own outputs with the same reparameterisation
    noise (the same seed); a DAE ignores beta. Both sides sum the same float32 terms: 1e-6."""
    cfg = make_config({**TINY, "model": model, "beta": beta})
    torch.manual_seed(0)
    net = build_model(cfg)
    x = torch.rand(8, 3, 32, 32)
    loss_of = prepare(net, (x * 255).to(torch.uint8), cfg).step.loss_of
    torch.manual_seed(1)
    logits, kl = net(x)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=(1, 2, 3))
    weight = beta if model == "vae" else 0.0
    torch.manual_seed(1)
    assert loss_of(x).item() == pytest.approx((bce + weight * kl).mean().item(), rel=1e-6)
    if model == "vae":  # the KL term is 100x the tolerance: a wrong beta fails the check
        assert (beta * kl).mean().item() > 1e-4 * bce.mean().item()
