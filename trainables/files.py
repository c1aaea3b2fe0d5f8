"""Writing a cache file that other processes may be reading or writing at the same moment."""

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, write) -> None:
    """write(file) into a temporary file in the same folder, then rename it to `path`.

    A rename within a folder is atomic, so a racing process sees the old file or the whole new one,
    never half of one; a write that fails leaves no temporary file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
