"""What only a GPU can check, in seconds a test: `pytest -m gpu` on a machine with CUDA (skipped
elsewhere). The graphed training step against the eager one, bf16 training, torch.compile inside
the graph, the torch GMM on CUDA against scikit-learn, scoring on the device against the CPU, and
the trainer and a whole trial on CUDA.

The tests whose capture fails on purpose come last: a failed capture is the one thing here that
could leave the process's CUDA state behind for the tests after it.
"""

import math

import numpy as np
import pytest
import torch
from fixtures import TINY_DIGITS

from benchmarks.gmm import warped_codes
from trainables import features, frechet, priors
from trainables.config import make_config
from trainables.cuda_graph import EagerStep, GraphedStep, adam, batch_loss, training_step
from trainables.models import build_model
from trainables.scored_sets import SCORED_SETS
from trainables.train import train
from trainables.trial import run_trial

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CUDA = torch.device("cuda", 0)
TINY = {"filters": 8, "latent": 8, "batch_size": 16}
N_IMAGES = 72  # four batches of 16 and a last one of 8: two graphs
LRS = (1e-3, 2e-4, 1e-3)  # one epoch each: the rate changes between replays of the same graphs


def setup(overrides: dict, bf16: bool = False, channels_last: bool = False):
    """A tiny model, the trainer's optimizer and loss, and resident uint8 CIFAR-shaped images;
    the same seed gives the same model and images (and a fresh CUDA generator) every call."""
    cfg = make_config({**TINY, **overrides})
    torch.manual_seed(cfg.seed)
    images = (torch.rand(N_IMAGES, 3, 32, 32) * 255).to(torch.uint8).to(CUDA)
    model = build_model(cfg).to(CUDA)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = adam([p for p in model.parameters() if p.requires_grad], LRS[0], fused=True)
    loss_of = batch_loss(model, cfg.beta if cfg.model == "vae" else 0.0, bf16, cfg.bce_reduction)
    return model, optimizer, loss_of, images


def train_epochs(step, lrs=LRS) -> list[float]:
    """The trainer's loop: a permutation drawn on the device each epoch, one loss per epoch."""
    generator = torch.Generator(device=CUDA).manual_seed(0)
    losses = []
    for lr in lrs:
        step.set_lr(lr)
        for indices in torch.randperm(N_IMAGES, device=CUDA, generator=generator).split(16):
            step.run(indices)
        losses.append(step.epoch_loss())
    return losses


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), f"{name}: max |diff| {(x.double() - y.double()).abs().max()}"


@pytest.fixture
def deterministic(monkeypatch):
    """cuDNN's deterministic algorithms, chosen without timing them: both runs then use the same
    kernels. Autotuning could time its way to different algorithms in the two runs, and with them
    another summation order, which is not what these tests are about."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"model": "vae"},
        {"noise_std": 0.5, "latent_norm": "bn"},
        {"latent_norm": "sn", "freeze_latent": True},
        {"latent_norm": "ln", "depth": 2},
    ],
)
def test_graphed_step_trains_exactly_as_the_eager_step(overrides, deterministic):
    """fp32: a replay runs the kernels the eager step runs, on the same batches and the same noise
    (the same generator offsets), so losses, parameters and buffers agree bitwise, across changes of
    the learning rate and both graphs (full and last partial batch)."""
    model, optimizer, loss_of, images = setup(overrides)
    eager_losses = train_epochs(EagerStep(model, optimizer, loss_of, images))
    graphed_model, optimizer, loss_of, images = setup(overrides)
    graphed = GraphedStep(graphed_model, optimizer, loss_of, images, TINY["batch_size"])
    assert sorted(graphed.graphs) == [8, 16]
    assert train_epochs(graphed) == eager_losses
    assert_same_state(graphed_model, model)


def test_learning_rate_changes_without_recapture_and_batch_norm_statistics_move():
    model, optimizer, loss_of, images = setup({})
    step = GraphedStep(model, optimizer, loss_of, images, TINY["batch_size"])
    graphs = dict(step.graphs)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    means = [norm.running_mean.clone() for norm in norms]
    weights = [p.detach().clone() for p in model.parameters()]
    decoder_weight = model.decoder.linear.weight.detach().clone()
    batch = torch.arange(16, device=CUDA)

    step.set_lr(0.0)
    step.run(batch)
    for p, before in zip(model.parameters(), weights, strict=True):
        assert torch.equal(p, before)  # Adam at rate 0 moves nothing
    for norm, before in zip(norms, means, strict=True):
        assert norm.num_batches_tracked.item() == 1 and not torch.equal(norm.running_mean, before)

    step.set_lr(1e-3)
    step.run(batch)
    assert not torch.equal(model.decoder.linear.weight, decoder_weight)
    assert all(norm.num_batches_tracked.item() == 2 for norm in norms)
    assert all(step.graphs[length] is graph for length, graph in graphs.items())


@pytest.mark.parametrize(
    "overrides, noisy", [({"model": "vae"}, True), ({"noise_std": 0.5}, True), ({}, False)]
)
def test_each_replay_draws_fresh_noise(overrides, noisy, deterministic):
    """At rate 0 the weights stay and batch norm trains on the batch's own statistics, so replays
    on one batch (deterministic kernels) give one loss, unless each replay draws new noise."""
    model, optimizer, loss_of, images = setup(overrides)
    step = GraphedStep(model, optimizer, loss_of, images, TINY["batch_size"])
    step.set_lr(0.0)
    losses = set()
    for _ in range(3):
        step.run(torch.arange(16, device=CUDA))
        losses.add(step.epoch_loss())
    assert len(losses) == (3 if noisy else 1)


@pytest.mark.parametrize("overrides", [{}, {"model": "vae"}])
def test_bf16_graphed_training_is_finite_and_close_to_fp32(overrides, monkeypatch):
    """The trainer's CUDA settings: bf16 autocast, channels_last, cuDNN autotuning. Autocast
    changes the numerics, not the training: within 2% of fp32, as on CPU (tests/test_train.py)."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    losses = {}
    for bf16 in (False, True):
        model, optimizer, loss_of, images = setup(overrides, bf16=bf16, channels_last=True)
        step = GraphedStep(model, optimizer, loss_of, images, TINY["batch_size"])
        losses[bf16] = train_epochs(step)
    assert all(math.isfinite(loss) for loss in losses[True])
    assert losses[True] != losses[False]  # autocast really ran
    assert losses[True] == pytest.approx(losses[False], rel=0.02)


def test_torch_gmm_on_cuda_is_scikit_learns_fit():
    """Same k-means start, the same EM in float64 on the GPU: only the summation order differs from
    scikit-learn (1e-16 relative an operation), so the fits agree to 1e-9, as on CPU
    (tests/test_priors.py, on the same codes)."""
    codes = warped_codes(6000, 8)
    train, held_out = codes[:4000], codes[4000:]
    ref = priors.fit_gmm(train, components=5, seed=0, backend="sklearn")
    fit = priors.fit_gmm(train, components=5, seed=0, backend="torch", device=CUDA)
    assert fit.backend == "torch" and fit.converged and fit.n_iter == ref.n_iter > 10
    assert fit.model.score(held_out) == pytest.approx(ref.model.score(held_out), rel=1e-9)
    np.testing.assert_allclose(fit.model.weights_, ref.model.weights_, atol=1e-9)
    np.testing.assert_allclose(fit.model.covariances_, ref.model.covariances_, atol=1e-9)


def test_scoring_on_the_gpu_agrees_with_the_cpu():
    """The same random-weight Inception in true fp32 on both (no TF32): features differ only in
    summation order, ~1e-6 relative; the distance, a smooth function of their statistics, to 1e-3.
    (TF32, which rounds every convolution's inputs to 10 bits, moved a distance by 3.5e-4.) On the
    GPU both sets go through the network in one call, each padded to a batch of 250 images."""
    pytest.importorskip("pytorch_fid")
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(50, 3, 32, 32, generator=generator)
    generated = torch.rand(50, 3, 32, 32, generator=generator).sqrt()  # brighter
    sets = {"uint8": (generated[:30] * 255).round().to(torch.uint8), "float": generated[30:]}
    on_cpu = features.get_extractor("inception-fid", "cpu", "", random_weights=True)
    on_gpu = features.get_extractor("inception-fid", CUDA, "", random_weights=True)
    assert not on_gpu.tf32
    ref_stats = frechet.gaussian_stats(on_cpu.features(reference))
    cpu_distance = features.score(generated, on_cpu, ref_stats)
    gpu_distance = features.score(generated.to(CUDA), on_gpu, ref_stats)
    assert cpu_distance > 0 and gpu_distance == pytest.approx(cpu_distance, rel=1e-3)
    on_device = {name: images.to(CUDA) for name, images in sets.items()}
    gpu_distances = features.score_sets(on_device, on_gpu, ref_stats)
    for name, images in sets.items():
        cpu_distance = features.score(images, on_cpu, ref_stats)
        assert gpu_distances[name] == pytest.approx(cpu_distance, rel=1e-3), name
    features.clear_extractors()


def train_each(cfg, variants: dict) -> dict:
    """key -> train()'s result for cfg with that key's overrides, each from the same seed, model
    and images."""
    results = {}
    for key, overrides in variants.items():
        torch.manual_seed(cfg.seed)
        images = (torch.rand(N_IMAGES, 3, 32, 32) * 255).to(torch.uint8).to(CUDA)
        model = build_model(cfg).to(CUDA)
        results[key] = train(model, images, cfg.replace(**overrides))
    return results


def test_the_trainer_on_cuda_runs_graphed_steps_and_says_so(deterministic):
    """train() itself: with cuda_graph (the default) every step of the fast loop is a graph replay,
    without it eager, and the result records which. In fp32 the two train alike; not bitwise, as
    the trainer autotunes cuDNN (other kernels, other summation orders: ~1e-6 relative a step),
    which twelve steps of a tiny model do not grow to 1e-3."""
    cfg = make_config({**TINY, "epochs": 3, "device": "cuda", "precision": "fp32"})
    results = train_each(cfg, {graph: {"cuda_graph": graph} for graph in (True, False)})
    assert (results[True].train_step, results[True].train_step_error) == ("graph", None)
    assert (results[False].train_step, results[False].train_step_error) == ("eager", None)
    assert results[True].losses == pytest.approx(results[False].losses, rel=1e-3)


def test_compiled_forward_and_loss_are_captured_in_the_graph(deterministic):
    """compile=True on CUDA: torch.compile's real backend (inductor) builds the forward and loss,
    and the CUDA graph captures its kernels with the rest of the step. Inductor fuses other
    kernels (other summation orders, ~1e-6 relative a step), so in fp32 the losses agree with the
    eager, uncompiled trainer's to 1e-3, as graphed and eager do above."""
    cfg = make_config({**TINY, "epochs": 2, "device": "cuda", "precision": "fp32"})
    variants = {
        compiled: {"compile": compiled, "cuda_graph": compiled} for compiled in (True, False)
    }
    results = train_each(cfg, variants)
    assert results[True].compiled and results[True].train_step == "graph"
    assert results[True].train_step_error is None
    assert all(math.isfinite(loss) for loss in results[True].losses)
    assert results[True].losses == pytest.approx(results[False].losses, rel=1e-3)
    torch.compiler.reset()


def test_a_trial_on_cuda_records_its_graphed_steps_and_tf32_scores(digits_cache):
    """run_trial on CUDA end to end, digits scored in an untrained digits-cnn's features (the
    same features on both sides is all a score needs here)."""
    config = {**TINY_DIGITS, "device": "cuda", "cache_dir": str(digits_cache)}
    for tf32 in (False, True):
        row = run_trial({**config, "score_tf32": tf32})
        assert row["status"] == "ok", row["traceback"]
        assert (row["train_step"], row["train_step_error"], row["score_tf32"]) == (
            "graph",
            None,
            tf32,
        )
        assert row["precision"] == "bf16" and row["device"].startswith("cuda")
        assert all(math.isfinite(row[f"fd_{name}"]) for name in SCORED_SETS)
    features.clear_extractors()


class Interrupted(Exception):
    """A lost worker, raised from train's per-epoch callback."""


def test_graphed_training_interrupted_on_cuda_resumes_from_its_checkpoint(tmp_path):
    """The checkpoint restores Adam's state, the parameters and every generator (the CUDA one for
    the noise, the epoch order's on the device) before the graphs are captured, so the resumed
    epochs train as the uninterrupted ones did. Not bitwise: the trainer autotunes cuDNN in each
    run (other kernels, ~1e-6 relative a step), which a few steps of a tiny model keep far below
    1e-3; a resume from a fresh Adam or another batch order would move the loss by more."""
    cfg = make_config(
        {
            **TINY,
            "model": "vae",  # its sampling draws on the CUDA generator
            "epochs": 4,
            "device": "cuda",
            "precision": "fp32",
            "checkpoint_every": 2,
            "checkpoint_dir": str(tmp_path),
        }
    )

    def run(cfg, on_epoch=None):
        torch.manual_seed(cfg.seed)
        images = (torch.rand(N_IMAGES, 3, 32, 32) * 255).to(torch.uint8).to(CUDA)
        return train(build_model(cfg).to(CUDA), images, cfg, on_epoch)

    def lost_after_epoch_3(done, loss):
        if done == 3:
            raise Interrupted

    uninterrupted = run(cfg.replace(checkpoint_every=0))
    with pytest.raises(Interrupted):
        run(cfg, lost_after_epoch_3)
    resumed = run(cfg)
    assert (resumed.train_step, resumed.resumed_from_epoch) == ("graph", 2)
    assert resumed.losses[:2] == uninterrupted.losses[:2]  # read back from the checkpoint
    assert resumed.losses == pytest.approx(uninterrupted.losses, rel=1e-3)


def with_a_host_sync(loss_of):
    def loss_checked_on_the_host(x):
        loss = loss_of(x)
        if not torch.isfinite(loss):  # bool() of a CUDA tensor waits for the GPU
            raise FloatingPointError("non-finite loss")
        return loss

    return loss_checked_on_the_host


def with_a_stream_query(loss_of):
    def loss_after_a_query(x):
        torch.cuda.current_stream().query()  # fine eagerly; a capture cannot hold it
        return loss_of(x)

    return loss_after_a_query


@pytest.mark.parametrize(
    "breaks_capture, error",
    [(with_a_host_sync, "synchroniz"), (with_a_stream_query, "captur")],
)
def test_a_step_that_cannot_be_captured_trains_eagerly_as_if_never_tried(
    breaks_capture, error, deterministic
):
    """A host sync is caught in the last warm-up step, before capture; a stream query breaks the
    capture itself. Either way the eager step then trains exactly as a step never graphed (a VAE:
    its noise too), and CUDA is left usable: the caller's stream is current, the allocator is out of
    capture mode (empty_cache would trip its assert), and the next model captures."""
    model, optimizer, loss_of, images = setup({"model": "vae"})
    eager_losses = train_epochs(EagerStep(model, optimizer, loss_of, images))
    fallback_model, optimizer, loss_of, images = setup({"model": "vae"})
    with pytest.warns(UserWarning, match="training eagerly"):
        step = training_step(
            fallback_model, optimizer, breaks_capture(loss_of), images, TINY["batch_size"], True
        )
    assert step.kind == "eager" and error in step.fallback_error.lower(), step.fallback_error
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    assert train_epochs(step) == eager_losses
    assert_same_state(fallback_model, model)
    torch.cuda.empty_cache()
    next_model, optimizer, loss_of, images = setup({"model": "vae"})
    assert training_step(next_model, optimizer, loss_of, images, 16, True).kind == "graph"
