"""trainables.files.atomic_write: readers see the old file or the whole new one, and a failed write
leaves nothing behind."""

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
