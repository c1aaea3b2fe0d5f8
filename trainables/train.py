"""The paper's training protocol as one plain function of (model, images, config).

Two batch sources feed one optimisation step (trainables/cuda_graph.py; config `train_loop`):
- fast (default): the whole training set lives on the training device as uint8 (channels_last on
  CUDA); each epoch draws one permutation on that device, and the step gathers each batch's
  indices from the resident images and scales them to [0,1] on the fly: no DataLoader, no host
  copy. On CUDA the whole step (gather, forward, loss, backward, fused Adam) is captured once as a
  CUDA graph and replayed (config `cuda_graph`, on by default; eager where the capture fails, and
  the result says why), and cuDNN autotunes its kernels for the fixed batch shapes.
- plain: the loop it is measured against (benchmarks/throughput.py) and checked equal to
  (tests/test_fastpath.py): a torchvision-style Dataset and DataLoader on the host, one
  host-to-device copy per batch, default layout, fed the same permutation as the fast loop, and
  the step run eagerly.
Both sync the loss to the host once per epoch. `precision` (part of the trial's identity) picks
bf16 autocast or fp32 for the forward, on CUDA or CPU alike; the loss is always computed in fp32
from the logits. `compile` wraps forward + loss in torch.compile (inside the graph, where there is
one).
"""

import functools
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from trainables.config import TrialConfig
from trainables.cuda_graph import EagerStep, adam, batch_loss, training_step
from trainables.models import AutoEncoder

WARMUP_EPOCHS = 1
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


@dataclass
class Training:
    """What `train` builds before its first epoch; benchmarks/train_step.py times its steps."""

    step: EagerStep
    batches: Batches


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


def train(model: AutoEncoder, images: torch.Tensor, cfg: TrialConfig) -> TrainResult:
    """Adam on BCE (+ beta*KL for a VAE), batch-averaged, on the model's device."""
    start = time.perf_counter()
    training = prepare(model, images, cfg)
    setup_seconds = time.perf_counter() - start
    step = training.step
    losses: list[float] = []
    epoch_seconds: list[float] = []
    try:
        for epoch in range(cfg.epochs):
            epoch_start = time.perf_counter()
            step.set_lr(learning_rate(epoch, cfg.epochs, cfg.lr))
            for batch in training.batches():
                step.run(batch)
            losses.append(step.epoch_loss())  # one host sync per epoch
            epoch_seconds.append(time.perf_counter() - epoch_start)
            if not math.isfinite(losses[-1]):
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
    )


def prepare(model: AutoEncoder, images: torch.Tensor, cfg: TrialConfig) -> Training:
    """cfg's batch source and optimisation step for `model` on its device, ready to train."""
    device = next(model.parameters()).device
    fast_cuda = device.type == "cuda" and cfg.train_loop == "fast"
    if device.type == "cuda":  # process-wide: autotune conv kernels for the fixed batch shapes
        torch.backends.cudnn.benchmark = fast_cuda
    batches, resident = _batch_source(model, images, cfg)
    return Training(_make_step(model, cfg, resident, fast_cuda), batches)


def _make_step(
    model: AutoEncoder,
    cfg: TrialConfig,
    resident: torch.Tensor | None,
    fast_cuda: bool,
) -> EagerStep:
    """One Adam step on the paper's objective (cuda_graph.batch_loss, the only definition of it):
    on the fast loop on CUDA, fused Adam and, if cfg.cuda_graph, one CUDA graph per batch length.

    resident: the uint8 training images on the device that the step gathers batches from (fast
    loop), or None when the batches arrive as float images (plain loop).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adam(params, learning_rate(0, cfg.epochs, cfg.lr), fused=fast_cuda)
    beta = cfg.beta if cfg.model == "vae" else 0.0
    loss_of = batch_loss(model, beta, cfg.precision == "bf16", cfg.bce_reduction)
    if cfg.compile:
        torch.compiler.reset()  # a worker runs many trials: old graphs would fill dynamo's cache
        loss_of = torch.compile(loss_of, dynamic=False)  # one graph per batch length
    graph = fast_cuda and cfg.cuda_graph
    return training_step(model, optimizer, loss_of, resident, cfg.batch_size, graph)


def _batch_source(
    model: AutoEncoder, images: torch.Tensor, cfg: TrialConfig
) -> tuple[Batches, torch.Tensor | None]:
    """The fast or the plain loop (config train_loop), and the images the step gathers from (fast
    loop only); both draw a seeded permutation per epoch."""
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
        return functools.partial(_loader_batches, loader, device), None
    images = images.to(device)
    if cuda:
        model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    return functools.partial(_index_batches, len(images), cfg.batch_size, generator), images


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
