"""digits-cnn: a small classifier of the digits images, whose 64-d penultimate layer is a feature
space for the offline default.

It lets the digits trial run end to end without the FID weights. It is trained once, seeded, on
the digits train split and cached; distances in its features are "Fréchet distance in digits-cnn
features", not FID.
"""

import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.data import DIGITS_TEST, load_dataset
from trainables.files import atomic_write

DIGITS_CNN_FILE = "digits-cnn.pt"


class DigitsCNN(nn.Module):
    """A small digits classifier; `body` ends in the 64-d penultimate layer used as features."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.AvgPool2d(2),  # 32x32 -> 16x16: the images are 8x8 digits up-scaled, little is lost
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 64),
            nn.ReLU(),
        )
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def load_digits_cnn(cache_dir: Path) -> DigitsCNN:
    """The digits-cnn from cache_dir/digits-cnn.pt, trained and saved there on first use.

    A damaged or stale file, one holding NaN or inf, or one that would need pickle code to load, is
    retrained and replaced.
    """
    path = Path(cache_dir) / DIGITS_CNN_FILE
    model = DigitsCNN()
    if path.is_file():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            if all(tensor.isfinite().all() for tensor in model.state_dict().values()):
                return model.eval()
        except (RuntimeError, OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError):
            pass  # retrain and overwrite below
    data = load_dataset("digits", root=Path(cache_dir), cache_dir=Path(cache_dir))
    train_labels, _ = digits_labels()
    model = train_digits_cnn(data.train, torch.as_tensor(train_labels))
    atomic_write(path, lambda f: torch.save(model.state_dict(), f))
    return model


def train_digits_cnn(
    images: torch.Tensor, labels: torch.Tensor, seed: int = 0, epochs: int = 20
) -> DigitsCNN:
    """Train DigitsCNN on uint8 images on CPU with Adam.

    Seeded (init and batch order), so every process builds the same network.
    """
    x = images.cpu().float() / 255
    y = torch.as_tensor(labels, dtype=torch.long).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsCNN()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=generator).split(64):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return model.eval()


def digits_labels() -> tuple[np.ndarray, np.ndarray]:
    """Train and test labels of the digits split; trainables.data keeps only the images.

    train_test_split's permutation depends only on the sample count, test_size, random_state and
    the stratify labels, so the same call on the labels reproduces the data's split exactly.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    target = load_digits().target
    train, test = train_test_split(target, test_size=DIGITS_TEST, random_state=0, stratify=target)
    return train, test
