import numpy as np
import pytest
from scipy import stats

from trainables import priors


@pytest.fixture
def gaussian_codes():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    cov = a @ a.T + 0.5 * np.eye(6)
    mean = rng.standard_normal(6) * 3
    return mean, cov, rng.multivariate_normal(mean, cov, size=20_000)


def test_mvg_fits_mean_and_covariance(gaussian_codes):
    mean, cov, codes = gaussian_codes
    mvg = priors.fit_mvg(codes)
    assert mvg.jitter == 0.0
    np.testing.assert_allclose(mvg.mean, codes.mean(0))
    np.testing.assert_allclose(mvg.cov, np.cov(codes, rowvar=False))


def test_mvg_samples_reproduce_the_fitted_covariance(gaussian_codes):
    _, _, codes = gaussian_codes
    mvg = priors.fit_mvg(codes)
    samples = priors.sample_mvg(mvg, 200_000, seed=1)
    np.testing.assert_allclose(samples.mean(0), mvg.mean, atol=0.03)
    np.testing.assert_allclose(np.cov(samples, rowvar=False), mvg.cov, atol=0.05 * np.abs(mvg.cov).max())


def test_mvg_log_likelihood_matches_scipy(gaussian_codes):
    _, _, codes = gaussian_codes
    mvg = priors.fit_mvg(codes)
    expected = stats.multivariate_normal(mvg.mean, mvg.cov).logpdf(codes[:50])
    np.testing.assert_allclose(priors.mvg_log_likelihood(mvg, codes[:50]), expected, rtol=1e-10)


def test_singular_covariance_gets_recorded_jitter():
    codes = np.random.default_rng(0).standard_normal((5, 16))  # fewer codes than dimensions
    mvg = priors.fit_mvg(codes)
    assert mvg.jitter > 0
    assert np.isfinite(priors.sample_mvg(mvg, 10, 0)).all()
    dead = np.random.default_rng(1).standard_normal((100, 4))
    dead[:, 2] = 7.0  # a dead unit
    assert priors.fit_mvg(dead).jitter > 0


def test_mvg_rejects_non_finite_codes():
    with pytest.raises(ValueError, match="non-finite"):
        priors.fit_mvg(np.array([[0.0, np.nan], [1.0, 2.0]]))


def test_standard_normal_is_standard():
    z = priors.sample_standard_normal(3, 100_000, seed=0)
    np.testing.assert_allclose(z.mean(0), 0, atol=0.02)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(3), atol=0.02)


def test_gmm_recovers_separated_clusters_and_samples_shuffled():
    rng = np.random.default_rng(0)
    centres = np.array([[-10.0, 0.0], [10.0, 0.0]])
    codes = np.concatenate([rng.standard_normal((2000, 2)) + c for c in centres])
    fit = priors.fit_gmm(codes, components=2, seed=0)
    assert fit.model is not None and fit.converged and fit.components == 2 and fit.error is None
    np.testing.assert_allclose(np.sort(fit.model.means_[:, 0]), [-10, 10], atol=0.2)
    samples = priors.sample_gmm(fit, 4000, seed=0)
    assert abs((samples[:, 0] > 0).mean() - 0.5) < 0.05
    assert (samples[:2000, 0] > 0).mean() not in (0.0, 1.0)  # not grouped by component


def test_gmm_uses_fewer_components_than_codes():
    codes = np.random.default_rng(0).standard_normal((4, 2))
    fit = priors.fit_gmm(codes, components=10, seed=0)
    assert fit.model is not None and fit.components <= 4


def test_gmm_failure_is_recorded_not_raised():
    fit = priors.fit_gmm(np.full((50, 3), np.inf), components=10, seed=0)
    assert fit.model is None and "non-finite" in fit.error


def test_gaussianity_is_near_zero_for_gaussian_codes(gaussian_codes):
    _, _, codes = gaussian_codes
    mvg = priors.fit_mvg(codes)
    gmm = priors.fit_gmm(codes[:5000], components=3, seed=0)
    g = priors.gaussianity(codes[5000:], mvg, gmm)
    assert g["code_abs_skew"] < 0.05 and abs(g["code_excess_kurtosis"]) < 0.1
    assert abs(g["heldout_ll_gap_per_dim"]) < 0.01
    assert g["code_dead_units"] == 0


def test_gaussianity_sees_a_mixture():
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.standard_normal((3000, 2)) * 0.3 + c for c in ([-3, 0], [3, 0])])
    rng.shuffle(codes)
    mvg = priors.fit_mvg(codes[:4000])
    gmm = priors.fit_gmm(codes[:4000], components=2, seed=0)
    g = priors.gaussianity(codes[4000:], mvg, gmm)
    assert g["heldout_ll_gap_per_dim"] > 0.3
    assert g["code_excess_kurtosis"] < -0.5  # bimodal marginal is platykurtic
