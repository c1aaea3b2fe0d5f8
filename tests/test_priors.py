"""trainables/priors.py and gmm_torch.py: the MVG, the GMM (scikit-learn's and the torch backend,
fit alike) and the codes' Gaussianity; then, in a trial, a prior that cannot be fitted as asked (a
singular covariance, an unconverged or failing GMM) recorded in the row, not fatal."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from fixtures import TINY_DIGITS
from scipy import stats
from sklearn.mixture import GaussianMixture

from trainables import gmm_torch, priors, trial
from trainables.config import make_config
from trainables.schema import RESULT_COLUMNS
from trainables.scored_sets import SCORED_SETS
from trainables.trial import run_trial, sampler_seeds


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
    samples = mvg.sample(200_000, seed=1)
    np.testing.assert_allclose(samples.mean(0), mvg.mean, atol=0.03)
    np.testing.assert_allclose(
        np.cov(samples, rowvar=False), mvg.cov, atol=0.05 * np.abs(mvg.cov).max()
    )


def test_mvg_log_likelihood_matches_scipy(gaussian_codes):
    _, _, codes = gaussian_codes
    mvg = priors.fit_mvg(codes)
    expected = stats.multivariate_normal(mvg.mean, mvg.cov).logpdf(codes[:50])
    np.testing.assert_allclose(priors.mvg_log_likelihood(mvg, codes[:50]), expected, rtol=1e-10)


def test_singular_covariance_gets_recorded_jitter():
    codes = np.random.default_rng(0).standard_normal((5, 16))  # fewer codes than dimensions
    mvg = priors.fit_mvg(codes)
    assert mvg.jitter > 0
    assert np.isfinite(mvg.sample(10, 0)).all()
    dead = np.random.default_rng(1).standard_normal((100, 4))
    dead[:, 2] = 7.0  # a dead unit
    assert priors.fit_mvg(dead).jitter > 0


def test_mvg_rejects_non_finite_codes():
    with pytest.raises(ValueError, match="non-finite"):
        priors.fit_mvg(np.array([[0.0, np.nan], [1.0, 2.0]]))


def test_standard_normal_is_standard():
    z = priors.StandardNormal(3).sample(100_000, seed=0)
    np.testing.assert_allclose(z.mean(0), 0, atol=0.02)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(3), atol=0.02)


def test_gmm_recovers_separated_clusters_and_samples_shuffled():
    rng = np.random.default_rng(0)
    centres = np.array([[-10.0, 0.0], [10.0, 0.0]])
    codes = np.concatenate([rng.standard_normal((2000, 2)) + c for c in centres])
    fit = priors.fit_gmm(codes, components=2, seed=0)
    assert fit.model is not None and fit.converged and fit.components == 2 and fit.error is None
    np.testing.assert_allclose(np.sort(fit.model.means_[:, 0]), [-10, 10], atol=0.2)
    samples = fit.sample(4000, seed=0)
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


@pytest.fixture(scope="module")
def curved_codes():
    """Non-Gaussian 8-d codes (a quadratic warp of a Gaussian): a 5-component EM needs ~25
    iterations."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6000, 8))
    a, b = rng.standard_normal((2, 8, 8)) / np.sqrt(8)
    codes = z @ a + 0.5 * (z**2 - 1) @ b
    return codes[:4000], codes[4000:]


def test_torch_gmm_is_scikit_learns_fit(curved_codes, monkeypatch):
    """Same k-means start, same EM in float64: held-out log-likelihood equal to 1e-9 (observed
    ~1e-15). The torch EM is spied on: it, and only it, fits the torch backend's GMM."""
    train, held_out = curved_codes
    fitted_by_torch = []
    fit_gmm_torch = gmm_torch.fit_gmm_torch

    def spy(model, codes, device):
        fitted_by_torch.append(model)
        return fit_gmm_torch(model, codes, device)

    monkeypatch.setattr(gmm_torch, "fit_gmm_torch", spy)
    ref = priors.fit_gmm(train, components=5, seed=0, backend="sklearn")
    assert fitted_by_torch == []
    fit = priors.fit_gmm(train, components=5, seed=0, backend="torch")
    assert fitted_by_torch == [fit.model]
    assert (ref.backend, fit.backend) == ("sklearn", "torch")
    assert fit.n_iter == ref.n_iter > 10 and fit.converged and ref.converged
    assert fit.model.score(held_out) == pytest.approx(ref.model.score(held_out), rel=1e-9)
    assert fit.model.lower_bound_ == pytest.approx(ref.model.lower_bound_, rel=1e-9)
    np.testing.assert_allclose(fit.model.weights_, ref.model.weights_, atol=1e-9)
    np.testing.assert_allclose(fit.model.covariances_, ref.model.covariances_, atol=1e-9)
    np.testing.assert_allclose(fit.sample(500, seed=3), ref.sample(500, seed=3), atol=1e-8)
    other_seed = priors.fit_gmm(train, components=5, seed=1, backend="torch")
    assert (
        abs(other_seed.model.score(held_out) - fit.model.score(held_out)) > 1e-6
    )  # the tolerance means something


def test_max_iter_stops_both_backends_alike_and_is_recorded(curved_codes):
    """The reference's cap on EM iterations reaches both backends: capped below what convergence
    needs (~25 iterations here), both stop at the cap, unconverged, with the same fit."""
    train, held_out = curved_codes
    capped = {
        backend: priors.fit_gmm(train, components=5, seed=0, backend=backend, max_iter=3)
        for backend in ("sklearn", "torch")
    }
    assert {(fit.n_iter, fit.converged) for fit in capped.values()} == {(3, False)}
    assert capped["torch"].model.score(held_out) == pytest.approx(
        capped["sklearn"].model.score(held_out), rel=1e-9
    )
    default = priors.fit_gmm(train, components=5, seed=0, backend="torch")
    assert default.converged and default.n_iter > 3
    assert default.model.tol == priors.GMM_TOL == 1e-3 and default.model.max_iter == 2000


def test_torch_gmm_records_failures_like_scikit_learn():
    rng = np.random.default_rng(0)
    big = rng.standard_normal((200, 1)) * 1e6
    collinear = np.hstack(
        [big, big, rng.standard_normal((200, 1))]
    )  # 1e-6 on the diagonal cannot fix this
    cases = [  # codes, components, expected (attempts, fitted)
        (collinear, 3, (2, True)),  # escalated regularisation
        (np.ones((1, 3)), 3, (3, False)),  # one code: every attempt fails, recorded
        (np.full((50, 3), np.inf), 10, (0, False)),
    ]
    for codes, components, (attempts, fitted) in cases:
        ref = priors.fit_gmm(codes, components, seed=0, backend="sklearn")
        fit = priors.fit_gmm(codes, components, seed=0, backend="torch")
        assert fit.backend == "torch"
        assert (fit.attempts, fit.model is not None, fit.error is None) == (
            attempts,
            fitted,
            fitted,
        )
        assert (fit.components, fit.reg_covar, fit.attempts) == (
            ref.components,
            ref.reg_covar,
            ref.attempts,
        )


def test_gmm_backend_auto_is_torch_on_cuda_only():
    assert priors.resolve_gmm_backend("auto", "cpu") == "sklearn"
    assert priors.resolve_gmm_backend("auto", torch.device("cuda", 0)) == "torch"
    assert priors.resolve_gmm_backend("torch", "cpu") == "torch"


def test_torch_gmm_follows_the_specs_stopping_rule(curved_codes):
    train, _ = curved_codes
    model = gmm_torch.fit_gmm_torch(GaussianMixture(5, max_iter=3, random_state=0), train, "cpu")
    assert model.n_iter_ == 3 and not model.converged_
    with pytest.raises(NotImplementedError):
        gmm_torch.fit_gmm_torch(GaussianMixture(5, covariance_type="diag"), train, "cpu")


def test_midpoints_are_halfway_between_two_distinct_codes():
    """Code i is 2**i: twice a midpoint is 2**i + 2**j, with two bits set exactly when i != j."""
    codes = 2.0 ** np.arange(10)[:, None]
    mids = priors.midpoints(*priors.sample_pairs(codes, 2000, seed=3))
    sums = (2 * mids[:, 0]).astype(int)
    assert mids.shape == (2000, 1) and np.array_equal(sums, 2 * mids[:, 0])
    assert all(bin(total).count("1") == 2 for total in sums)
    pairs = set(sums.tolist())
    assert len(pairs) == 45  # every one of the 10 * 9 / 2 pairs turns up in 2000 draws
    assert np.array_equal(mids, priors.midpoints(*priors.sample_pairs(codes, 2000, seed=3)))


def test_the_endpoints_are_the_pairs_own_ends_by_turns():
    codes = 2.0 ** np.arange(10)[:, None]
    first, second = priors.sample_pairs(codes, 1000, seed=3)
    ends = priors.endpoints(first, second)
    assert np.array_equal(ends[0::2], first[0::2]) and np.array_equal(ends[1::2], second[1::2])
    assert len(ends) == len(priors.midpoints(first, second))


def test_each_sampler_draws_from_its_own_stream():
    """With shared draws, an MVG fitted to N(0,I) codes (mean ~0, covariance ~I) reproduces the
    N(0,I) samples almost exactly: sample i is a linear map of the same normal vector. Independent
    streams share nothing: the two sets are then as far apart as two independent draws."""
    codes = np.random.default_rng(0).standard_normal((20_000, 8))
    mvg = priors.fit_mvg(codes)
    normal = priors.StandardNormal(8)
    config = {"dataset": "digits", "seed": 5}
    shared = sampler_seeds(make_config({**config, "sampler_streams": "shared"}))
    own = sampler_seeds(make_config(config))
    gap_shared = np.abs(mvg.sample(1000, shared["mvg"]) - normal.sample(1000, shared["normal"]))
    gap_own = np.abs(mvg.sample(1000, own["mvg"]) - normal.sample(1000, own["normal"]))
    # shared: only the fit's error (~1/sqrt(20,000) per entry); independent: |z1 - z2| of two
    # unit normals, whose mean is 2 / sqrt(pi) ~ 1.13
    assert gap_shared.mean() < 0.05 and abs(gap_own.mean() - 2 / np.sqrt(np.pi)) < 0.05
    again = sampler_seeds(make_config(config))
    assert np.array_equal(mvg.sample(10, again["mvg"]), mvg.sample(10, own["mvg"]))
    assert len({str(seed.spawn_key) for seed in own.values()}) == len(own)


# --------------------------------------------------------------------------- in a trial


def unexplained_gaps(row: dict) -> list[str]:
    """Float columns of an ok row that are None or not finite without a column that says why."""
    reasons = {
        "fd_gmm": row["gmm_error"],
        "heldout_ll_gmm": row["gmm_error"],
        "heldout_ll_gap_per_dim": row["gmm_error"],
        "code_abs_skew": row["code_dead_units"] == row["latent"],  # no live unit to measure
        "code_excess_kurtosis": row["code_dead_units"] == row["latent"],
    }
    gaps = []
    for name, kind in RESULT_COLUMNS.items():
        value = row[name]
        if kind is float and (value is None or not math.isfinite(value)) and not reasons.get(name):
            gaps.append(f"{name}={value}")
    return gaps


def few_codes(monkeypatch, n_train: int, dead_every: int = 0) -> None:
    """Train on n_train images only (a small trial); with dead_every, zero every dead_every-th
    latent unit."""
    load, encode = trial.load_for_config, trial._encode

    def few(cfg):
        full = load(cfg)
        return dataclasses.replace(full, train=full.train[:n_train])

    def with_dead_units(model, images):
        codes, bce = encode(model, images)
        codes[:, ::dead_every] = 0.0
        return codes, bce

    monkeypatch.setattr(trial, "load_for_config", few)
    if dead_every:
        monkeypatch.setattr(trial, "_encode", with_dead_units)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_singular_covariance_and_an_unconverged_gmm_are_recorded_not_fatal(
    digits_cache, monkeypatch
):
    """More latent units (16) than training codes (12), half of them dead, and EM stopped after one
    step."""
    few_codes(monkeypatch, n_train=12, dead_every=2)
    config = {**TINY_DIGITS, "latent": 16, "batch_size": 4, "gmm_max_iter": 1}
    row = run_trial({**config, "cache_dir": str(digits_cache)})
    assert row["status"] == "ok", row["traceback"]
    assert row["n_train"] == 12 and row["code_dead_units"] == 8
    assert row["mvg_jitter"] > 0  # what was done to the singular covariance
    assert row["gmm_converged"] is False and row["gmm_n_iter"] == 1 and row["gmm_error"] is None
    assert all(math.isfinite(row[f"fd_{name}"]) for name in SCORED_SETS)
    assert unexplained_gaps(row) == []


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("fits_from", [5, None], ids=["fewer-components", "never"])
def test_a_gmm_that_will_not_fit_is_recorded_with_what_was_tried(
    digits_cache, monkeypatch, fits_from
):
    """The mixture fails at 10 components (and, in `never`, at any size): the row says what was done
    instead."""
    real_fit = GaussianMixture.fit

    def fit(self, codes, y=None):
        if fits_from is None or self.n_components > fits_from:
            raise ValueError(
                "Fitting the mixture model failed because some components have ill-defined "
                "covariance"
            )
        return real_fit(self, codes, y)

    monkeypatch.setattr(GaussianMixture, "fit", fit)
    few_codes(monkeypatch, n_train=200)
    row = run_trial({**TINY_DIGITS, "cache_dir": str(digits_cache)})
    assert row["status"] == "ok", row["traceback"]
    tries = len(priors.GMM_REG_COVARS)
    if fits_from:
        used = (row["gmm_components_used"], row["gmm_attempts"], row["gmm_error"])
        assert used == (5, tries + 1, None)
        assert math.isfinite(row["fd_gmm"])
    else:
        # 10, 5, 2, 1 components
        assert row["gmm_components_used"] == 0 and row["gmm_attempts"] == 4 * tries
        assert row["gmm_error"].startswith("ValueError: Fitting the mixture model failed")
        assert row["fd_gmm"] is None
    assert all(math.isfinite(row[f"fd_{name}"]) for name in SCORED_SETS if name != "gmm")
    assert unexplained_gaps(row) == []
