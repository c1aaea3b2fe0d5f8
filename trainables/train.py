"""The paper's training protocol as one plain function of (model, images, config).

The whole training set lives on the training device as uint8; each epoch draws one permutation on
that device and scales each batch to [0,1] on the fly, so there is no DataLoader and no host copy.
"""

import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch

from trainables.config import TrialConfig
from trainables.models import AutoEncoder, reconstruction_loss

WARMUP_EPOCHS = 1


@dataclass
class TrainResult:
    losses: list[float]  # mean training loss (BCE + beta*KL) per epoch
    diverged_epoch: int | None  # first epoch whose loss was not finite
    seconds: float


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


def train(model: AutoEncoder, images: torch.Tensor, cfg: TrialConfig) -> TrainResult:
    """Adam on summed-pixel BCE (+ beta*KL for a VAE), averaged over the batch."""
    start = time.perf_counter()
    device = images.device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=learning_rate(0, cfg.epochs, cfg.lr), eps=1e-7)  # Keras' epsilon
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    beta = cfg.beta if cfg.model == "vae" else 0.0
    n = images.shape[0]
    losses: list[float] = []
    model.train()
    for epoch in range(cfg.epochs):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(epoch, cfg.epochs, cfg.lr)
        order = torch.randperm(n, device=device, generator=generator)
        total, seen = torch.zeros((), device=device), 0
        for first in range(0, n, cfg.batch_size):
            batch = order[first : first + cfg.batch_size]
            if batch.numel() < 2:  # batch norm cannot train on a single image
                continue
            x = images[batch].float().div_(255)  # (B,C,H,W) in [0,1]
            logits, kl = model(x)
            loss = (reconstruction_loss(logits, x) + beta * kl).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * batch.numel()
            seen += batch.numel()
        losses.append((total / seen).item())  # one host sync per epoch
        if not math.isfinite(losses[-1]):
            return TrainResult(losses, epoch, time.perf_counter() - start)
    return TrainResult(losses, None, time.perf_counter() - start)
