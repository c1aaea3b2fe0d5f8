"""Datasets as uint8 tensors (N, C, H, W) with a fixed train/test split.

torchvision is used only to download: its CIFAR10/CelebA classes md5-check every file (so tiny test fixtures fail)
and CelebA also insists on attribute/landmark files we never read. We read the standard on-disk layouts ourselves,
verifying the real files' checksums by default; `verify=False` is the switch for the tests' fixtures.
"""

import hashlib
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SHAPES = {"cifar10": (3, 32, 32), "celeba": (3, 64, 64), "digits": (1, 32, 32)}

CIFAR_DIR = "cifar-10-batches-py"
CELEBA_DIR = "celeba"
CELEBA_IMAGES = "img_align_celeba"
CELEBA_SPLITS = "list_eval_partition.txt"
CELEBA_CROP = 140  # paper: centre crop 140x140, then down-scale to 64x64
DIGITS_TEST = 450

LAYOUTS = {
    "cifar10": "the torchvision layout (data_batch_1..5, test_batch)",
    "celeba": f"{CELEBA_IMAGES}/*.jpg + {CELEBA_SPLITS}",
}
HOW_TO_PROVIDE = (
    "Download it with `python study/launch.py ... --download` (needs internet),\n"
    "or put {layout} at {where},\n"
    "or set DAE_DATA_ROOT / --data-root to the folder that holds {folder}."
)


class DatasetMissing(FileNotFoundError):
    """The dataset's files are not where we looked; raised at launch, before any trial runs."""


class DatasetCorrupt(ValueError):
    """A dataset file exists but fails its checksum or cannot be read."""


@dataclass(frozen=True)
class Dataset:
    name: str
    train: torch.Tensor  # uint8 (N, C, H, W) on CPU
    test: torch.Tensor


def _missing(name: str, where: Path, what: list[Path]) -> DatasetMissing:
    listed = ", ".join(str(p) for p in what[:3]) + (
        f" and {len(what) - 3} more" if len(what) > 3 else ""
    )
    folder = CIFAR_DIR if name == "cifar10" else CELEBA_DIR
    how = HOW_TO_PROVIDE.format(layout=LAYOUTS[name], where=where, folder=folder)
    return DatasetMissing(f"{name} not found: looked for {listed}.\n{how}")


def _corrupt(path: Path, why: str) -> DatasetCorrupt:
    return DatasetCorrupt(
        f"{path}: {why}. Delete it and download again; pass verify_checksums=False only for the tests' tiny fixtures."
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


def _cifar_files() -> list[tuple[str, str]]:
    """(file name, official md5) for the 5 train batches then the test batch, as torchvision lists them."""
    from torchvision.datasets import CIFAR10

    return [(name, md5) for name, md5 in CIFAR10.train_list + CIFAR10.test_list]


def _celeba_split_md5() -> str:
    from torchvision.datasets import CelebA

    return next(md5 for _, md5, name in CelebA.file_list if name == CELEBA_SPLITS)


def check_available(name: str, root: Path) -> None:
    """Cheap existence check (no decoding, no checksum) so a missing dataset fails at launch."""
    root = Path(root)
    if name == "digits":
        return
    if name == "cifar10":
        folder = root / CIFAR_DIR
        wanted = [folder / file for file, _ in _cifar_files()]
    elif name == "celeba":
        folder = root / CELEBA_DIR
        wanted = [folder / CELEBA_IMAGES, folder / CELEBA_SPLITS]
    else:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(IMAGE_SHAPES)}")
    missing = [folder] if not folder.is_dir() else [p for p in wanted if not p.exists()]
    if missing:
        raise _missing(name, folder, missing)


def download(name: str, root: Path) -> None:
    """Fetch the official files with torchvision into the layout our readers expect."""
    import torchvision

    if name not in IMAGE_SHAPES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(IMAGE_SHAPES)}")
    if name == "digits":
        return  # bundled with scikit-learn
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if name == "cifar10":
            for train in (True, False):
                torchvision.datasets.CIFAR10(str(root), train=train, download=True)
        else:
            torchvision.datasets.CelebA(str(root), split="all", target_type=[], download=True)
    except (
        Exception
    ) as exc:  # network, quota (CelebA's host often refuses), disk: all need the same advice
        folder = root / (CIFAR_DIR if name == "cifar10" else CELEBA_DIR)
        raise DatasetMissing(
            f"downloading {name} into {root} failed: {type(exc).__name__}: {exc}\n"
            f"Place the files by hand instead: {LAYOUTS[name]} at {folder}."
        ) from exc


def _read_cifar_batch(path: Path, md5: str, verify: bool) -> np.ndarray:
    """One official python batch -> uint8 (N, 3, 32, 32). Checksum first: this is the one pickle we accept."""
    if verify:
        _check_md5(path, md5)
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        pixels = np.asarray(batch[b"data"])
    except Exception as exc:  # unpickling a damaged file can raise almost anything
        raise _corrupt(
            path, f"cannot be read as a CIFAR-10 batch ({type(exc).__name__}: {exc})"
        ) from exc
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
        raise _corrupt(
            path, f"expected uint8 data of shape (N, 3072), got {pixels.dtype} {pixels.shape}"
        )
    return pixels.reshape(-1, 3, 32, 32)  # row-major: 1024 R, then 1024 G, then 1024 B


def _load_cifar10(root: Path, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    folder = root / CIFAR_DIR
    batches = [_read_cifar_batch(folder / file, md5, verify) for file, md5 in _cifar_files()]
    return np.concatenate(batches[:-1]), batches[-1]


def _celeba_partitions(path: Path) -> dict[str, list[str]]:
    """list_eval_partition.txt -> {"0": train files, "1": valid files, "2": test files}."""
    parts: dict[str, list[str]] = {"0": [], "1": [], "2": []}
    try:
        for line in path.read_text().splitlines():
            if line.strip():
                file, part = line.split()
                parts[part].append(file)
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise _corrupt(
            path, f"expected lines like '000001.jpg 0' with partitions 0/1/2 ({exc!r})"
        ) from exc
    return parts


def _decode_celeba(path: Path) -> np.ndarray:
    """One aligned face -> uint8 (3, 64, 64): centre crop 140x140, bilinear (antialiased) down-scale, as the paper."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            left, top = (im.width - CELEBA_CROP) // 2, (im.height - CELEBA_CROP) // 2
            im = im.crop((left, top, left + CELEBA_CROP, top + CELEBA_CROP)).resize(
                (64, 64), Image.BILINEAR
            )
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except OSError as exc:
        raise _corrupt(path, f"cannot be decoded as an image ({exc})") from exc


def _celeba_split(folder: Path, files: list[str], cache: Path) -> np.ndarray:
    """Decode a partition once into a plain .npy; the count in its name keeps a fixture from masking the real set."""
    if cache.exists():
        try:
            array = np.load(cache, allow_pickle=False)
            if array.shape == (len(files), *IMAGE_SHAPES["celeba"]) and array.dtype == np.uint8:
                return array
        except (OSError, ValueError):
            pass  # a half-written or stale cache: decode again
    images = folder / CELEBA_IMAGES
    missing = [images / f for f in files if not (images / f).is_file()]
    if missing:
        raise _missing("celeba", folder, missing)
    array = np.empty((len(files), *IMAGE_SHAPES["celeba"]), dtype=np.uint8)
    with ThreadPoolExecutor(
        max_workers=os.cpu_count() or 1
    ) as pool:  # PIL releases the GIL while decoding
        for i, image in enumerate(
            pool.map(_decode_celeba, (images / f for f in files), chunksize=256)
        ):
            array[i] = image
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(
        f"{cache.stem}.{os.getpid()}.partial.npy"
    )  # workers may decode at once: write, rename
    np.save(partial, array)
    os.replace(partial, cache)
    return array


def _load_celeba(root: Path, cache_dir: Path, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Train = partition 0, test = partition 2; the valid partition is unused, as in the paper's protocol."""
    check_available("celeba", root)
    folder = root / CELEBA_DIR
    if verify:
        _check_md5(folder / CELEBA_SPLITS, _celeba_split_md5())
    parts = _celeba_partitions(folder / CELEBA_SPLITS)
    cache = Path(cache_dir) / "celeba64"
    train = _celeba_split(folder, parts["0"], cache / f"train-{len(parts['0'])}.npy")
    test = _celeba_split(folder, parts["2"], cache / f"test-{len(parts['2'])}.npy")
    return train, test


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits up-scaled to 32x32 so the CIFAR-10 architecture (4 stride-2 stages) fits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = torch.from_numpy(digits.images).float().unsqueeze(1) * (
        255.0 / 16.0
    )  # values 0..16 -> 0..255
    pixels = F.interpolate(pixels, size=(32, 32), mode="bilinear", align_corners=False)
    images = pixels.round().clamp(0, 255).to(torch.uint8).numpy()
    train, test = train_test_split(
        images, test_size=DIGITS_TEST, random_state=0, stratify=digits.target
    )
    return train, test


_MEMO: dict[
    tuple[str, str, bool], Dataset
] = {}  # a Ray worker process may run several trials: load once


def clear_memo() -> None:
    """Forget datasets loaded in this process (tests use it to exercise the on-disk cache)."""
    _MEMO.clear()


def load_dataset(name: str, root: Path, cache_dir: Path, verify: bool = True) -> Dataset:
    """Load one dataset as uint8 CPU tensors, memoised per process."""
    key = (name, str(root), verify)
    if key in _MEMO:
        return _MEMO[key]
    root = Path(root)
    if name == "digits":
        train, test = _load_digits()
    elif name == "cifar10":
        check_available(name, root)
        train, test = _load_cifar10(root, verify)
    elif name == "celeba":
        train, test = _load_celeba(root, Path(cache_dir), verify)
    else:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(IMAGE_SHAPES)}")
    dataset = Dataset(
        name,
        torch.from_numpy(np.ascontiguousarray(train)),
        torch.from_numpy(np.ascontiguousarray(test)),
    )
    _MEMO[key] = dataset
    return dataset


def load_for_config(cfg) -> Dataset:
    return load_dataset(cfg.dataset, cfg.data_path, cfg.cache_path, cfg.verify_checksums)
