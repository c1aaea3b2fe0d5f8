"""Fréchet distances between image sets, in a named feature space.

Two feature spaces (DESIGN.md, "One trial", step 7):

- ``inception-fid``: the standard FID network, pytorch-fid's port of TensorFlow's Inception pool3
  (images resized to 299 bilinearly, 2048 features). Only distances in this space may be called FID.
  The weights cannot be downloaded offline, so they are looked up in one place (``fid_weights_path``)
  and a missing file is reported before any trial starts (``check_extractor``).
- ``digits-cnn``: a small classifier trained once on the digits train split, its 64-d penultimate
  layer. It lets the offline default run end to end; its numbers are "Fréchet distance in digits-cnn
  features", not FID.

Flow of one score: images -> ``Extractor.features`` -> ``gaussian_stats`` -> ``frechet_distance``
against the reference statistics, which ``reference_stats`` computes once and caches on disk.
"""

import contextlib
import hashlib
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
EXTRACTORS = ("inception-fid", "digits-cnn")
DIGITS_CNN_FILE = "digits-cnn.pt"
STATS_DIR = "reference-stats"
FEATURE_BATCH = 250  # images per network call: hundreds keep a GPU busy; Inception's activations: ~14 MiB an image


# --------------------------------------------------------------------------- Fréchet distance


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}), in float64.

    pytorch-fid takes a general (non-symmetric) matrix square root of S1 S2 with scipy's sqrtm, which
    is slow at 2048 dims and can return complex noise or NaN for singular covariances. Only the trace
    is needed: with A = S1^{1/2} (symmetric, from an eigendecomposition), S1 S2 = A (A S2) has the same
    eigenvalues as A S2 A, which is symmetric PSD, so tr((S1 S2)^{1/2}) = sum(sqrt(eigvalsh(A S2 A))).
    This is exact for any PSD inputs, rank-deficient ones included.

    Inputs are numpy arrays or tensors; it runs on the device of the first tensor among them (CPU for
    numpy), so a GPU trial's 2048-d statistics never leave the card.
    """
    inputs = (mu1, sigma1, mu2, sigma2)
    device = next((v.device for v in inputs if isinstance(v, torch.Tensor)), "cpu")
    mu1, sigma1, mu2, sigma2 = (
        torch.as_tensor(v, dtype=torch.float64, device=device) for v in inputs
    )
    mu1, mu2, sigma1, sigma2 = torch.atleast_1d(mu1, mu2) + torch.atleast_2d(sigma1, sigma2)
    d = mu1.shape[0]
    if mu1.ndim != 1 or mu1.shape != mu2.shape or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"frechet_distance: shapes do not match: mu1 {tuple(mu1.shape)}, mu2 {tuple(mu2.shape)}, "
            f"sigma1 {tuple(sigma1.shape)}, sigma2 {tuple(sigma2.shape)} (expected means (d,) and covariances (d, d))"
        )
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not torch.isfinite(value).all():
            raise ValueError(f"frechet_distance: {name} has non-finite entries")
    sigma1 = (sigma1 + sigma1.T) / 2
    sigma2 = (sigma2 + sigma2.T) / 2

    eigenvalues, eigenvectors = torch.linalg.eigh(sigma1)
    root1 = (eigenvectors * _drop_roundoff(eigenvalues).sqrt()) @ eigenvectors.T  # S1^{1/2}
    middle = root1 @ sigma2 @ root1
    tr_covmean = _drop_roundoff(torch.linalg.eigvalsh((middle + middle.T) / 2)).sqrt().sum()

    diff = mu1 - mu2
    return float(diff @ diff + sigma1.trace() + sigma2.trace() - 2 * tr_covmean)


def _drop_roundoff(eigenvalues: torch.Tensor) -> torch.Tensor:
    """Zero the eigenvalues that are roundoff (numpy.linalg.matrix_rank's tolerance) before a square root.

    A singular covariance has eigenvalues that should be 0 but come out as +-1e-16 * max; their square
    roots (1e-8 * sqrt(max) each) would add up to a visible error over hundreds of dimensions.
    """
    if eigenvalues.numel() == 0:
        return eigenvalues
    tol = eigenvalues.numel() * torch.finfo(torch.float64).eps * eigenvalues.abs().max()
    return torch.where(eigenvalues > tol, eigenvalues, 0.0)


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (ddof=1, like pytorch-fid) of an (N, d) feature matrix, in float64."""
    mu, sigma = moments(torch.as_tensor(features))
    return mu.cpu().numpy(), sigma.cpu().numpy()


def moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gaussian_stats as float64 tensors on the features' device."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(
            f"gaussian_stats: need an (N, d) array with N >= 2, got shape {tuple(features.shape)}"
        )
    x = features.double()
    mu = x.mean(dim=0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


# --------------------------------------------------------------------------- Inception (FID) weights


class WeightsMissing(FileNotFoundError):
    """The FID Inception weights are not on disk (and this machine may not be able to download them)."""


def fid_weights_path() -> Path:
    """Where the FID Inception weights are read from: $DAE_FID_WEIGHTS, else torch hub's cache.

    The hub cache is where pytorch-fid itself downloads them, so a machine that ever ran pytorch-fid
    already has them.
    """
    override = os.environ.get("DAE_FID_WEIGHTS")
    if override:
        return Path(override).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE


def _missing_weights_message(path: Path) -> str:
    from pytorch_fid.inception import FID_WEIGHTS_URL

    return (
        f"FID Inception weights not found at {path}. On a machine with internet, download {FID_WEIGHTS_URL} "
        f"(or run `python -c 'from trainables.metrics import download_fid_weights; download_fid_weights()'`) "
        f"and copy it to {path}, or set DAE_FID_WEIGHTS to the path of a copy."
    )


def check_extractor(name: str) -> None:
    """Fail at launch, before any trial starts, if the feature extractor cannot be built here."""
    if name == "inception-fid":
        path = fid_weights_path()
        if not path.is_file():
            raise WeightsMissing(_missing_weights_message(path))
    elif name != "digits-cnn":  # digits-cnn is trained locally on first use
        raise ValueError(
            f"unknown feature extractor {name!r}; expected one of {', '.join(EXTRACTORS)}"
        )


def download_fid_weights() -> Path:
    """Fetch the FID Inception weights into fid_weights_path() (needs internet)."""
    from pytorch_fid.inception import FID_WEIGHTS_URL

    path = fid_weights_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(FID_WEIGHTS_URL, str(path))
    except Exception as err:
        raise RuntimeError(
            f"could not download the FID Inception weights from {FID_WEIGHTS_URL} to {path} ({err}); "
            "download them on a machine with internet and set DAE_FID_WEIGHTS to the copy"
        ) from err
    return path


def inception_network(weights: str | Path | None = None, random_weights: bool = False) -> nn.Module:
    """pytorch-fid's FID InceptionV3 (pool3, 2048-d; resizes to 299 and maps [0,1] to [-1,1]), in eval mode.

    pytorch-fid's constructor fetches its weights from the internet; we hand it our file instead,
    loaded with weights_only=True so no pickle code runs. random_weights=True builds the same network
    with seeded random weights (tests, GPU benchmarks without the file): the FID blocks subclass
    torchvision's Inception blocks with identical parameters, so torchvision's randomly initialised
    inception_v3 has exactly the keys and shapes of the FID state dict.
    """
    import pytorch_fid.inception as fid_inception

    if random_weights:
        state_dict = random_inception_state_dict()
    else:
        path = Path(weights).expanduser() if weights is not None else fid_weights_path()
        if not path.is_file():
            raise WeightsMissing(_missing_weights_message(path))
        state_dict = torch.load(path, map_location="cpu", weights_only=True)

    with mock.patch.object(
        fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: state_dict
    ):
        network = fid_inception.InceptionV3(
            [fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
            resize_input=True,
            normalize_input=True,
            use_fid_inception=True,
        )
    return network.eval()


def random_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights in the layout of the real FID weights file (torchvision's inception_v3 keys).

    The convolutions get He-normal weights, which keep activations near unit size through the network's ~90
    layers, so pool3 features and their distances are of the real network's magnitude (torchvision's own
    init, std 0.1, grows them to ~1e11, where a Fréchet distance is ~1e23 and float64 noise is larger than 1).
    """
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        donor = torchvision.models.inception_v3(
            weights=None, aux_logits=False, num_classes=1008, init_weights=False
        )
        for module in donor.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return donor.state_dict()


class InceptionPool3(nn.Module):
    """(N, C, H, W) in [0, 1] -> (N, 2048) pool3 features; grey images are repeated to RGB."""

    def __init__(self, inception: nn.Module):
        super().__init__()
        self.inception = inception

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.inception(x)[0].flatten(1)


# --------------------------------------------------------------------------- digits-cnn


class DigitsCNN(nn.Module):
    """A small digits classifier; `body` ends in the 64-d penultimate layer used as features."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.AvgPool2d(
                2
            ),  # 32x32 -> 16x16: the images are 8x8 digits up-scaled, so this loses little
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


def digits_labels() -> tuple[np.ndarray, np.ndarray]:
    """Train and test labels of the digits split; trainables.data keeps only the images.

    train_test_split's permutation depends only on the sample count, test_size, random_state and the
    stratify labels, so the same call on the labels reproduces data._load_digits's split exactly.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from trainables.data import DIGITS_TEST

    target = load_digits().target
    train, test = train_test_split(target, test_size=DIGITS_TEST, random_state=0, stratify=target)
    return train, test


def train_digits_cnn(
    images: torch.Tensor, labels: torch.Tensor, seed: int = 0, epochs: int = 20
) -> DigitsCNN:
    """Train DigitsCNN on CPU with Adam, seeded (init and batch order) so every process builds the same net."""
    x = _to_unit_float(images.cpu())
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


def digits_cnn(cache_dir: Path) -> DigitsCNN:
    """The digits-cnn from cache_dir/digits-cnn.pt, trained and saved there on first use."""
    path = Path(cache_dir) / DIGITS_CNN_FILE
    model = DigitsCNN()
    if path.is_file():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()
        except (
            RuntimeError,
            OSError,
            EOFError,
            KeyError,
            ValueError,
            pickle.UnpicklingError,
        ):  # damaged or stale
            pass  # retrain and overwrite below
    from trainables.data import load_dataset

    data = load_dataset("digits", root=Path(cache_dir), cache_dir=Path(cache_dir))
    train_labels, _ = digits_labels()
    model = train_digits_cnn(data.train, torch.as_tensor(train_labels))
    _atomic_write(path, lambda f: torch.save(model.state_dict(), f))
    return model


# --------------------------------------------------------------------------- feature extractors


@dataclass
class Extractor:
    """A named feature network on a device; `weights_id` fingerprints its weights for cache keys.

    Its convolutions run in true fp32 unless `tf32`: cuDNN's default TF32 rounds their inputs to 10 mantissa
    bits, which would make a score depend on the card (the paper's 2080Ti has no TF32). benchmarks/scoring.py
    measures what TF32 would save and change.
    """

    name: str
    dim: int
    network: nn.Module
    device: torch.device
    weights_id: str
    tf32: bool = False

    @torch.no_grad()
    def device_features(
        self, images: torch.Tensor, batch_size: int = FEATURE_BATCH
    ) -> torch.Tensor:
        """(N, C, H, W) images, float in [0, 1] or uint8, on any device -> (N, dim) float32 features on the device.

        Generated images are already on the device: nothing crosses to the host.
        """
        if images.ndim != 4:
            raise ValueError(
                f"{self.name}: expected images of shape (N, C, H, W), got {tuple(images.shape)}"
            )
        with cudnn_tf32(self.tf32):
            out = [
                self.network(_to_unit_float(batch.to(self.device))).float()
                for batch in images.split(batch_size)
            ]
        return torch.cat(out) if out else torch.zeros((0, self.dim), device=self.device)

    def features(self, images: torch.Tensor, batch_size: int = FEATURE_BATCH) -> np.ndarray:
        """device_features as a float64 numpy array on the host."""
        return self.device_features(images, batch_size).double().cpu().numpy()


@contextlib.contextmanager
def cudnn_tf32(allowed: bool):
    """Allow or forbid TF32 in cuDNN convolutions for the block; the process-wide switch is restored after."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved


_EXTRACTORS: dict[tuple, Extractor] = {}


def get_extractor(
    name: str, device: torch.device, cache_dir: Path, random_weights: bool = False
) -> Extractor:
    """The named extractor on `device`, built once per process (a Ray worker runs several trials).

    random_weights applies to inception-fid only and gives it a different name, so its statistics are
    never cached or reported as FID. digits-cnn is always the trained network.
    """
    device = torch.device(device)
    if name == "digits-cnn":
        key = (name, str(device), str(Path(cache_dir).expanduser().resolve()))
    else:
        key = (name, str(device), random_weights)
    if key in _EXTRACTORS:
        return _EXTRACTORS[key]
    if name == "inception-fid":
        network = InceptionPool3(inception_network(random_weights=random_weights))
        name, dim = ("inception-fid-random-weights" if random_weights else name), 2048
    elif name == "digits-cnn":
        network, dim = digits_cnn(Path(cache_dir).expanduser()).body, 64
    else:
        raise ValueError(
            f"unknown feature extractor {name!r}; expected one of {', '.join(EXTRACTORS)}"
        )
    network = network.to(device).eval()
    _EXTRACTORS[key] = Extractor(name, dim, network, device, _fingerprint(network))
    return _EXTRACTORS[key]


def clear_extractors() -> None:
    """Forget the memoised extractors (tests; freeing GPU memory)."""
    _EXTRACTORS.clear()


# --------------------------------------------------------------------------- scores


def reference_stats(dataset: str, images: torch.Tensor, extractor: Extractor, cache_dir: Path):
    """(mu, sigma) of the reference images, cached on disk.

    The cache key holds the dataset, the extractor's name and weights, the number of images and a
    short hash of their bytes, so a test fixture or a retrained digits-cnn never reuses stale stats.
    """
    image_hash = hashlib.sha256(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[
        :12
    ]
    name = f"{dataset}-{extractor.name}-{extractor.weights_id}-n{len(images)}-{image_hash}.npz"
    path = Path(cache_dir).expanduser() / STATS_DIR / name
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stats:
                return stats["mu"], stats["sigma"]
        except (
            OSError,
            EOFError,
            KeyError,
            ValueError,
            zipfile.BadZipFile,
        ):  # damaged: recompute and overwrite
            pass
    mu, sigma = gaussian_stats(extractor.device_features(images))
    _atomic_write(path, lambda f: np.savez(f, mu=mu, sigma=sigma))
    return mu, sigma


def score(
    images: torch.Tensor, extractor: Extractor, ref_stats: tuple[np.ndarray, np.ndarray]
) -> float:
    """Fréchet distance between `images` and the reference statistics in the extractor's feature space.

    Features, statistics and distance stay on the extractor's device, in batches of hundreds.
    """
    mu, sigma = moments(extractor.device_features(images))
    return frechet_distance(mu, sigma, *ref_stats)


def pytorch_fid_distance(
    images: torch.Tensor, extractor: Extractor, ref_stats, batch_size: int = 50
) -> float:
    """pytorch-fid's own scoring path, the baseline `score` is timed and checked against.

    As pytorch_fid.fid_score.get_activations and calculate_activation_statistics do it: the images on the
    host in a DataLoader at batch 50, one copy to the device per batch, features back to the host, numpy
    statistics, then calculate_frechet_distance (scipy's sqrtm). Same network and conv precision as `score`.
    """
    from pytorch_fid.fid_score import calculate_frechet_distance

    features = np.empty((len(images), extractor.dim))
    start = 0
    with torch.no_grad(), cudnn_tf32(extractor.tf32):
        for (batch,) in DataLoader(TensorDataset(images.cpu()), batch_size=batch_size):
            pred = extractor.network(_to_unit_float(batch.to(extractor.device))).cpu().numpy()
            features[start : start + len(pred)] = pred
            start += len(pred)
    mu, sigma = np.mean(features, axis=0), np.cov(features, rowvar=False)
    return float(calculate_frechet_distance(mu, sigma, *ref_stats))


# --------------------------------------------------------------------------- helpers


def _to_unit_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 or float in [0, 1] -> float32 in [0, 1]."""
    if batch.dtype == torch.uint8:
        return batch.float() / 255
    if not batch.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {batch.dtype}")
    return batch.float()


def _fingerprint(network: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in network.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:8]


def _atomic_write(path: Path, write) -> None:
    """Write through a temp file in the same folder and rename, so racing processes never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
