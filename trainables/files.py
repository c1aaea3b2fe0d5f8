"""Writing a cache file that other processes may be reading or writing at the same moment."""

import os
import secrets
from pathlib import Path


def atomic_write(path: Path, write) -> None:
    """write(file) into a temporary file in the same folder, then rename it to `path`.

    A rename within a folder is atomic, so a racing process sees the old file or the whole new one,
    never half of one; a write that fails leaves no temporary file behind. The file gets the mode
    open() gives (0666 less the umask: 0644 as a rule), as the store's parts do, so that whoever
    may read the folder may read it (tempfile.mkstemp would make it 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    file = open(tmp, "xb")  # a name no other writer holds: one that did raises here, before try
    try:
        with file:
            write(file)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
