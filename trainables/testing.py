"""Datasets written in the real on-disk formats, for tests and benchmarks that must run offline.

The writers make CIFAR-10's pickled batches and CelebA's aligned JPEGs with its partition file, so
the real readers (trainables/data.py) run on them unchanged; `natural_images` makes images of
CIFAR-10's shape from the photographs bundled with scikit-learn, where an autoencoder's codes,
its GMM and its scores behave as on real data, as random pixels' do not. Load what they write with
verify_checksums=False: their checksums are not the official ones.
"""

import pickle
from pathlib import Path

import numpy as np


def write_cifar10_fixture(
    root: Path, n_train_per_batch: int = 8, n_test: int = 10, seed: int = 0, images=None
) -> Path:
    """ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} as the official
    pickled dicts; random pixels, or `images` (uint8 (5 * n_train_per_batch + n_test, 3, 32, 32),
    the training images first)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    files = [(f"data_batch_{i}", n_train_per_batch) for i in range(1, 6)] + [("test_batch", n_test)]
    written = 0
    for name, n in files:
        labels = rng.integers(0, 10, n).tolist()
        if images is None:
            pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        else:
            pixels = np.asarray(images[written : written + n], dtype=np.uint8).reshape(n, 3072)
        written += n
        batch = {
            b"batch_label": f"fixture {name}".encode(),
            b"labels": labels,
            b"data": pixels,
            b"filenames": [f"img_{name}_{i}.png".encode() for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    meta = {
        b"num_cases_per_batch": n_train_per_batch,
        b"label_names": [
            b"airplane",
            b"automobile",
            b"bird",
            b"cat",
            b"deer",
            b"dog",
            b"frog",
            b"horse",
            b"ship",
            b"truck",
        ],
        b"num_vis": 3072,
    }
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return Path(root)


def write_celeba_fixture(
    root: Path, n_train: int = 12, n_valid: int = 3, n_test: int = 6, seed: int = 0, images=None
) -> Path:
    """ROOT/celeba/img_align_celeba/NNNNNN.jpg (178x218, the aligned size) and
    list_eval_partition.txt; or, given `images` (uint8 (n_train + n_valid + n_test, 218, 178, 3)),
    those pixels exactly, as NNNNNN.png (the reader takes the names the partition file lists)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = Path(root) / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    lines = []
    partitions = [0] * n_train + [1] * n_valid + [2] * n_test
    for i, part in enumerate(partitions, start=1):
        name = f"{i:06d}.jpg" if images is None else f"{i:06d}.png"
        if images is None:
            # smooth colour blocks + a little noise: compresses like a photo, decodes fast
            blocks = rng.integers(0, 256, (7, 6, 3), dtype=np.uint8)
            pixels = np.kron(blocks, np.ones((32, 32, 1), dtype=np.uint8))[:218, :178]
            pixels = np.clip(pixels + rng.integers(-8, 9, pixels.shape), 0, 255).astype(np.uint8)
        else:
            pixels = np.asarray(images[i - 1], dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / "img_align_celeba" / name, quality=90)
        lines.append(f"{name} {part}")
    (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return Path(root)


def natural_images(n: int, seed: int = 0, side: int = 32) -> np.ndarray:
    """uint8 (n, 3, side, side) patches of photographs: cut at random places, half of them mirrored,
    from the two photographs bundled with scikit-learn (no download). Natural-image statistics,
    where an autoencoder's codes, its GMM and its scores behave as on real data, as noise's do not.
    """
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = load_sample_images().images  # (427, 640, 3) uint8 each
    which = rng.integers(0, len(photos), n)
    patches = np.empty((n, 3, side, side), dtype=np.uint8)
    for number, photo in enumerate(photos):
        picked = np.flatnonzero(which == number)
        # every side x side window: (rows, columns, 3, side, side), a view
        windows = np.lib.stride_tricks.sliding_window_view(photo, (side, side), axis=(0, 1))
        rows = rng.integers(0, windows.shape[0], len(picked))
        columns = rng.integers(0, windows.shape[1], len(picked))
        patches[picked] = windows[rows, columns]
    mirrored = rng.random(n) < 0.5
    patches[mirrored] = patches[mirrored][..., ::-1]
    return patches
