"""run_trial: one experiment of the paper, from data to scores, returned as one flat result row.

    config -> data on device -> train -> encode train/test -> fit N(0,I), MVG, GMM -> decode samples
           -> Fréchet distance of each image set to the reference test images -> row
           (with a PNG grid of test images, their reconstructions, MVG and GMM samples)

Nothing here knows about Ray, the results store or the grid. Bad config raises ConfigError (a
ValueError) before any work; anything that goes wrong after that becomes a row with status
"failed" or "diverged".
"""

import contextlib
import dataclasses
import datetime
import functools
import io
import platform
import subprocess
import time
import traceback
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import sklearn
import torch
import torchvision
from PIL import Image

from trainables import features, priors
from trainables.config import TrialConfig, make_config
from trainables.data import Dataset, load_for_config
from trainables.models import build_model, count_parameters, reconstruction_loss
from trainables.priors import PRIORS
from trainables.schema import RESULT_COLUMNS, SAMPLE_GRID, Status
from trainables.scored_sets import FITTED
from trainables.train import seed_everything, train

CODE_SAMPLE_SIZE = 1000  # codes kept per row for the latent scatter plots (A.1/A.2)
CODE_SAMPLE_DIMS = 4
EVAL_BATCH = 500
EVAL_PHASES = ("encode", "prior", "sample", "score")
GRID_COLUMNS = 10  # images per row of the sample grid
GRID_TILE_PX = 32  # smaller images (digits: 8x8) are enlarged to about this, each pixel a square
# the sample grid's rows after the test images: their reconstructions, then each fitted prior's
GRID_SETS = ("test_recon", *FITTED)
PAIRS = "pairs"  # the stream the interpolation pairs are drawn from


def run_trial(
    overrides: dict | TrialConfig | None = None,
    images: Dataset | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> dict:
    """One trial -> one row with every column of RESULT_COLUMNS (None where not reached).

    overrides: config overrides, or a TrialConfig that make_config built (used as it is).

    images: cfg's dataset, already loaded (the launcher hands every trial its arrays through Ray's
    object store, so no worker needs a data folder); None loads it from cfg's data root.
    on_epoch(epochs done, that epoch's training loss): called after each epoch.
    """
    cfg = overrides if isinstance(overrides, TrialConfig) else make_config(overrides)
    row = new_row(cfg)
    row.update(_provenance(), started_at=_now())
    with phase(row, "wall"):
        try:
            _execute(cfg, row, images, on_epoch)
        except Exception as exc:  # a crash is a result too: the study records it and goes on
            error = f"{type(exc).__name__}: {exc}"
            row.update(status=Status.FAILED, error=error, traceback=traceback_summary(exc))
    return row


def new_row(cfg: TrialConfig) -> dict:
    """Every column None but the trial's identity and config: what is known before anything runs."""
    row = dict.fromkeys(RESULT_COLUMNS)
    row.update(cfg.science(), trial_id=cfg.trial_id(), fid=cfg.feature_extractor == "inception-fid")
    return row


@contextlib.contextmanager
def phase(row: dict, name: str):
    """Add the seconds the block takes to row[f"{name}_s"]; a block that raises adds nothing."""
    start = time.perf_counter()
    yield
    row[f"{name}_s"] = (row[f"{name}_s"] or 0.0) + time.perf_counter() - start


def _execute(
    cfg: TrialConfig,
    row: dict,
    images: Dataset | None,
    on_epoch: Callable[[int, float], None] | None,
) -> None:
    device = resolve_device(cfg.device)
    row["device"] = device_name(device)
    seed_everything(cfg.seed)
    if images is not None and images.name != cfg.dataset:
        raise ValueError(f"run_trial: given the images of {images.name}, not of {cfg.dataset}")
    data = images or load_for_config(cfg)
    train_images = data.train.to(device)
    test_images = data.test.to(device)
    row.update(n_train=len(train_images), n_test=len(test_images))

    model = build_model(cfg).to(device)
    row.update(
        encoder_params=count_parameters(model.encoder),
        decoder_params=count_parameters(model.decoder),
    )
    with phase(row, "train"):
        result = train(model, train_images, cfg, on_epoch)
    row.update(loss_history=result.losses, train_loss=result.losses[-1])
    row["resumed_from_epoch"] = result.resumed_from_epoch
    row.update(compiled=result.compiled, train_loop=cfg.train_loop)
    row.update(train_step=result.train_step, train_step_error=result.train_step_error)
    if result.diverged_epoch is not None:
        row.update(
            status=Status.DIVERGED,
            diverged_epoch=result.diverged_epoch,
            error=f"training loss became non-finite in epoch {result.diverged_epoch}",
        )
        return
    _evaluate(model, cfg, train_images, test_images, row)
    row["status"] = Status.OK


def _evaluate(
    model, cfg: TrialConfig, train_images: torch.Tensor, test_images: torch.Tensor, row: dict
) -> None:
    """Encode, fit the priors, decode samples and score every image set."""
    device = train_images.device
    with phase(row, "encode"):
        model.eval()
        train_codes, row["train_recon_bce"] = _encode(model, train_images)
        test_codes, row["test_recon_bce"] = _encode(model, test_images)
        train_np = train_codes.double().cpu().numpy()
        test_np = test_codes.double().cpu().numpy()

    with phase(row, "prior"):
        fitted = {name: prior.fit(train_np, cfg, str(device)) for name, prior in PRIORS.items()}
        for fit in fitted.values():
            row.update(fit.record())
        row.update(priors.gaussianity(test_np, fitted["mvg"], fitted["gmm"]))
        row.update(_code_sample(train_np, cfg.seed))

    n = cfg.n_samples
    with phase(row, "sample"):
        picked = subset(len(test_images), n, cfg.seed)  # Test R reconstructs the reference images
        reference = test_images[picked]
        seeds = sampler_seeds(cfg)
        first, second = priors.sample_pairs(test_np, n, seeds[PAIRS])
        codes = {
            "train_recon": train_codes[subset(len(train_images), n, cfg.seed + 1)],
            "test_recon": test_codes[picked],
            **{name: fit.sample(n, seeds[name]) for name, fit in fitted.items()},
            "interp": priors.midpoints(first, second),
            "endpoints": priors.endpoints(first, second),
        }
        sets = {  # a prior that could not be fitted has no set: its record says why
            name: _decode(model, torch.as_tensor(z, dtype=torch.float32, device=device))
            for name, z in codes.items()
            if z is not None
        }
        drawn = [sets[name] for name in GRID_SETS if name in sets]
        row[SAMPLE_GRID] = sample_grid_png([reference[:GRID_COLUMNS].float().div(255), *drawn])
    row.update(n_reference=len(reference), n_scored=n)
    with phase(row, "score"):  # all sets in one pass of the network; TF32 only if asked
        extractor = features.get_extractor(cfg.feature_extractor, device, cfg.cache_path)
        ref_stats = features.reference_stats(cfg.dataset, reference, extractor, cfg.cache_path)
        scorer = dataclasses.replace(extractor, tf32=cfg.score_tf32)
        distances = features.score_sets(sets, scorer, ref_stats)
    row.update({f"fd_{name}": distance for name, distance in distances.items()})
    row["fid_weights_source"] = extractor.weights_source
    row["score_tf32"] = cfg.score_tf32 and device.type == "cuda"  # TF32 exists on CUDA only
    row["eval_s"] = sum(row[f"{name}_s"] for name in EVAL_PHASES)


@torch.no_grad()
def _encode(model, images: torch.Tensor) -> tuple[torch.Tensor, float]:
    """-> (codes (N, latent) float32 on the device, mean per-image reconstruction BCE).

    The BCE is summed over each image's pixels whatever the VAE trained on (bce_reduction), so the
    row's BCE columns compare across readings."""
    codes = []
    bce = 0.0
    for batch in images.split(EVAL_BATCH):
        x = batch.float().div_(255)
        z = model.encode(x)
        bce += reconstruction_loss(model.decoder(z), x).sum().item()
        codes.append(z.float())
    return torch.cat(codes), bce / len(images)


@torch.no_grad()
def _decode(model, codes: torch.Tensor) -> torch.Tensor:
    """Images in [0,1], (N, C, H, W), left on the device for the feature extractor."""
    return torch.cat([model.decode(z) for z in codes.split(EVAL_BATCH)])


def sample_grid_png(image_sets: list[torch.Tensor]) -> bytes:
    """A PNG with one row per set of images in [0, 1] (its first GRID_COLUMNS; a set with fewer is
    padded with white): to look at what a trial made, as the paper's figures show it."""
    rows = []
    for images in image_sets:
        images = images[:GRID_COLUMNS].float().cpu()
        blank = torch.ones(GRID_COLUMNS - len(images), *images.shape[1:])
        rows.append(torch.cat([images, blank]))
    tiles = torch.cat(rows)
    scale = max(1, GRID_TILE_PX // tiles.shape[-1])
    tiles = torch.nn.functional.interpolate(tiles, scale_factor=scale, mode="nearest")
    grid = torchvision.utils.make_grid(tiles, nrow=GRID_COLUMNS, padding=2, pad_value=1.0)
    pixels = grid.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    return png.getvalue()


def sampler_seeds(cfg: TrialConfig) -> dict[str, priors.Seed]:
    """Each prior's and the interpolation pairs' seed (config sampler_streams): "independent", a
    stream of its own, SeedSequence(seed) with a spawn key from the sampler's name (so adding a
    prior moves no other stream); "shared", what rows before that field drew from: the seed itself
    for every prior, seed + 2 for the pairs."""
    names = [*PRIORS, PAIRS]
    if cfg.sampler_streams == "shared":
        return {**dict.fromkeys(PRIORS, cfg.seed), PAIRS: cfg.seed + 2}
    return {
        name: np.random.SeedSequence(cfg.seed, spawn_key=(zlib.crc32(name.encode()),))
        for name in names
    }


def subset(size: int, n: int, seed: int) -> torch.Tensor:
    """A fixed random subset of n indices (all of them when n >= size), as the paper's CelebA
    protocol."""
    if n >= size:
        return torch.arange(size)
    return torch.from_numpy(np.sort(np.random.default_rng(seed).choice(size, n, replace=False)))


def _code_sample(codes: np.ndarray, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    dims = np.sort(rng.choice(codes.shape[1], min(CODE_SAMPLE_DIMS, codes.shape[1]), replace=False))
    rows = rng.choice(len(codes), min(CODE_SAMPLE_SIZE, len(codes)), replace=False)
    return {"code_sample_dims": dims.tolist(), "code_sample": codes[np.ix_(rows, dims)].tolist()}


def resolve_device(name: str) -> torch.device:
    """auto: CUDA when it works here, else the CPU. A CUDA device asked for by name (as the launcher
    asks for the GPU Ray gave a trial) is never swapped for the CPU: a trial that reserved a GPU
    and trained on one CPU thread would take days and look like a result."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA (a CPU-only build)"
        raise RuntimeError(
            f"device {name!r} was asked for but CUDA is not available on {platform.node()}: "
            f"torch {torch.__version__} is built for {build}; the trial does not fall back to "
            "the CPU. Check that the node's NVIDIA driver supports that CUDA version (nvidia-smi)"
        )
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def traceback_summary(exc: BaseException, lines: int = 12) -> str:
    text = "".join(traceback.format_exception(exc)).rstrip().splitlines()
    return "\n".join(text[-lines:])


@functools.cache
def _provenance() -> dict:
    import pandas
    import pyarrow

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
    }
    return {
        "git_sha": _git_sha(),
        "torch_version": torch.__version__,
        "hostname": platform.node(),
        "package_versions": " ".join(f"{k}={v}" for k, v in versions.items()),
    }


def _git_sha() -> str:
    """HEAD of the checkout this code runs from, '-dirty' when it has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
