"""Ex-post densities over the latent codes: pure functions of numpy arrays (N, latent).

N(0,I) is the VAE's assumed prior; MVG is the mean and full covariance of the encoded training set;
GMM is a 10-component full-covariance mixture (scikit-learn), as in Ghosh et al. 2019. A fit that
needs help (a singular covariance, a mixture that will not fit) says what was done in its result
instead of raising, so the trial can record it.
"""

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg, stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

GMM_REG_COVARS = (1e-6, 1e-4, 1e-2)  # scikit-learn's default first; later ones scale with the codes' variance


def sample_standard_normal(dim: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim))


@dataclass(frozen=True)
class MVG:
    mean: np.ndarray  # (d,)
    cov: np.ndarray  # (d, d) empirical covariance, as fitted
    chol: np.ndarray  # lower Cholesky factor of cov + jitter * I
    jitter: float  # 0.0 unless the covariance was singular (dead units, fewer codes than dims)


def fit_mvg(codes: np.ndarray) -> MVG:
    codes = np.asarray(codes, dtype=np.float64)
    if not np.isfinite(codes).all():
        raise ValueError("codes contain non-finite values")
    mean = codes.mean(axis=0)
    cov = np.atleast_2d(np.cov(codes, rowvar=False))
    scale = float(np.mean(np.diag(cov))) or 1.0
    jitter = 0.0
    while True:
        try:
            chol = np.linalg.cholesky(cov + jitter * np.eye(len(mean)))
            return MVG(mean, cov, chol, jitter)
        except np.linalg.LinAlgError:
            jitter = scale * 1e-8 if jitter == 0.0 else jitter * 10


def sample_mvg(mvg: MVG, n: int, seed: int) -> np.ndarray:
    eps = np.random.default_rng(seed).standard_normal((n, len(mvg.mean)))
    return mvg.mean + eps @ mvg.chol.T


def mvg_log_likelihood(mvg: MVG, codes: np.ndarray) -> np.ndarray:
    """Per-code log density under N(mean, cov + jitter*I)."""
    centred = np.asarray(codes, dtype=np.float64) - mvg.mean
    white = linalg.solve_triangular(mvg.chol, centred.T, lower=True)  # (d, N)
    log_det = 2 * np.log(np.diag(mvg.chol)).sum()
    return -0.5 * (len(mvg.mean) * np.log(2 * np.pi) + log_det + (white**2).sum(axis=0))


@dataclass(frozen=True)
class GMMFit:
    model: GaussianMixture | None  # None when every attempt failed
    components: int  # components actually used (fewer than asked when codes are few)
    reg_covar: float  # diagonal regularisation of the successful fit
    converged: bool
    n_iter: int
    attempts: int
    error: str | None  # why the last attempt failed, when none succeeded


def fit_gmm(codes: np.ndarray, components: int, seed: int) -> GMMFit:
    """Full-covariance GMM; on failure retry with stronger regularisation, then fewer components."""
    codes = np.asarray(codes, dtype=np.float64)
    if not np.isfinite(codes).all():
        return GMMFit(None, 0, 0.0, False, 0, 0, "codes contain non-finite values")
    variance = float(np.mean(np.var(codes, axis=0))) or 1.0
    k, attempts, error = min(components, len(codes)), 0, None
    while k >= 1:
        for i, reg in enumerate(GMM_REG_COVARS):
            reg_covar = reg if i == 0 else reg * variance
            attempts += 1
            model = GaussianMixture(k, covariance_type="full", reg_covar=reg_covar, random_state=seed)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)  # recorded via converged_
                    model.fit(codes)
            except (ValueError, np.linalg.LinAlgError) as exc:
                error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                continue
            return GMMFit(model, k, reg_covar, bool(model.converged_), int(model.n_iter_), attempts, None)
        k //= 2
    return GMMFit(None, 0, 0.0, False, 0, attempts, error)


def sample_gmm(fit: GMMFit, n: int, seed: int) -> np.ndarray:
    fit.model.random_state = seed
    samples, _ = fit.model.sample(n)
    return np.random.default_rng(seed).permutation(samples)  # sklearn returns them grouped by component


def gaussianity(codes: np.ndarray, mvg: MVG, gmm: GMMFit) -> dict:
    """Hypothesis 2 measured: how far held-out codes are from one Gaussian.

    Marginal skewness and excess kurtosis are 0 for a Gaussian; the GMM-minus-MVG held-out
    log-likelihood per dimension is near 0 when a mixture explains the codes no better than one
    Gaussian.
    """
    codes = np.asarray(codes, dtype=np.float64)
    std = codes.std(axis=0)
    alive = std > 1e-8 * max(float(std.max()), 1e-300)
    ll_mvg = float(mvg_log_likelihood(mvg, codes).mean())
    ll_gmm = float(gmm.model.score(codes)) if gmm.model is not None else float("nan")
    return {
        "code_dead_units": int((~alive).sum()),
        "code_abs_skew": float(np.abs(stats.skew(codes[:, alive], axis=0)).mean()) if alive.any() else float("nan"),
        "code_excess_kurtosis": float(stats.kurtosis(codes[:, alive], axis=0).mean()) if alive.any() else float("nan"),
        "code_std_mean": float(std.mean()),
        "code_mean_norm": float(np.linalg.norm(codes.mean(axis=0))),
        "heldout_ll_mvg": ll_mvg,
        "heldout_ll_gmm": ll_gmm,
        "heldout_ll_gap_per_dim": (ll_gmm - ll_mvg) / codes.shape[1],
    }
