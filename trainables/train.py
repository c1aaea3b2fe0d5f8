"""The paper's training protocol as one plain function of (model, images, config).

Two batch sources feed one optimisation step (trainables/cuda_graph.py; config `train_loop`):
- fast (default): the whole training set lives on the training device as uint8 (channels_last on
  CUDA); each epoch draws one permutation on that device, and the step gathers each batch's
  indices from the resident images and scales them to [0,1] on the fly: no DataLoader, no host
  copy. On CUDA the whole step (gather, forward, loss, backward, fused Adam) is captured once as a
  CUDA graph and replayed (config `cuda_graph`, on by default; eager where the capture fails, and
  the result says why), and cuDNN autotunes its kernels for the fixed batch shapes.
- plain: the loop it is measured against (benchmarks/throughput.py) and checked equal to
  (tests/test_train.py): a torchvision-style Dataset and DataLoader on the host, one
  host-to-device copy per batch, default layout, fed the same permutation as the fast loop, and
  the step run eagerly.
Both sync the loss to the host once per epoch. `precision` (part of the trial's identity) picks
bf16 autocast or fp32 for the forward, on CUDA or CPU alike; the loss is always computed in fp32
from the logits. `compile` wraps forward + loss in torch.compile (inside the graph, where there is
one).
"""

import functools
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from trainables import checkpoints
from trainables.config import TrialConfig
from trainables.cuda_graph import EagerStep, adam, batch_loss, training_step
from trainables.models import AutoEncoder

WARMUP_EPOCHS = 1
INDUCTOR_CACHE = "inductor"  # under the cache folder (config cache_dir): each node keeps its own
PLAIN_CUDA_WORKERS = 4  # the plain loop done right on a GPU node: worker processes, pinned memory

# One call = one epoch's shuffled batches: indices into the resident images (fast loop), or the
# float images themselves (plain loop); the step takes either.
Batches = Callable[[], Iterator[torch.Tensor]]


@dataclass
class TrainResult:
    losses: list[float]  # mean training loss (BCE + beta*KL) per epoch
    diverged_epoch: int | None  # first epoch whose loss was not finite
    seconds: float
    setup_seconds: float  # building the step: its warm-up and graph capture (compiling, if asked)
    epoch_seconds: list[float]  # per epoch; the first also holds cuDNN autotuning
    compiled: bool
    train_step: str  # "graph" (each step one CUDA graph replay) or "eager"
    train_step_error: str | None  # why a graph was asked for and not used
    resumed_from_epoch: int | None  # epochs the checkpoint it started from had done; None: none


@dataclass
class Training:
    """What `train` builds before its first epoch; benchmarks/train_step.py times its steps."""

    step: EagerStep
    batches: Batches
    generator: torch.Generator  # of each epoch's permutation: a checkpoint saves its state


def learning_rate(epoch: int, epochs: int, peak: float) -> float:
    """Paper: a warm-up epoch at peak/10, then peak, /10 from 33% and /100 from 66% of training."""
    if epoch < WARMUP_EPOCHS:
        return peak / 10
    if 100 * epoch < 33 * epochs:
        return peak
    if 100 * epoch < 66 * epochs:
        return peak / 10
    return peak / 100


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    model: AutoEncoder,
    images: torch.Tensor,
    cfg: TrialConfig,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Adam on BCE (+ beta*KL for a VAE), batch-averaged, on the model's device; from the trial's
    latest checkpoint where it has one, saving one every cfg.checkpoint_every epochs.

    on_epoch(epochs done, that epoch's loss): after each epoch (the launcher reports it to Tune).
    """
    start = time.perf_counter()
    device = next(model.parameters()).device
    checkpoint = checkpoints.for_config(cfg)  # None: this trial saves none
    saved = _resumable(checkpoint.load() if checkpoint else None, cfg, device)
    if saved is not None:
        model.load_state_dict(saved["model"])
        _set_global_rng(saved["rng"], device)
    training = prepare(model, images, cfg, saved)
    setup_seconds = time.perf_counter() - start
    step = training.step
    losses: list[float] = list(saved["losses"]) if saved else []
    epoch_seconds: list[float] = []
    try:
        for epoch in range(len(losses), cfg.epochs):
            epoch_start = time.perf_counter()
            step.set_lr(learning_rate(epoch, cfg.epochs, cfg.lr))
            for batch in training.batches():
                step.run(batch)
            losses.append(step.epoch_loss())  # one host sync per epoch
            epoch_seconds.append(time.perf_counter() - epoch_start)
            finite = math.isfinite(losses[-1])
            if finite and checkpoint and _checkpoint_due(len(losses), cfg):
                checkpoint.save(_snapshot(model, training, losses, cfg, device))
            if on_epoch is not None:
                on_epoch(len(losses), losses[-1])
            if not finite:
                break
    finally:
        step.close()  # frees the graphs' memory before evaluation

    diverged = None if math.isfinite(losses[-1]) else len(losses) - 1
    return TrainResult(
        losses,
        diverged,
        time.perf_counter() - start,
        setup_seconds,
        epoch_seconds,
        cfg.compile,
        step.kind,
        step.fallback_error,
        len(saved["losses"]) if saved else None,
    )


def prepare(
    model: AutoEncoder, images: torch.Tensor, cfg: TrialConfig, saved: dict | None = None
) -> Training:
    """cfg's batch source and optimisation step for `model` on its device, ready to train; with
    the optimiser's state and the epoch order's generator from the checkpoint `saved`, restored
    before any CUDA graph captures them."""
    device = next(model.parameters()).device
    fast_cuda = device.type == "cuda" and cfg.train_loop == "fast"
    if device.type == "cuda":  # process-wide: autotune conv kernels for the fixed batch shapes
        torch.backends.cudnn.benchmark = fast_cuda
    batches, resident, generator = _batch_source(model, images, cfg)
    if saved is not None:
        generator.set_state(saved["rng"]["epochs"])
    optimizer_state = saved["optimizer"] if saved else None
    step = _make_step(model, cfg, resident, fast_cuda, optimizer_state)
    return Training(step, batches, generator)


def _make_step(
    model: AutoEncoder,
    cfg: TrialConfig,
    resident: torch.Tensor | None,
    fast_cuda: bool,
    optimizer_state: dict | None = None,
) -> EagerStep:
    """One Adam step on the paper's objective (cuda_graph.batch_loss, the only definition of it):
    on the fast loop on CUDA, fused Adam and, if cfg.cuda_graph, one CUDA graph per batch length.

    resident: the uint8 training images on the device that the step gathers batches from (fast
    loop), or None when the batches arrive as float images (plain loop).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adam(params, learning_rate(0, cfg.epochs, cfg.lr), fused=fast_cuda)
    if optimizer_state is not None:  # the state only: the groups keep this Adam's settings
        groups = optimizer.state_dict()["param_groups"]
        optimizer.load_state_dict({"state": optimizer_state["state"], "param_groups": groups})
    beta = cfg.beta if cfg.model == "vae" else 0.0
    loss_of = batch_loss(model, beta, cfg.precision == "bf16", cfg.bce_reduction)
    if cfg.compile:  # Inductor reads its cache folder from the environment at each compilation
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cfg.cache_path / INDUCTOR_CACHE)
        torch.compiler.reset()  # a worker runs many trials: old graphs would fill dynamo's cache
        loss_of = torch.compile(loss_of, dynamic=False)  # one graph per batch length
    graph = fast_cuda and cfg.cuda_graph
    return training_step(model, optimizer, loss_of, resident, cfg.batch_size, graph)


def _batch_source(
    model: AutoEncoder, images: torch.Tensor, cfg: TrialConfig
) -> tuple[Batches, torch.Tensor | None, torch.Generator]:
    """The fast or the plain loop (config train_loop), the images the step gathers from (fast
    loop only), and the seeded generator both draw each epoch's permutation from."""
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    if cfg.train_loop == "plain":
        workers = PLAIN_CUDA_WORKERS if cuda else 0
        loader = DataLoader(
            _HostImages(images),
            batch_size=cfg.batch_size,
            sampler=_EpochPermutation(len(images), generator),
            num_workers=workers,
            pin_memory=cuda,
            persistent_workers=workers > 0,
        )
        return functools.partial(_loader_batches, loader, device), None, generator
    images = images.to(device)
    if cuda:
        model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    batches = functools.partial(_index_batches, len(images), cfg.batch_size, generator)
    return batches, images, generator


def _permutation(n: int, generator: torch.Generator) -> torch.Tensor:
    """One epoch's order, on the generator's device: both loops draw it here, so batches match."""
    return torch.randperm(n, device=generator.device, generator=generator)


def _index_batches(n: int, batch_size: int, generator: torch.Generator):
    """Fast loop: one epoch's shuffled indices, a batch at a time; the step gathers the images."""
    yield from _permutation(n, generator).split(batch_size)


class _HostImages(Dataset):
    """Plain loop: a torchvision-style dataset of one float image in [0,1] at a time (ToTensor)."""

    def __init__(self, images: torch.Tensor):
        self.images = images.cpu()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index].float().div(255)


class _EpochPermutation(Sampler):
    def __init__(self, n: int, generator: torch.Generator):
        self.n = n
        self.generator = generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(_permutation(self.n, self.generator).tolist())


def _loader_batches(loader: DataLoader, device: torch.device):
    for x in loader:
        yield x.to(device, non_blocking=True)


# ----------------------------------------------------------------------------- checkpoints
# A checkpoint is the state at the end of an epoch that the next epochs depend on: the model's
# parameters and buffers, Adam's state, the losses so far (their count is the position in the
# learning-rate schedule), and every random generator training draws from (the global CPU, CUDA,
# numpy and Python ones, and the epoch order's). Restored, the remaining epochs run exactly as they
# would have without the interruption, on the same kind of device.


def _checkpoint_due(epochs_done: int, cfg: TrialConfig) -> bool:
    """Every checkpoint_every epochs, and after the last: a worker lost while scoring then
    resumes without training again."""
    return epochs_done % cfg.checkpoint_every == 0 or epochs_done == cfg.epochs


def _snapshot(
    model: AutoEncoder,
    training: Training,
    losses: list[float],
    cfg: TrialConfig,
    device: torch.device,
) -> dict:
    numpy_state = np.random.get_state(legacy=False)
    rng = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy_key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
        "numpy_rest": [numpy_state["state"]["pos"], numpy_state["has_gauss"], numpy_state["gauss"]],
        "python": random.getstate(),
        "epochs": training.generator.get_state(),
    }
    return {
        "trial_id": cfg.trial_id(),
        "device_type": device.type,
        "losses": list(losses),
        "model": model.state_dict(),
        "optimizer": training.step.optimizer.state_dict(),
        "rng": rng,
    }


def _resumable(saved: dict | None, cfg: TrialConfig, device: torch.device) -> dict | None:
    """The checkpoint if this trial can go on from it. One made on another kind of device is
    not resumed (its generators' states do not transfer, and its numerics differ): the trial
    starts over, with a warning."""
    if saved is None:
        return None
    if saved["trial_id"] != cfg.trial_id() or not 0 < len(saved["losses"]) <= cfg.epochs:
        warnings.warn(f"ignoring a checkpoint that is not of trial {cfg.trial_id()}", stacklevel=2)
        return None
    if saved["device_type"] != device.type:
        warnings.warn(
            f"not resuming from the checkpoint made on {saved['device_type']}: this trial trains "
            f"on {device.type}, so it starts over",
            stacklevel=2,
        )
        return None
    return saved


def _set_global_rng(rng: dict, device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None:
        torch.cuda.set_rng_state(rng["cuda"], device)
    pos, has_gauss, gauss = rng["numpy_rest"]
    key = rng["numpy_key"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, pos, has_gauss, gauss))
    version, internal, gauss_next = rng["python"]
    random.setstate((version, tuple(internal), gauss_next))
