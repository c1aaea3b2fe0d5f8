"""trainables.cuda_graph on CPU: the trainer built on it trains as the trainer before it did, op
for op, whatever cuda_graph says, and `restored` puts a model and its optimizer back exactly. The
graphed step is tested in test_gpu.py.

On CPU in fp32 the same ops in the same order give bitwise-equal results, so these compare exactly.
"""

import contextlib
import copy

import pytest
import torch

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
from trainables.train import learning_rate, train

# fp32 and an 8x8x8f decoder start, not the CIFAR-10 defaults: seconds on a CPU
TINY = {
    "filters": 4,
    "latent": 4,
    "batch_size": 16,
    "epochs": 2,
    "precision": "fp32",
    "decoder_width": "8f",
}


def tiny_setup(n_images: int, **overrides):
    cfg = make_config({**TINY, **overrides})
    torch.manual_seed(cfg.seed)
    images = (torch.rand(n_images, 3, 32, 32) * 255).to(torch.uint8)
    return cfg, images, build_model(cfg)


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
