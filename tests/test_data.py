"""The dataset readers on tiny fixtures in the real on-disk formats (no network)."""

import dataclasses
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures import MakesADirectory
from PIL import Image

from trainables import data
from trainables.config import make_config
from trainables.testing import write_celeba_fixture, write_cifar10_fixture


@pytest.fixture(autouse=True)
def fresh_memo():
    data.clear_memo()
    yield
    data.clear_memo()


def test_cifar10_fixture_decodes_row_major_chw(tmp_path):
    root = write_cifar10_fixture(tmp_path / "data")
    ds = data.load_dataset("cifar10", root, tmp_path / "cache", verify=False)
    assert ds.train.shape == (40, 3, 32, 32) and ds.test.shape == (10, 3, 32, 32)
    assert ds.train.dtype == ds.test.dtype == torch.uint8

    def raw(name):
        with open(root / "cifar-10-batches-py" / name, "rb") as f:
            return pickle.load(f, encoding="bytes")[b"data"]

    first, test = raw("data_batch_1"), raw("test_batch")
    img = ds.train[0].numpy()
    assert img[0, 0, 1] == first[0, 1]  # red plane first, row-major
    assert img[0, 1, 0] == first[0, 32]  # next row
    assert img[1, 0, 0] == first[0, 1024]  # green plane after 1024 reds
    assert img[2, 31, 31] == first[0, 3071]
    expected_train = np.concatenate([raw(f"data_batch_{i}") for i in range(1, 6)]).reshape(
        40, 3, 32, 32
    )
    np.testing.assert_array_equal(ds.train.numpy(), expected_train)
    np.testing.assert_array_equal(ds.test.numpy(), test.reshape(10, 3, 32, 32))


def test_cifar10_fixture_fails_official_checksum(tmp_path):
    root = write_cifar10_fixture(tmp_path)
    with pytest.raises(data.DatasetCorrupt, match="data_batch_1") as err:
        data.load_dataset("cifar10", root, tmp_path / "cache", verify=True)
    assert "md5" in str(err.value) and "verify_checksums=False" in str(err.value)


def test_truncated_cifar_batch_is_corrupt_not_a_pickle_traceback(tmp_path):
    root = write_cifar10_fixture(tmp_path)
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[: batch.stat().st_size // 2])
    with pytest.raises(data.DatasetCorrupt, match="data_batch_3"):
        data.load_dataset("cifar10", root, tmp_path / "cache", verify=False)


@pytest.mark.parametrize("where", ["the whole file", "inside the batch dict"])
def test_a_crafted_cifar_batch_cannot_run_code_even_with_checksums_off(tmp_path, where):
    root = write_cifar10_fixture(tmp_path / "data")
    marker = tmp_path / "pwned"
    payload = MakesADirectory(marker)
    if where != "the whole file":
        payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [payload]}
    with open(root / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump(payload, f, protocol=2)
    with pytest.raises(data.DatasetCorrupt, match="data_batch_1.*posix.mkdir is not part of"):
        data.load_dataset("cifar10", root, tmp_path / "cache", verify=False)
    assert not marker.exists()


def test_a_malicious_celeba_cache_or_cifar10_batch_is_never_unpickled(tmp_path):
    """The CelebA cache replaced by a payload is rebuilt from the images; a CIFAR-10 batch that is
    one fails its checksum, which is checked before the batch is read."""
    marker = tmp_path / "pwned"
    root = write_celeba_fixture(tmp_path / "data", n_train=3, n_valid=0, n_test=2)
    cache = tmp_path / "cache" / "celeba64" / "train-3.npy"
    cache.parent.mkdir(parents=True)
    np.save(cache, np.array([MakesADirectory(marker)], dtype=object), allow_pickle=True)
    celeba = data.load_dataset("celeba", root, tmp_path / "cache", verify=False)
    assert celeba.train.shape == (3, 3, 64, 64)

    root = write_cifar10_fixture(tmp_path / "cifar")
    with open(root / data.CIFAR_DIR / "data_batch_1", "wb") as f:
        pickle.dump(MakesADirectory(marker), f)
    with pytest.raises(data.DatasetCorrupt, match="md5 differs"):
        data.load_dataset("cifar10", root, tmp_path, verify=True)
    assert not marker.exists()


def test_batches_pickled_by_numpy_1_still_load(tmp_path):
    """The official batches name numpy.core.multiarray (numpy 1), not numpy._core (numpy 2)."""
    root = write_cifar10_fixture(tmp_path / "data")
    for batch in (root / "cifar-10-batches-py").glob("*_batch*"):
        batch.write_bytes(batch.read_bytes().replace(b"numpy._core.", b"numpy.core."))
    assert b"numpy.core.multiarray" in (root / "cifar-10-batches-py" / "test_batch").read_bytes()
    ds = data.load_dataset("cifar10", root, tmp_path / "cache", verify=False)
    assert ds.train.shape == (40, 3, 32, 32)


def test_load_for_config_uses_the_config_paths(tmp_path):
    root = write_cifar10_fixture(tmp_path / "data", n_train_per_batch=2, n_test=3)
    cfg = make_config(
        {
            "dataset": "cifar10",
            "data_root": str(root),
            "cache_dir": str(tmp_path / "c"),
            "verify_checksums": False,
        }
    )
    ds = data.load_for_config(cfg)
    assert ds.name == "cifar10" and ds.train.shape[0] == 10 and ds.test.shape[0] == 3
    assert data.load_for_config(cfg) is ds  # memoised per process


def test_celeba_fixture_loads_and_caches(tmp_path):
    root, cache = write_celeba_fixture(tmp_path / "data"), tmp_path / "cache"
    ds = data.load_dataset("celeba", root, cache, verify=False)
    assert ds.train.shape == (12, 3, 64, 64) and ds.test.shape == (6, 3, 64, 64)
    assert ds.train.dtype == torch.uint8
    cached = sorted(p.name for p in (cache / "celeba64").iterdir())
    assert cached == ["test-6.npy", "train-12.npy"]
    np.testing.assert_array_equal(
        np.load(cache / "celeba64" / "train-12.npy", allow_pickle=False), ds.train.numpy()
    )

    data.clear_memo()
    (
        root / "celeba" / "img_align_celeba" / "000001.jpg"
    ).unlink()  # the second load must not decode at all
    again = data.load_dataset("celeba", root, cache, verify=False)
    assert torch.equal(again.train, ds.train) and torch.equal(again.test, ds.test)


def test_celeba_cache_is_keyed_by_partition_size(tmp_path):
    cache = tmp_path / "cache"
    small = data.load_dataset(
        "celeba", write_celeba_fixture(tmp_path / "a", 4, 1, 2), cache, verify=False
    )
    large = data.load_dataset(
        "celeba", write_celeba_fixture(tmp_path / "b", 5, 1, 3, seed=1), cache, verify=False
    )
    assert small.train.shape[0] == 4 and large.train.shape[0] == 5 and large.test.shape[0] == 3


def test_celeba_centre_crop_is_140_then_64(tmp_path):
    root = write_celeba_fixture(tmp_path, n_train=2, n_valid=0, n_test=1)
    pixels = np.zeros((218, 178, 3), dtype=np.uint8)  # black border, white centre 140x140
    top, left = (218 - 140) // 2, (178 - 140) // 2
    pixels[top : top + 140, left : left + 140] = 255
    Image.fromarray(pixels).save(root / "celeba" / "img_align_celeba" / "000001.jpg", quality=100)
    ds = data.load_dataset("celeba", root, tmp_path / "cache", verify=False)
    assert (
        ds.train[0].min() >= 240
    )  # a crop off by a few pixels or a full-frame resize would show black edges


def test_celeba_verify_checks_partition_md5(tmp_path):
    root = write_celeba_fixture(tmp_path, n_train=2, n_valid=0, n_test=1)
    with pytest.raises(data.DatasetCorrupt, match="list_eval_partition.txt"):
        data.load_dataset("celeba", root, tmp_path / "cache", verify=True)


def test_celeba_missing_listed_image(tmp_path):
    root = write_celeba_fixture(tmp_path, n_train=2, n_valid=0, n_test=1)
    (root / "celeba" / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(data.DatasetMissing, match="000002.jpg"):
        data.load_dataset("celeba", root, tmp_path / "cache", verify=False)


def test_digits_split_and_scale(tmp_path):
    ds = data.load_dataset("digits", tmp_path / "ignored", tmp_path / "cache")
    assert ds.train.shape == (1347, 1, 32, 32) and ds.test.shape == (450, 1, 32, 32)
    assert (
        ds.train.dtype == torch.uint8
        and 250 <= int(ds.train.max()) <= 255
        and int(ds.train.min()) == 0
    )
    data.clear_memo()
    again = data.load_dataset("digits", tmp_path / "elsewhere", tmp_path / "cache")
    assert torch.equal(again.train, ds.train) and torch.equal(again.test, ds.test)
    data.check_available("digits", tmp_path / "nothing-here")


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("celeba", "celeba")])
def test_missing_dataset_says_where_and_how(tmp_path, name, folder):
    for attempt in (
        lambda: data.check_available(name, tmp_path),
        lambda: data.load_dataset(name, tmp_path, tmp_path / "cache"),
    ):
        with pytest.raises(data.DatasetMissing) as err:
            attempt()
        message = str(err.value)
        assert str(tmp_path / folder) in message and "DAE_DATA_ROOT" in message and name in message
        assert len(message.splitlines()) <= 4


def test_partial_cifar_folder_names_the_missing_file(tmp_path):
    root = write_cifar10_fixture(tmp_path)
    (root / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(data.DatasetMissing, match="test_batch"):
        data.check_available("cifar10", root)


def test_download_fetches_into_the_root_and_rejects_unknown_names(tmp_path, monkeypatch):
    """The dataset's own fetch runs on the root, created first; a bundled dataset writes nothing;
    a failed fetch says where to put the files by hand."""
    fetched = []
    spec = data.DATASETS["cifar10"]
    monkeypatch.setitem(data.DATASETS, "cifar10", dataclasses.replace(spec, fetch=fetched.append))
    data.download("cifar10", tmp_path / "root")
    assert fetched == [tmp_path / "root"] and fetched[0].is_dir()
    data.download("digits", tmp_path / "bundled")  # bundled: nothing to fetch
    assert not (tmp_path / "bundled").exists()
    with pytest.raises(ValueError, match="unknown dataset"):
        data.download("mnist", tmp_path)

    def refused(root):
        raise ConnectionError("no route to host")

    monkeypatch.setitem(data.DATASETS, "cifar10", dataclasses.replace(spec, fetch=refused))
    with pytest.raises(data.DatasetMissing, match="no route to host.*\n.*by hand"):
        data.download("cifar10", tmp_path / "root")


def test_image_shapes_match_loaded_data(tmp_path):
    ds = data.load_dataset("digits", tmp_path, tmp_path)
    assert tuple(ds.train.shape[1:]) == data.DATASETS["digits"].image_shape


def test_the_dataset_table_loads_without_torch():
    """trainables.config takes its dataset names from trainables.data, and the store and the
    analysis import the config: neither may load torch."""
    repo = Path(__file__).resolve().parents[1]
    code = (
        "import sys, trainables.config; print(sorted({'torch', 'torchvision'} & set(sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": str(repo)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_celeba_is_centre_cropped_to_140_then_scaled_bilinearly(tmp_path):
    """Noise images stored losslessly: each loaded image is the centre 140x140 of its source (rows
    39..178, columns 19..158 of 218x178) scaled to 64x64 by an antialiased bilinear filter, which
    torch's interpolate computes independently of PIL (in float, where PIL rounds in fixed point:
    one grey level apart at most). Nearest-neighbour scaling, or a crop one pixel off, lands tens of
    levels away on noise."""
    rng = np.random.default_rng(0)
    sources = rng.integers(0, 256, (3, 218, 178, 3), dtype=np.uint8)
    root = write_celeba_fixture(tmp_path / "data", 2, 0, 1, images=sources)
    ds = data.load_dataset("celeba", root, tmp_path / "cache", verify=False)
    loaded = torch.cat([ds.train, ds.test]).float()

    def scaled(top: int, left: int, mode: str) -> torch.Tensor:
        crops = torch.from_numpy(sources[:, top : top + 140, left : left + 140]).permute(0, 3, 1, 2)
        smooth = {"antialias": True} if mode == "bilinear" else {}
        return F.interpolate(crops.float(), size=(64, 64), mode=mode, **smooth).round()

    assert (loaded - scaled(39, 19, "bilinear")).abs().max() <= 1
    for wrong in (
        scaled(39, 19, "nearest"),
        scaled(40, 19, "bilinear"),
        scaled(39, 20, "bilinear"),
    ):
        assert (loaded - wrong).abs().max() > 10
