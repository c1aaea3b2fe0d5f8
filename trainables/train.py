"""The paper's training protocol as one plain function of (model, images, config).

Two batch sources feed one training step (config `train_loop`):
- fast (default): the whole training set lives on the training device as uint8 (channels_last on
  CUDA); each epoch draws one permutation on that device and scales each batch to [0,1] on the
  fly, so there is no DataLoader and no host copy. On CUDA cuDNN autotunes its kernels for the
  fixed batch shape and Adam is fused.
- plain: the loop it is measured against (benchmarks/throughput.py) and checked equal to
  (tests/test_fastpath.py): a torchvision-style Dataset and DataLoader on the host, one
  host-to-device copy per batch, default layout, fed the same permutation as the fast loop.
Both sync the loss to the host once per epoch. `precision` (part of the trial's identity) picks
bf16 autocast or fp32 for the forward, on CUDA or CPU alike; the loss is always computed in fp32
from the logits. `compile` wraps forward + loss in torch.compile.
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
from trainables.models import AutoEncoder, reconstruction_loss

WARMUP_EPOCHS = 1
PLAIN_CUDA_WORKERS = 4  # the plain loop done right on a GPU node: worker processes, pinned memory

Batches = Callable[[], Iterator[torch.Tensor]]  # one call = one epoch's shuffled batches
Step = Callable[[torch.Tensor], torch.Tensor]  # one optimisation step: batch -> its mean loss


@dataclass
class TrainResult:
    losses: list[float]  # mean training loss (BCE + beta*KL) per epoch
    diverged_epoch: int | None  # first epoch whose loss was not finite
    seconds: float
    epoch_seconds: list[float]  # per epoch; the first also holds compilation and cuDNN autotuning
    compiled: bool


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
    """Adam on per-image BCE (+ beta*KL for a VAE), batch-averaged, on the model's device."""
    start = time.perf_counter()
    device = next(model.parameters()).device
    fast_cuda = device.type == "cuda" and cfg.train_loop == "fast"
    if device.type == "cuda":  # process-wide: autotune conv kernels for the fixed batch shapes
        torch.backends.cudnn.benchmark = fast_cuda
    batches = _batch_source(model, images, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    lr = learning_rate(0, cfg.epochs, cfg.lr)
    optimizer = torch.optim.Adam(params, lr=lr, eps=1e-7, fused=fast_cuda)  # eps: Keras' epsilon
    step = _make_step(model, optimizer, cfg)

    losses: list[float] = []
    epoch_seconds: list[float] = []
    model.train()
    for epoch in range(cfg.epochs):
        epoch_start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(epoch, cfg.epochs, cfg.lr)
        total = torch.zeros((), device=device)
        seen = 0
        for x in batches():
            if len(x) < 2:  # batch norm cannot train on a single image
                continue
            total += step(x) * len(x)
            seen += len(x)
        losses.append((total / seen).item())  # one host sync per epoch
        epoch_seconds.append(time.perf_counter() - epoch_start)
        if not math.isfinite(losses[-1]):
            break

    diverged = None if math.isfinite(losses[-1]) else len(losses) - 1
    seconds = time.perf_counter() - start
    return TrainResult(losses, diverged, seconds, epoch_seconds, cfg.compile)


def _make_step(model: AutoEncoder, optimizer, cfg: TrialConfig) -> Step:
    """One Adam step on a batch of images in [0,1]: forward, fp32 loss, backward, update."""
    device_type = next(model.parameters()).device.type
    beta = cfg.beta if cfg.model == "vae" else 0.0

    def objective(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            logits, kl = model(x)
        recon = reconstruction_loss(logits, x, cfg.bce_reduction)  # fp32 from the logits
        return (recon + beta * kl.float()).mean()

    loss_of = objective
    if cfg.compile:
        torch.compiler.reset()  # a worker runs many trials: old graphs would fill dynamo's cache
        loss_of = torch.compile(objective, dynamic=False)  # one graph per batch size

    def step(x: torch.Tensor) -> torch.Tensor:
        loss = loss_of(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def _batch_source(model: AutoEncoder, images: torch.Tensor, cfg: TrialConfig) -> Batches:
    """The fast or the plain loop (config train_loop); both draw a seeded permutation per epoch."""
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
        return functools.partial(_loader_batches, loader, device)
    images = images.to(device)
    if cuda:
        model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    return functools.partial(_device_batches, images, cfg.batch_size, generator)


def _permutation(n: int, generator: torch.Generator) -> torch.Tensor:
    """One epoch's order, on the generator's device: both loops draw it here, so batches match."""
    return torch.randperm(n, device=generator.device, generator=generator)


def _device_batches(images: torch.Tensor, batch_size: int, generator: torch.Generator):
    """Fast loop: gather each shuffled batch from the resident uint8 images, scale it in place."""
    for batch in _permutation(len(images), generator).split(batch_size):
        yield images[batch].float().div_(255)  # keeps the images' memory format


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
