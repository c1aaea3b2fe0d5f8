"""The paper's training protocol as one plain function of (model, images, config).

Two loops feed one training step (config `train_loop`):
- fast (default): the whole training set lives on the training device as uint8 (channels_last on CUDA); each epoch
  draws one permutation on that device and scales each batch to [0,1] on the fly, so there is no DataLoader and no
  host copy. On CUDA cuDNN autotunes its kernels for the fixed batch shape and Adam is fused.
- plain: the loop it is measured against (benchmarks/throughput.py) and checked equal to (tests/test_fastpath.py):
  a torchvision-style Dataset and DataLoader on the host, one host-to-device copy per batch, default layout, fed the
  same permutation as the fast loop.
Both sync the loss to the host once per epoch. `precision` picks bf16 autocast (default on CUDA) or fp32 for the
forward; the loss is always computed in fp32 from the logits. `compile` wraps forward + loss in torch.compile.
"""

import functools
import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from trainables.config import TrialConfig
from trainables.models import AutoEncoder, reconstruction_loss

WARMUP_EPOCHS = 1
PLAIN_CUDA_WORKERS = (
    4  # the plain loop done right on a GPU node: worker processes and pinned memory
)


@dataclass
class TrainResult:
    losses: list[float]  # mean training loss (BCE + beta*KL) per epoch
    diverged_epoch: int | None  # first epoch whose loss was not finite
    seconds: float
    epoch_seconds: list[float]  # per epoch; the first also holds compilation and cuDNN autotuning
    precision: str  # what the forward ran in: "fp32" or "bf16"
    compiled: bool


def learning_rate(epoch: int, epochs: int, peak: float) -> float:
    """Paper: one warm-up epoch at peak/10, then peak, /10 from 33% and /100 from 66% of training."""
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


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: bf16 autocast where it pays (CUDA tensor cores), fp32 elsewhere."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def permutation(n: int, generator: torch.Generator) -> torch.Tensor:
    """One epoch's order, drawn on the generator's device: both loops draw it here, so they see the same batches."""
    return torch.randperm(n, device=generator.device, generator=generator)


def device_batches(images: torch.Tensor, batch_size: int, generator: torch.Generator):
    """Fast loop: gather each shuffled batch from the resident uint8 images and scale it where it lives."""
    for batch in permutation(len(images), generator).split(batch_size):
        yield images[batch].float().div_(255)  # keeps the images' memory format


class HostImages(Dataset):
    """Plain loop: a torchvision-style dataset that hands out one float image in [0,1] at a time, like ToTensor."""

    def __init__(self, images: torch.Tensor):
        self.images = images.cpu()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index].float().div(255)


class EpochPermutation(Sampler):
    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(permutation(self.n, self.generator).tolist())


def loader_batches(loader: DataLoader, device: torch.device):
    for x in loader:
        yield x.to(device, non_blocking=True)


def train(model: AutoEncoder, images: torch.Tensor, cfg: TrialConfig) -> TrainResult:
    """Adam on summed-pixel BCE (+ beta*KL for a VAE), averaged over the batch, on the model's device."""
    start = time.perf_counter()
    device = next(model.parameters()).device
    cuda, fast = device.type == "cuda", cfg.train_loop == "fast"
    precision = resolve_precision(cfg.precision, device)
    if cuda:
        torch.backends.cudnn.benchmark = (
            fast  # process-wide: autotune conv kernels for the fixed batch shapes
        )
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    if fast:
        images = images.to(device)
        if cuda:
            model.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        batches = functools.partial(device_batches, images, cfg.batch_size, generator)
    else:
        workers = PLAIN_CUDA_WORKERS if cuda else 0
        loader = DataLoader(
            HostImages(images),
            batch_size=cfg.batch_size,
            sampler=EpochPermutation(len(images), generator),
            num_workers=workers,
            pin_memory=cuda,
            persistent_workers=workers > 0,
        )
        batches = functools.partial(loader_batches, loader, device)
    params = [p for p in model.parameters() if p.requires_grad]
    lr = learning_rate(0, cfg.epochs, cfg.lr)
    optimizer = torch.optim.Adam(
        params, lr=lr, eps=1e-7, fused=fast and cuda
    )  # eps: Keras' epsilon
    beta = cfg.beta if cfg.model == "vae" else 0.0

    def objective(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits, kl = model(x)
        return (reconstruction_loss(logits, x) + beta * kl.float()).mean()  # fp32 from the logits

    if cfg.compile:
        torch.compiler.reset()  # a worker runs many trials: old graphs would fill dynamo's cache, then eager
    loss_of = (
        torch.compile(objective, dynamic=False) if cfg.compile else objective
    )  # one graph per batch size
    losses: list[float] = []
    epoch_seconds: list[float] = []
    model.train()
    for epoch in range(cfg.epochs):
        epoch_start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(epoch, cfg.epochs, cfg.lr)
        total, seen = torch.zeros((), device=device), 0
        for x in batches():
            if len(x) < 2:  # batch norm cannot train on a single image
                continue
            loss = loss_of(x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(x)
            seen += len(x)
        losses.append((total / seen).item())  # one host sync per epoch
        epoch_seconds.append(time.perf_counter() - epoch_start)
        if not math.isfinite(losses[-1]):
            break
    diverged = None if math.isfinite(losses[-1]) else len(losses) - 1
    return TrainResult(
        losses, diverged, time.perf_counter() - start, epoch_seconds, precision, cfg.compile
    )
