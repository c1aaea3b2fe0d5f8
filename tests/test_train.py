"""trainables/train.py and its step (trainables/cuda_graph.py) on CPU: the paper's schedule; the
trainer's loss, seeds, reductions and precisions; the trainer built on cuda_graph trains as the
trainer before it did, op for op, whatever cuda_graph says, and `restored` puts a model and its
optimizer back exactly (the graphed step is tested in test_gpu.py); and the fast trial path
computes what the plain one does. On CPU in fp32 the same ops in the same order give bitwise-equal
results, so most of these compare exactly.

The fast path's check: on CPU in fp32 the fast loop (uint8 data resident, on-device permutation)
and the plain loop (Dataset -> DataLoader -> copy per batch) feed bitwise-identical batches to the
same step, so training is identical; the torch GMM starts from scikit-learn's own k-means and runs
the same EM in float64, which differs only in summation order (~1e-15 relative). The scores must
therefore agree to TOLERANCE = 1e-9 relative, a million times tighter than any real change
(another seed moves them by percent).
"""

import contextlib
import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from fixtures import TIMING, TINY, TINY_DIGITS

from trainables.config import make_config
from trainables.cuda_graph import (
    EagerStep,
    adam,
    batch_lengths,
    batch_loss,
    restored,
    training_step,
)
from trainables.models import build_model, reconstruction_loss
from trainables.schema import RESULT_COLUMNS
from trainables.train import learning_rate, prepare, train
from trainables.trial import run_trial

TOLERANCE = 1e-9
HOW_IT_RAN = {"train_loop", "gmm_backend"}  # the fast and the plain trial differ here on purpose


def tiny_setup(n_images: int, **overrides):
    """The tiny config, n_images CIFAR-shaped uint8 images and its model, all seeded alike."""
    cfg = make_config({**TINY, **overrides})
    torch.manual_seed(cfg.seed)
    images = (torch.rand(n_images, 3, 32, 32) * 255).to(torch.uint8)
    return cfg, images, build_model(cfg)


def tiny_run(n_images=64, **overrides):
    cfg, images, model = tiny_setup(n_images, **overrides)
    return model, train(model, images, cfg)


# --------------------------------------------------------------------------- the schedule


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


# --------------------------------------------------------------------------- the trainer


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
    assert len(fast.epoch_seconds) == TINY["epochs"] and fast.compiled is False


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


# --------------------------------------------------------------------------- its step


def make_step(model, cfg, images, graph=False):
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = adam(trainable, learning_rate(0, cfg.epochs, cfg.lr), fused=False)
    beta = cfg.beta if cfg.model == "vae" else 0.0
    loss_of = batch_loss(model, beta, bf16=False, bce_reduction=cfg.bce_reduction)
    return training_step(model, optimizer, loss_of, images, cfg.batch_size, graph)


def train_with(step, cfg, n_images: int) -> list[float]:
    """train.train's loop: the seeded permutation each epoch, the schedule, one loss per epoch."""
    generator = torch.Generator().manual_seed(cfg.seed)
    losses = []
    for epoch in range(cfg.epochs):
        step.set_lr(learning_rate(epoch, cfg.epochs, cfg.lr))
        for indices in torch.randperm(n_images, generator=generator).split(cfg.batch_size):
            step.run(indices)
        losses.append(step.epoch_loss())
    return losses


def train_as_before(model, images: torch.Tensor, cfg) -> list[float]:
    """The fast loop as train.train ran it before it trained through cuda_graph, written out in
    plain PyTorch: Keras' Adam, the schedule, the seeded permutation, batches gathered and scaled,
    the forward in fp32, summed-pixel BCE (+ beta * KL) averaged over the batch."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=learning_rate(0, cfg.epochs, cfg.lr), eps=1e-7)
    beta = cfg.beta if cfg.model == "vae" else 0.0
    generator = torch.Generator().manual_seed(cfg.seed)
    losses = []
    model.train()
    for epoch in range(cfg.epochs):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(epoch, cfg.epochs, cfg.lr)
        total = torch.zeros(())
        seen = 0
        for batch in torch.randperm(len(images), generator=generator).split(cfg.batch_size):
            if len(batch) < 2:
                continue
            x = images[batch].float().div_(255)
            logits, kl = model(x)
            loss = (reconstruction_loss(logits, x) + beta * kl.float()).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(x)
            seen += len(x)
        losses.append((total / seen).item())
    return losses


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("cuda_graph", [True, False])
@pytest.mark.parametrize(
    "overrides, n_images",  # 40: a last batch of 8 images; 33: of 1, which is skipped
    [
        ({}, 40),
        ({"model": "vae"}, 33),
        ({"noise_std": 0.5, "latent_norm": "bn"}, 40),
        ({"latent_norm": "sn", "freeze_latent": True}, 40),
    ],
)
def test_the_trainer_trains_as_it_did_before_the_cuda_graph(overrides, n_images, cuda_graph):
    """On CPU cuda_graph changes nothing: the steps run eagerly, and the row says so."""
    cfg, images, reference = tiny_setup(n_images, **overrides)
    expected = train_as_before(reference, images, cfg)
    cfg, images, model = tiny_setup(n_images, **overrides, cuda_graph=cuda_graph)
    result = train(model, images, cfg)
    assert (result.train_step, result.train_step_error) == ("eager", None)
    assert result.losses == expected
    assert_same_state(model, reference)


def test_the_trainers_loop_is_the_eager_step_driven_by_hand():
    """What test_gpu.py drives the graphed step with (train_with) is the trainer's loop."""
    cfg, images, model = tiny_setup(40, model="vae")
    expected = train(model, images, cfg).losses
    cfg, images, stepped_model = tiny_setup(40, model="vae")
    assert train_with(make_step(stepped_model, cfg, images), cfg, 40) == expected
    assert_same_state(stepped_model, model)


def test_a_graph_asked_for_on_cpu_falls_back_to_the_eager_step():
    cfg, images, model = tiny_setup(40, model="vae")
    eager_losses = train_with(make_step(model, cfg, images), cfg, 40)
    cfg, images, fallback_model = tiny_setup(40, model="vae")
    with pytest.warns(UserWarning, match="training eagerly"):
        step = make_step(fallback_model, cfg, images, graph=True)
    assert step.kind == "eager" and "CUDA" in step.fallback_error
    assert train_with(step, cfg, 40) == eager_losses
    assert_same_state(fallback_model, model)


def test_float_batches_train_as_their_indices_do():
    """The DataLoader baseline hands the step float batches instead of indices."""
    cfg, images, model = tiny_setup(48)
    by_index = make_step(model, cfg, images)
    cfg, images, twin = tiny_setup(48)
    by_batch = make_step(twin, cfg, images=None)
    for indices in torch.randperm(48, generator=torch.Generator().manual_seed(1)).split(16):
        by_index.run(indices)
        by_batch.run(images[indices].float() / 255)
    assert by_index.epoch_loss() == by_batch.epoch_loss()
    assert_same_state(model, twin)


@pytest.mark.parametrize("raises", [False, True])
def test_restored_puts_model_optimizer_and_generator_back(raises):
    """A VAE: its noise, batch norm's running statistics and Adam's state all move inside."""
    cfg, images, model = tiny_setup(48, model="vae")
    step = make_step(model, cfg, images)
    batches = torch.arange(48).split(16)
    step.run(batches[0])  # Adam's state exists before the snapshot
    twin, twin_optimizer = copy.deepcopy((model, step.optimizer))
    rng = torch.get_rng_state()

    with pytest.raises(RuntimeError, match="inside") if raises else contextlib.nullcontext():
        with restored(model, step.optimizer):
            for batch in batches:
                step.run(batch)
            assert not torch.equal(model.decoder.linear.weight, twin.decoder.linear.weight)
            if raises:
                raise RuntimeError("inside")

    for batch in batches[1:3]:
        step.run(batch)
    torch.set_rng_state(rng)
    twin_step = EagerStep(
        twin, twin_optimizer, batch_loss(twin, cfg.beta, False, cfg.bce_reduction), images
    )
    for batch in batches[1:3]:
        twin_step.run(batch)
    assert_same_state(model, twin)


def test_restored_leaves_a_fresh_optimizer_fresh():
    """What the graphed step relies on: warm-up steps on a new Adam, then restored, train exactly
    as a new Adam does (its lazily made state starts at zero)."""
    cfg, images, model = tiny_setup(48, latent_norm="bn")
    twin = copy.deepcopy(model)
    step = make_step(model, cfg, images)
    with restored(model, step.optimizer):
        for batch in torch.arange(48).split(16):
            step.run(batch)
    twin_step = make_step(twin, cfg, images)
    for s in (step, twin_step):
        s.run(torch.arange(16, 32))
    assert_same_state(model, twin)
    for state, twin_state in zip(
        step.optimizer.state.values(), twin_step.optimizer.state.values(), strict=True
    ):
        for key, value in state.items():
            assert torch.equal(value, twin_state[key]), key


def test_set_lr_changes_a_tensor_learning_rate_in_place():
    """A captured Adam step reads the learning rate's address: it must stay the same tensor."""
    cfg, images, model = tiny_setup(16)
    optimizer = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.1))
    step = EagerStep(model, optimizer, batch_loss(model, 0.0, False, "sum"), images)
    lr = optimizer.param_groups[0]["lr"]
    step.set_lr(0.5)
    assert optimizer.param_groups[0]["lr"] is lr and lr.item() == 0.5
    plain = make_step(model, cfg, images)
    plain.set_lr(0.25)
    assert plain.optimizer.param_groups[0]["lr"] == 0.25


@pytest.mark.parametrize(
    "n_images, expected",
    [
        (72, [16, 16, 16, 16, 8]),
        (66, [16, 16, 16, 16, 2]),  # the smallest batch that batch norm trains on
        (65, [16, 16, 16, 16]),
        (64, [16] * 4),
        (10, [10]),
        (2, [2]),
        (1, []),
    ],
)
def test_batch_lengths_keep_the_last_partial_batch_unless_it_is_one_image(n_images, expected):
    assert batch_lengths(n_images, 16) == expected


# --------------------------------------------------------------------------- the fast trial path


@pytest.mark.usefixtures("one_torch_thread")
def test_fast_trial_matches_the_plain_trial(digits_cache):
    """Both trials score in the features of one seeded, untrained digits-cnn: the comparison needs
    the same features on both sides, not good ones, and training it would triple the test's time."""
    config = {**TINY_DIGITS, "cache_dir": str(digits_cache)}
    fast = run_trial({**config, "gmm_backend": "torch"})  # what auto picks on CUDA
    plain = run_trial({**config, "train_loop": "plain", "gmm_backend": "sklearn"})
    assert fast["status"] == plain["status"] == "ok", fast["traceback"] or plain["traceback"]
    assert (fast["train_loop"], fast["gmm_backend"], plain["train_loop"], plain["gmm_backend"]) == (
        "fast",
        "torch",
        "plain",
        "sklearn",
    )
    assert (
        fast["precision"] == plain["precision"] == "fp32"
        and fast["compiled"] is plain["compiled"] is False
    )
    assert fast["gmm_n_iter"] > 1 and math.isfinite(fast["fd_gmm"])
    for column in set(RESULT_COLUMNS) - TIMING - HOW_IT_RAN:
        if isinstance(plain[column], float):
            assert fast[column] == pytest.approx(plain[column], rel=TOLERANCE, abs=1e-12), column
        else:
            assert fast[column] == plain[column], column
