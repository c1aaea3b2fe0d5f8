"""The Fréchet distance and Gaussian statistics against analytic truths and pytorch-fid's sqrtm."""

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch
from pytorch_fid import fid_score

from trainables import frechet


def random_psd(rng, d, n=None, floor=0.0):
    """A random PSD matrix: X^T X / n (rank min(n, d)) plus floor * I."""
    n = n or 4 * d
    x = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, size=d)
    return x.T @ x / n + floor * np.eye(d)


def random_rotation(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal(64), random_psd(rng, 64)
    assert abs(frechet.frechet_distance(mu, sigma, mu, sigma)) <= 1e-8 * np.trace(sigma)


def test_equal_covariances_leave_the_mean_term():
    rng = np.random.default_rng(1)
    sigma = random_psd(rng, 32)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    expected = np.sum((mu1 - mu2) ** 2)
    assert frechet.frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(expected, rel=1e-8)


def test_commuting_covariances_match_the_closed_form():
    """Diagonal (and jointly rotated diagonal) covariances: tr term is sum (sqrt(a) - sqrt(b))^2."""
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 5, 16), rng.uniform(0.1, 5, 16)
    mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu1 - mu2) ** 2)
    assert frechet.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(
        expected, rel=1e-10
    )
    q = random_rotation(rng, 16)
    rotated = frechet.frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-8)


def test_symmetric():
    rng = np.random.default_rng(3)
    s1, s2 = random_psd(rng, 48), random_psd(rng, 48)
    m1, m2 = rng.standard_normal(48), rng.standard_normal(48)
    forward, backward = (
        frechet.frechet_distance(m1, s1, m2, s2),
        frechet.frechet_distance(m2, s2, m1, s1),
    )
    assert forward == pytest.approx(backward, rel=1e-10)


def test_many_sets_against_one_reference_of_few_images():
    """A trial's sets against one reference decomposed once, kept to its rank (here 5 of 48 dims,
    as 5 reference images give): each distance equals the one computed with the roles swapped,
    which decomposes the set's covariance instead. Both are exact, so they agree to float64
    roundoff amplified by the 48-d eigendecompositions (1e-9 relative is far above that)."""
    rng = np.random.default_rng(4)
    reference = (rng.standard_normal(48), random_psd(rng, 48, n=5))
    sets = [(rng.standard_normal(48), random_psd(rng, 48, n=n)) for n in (3, 48, 400)]
    distances = frechet.frechet_distances(reference, sets)
    for (mu, sigma), distance in zip(sets, distances, strict=True):
        assert distance == pytest.approx(frechet.frechet_distance(*reference, mu, sigma), rel=1e-9)


def sqrtm_taking_disp(matrix: np.ndarray, disp: bool = True):
    """scipy.linalg.sqrtm as scipy < 1.18 had it. pytorch-fid 0.3.0's calculate_frechet_distance
    calls sqrtm(M, disp=False) and unpacks (root, error estimate); scipy 1.18 removed `disp`, so
    there it raises TypeError. With disp=False this returns what scipy < 1.18 returned, the root
    and ||root @ root - M||_F^2 / ||M||_F; without it, the root alone (scipy's default on both
    lines)."""
    root = scipy.linalg.sqrtm(matrix)
    if disp:
        return root
    return root, np.linalg.norm(root @ root - matrix, "fro") ** 2 / np.linalg.norm(matrix, "fro")


def test_agrees_with_pytorch_fid_sqrtm(monkeypatch):
    """pytorch-fid's own calculate_frechet_distance, end to end, on every scipy: only the sqrtm it
    looks up is swapped (for sqrtm_taking_disp), and only inside pytorch-fid."""
    monkeypatch.setattr(fid_score, "linalg", SimpleNamespace(sqrtm=sqrtm_taking_disp))
    rng = np.random.default_rng(4)
    for _ in range(2):
        s1, s2 = random_psd(rng, 256, floor=0.1), random_psd(rng, 256, floor=0.1)
        m1, m2 = rng.standard_normal(256), rng.standard_normal(256)
        ours = frechet.frechet_distance(m1, s1, m2, s2)
        theirs = fid_score.calculate_frechet_distance(m1, s1, m2, s2)
        assert ours == pytest.approx(theirs, rel=1e-6)
        assert ours > 1.0  # the comparison is not between two zeros


def test_rank_deficient_covariances():
    """Fewer samples than dimensions give a singular covariance; the result stays finite, exact."""
    rng = np.random.default_rng(5)
    # exact answer for commuting singular covariances: zeros on the diagonal, then a joint rotation
    a = np.array([0.0, 0.0, 1.0, 4.0, 0.0, 2.0])
    b = np.array([1.0, 0.0, 9.0, 4.0, 0.0, 0.0])
    q = random_rotation(rng, 6)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet.frechet_distance(
        np.zeros(6), q @ np.diag(a) @ q.T, np.zeros(6), q @ np.diag(b) @ q.T
    )
    assert got == pytest.approx(expected, rel=1e-8)
    # sample covariances of 10 points in 64 dimensions (rank 9)
    mu1, s1 = frechet.gaussian_stats(rng.standard_normal((10, 64)))
    mu2, s2 = frechet.gaussian_stats(rng.standard_normal((10, 64)) + 0.5)
    assert np.linalg.matrix_rank(s1) == 9
    d = frechet.frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(d) and d > 0
    assert abs(frechet.frechet_distance(mu1, s1, mu1, s1)) <= 1e-8 * np.trace(s1)


def test_rejects_bad_input():
    eye = np.eye(3)
    with pytest.raises(ValueError, match="shape"):
        frechet.frechet_distance(np.zeros(3), eye, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="shape"):
        frechet.frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), eye)
    bad = eye.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        frechet.frechet_distance(np.zeros(3), bad, np.zeros(3), eye)
    with pytest.raises(ValueError, match="non-finite"):
        frechet.frechet_distance(np.array([0, np.inf, 0]), eye, np.zeros(3), eye)


def test_gaussian_stats_matches_numpy():
    rng = np.random.default_rng(6)
    features = rng.standard_normal((50, 7)).astype(np.float32)
    mu, sigma = frechet.gaussian_stats(features)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, features.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        sigma, np.cov(features.astype(np.float64), rowvar=False, ddof=1), rtol=1e-12
    )
    with pytest.raises(ValueError):
        frechet.gaussian_stats(features[:1])


def test_frechet_distance_takes_tensors_on_their_device():
    rng = np.random.default_rng(7)
    s1, s2 = random_psd(rng, 16), random_psd(rng, 16)
    m1, m2 = rng.standard_normal(16), rng.standard_normal(16)
    expected = frechet.frechet_distance(m1, s1, m2, s2)
    mu, sigma = (
        torch.from_numpy(m1),
        torch.from_numpy(s1).float(),
    )  # float32 tensors are promoted to float64
    assert frechet.frechet_distance(mu, sigma, m2, s2) == pytest.approx(expected, rel=1e-6)
    features = torch.randn(40, 5, dtype=torch.float64)
    mu_t, sigma_t = frechet.moments(features)
    np.testing.assert_allclose(sigma_t.numpy(), np.cov(features.numpy(), rowvar=False), rtol=1e-12)
    assert mu_t.device == features.device
