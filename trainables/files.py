"""Writing a file that other processes may be reading or writing at the same moment: the one way
this code writes a cache, a result part or a picture.

`atomic_write` writes a complete, fsynced file under a temporary name in the same folder and renames
it into place: a racing process sees the old file or the whole new one, never half of one, and a
crash (or a power cut) after the rename cannot leave the new name pointing at unwritten blocks.
"""

import contextlib
import os
import secrets
from pathlib import Path


def write_synced(path: Path, write) -> None:
    """write(file) into `path` (created or truncated), flushed and fsynced before this returns; a
    write that fails or is interrupted takes the file with it. The file gets the mode open() gives
    (0666 less the umask: 0644 as a rule), so that whoever may read the folder may read it."""
    try:
        with open(path, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, write, temp: Path | None = None) -> None:
    """write(file) into a temporary file in path's folder (`temp`, or a fresh hidden name that no
    other writer holds), then rename it to `path` and sync the folder; a write that fails leaves no
    temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp or path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    write_synced(temp, write)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """fsync a folder, so that a rename in it survives a crash (where the OS allows it)."""
    with contextlib.suppress(OSError):  # some filesystems cannot open or sync a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
