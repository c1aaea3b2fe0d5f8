"""Datasets as uint8 tensors (N, C, H, W) with a fixed train/test split, from one table.

DATASETS, at the bottom of this file, is everything the code knows about each dataset: its name in
tables, image shape and split sizes, its folder and required files, its reader and downloader, the
feature network that scores it by default, the config defaults it starts from and the GPU share a
trial of it asks for. Checking, downloading, loading, the config's choices, the cost estimate and
the report's labels are lookups in it: adding a dataset means writing a reader and adding an entry.

torchvision is used only to download: its CIFAR10/CelebA classes md5-check every file (so tiny test
fixtures fail) and CelebA also insists on attribute/landmark files we never read. We read the
standard on-disk layouts ourselves, verifying the real files' checksums by default; `verify=False`
is the switch for the tests' fixtures.

This module imports no torch at load time (torch, torchvision, PIL and scikit-learn are imported
where a reader needs them): trainables.config imports it, and the store and the analysis import
the config without torch.
"""

import hashlib
import os
import pickle
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainables.errors import BadInput, DatasetCorrupt, DatasetMissing
from trainables.files import atomic_write

if TYPE_CHECKING:
    import torch

HOW_TO_PROVIDE = (
    "Download it with `python study/launch.py ... --download` (needs internet),\n"
    "or put {layout} at {where},\n"
    "or set DAE_DATA_ROOT / --data-root to the folder that holds {folder}."
)

# A reader: (data root, cache folder, verify checksums) -> uint8 (train, test), each (N, C, H, W).
Reader = Callable[[Path, Path, bool], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: what the model, the launcher's checks and the loader need to know about it."""

    name: str
    label: str  # how tables and figures name it
    image_shape: tuple[int, int, int]  # (C, H, W) of the images the model sees
    train_images: int  # the training split's size, known before loading (the cost estimate)
    test_images: int
    read: Reader
    # the feature network its distances are computed in by default (config feature_extractor
    # "auto"): only inception-fid's are FIDs
    scorer: str = "inception-fid"
    folder: str = ""  # under the data root; "" for a dataset bundled with a package
    layout: str = ""  # the files in words, for the message when they are missing
    required: tuple[str, ...] = ()  # paths under `folder` that must exist before a trial starts
    fetch: Callable[[Path], None] | None = None  # downloads into the data root; None: bundled
    config_defaults: dict = field(default_factory=dict)  # TrialConfig overrides it starts from
    # the share of one GPU a depth-1 model asks Ray for, by filters (1.0 where not listed): see
    # study/resources.py
    gpu_share: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    name: str
    train: "torch.Tensor"  # uint8 (N, C, H, W) on CPU
    test: "torch.Tensor"


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise BadInput(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def check_available(name: str, root: Path) -> None:
    """Cheap existence check (no decoding, no checksum) so a missing dataset fails at launch."""
    dataset = _spec(name)
    if not dataset.folder:
        return
    folder = Path(root) / dataset.folder
    wanted = [folder / path for path in dataset.required]
    missing = [folder] if not folder.is_dir() else [p for p in wanted if not p.exists()]
    if missing:
        raise _missing(dataset, folder, missing)


def download(name: str, root: Path) -> None:
    """Fetch the official files into the layout our readers expect (needs internet)."""
    dataset = _spec(name)
    if dataset.fetch is None:
        return
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        dataset.fetch(root)
    except Exception as exc:  # network, quota (CelebA's host often refuses), disk: same advice
        raise DatasetMissing(
            f"downloading {name} into {root} failed: {type(exc).__name__}: {exc}\n"
            f"Place the files by hand instead: {dataset.layout} at {root / dataset.folder}."
        ) from exc


_MEMO: dict[tuple[str, str, bool], Dataset] = {}  # a Ray worker may run several trials: load once


def clear_memo() -> None:
    """Forget datasets loaded in this process (tests use it to exercise the on-disk cache)."""
    _MEMO.clear()


def load_dataset(name: str, root: Path, cache_dir: Path, verify: bool = True) -> Dataset:
    """Load one dataset as uint8 CPU tensors, memoised per process."""
    import torch

    key = (name, str(root), verify)
    if key in _MEMO:
        return _MEMO[key]
    check_available(name, root)
    try:
        train, test = _spec(name).read(Path(root), Path(cache_dir), verify)
    except DatasetMissing:
        raise
    except OSError as exc:  # permissions, a file that vanished, a disk that refuses the cache
        raise _corrupt(Path(exc.filename or root), exc.strerror or str(exc)) from exc
    dataset = Dataset(
        name,
        torch.from_numpy(np.ascontiguousarray(train)),
        torch.from_numpy(np.ascontiguousarray(test)),
    )
    _MEMO[key] = dataset
    return dataset


def load_for_config(cfg) -> Dataset:
    return load_dataset(cfg.dataset, cfg.data_path, cfg.cache_path, cfg.verify_checksums)


def source(cfg) -> tuple[str, str, bool]:
    """What cfg's images are read from, as the config says it, the same on every node: the key
    under which the launcher shares a loaded dataset with the trials that need it."""
    return (cfg.dataset, cfg.data_root, cfg.verify_checksums)


def from_arrays(name: str, train: np.ndarray, test: np.ndarray) -> Dataset:
    """A dataset handed over as uint8 arrays (from Ray's object store: read-only views of shared
    memory, so they are copied, and nothing that trains can write into the store's memory)."""
    import torch

    return Dataset(name, torch.from_numpy(np.array(train)), torch.from_numpy(np.array(test)))


# --------------------------------------------------------------------------- checks and messages


def _missing(dataset: DatasetSpec, where: Path, what: list[Path]) -> DatasetMissing:
    listed = ", ".join(str(p) for p in what[:3])
    if len(what) > 3:
        listed += f" and {len(what) - 3} more"
    how = HOW_TO_PROVIDE.format(layout=dataset.layout, where=where, folder=dataset.folder)
    return DatasetMissing(f"{dataset.name} not found: looked for {listed}.\n{how}")


def _corrupt(path: Path, why: str) -> DatasetCorrupt:
    return DatasetCorrupt(
        f"{path}: {why}. Delete it and download again; "
        "pass verify_checksums=False only for the tests' tiny fixtures."
    )


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_md5(path: Path, expected: str) -> None:
    if _md5(path) != expected:
        raise _corrupt(path, f"md5 differs from the official {expected}")


# --------------------------------------------------------------------------- CIFAR-10

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")  # 5 train, then test


def _cifar_md5s() -> dict[str, str]:
    """File name -> official md5, as torchvision lists them."""
    from torchvision.datasets import CIFAR10

    return dict(CIFAR10.train_list + CIFAR10.test_list)


def _latin1(text: str, encoding: str) -> bytes:
    """What _codecs.encode does in a pickle of bytes written by Python 3 at protocol 2."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"encoding {encoding!r} in a CIFAR-10 batch")
    return text.encode("latin1")


class _CifarUnpickler(pickle.Unpickler):
    """Builds only what a CIFAR-10 batch holds (a dict of bytes, lists, ints and one uint8 array):
    any other global a pickle names is refused, so no data file can run code, whether or not its
    checksum was checked."""

    _reconstruct = np.zeros(0).__reduce__()[0]  # numpy's array builder, wherever it lives now
    GLOBALS = {  # numpy 1 named its module numpy.core, numpy 2 numpy._core
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1,
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR-10 batch")
        return self.GLOBALS[module, name]


def _read_cifar_batch(path: Path, md5: str, verify: bool) -> np.ndarray:
    """One official python batch -> uint8 (N, 3, 32, 32), its checksum checked first by default."""
    if verify:
        _check_md5(path, md5)
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
        pixels = np.asarray(batch[b"data"])
    except Exception as exc:  # unpickling a damaged file can raise almost anything
        why = f"cannot be read as a CIFAR-10 batch ({type(exc).__name__}: {exc})"
        raise _corrupt(path, why) from exc
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
        why = f"expected uint8 data of shape (N, 3072), got {pixels.dtype} {pixels.shape}"
        raise _corrupt(path, why)
    return pixels.reshape(-1, 3, 32, 32)  # row-major: 1024 R, then 1024 G, then 1024 B


def _read_cifar10(root: Path, cache_dir: Path, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    md5s = _cifar_md5s()
    folder = root / CIFAR_DIR
    batches = [_read_cifar_batch(folder / file, md5s[file], verify) for file in CIFAR_FILES]
    return np.concatenate(batches[:-1]), batches[-1]


def _fetch_cifar10(root: Path) -> None:
    import torchvision

    for train in (True, False):
        torchvision.datasets.CIFAR10(str(root), train=train, download=True)


# --------------------------------------------------------------------------- CelebA

CELEBA_DIR = "celeba"
CELEBA_IMAGES = "img_align_celeba"
CELEBA_SPLITS = "list_eval_partition.txt"
CELEBA_CROP = 140  # paper: centre crop 140x140, then down-scale to 64x64
CELEBA_SHAPE = (3, 64, 64)


def _celeba_split_md5() -> str:
    from torchvision.datasets import CelebA

    return next(md5 for _, md5, name in CelebA.file_list if name == CELEBA_SPLITS)


def _celeba_partitions(path: Path) -> dict[str, list[str]]:
    """list_eval_partition.txt -> {"0": train files, "1": valid files, "2": test files}."""
    parts: dict[str, list[str]] = {"0": [], "1": [], "2": []}
    try:
        for line in path.read_text().splitlines():
            if line.strip():
                file, part = line.split()
                parts[part].append(file)
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        why = f"expected lines like '000001.jpg 0' with partitions 0/1/2 ({exc!r})"
        raise _corrupt(path, why) from exc
    return parts


def _decode_celeba(path: Path) -> np.ndarray:
    """One aligned face -> uint8 (3, 64, 64).

    As the paper: a centre crop of 140x140, then a bilinear (antialiased) down-scale.
    """
    from PIL import Image

    size = CELEBA_SHAPE[1:]
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            left = (im.width - CELEBA_CROP) // 2
            top = (im.height - CELEBA_CROP) // 2
            im = im.crop((left, top, left + CELEBA_CROP, top + CELEBA_CROP))
            im = im.resize(size, Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except OSError as exc:
        raise _corrupt(path, f"cannot be decoded as an image ({exc})") from exc


def _celeba_split(folder: Path, files: list[str], cache: Path) -> np.ndarray:
    """Decode a partition once into a plain .npy.

    The count in the cache's name keeps a fixture from masking the real set.
    """
    if cache.exists():
        try:
            array = np.load(cache, allow_pickle=False)
            if array.shape == (len(files), *CELEBA_SHAPE) and array.dtype == np.uint8:
                return array
        except (OSError, ValueError):
            pass  # a half-written or stale cache: decode again
    images = folder / CELEBA_IMAGES
    missing = [images / f for f in files if not (images / f).is_file()]
    if missing:
        raise _missing(DATASETS["celeba"], folder, missing)
    array = np.empty((len(files), *CELEBA_SHAPE), dtype=np.uint8)
    paths = (images / f for f in files)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # PIL releases the GIL
        for i, image in enumerate(pool.map(_decode_celeba, paths, chunksize=256)):
            array[i] = image
    atomic_write(cache, lambda f: np.save(f, array))  # workers may decode at once
    return array


def _read_celeba(root: Path, cache_dir: Path, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Train = partition 0, test = partition 2; the valid partition is unused, as in the paper."""
    folder = root / CELEBA_DIR
    if verify:
        _check_md5(folder / CELEBA_SPLITS, _celeba_split_md5())
    parts = _celeba_partitions(folder / CELEBA_SPLITS)
    cache = cache_dir / "celeba64"
    train = _celeba_split(folder, parts["0"], cache / f"train-{len(parts['0'])}.npy")
    test = _celeba_split(folder, parts["2"], cache / f"test-{len(parts['2'])}.npy")
    return train, test


def _fetch_celeba(root: Path) -> None:
    import torchvision

    torchvision.datasets.CelebA(str(root), split="all", target_type=[], download=True)


# --------------------------------------------------------------------------- digits

DIGITS_TOTAL = 1_797  # scikit-learn's bundled digits
DIGITS_TEST = 450


def _read_digits(root: Path, cache_dir: Path, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits up-scaled to 32x32.

    32x32 lets the CIFAR-10 architecture (4 stride-2 stages) run on them unchanged.
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = torch.from_numpy(digits.images).float().unsqueeze(1) * (255.0 / 16.0)  # 0..16
    pixels = F.interpolate(pixels, size=(32, 32), mode="bilinear", align_corners=False)
    images = pixels.round().clamp(0, 255).to(torch.uint8).numpy()
    train, test = train_test_split(
        images, test_size=DIGITS_TEST, random_state=0, stratify=digits.target
    )
    return train, test


# --------------------------------------------------------------------------- the table

DATASETS: dict[str, DatasetSpec] = {
    entry.name: entry
    for entry in (
        DatasetSpec(
            name="cifar10",
            label="CIFAR-10",
            image_shape=(3, 32, 32),
            train_images=50_000,
            test_images=10_000,
            read=_read_cifar10,
            folder=CIFAR_DIR,
            layout="the torchvision layout (data_batch_1..5, test_batch)",
            required=CIFAR_FILES,
            fetch=_fetch_cifar10,
        ),
        DatasetSpec(
            name="celeba",
            label="CelebA",
            image_shape=CELEBA_SHAPE,
            train_images=162_770,  # partition 0
            test_images=19_962,  # partition 2
            read=_read_celeba,
            folder=CELEBA_DIR,
            layout=f"{CELEBA_IMAGES}/*.jpg + {CELEBA_SPLITS}",
            required=(CELEBA_IMAGES, CELEBA_SPLITS),
            fetch=_fetch_celeba,
        ),
        DatasetSpec(
            name="digits",  # offline: bundled with scikit-learn
            label="digits",
            image_shape=(1, 32, 32),
            train_images=DIGITS_TOTAL - DIGITS_TEST,
            test_images=DIGITS_TEST,
            read=_read_digits,
            scorer="digits-cnn",  # its distances are FD (digits-cnn), not FIDs
            # tiny and host-bound on a GPU: eight trials share a card (not measured)
            gpu_share={4: 0.125, 8: 0.125, 16: 0.125, 32: 0.125, 64: 0.125, 128: 0.25, 256: 0.5},
            # The paper's protocol is sized for a GPU; this one is the offline default, so it
            # starts smaller: a plain run_trial({"dataset": "digits"}) fits a laptop CPU.
            # Its batch norm keeps PyTorch's momentum and eps, its decoder starts at 8x8x8f and it
            # trains in fp32 (CPUs): docs/readings.md says why each differs from the paper
            # datasets' default.
            config_defaults={
                "filters": 16,
                "latent": 16,
                "n_samples": 1000,
                "decoder_width": "8f",
                "bn_momentum": 0.1,
                "bn_eps": 1e-5,
                "precision": "fp32",
            },
        ),
    )
}
