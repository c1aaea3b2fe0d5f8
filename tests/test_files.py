"""trainables.files.atomic_write: readers see the old file or the whole new one, and a failed write
leaves nothing behind."""

import os

import pytest

from trainables.files import atomic_write


def test_a_write_replaces_the_file_whole_and_a_failed_one_leaves_it_and_no_temp_file(tmp_path):
    path = tmp_path / "cache" / "stats.npz"
    atomic_write(path, lambda f: f.write(b"first"))  # the folder is created
    assert path.read_bytes() == b"first"

    def fails_half_way(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fails_half_way)
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["stats.npz"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_the_file_gets_the_mode_the_umask_gives(tmp_path, umask, mode):
    """As the store's parts: 0644 under the usual umask, so that others can read the pictures."""
    before = os.umask(umask)
    try:
        atomic_write(tmp_path / "grid.png", lambda f: f.write(b"png"))
    finally:
        os.umask(before)
    assert (tmp_path / "grid.png").stat().st_mode & 0o777 == mode
