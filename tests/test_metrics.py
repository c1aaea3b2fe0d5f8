"""Fréchet distances against analytic truths and pytorch-fid; feature extractors on CPU with tiny inputs."""

import pickle

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from pytorch_fid.inception import FID_WEIGHTS_URL

from trainables import metrics

CPU = torch.device("cpu")


def random_psd(rng, d, n=None, floor=0.0):
    """A random PSD matrix: X^T X / n (rank min(n, d)) plus floor * I."""
    n = n or 4 * d
    x = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, size=d)
    return x.T @ x / n + floor * np.eye(d)


def random_rotation(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# --------------------------------------------------------------------------- frechet_distance


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal(64), random_psd(rng, 64)
    assert abs(metrics.frechet_distance(mu, sigma, mu, sigma)) <= 1e-8 * np.trace(sigma)


def test_equal_covariances_leave_the_mean_term():
    rng = np.random.default_rng(1)
    sigma = random_psd(rng, 32)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    expected = np.sum((mu1 - mu2) ** 2)
    assert metrics.frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(expected, rel=1e-8)


def test_commuting_covariances_match_the_closed_form():
    """Diagonal (and jointly rotated diagonal) covariances: tr term is sum (sqrt(a) - sqrt(b))^2."""
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 5, 16), rng.uniform(0.1, 5, 16)
    mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu1 - mu2) ** 2)
    assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(
        expected, rel=1e-10
    )
    q = random_rotation(rng, 16)
    rotated = metrics.frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-8)


def test_symmetric():
    rng = np.random.default_rng(3)
    s1, s2 = random_psd(rng, 48), random_psd(rng, 48)
    m1, m2 = rng.standard_normal(48), rng.standard_normal(48)
    forward, backward = (
        metrics.frechet_distance(m1, s1, m2, s2),
        metrics.frechet_distance(m2, s2, m1, s1),
    )
    assert forward == pytest.approx(backward, rel=1e-10)


@pytest.mark.filterwarnings(
    "ignore:The `disp` argument is deprecated:DeprecationWarning"
)  # inside pytorch-fid
def test_agrees_with_pytorch_fid_sqrtm():
    rng = np.random.default_rng(4)
    for _ in range(2):
        s1, s2 = random_psd(rng, 256, floor=0.1), random_psd(rng, 256, floor=0.1)
        m1, m2 = rng.standard_normal(256), rng.standard_normal(256)
        ours = metrics.frechet_distance(m1, s1, m2, s2)
        assert ours == pytest.approx(calculate_frechet_distance(m1, s1, m2, s2), rel=1e-6)
        assert ours > 1.0  # the comparison is not between two zeros


def test_rank_deficient_covariances():
    """Fewer samples than dimensions gives a singular covariance; the result stays finite and exact."""
    rng = np.random.default_rng(5)
    # exact answer for commuting singular covariances: zeros on the diagonal, then a joint rotation
    a = np.array([0.0, 0.0, 1.0, 4.0, 0.0, 2.0])
    b = np.array([1.0, 0.0, 9.0, 4.0, 0.0, 0.0])
    q = random_rotation(rng, 6)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = metrics.frechet_distance(
        np.zeros(6), q @ np.diag(a) @ q.T, np.zeros(6), q @ np.diag(b) @ q.T
    )
    assert got == pytest.approx(expected, rel=1e-8)
    # sample covariances of 10 points in 64 dimensions (rank 9)
    mu1, s1 = metrics.gaussian_stats(rng.standard_normal((10, 64)))
    mu2, s2 = metrics.gaussian_stats(rng.standard_normal((10, 64)) + 0.5)
    assert np.linalg.matrix_rank(s1) == 9
    d = metrics.frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(d) and d > 0
    assert abs(metrics.frechet_distance(mu1, s1, mu1, s1)) <= 1e-8 * np.trace(s1)


def test_rejects_bad_input():
    eye = np.eye(3)
    with pytest.raises(ValueError, match="shape"):
        metrics.frechet_distance(np.zeros(3), eye, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="shape"):
        metrics.frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), eye)
    bad = eye.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        metrics.frechet_distance(np.zeros(3), bad, np.zeros(3), eye)
    with pytest.raises(ValueError, match="non-finite"):
        metrics.frechet_distance(np.array([0, np.inf, 0]), eye, np.zeros(3), eye)


def test_gaussian_stats_matches_numpy():
    rng = np.random.default_rng(6)
    features = rng.standard_normal((50, 7)).astype(np.float32)
    mu, sigma = metrics.gaussian_stats(features)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, features.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        sigma, np.cov(features.astype(np.float64), rowvar=False, ddof=1), rtol=1e-12
    )
    with pytest.raises(ValueError):
        metrics.gaussian_stats(features[:1])


# --------------------------------------------------------------------------- FID weights lookup


def test_fid_weights_path(monkeypatch, tmp_path):
    monkeypatch.delenv("DAE_FID_WEIGHTS", raising=False)
    default = metrics.fid_weights_path()
    assert default.name == metrics.FID_WEIGHTS_FILE and default.parent.name == "checkpoints"
    monkeypatch.setenv("DAE_FID_WEIGHTS", str(tmp_path / "copy.pth"))
    assert metrics.fid_weights_path() == tmp_path / "copy.pth"


def test_check_extractor(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere" / "inception.pth"
    monkeypatch.setenv("DAE_FID_WEIGHTS", str(missing))
    with pytest.raises(metrics.WeightsMissing) as err:
        metrics.check_extractor("inception-fid")
    assert (
        str(missing) in str(err.value)
        and FID_WEIGHTS_URL in str(err.value)
        and "DAE_FID_WEIGHTS" in str(err.value)
    )
    with pytest.raises(metrics.WeightsMissing):
        metrics.inception_network()
    metrics.check_extractor("digits-cnn")  # trained locally: nothing to check
    with pytest.raises(ValueError, match="unknown"):
        metrics.check_extractor("inception")
    missing.parent.mkdir()
    missing.write_bytes(b"")
    metrics.check_extractor("inception-fid")


# --------------------------------------------------------------------------- Inception


@pytest.fixture(scope="module")
def random_inception_file(tmp_path_factory):
    """Seeded random weights written in the real weights file's layout."""
    path = tmp_path_factory.mktemp("weights") / metrics.FID_WEIGHTS_FILE
    torch.save(metrics.random_inception_state_dict(), path)
    return path


def test_inception_features_and_weights_file_round_trip(random_inception_file, monkeypatch):
    metrics.clear_extractors()
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    random = metrics.get_extractor("inception-fid", CPU, cache_dir="unused", random_weights=True)
    assert random.name != "inception-fid" and random.dim == 2048  # random weights are never FID
    features = random.features(images, batch_size=3)  # two batches
    assert (
        features.shape == (4, 2048) and features.dtype == np.float64 and np.isfinite(features).all()
    )
    assert features.std(axis=0).max() > 0

    # the real loading path: file -> torch.load(weights_only=True) -> pytorch-fid's InceptionV3
    monkeypatch.setenv("DAE_FID_WEIGHTS", str(random_inception_file))
    metrics.check_extractor("inception-fid")
    loaded = metrics.get_extractor("inception-fid", CPU, cache_dir="unused")
    assert loaded.name == "inception-fid" and loaded is not random
    np.testing.assert_array_equal(loaded.features(images), features)
    assert metrics.get_extractor("inception-fid", CPU, cache_dir="unused") is loaded  # memoised

    # uint8 and 1-channel input
    as_uint8 = (images * 255).round().to(torch.uint8)
    np.testing.assert_allclose(
        loaded.features(as_uint8), loaded.features(as_uint8.float() / 255), rtol=1e-6
    )
    grey = images[:2, :1]
    np.testing.assert_array_equal(loaded.features(grey), loaded.features(grey.repeat(1, 3, 1, 1)))
    metrics.clear_extractors()


class NotATensor:
    pass


def test_weights_load_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": NotATensor()}, path)
    with pytest.raises(pickle.UnpicklingError):
        metrics.inception_network(weights=path)


def test_unknown_extractor():
    with pytest.raises(ValueError, match="unknown"):
        metrics.get_extractor("resnet", CPU, cache_dir="unused")


# --------------------------------------------------------------------------- digits-cnn


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from trainables.data import load_dataset

    cache_dir = tmp_path_factory.mktemp("cache")
    metrics.clear_extractors()
    extractor = metrics.get_extractor(
        "digits-cnn", CPU, cache_dir
    )  # trains once, saves to cache_dir
    yield load_dataset("digits", cache_dir, cache_dir), extractor, cache_dir
    metrics.clear_extractors()


def test_digits_cnn_classifies_the_test_split(digits):
    data, _, cache_dir = digits
    _, test_labels = metrics.digits_labels()
    model = metrics.digits_cnn(cache_dir)
    with torch.no_grad():
        predicted = model(data.test.float() / 255).argmax(1).numpy()
    assert (predicted == test_labels).mean() > 0.95


def test_digits_cnn_is_reused_from_disk(digits, monkeypatch):
    _, extractor, cache_dir = digits
    path = cache_dir / metrics.DIGITS_CNN_FILE
    mtime = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("digits-cnn was retrained although its file is cached")

    monkeypatch.setattr(metrics, "train_digits_cnn", no_training)
    assert (
        metrics.get_extractor("digits-cnn", CPU, cache_dir) is extractor
    )  # memoised in the process
    metrics.clear_extractors()
    again = metrics.get_extractor("digits-cnn", CPU, cache_dir)
    assert again is not extractor and again.weights_id == extractor.weights_id
    assert path.stat().st_mtime_ns == mtime


def test_digits_features(digits):
    data, extractor, _ = digits
    assert extractor.name == "digits-cnn" and extractor.dim == 64
    features = extractor.features(data.test[:100], batch_size=32)
    assert features.shape == (100, 64) and features.dtype == np.float64
    np.testing.assert_allclose(
        extractor.features(data.test[:100].float() / 255), features, rtol=1e-6
    )


def test_reference_stats_cache_and_distances(digits, monkeypatch):
    data, extractor, cache_dir = digits
    ref = metrics.reference_stats("digits", data.test, extractor, cache_dir)
    assert ref[0].shape == (64,) and ref[1].shape == (64, 64)
    files = list((cache_dir / metrics.STATS_DIR).glob("*.npz"))
    assert len(files) == 1

    with monkeypatch.context() as patch:  # a cache hit computes no features
        patch.setattr(
            type(extractor), "features", lambda *a, **k: pytest.fail("stats were recomputed")
        )
        cached = metrics.reference_stats("digits", data.test, extractor, cache_dir)
    np.testing.assert_array_equal(cached[0], ref[0])
    np.testing.assert_array_equal(cached[1], ref[1])

    # other images (same dataset name and count) get their own entry
    metrics.reference_stats("digits", data.train[: len(data.test)], extractor, cache_dir)
    assert len(list((cache_dir / metrics.STATS_DIR).glob("*.npz"))) == 2

    assert metrics.score(data.test, extractor, ref) == pytest.approx(
        0.0, abs=1e-6 * np.trace(ref[1])
    )
    to_train = metrics.score(data.train, extractor, ref)
    noise = torch.randint(
        0, 256, data.test.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    to_noise = metrics.score(noise, extractor, ref)
    assert 0 < to_train < 0.05 * to_noise


@pytest.mark.filterwarnings(
    "ignore:The `disp` argument is deprecated:DeprecationWarning"
)  # inside pytorch-fid
@pytest.mark.filterwarnings(
    "ignore:Matrix is singular"
)  # digits-cnn has dead ReLU units; sqrtm copes here
def test_score_matches_pytorch_fids_own_path(digits):
    """Batched on-device features + eigh trace == host DataLoader at batch 50 + scipy sqrtm, within 1e-3."""
    data, extractor, cache_dir = digits
    ref = metrics.reference_stats("digits", data.test, extractor, cache_dir)
    images = data.train[:700].float() / 255
    ours = metrics.score(images, extractor, ref)
    theirs = metrics.pytorch_fid_distance(images, extractor, ref)
    assert ours == pytest.approx(theirs, abs=1e-3)
    assert ours > 0.01  # not two zeros


def test_frechet_distance_takes_tensors_on_their_device():
    rng = np.random.default_rng(7)
    s1, s2 = random_psd(rng, 16), random_psd(rng, 16)
    m1, m2 = rng.standard_normal(16), rng.standard_normal(16)
    expected = metrics.frechet_distance(m1, s1, m2, s2)
    mu, sigma = (
        torch.from_numpy(m1),
        torch.from_numpy(s1).float(),
    )  # float32 tensors are promoted to float64
    assert metrics.frechet_distance(mu, sigma, m2, s2) == pytest.approx(expected, rel=1e-6)
    features = torch.randn(40, 5, dtype=torch.float64)
    mu_t, sigma_t = metrics.moments(features)
    np.testing.assert_allclose(sigma_t.numpy(), np.cov(features.numpy(), rowvar=False), rtol=1e-12)
    assert mu_t.device == features.device
