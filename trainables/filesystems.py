"""A folder or a URI as one pyarrow filesystem: where checkpoints go (checkpoint_dir), and the
results mirror (study/mirror.py).

Local folders and buckets take the same code path: pyarrow's own filesystems (local, s3://, gs://,
hdfs://, file://) first, then any protocol fsspec knows through pyarrow's FSSpecHandler. No torch
here: the report reads a mirror through it.
"""

import os

import pyarrow as pa
import pyarrow.fs as pafs


def is_uri(location) -> bool:
    return "://" in str(location)


def filesystem(location: str, name: str) -> tuple[pafs.FileSystem, str]:
    """A local folder (absolute) or a URI -> (pyarrow filesystem, path inside it); `name` is what
    the messages call the location (the config field or flag it came from).

    ValueError for a relative path or a protocol neither pyarrow nor fsspec knows; OSError when the
    filesystem cannot be reached (e.g. the region of an S3 bucket cannot be resolved)."""
    if not is_uri(location):
        location = os.path.expanduser(location)  # "~": the home of the node that uses it
    try:
        return pafs.FileSystem.from_uri(location)
    except pa.ArrowInvalid as exc:
        if not is_uri(location):
            raise ValueError(
                f"{name}: {location!r} is neither an absolute folder nor a URI ({exc})"
            ) from None
        pyarrow_error = exc
    try:
        import fsspec
    except ImportError:
        raise ValueError(f"{name}: {location!r}: {pyarrow_error}") from None
    try:
        fs, path = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as exc:  # an unknown protocol, or its package is missing
        raise ValueError(f"{name}: {location!r}: {exc}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
