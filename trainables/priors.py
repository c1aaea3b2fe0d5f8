"""The densities a trial draws latent codes from, one table (PRIORS) of how each is fitted and
sampled: pure functions of numpy arrays (N, latent).

N(0,I) is the VAE's assumed prior; MVG is the mean and full covariance of the encoded training set;
GMM is a 10-component full-covariance mixture (scikit-learn), as in Ghosh et al. 2019, fitted with
their code's settings: at most 2000 EM iterations (config gmm_max_iter; scikit-learn's default of
100 stopped short of convergence on a CIFAR-10 trial) and tol 1e-3. A fit that needs help (a
singular covariance, a mixture that will not fit) says what was done in its record instead of
raising, so the trial can keep it in the row.

Adding a prior is one entry in PRIORS: its fit, its label and line style, and the row columns its
fit records; the row's fd_<name> column, the scored sets, the report's tables and figures and the
launcher's summary derive theirs from it (trainables/scored_sets.py). Every stage reads this table,
the analysis too, so the libraries that fit priors (scikit-learn, torch) are imported where a fit
runs, not here.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from trainables.config import FIELDS

if TYPE_CHECKING:
    from sklearn.mixture import GaussianMixture

    from trainables.config import TrialConfig

# A sampler's seed: an integer (what rows before independent streams drew from: every prior from the
# trial's seed itself), or the SeedSequence of the sampler's own stream (trainables/trial.py).
Seed = int | np.random.SeedSequence
# scikit-learn's default first; later ones scale with the codes' variance
GMM_REG_COVARS = (1e-6, 1e-4, 1e-2)
# EM stops when the mean log-likelihood gains less: the reference code's tol (scikit-learn's too)
GMM_TOL = 1e-3


@dataclass(frozen=True)
class StandardNormal:
    dim: int

    def sample(self, n: int, seed: Seed) -> np.ndarray:
        return np.random.default_rng(seed).standard_normal((n, self.dim))

    def record(self) -> dict:
        return {}


@dataclass(frozen=True)
class MVG:
    mean: np.ndarray  # (d,)
    cov: np.ndarray  # (d, d) empirical covariance, as fitted
    chol: np.ndarray  # lower Cholesky factor of cov + jitter * I
    jitter: float  # 0.0 unless the covariance was singular (dead units, fewer codes than dims)

    def sample(self, n: int, seed: Seed) -> np.ndarray:
        eps = np.random.default_rng(seed).standard_normal((n, len(self.mean)))
        return self.mean + eps @ self.chol.T

    def record(self) -> dict:
        return {"mvg_jitter": self.jitter}


@dataclass(frozen=True)
class GMMFit:
    model: "GaussianMixture | None"  # None when every attempt failed
    components: int  # components actually used (fewer than asked when codes are few)
    reg_covar: float  # diagonal regularisation of the successful fit
    converged: bool
    n_iter: int
    attempts: int
    error: str | None  # why the last attempt failed, when none succeeded
    backend: str  # "sklearn" or "torch": which implementation fitted it

    def sample(self, n: int, seed: Seed) -> np.ndarray | None:
        """n codes, in random order (scikit-learn groups them by component); None without a fit
        (the row's gmm_error says why, and the trial has no GMM set)."""
        if self.model is None:
            return None
        # scikit-learn takes an integer seed: a stream's first word stands for it
        as_int = seed if isinstance(seed, int) else int(seed.generate_state(1)[0])
        self.model.random_state = as_int
        samples, _ = self.model.sample(n)
        return np.random.default_rng(seed).permutation(samples)

    def record(self) -> dict:
        return {
            "gmm_components_used": self.components,
            "gmm_reg_covar": self.reg_covar,
            "gmm_converged": self.converged,
            "gmm_n_iter": self.n_iter,
            "gmm_attempts": self.attempts,
            "gmm_error": self.error,
            "gmm_backend": self.backend,  # sklearn | torch: the implementation that fitted it
        }


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


def mvg_log_likelihood(mvg: MVG, codes: np.ndarray) -> np.ndarray:
    """Per-code log density under N(mean, cov + jitter*I)."""
    from scipy import linalg

    centred = np.asarray(codes, dtype=np.float64) - mvg.mean
    white = linalg.solve_triangular(mvg.chol, centred.T, lower=True)  # (d, N)
    log_det = 2 * np.log(np.diag(mvg.chol)).sum()
    return -0.5 * (len(mvg.mean) * np.log(2 * np.pi) + log_det + (white**2).sum(axis=0))


def resolve_gmm_backend(backend: str, device) -> str:
    """auto: the torch EM on CUDA, where scikit-learn's would dominate the trial; on CPU the
    reference, scikit-learn (the torch EM is faster on a CPU too, but CPU trials fit small
    mixtures: benchmarks/gmm.py measures both)."""
    if backend == "auto":
        return "torch" if str(device).startswith("cuda") else "sklearn"
    return backend


def fit_gmm(
    codes: np.ndarray,
    components: int,
    seed: int,
    backend: str = "auto",
    device="cpu",
    max_iter: int = FIELDS["gmm_max_iter"].default,
) -> GMMFit:
    """Full-covariance GMM, at most max_iter EM iterations on either backend; on failure retry
    with stronger regularisation, then fewer components."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    backend = resolve_gmm_backend(backend, device)
    codes = np.asarray(codes, dtype=np.float64)
    if not np.isfinite(codes).all():
        return GMMFit(None, 0, 0.0, False, 0, 0, "codes contain non-finite values", backend)
    variance = float(np.mean(np.var(codes, axis=0))) or 1.0
    k = min(components, len(codes))
    attempts = 0
    error = None
    while k >= 1:
        for i, reg in enumerate(GMM_REG_COVARS):
            reg_covar = reg if i == 0 else reg * variance
            attempts += 1
            model = GaussianMixture(
                k,
                covariance_type="full",
                reg_covar=reg_covar,
                max_iter=max_iter,
                tol=GMM_TOL,
                random_state=seed,
            )
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)  # recorded via converged_
                    if backend == "torch":
                        from trainables.gmm_torch import fit_gmm_torch

                        fit_gmm_torch(model, codes, device)
                    else:
                        model.fit(codes)
            except (ValueError, np.linalg.LinAlgError) as exc:
                error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                continue
            converged = bool(model.converged_)
            return GMMFit(
                model, k, reg_covar, converged, int(model.n_iter_), attempts, None, backend
            )
        k //= 2
    return GMMFit(None, 0, 0.0, False, 0, attempts, error, backend)


def sample_pairs(codes: np.ndarray, n: int, seed: Seed) -> tuple[np.ndarray, np.ndarray]:
    """n random pairs of distinct codes, as their (n, d) first and second members.

    Decoded, their midpoints test hypothesis 1 directly: a latent space that is smooth between
    encoded images decodes the midpoint of two of them to a plausible image, a patchy one to
    something off the data manifold. Their endpoints, decoded, are the baseline that separates
    that from how well the model reconstructs at all (`endpoints`).
    """
    codes = np.asarray(codes, dtype=np.float64)
    if len(codes) < 2:
        raise ValueError(f"pairs need at least 2 codes, got {len(codes)}")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(codes), n)
    second = (first + rng.integers(1, len(codes), n)) % len(codes)  # never the same code
    return codes[first], codes[second]


def midpoints(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return (first + second) / 2


def endpoints(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """One end of each pair, the first and the second by turns: as many codes as midpoints, from
    the same pairs, both ends equally often."""
    return np.where((np.arange(len(first)) % 2 == 0)[:, None], first, second)


def gaussianity(codes: np.ndarray, mvg: MVG, gmm: GMMFit) -> dict:
    """Hypothesis 2 measured: how far held-out codes are from one Gaussian.

    Marginal skewness and excess kurtosis are 0 for a Gaussian; the GMM-minus-MVG held-out
    log-likelihood per dimension is near 0 when a mixture explains the codes no better than one
    Gaussian.
    """
    from scipy import stats

    codes = np.asarray(codes, dtype=np.float64)
    std = codes.std(axis=0)
    alive = std > 1e-8 * max(float(std.max()), 1e-300)
    ll_mvg = float(mvg_log_likelihood(mvg, codes).mean())
    ll_gmm = float(gmm.model.score(codes)) if gmm.model is not None else float("nan")
    live = codes[:, alive]
    skew = float(np.abs(stats.skew(live, axis=0)).mean()) if alive.any() else float("nan")
    kurtosis = float(stats.kurtosis(live, axis=0).mean()) if alive.any() else float("nan")
    return {
        "code_dead_units": int((~alive).sum()),
        "code_abs_skew": skew,
        "code_excess_kurtosis": kurtosis,
        "code_std_mean": float(std.mean()),
        "code_mean_norm": float(np.linalg.norm(codes.mean(axis=0))),
        "heldout_ll_mvg": ll_mvg,
        "heldout_ll_gmm": ll_gmm,
        "heldout_ll_gap_per_dim": (ll_gmm - ll_mvg) / codes.shape[1],
    }


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Prior:
    """How a trial gets codes to decode from one density: fit(train codes (N, d), cfg, device) ->
    an object with sample(n, seed) -> (n, d) codes (or None: no fit) and record() -> its row
    columns."""

    label: str  # the paper's name for its samples (a scored set's label)
    fit: Callable[[np.ndarray, "TrialConfig", str], StandardNormal | MVG | GMMFit]
    style: str  # matplotlib line style where one figure draws several samplers
    columns: dict  # the row columns record() fills: name -> Python type
    fitted: bool = True  # fitted to the codes (what the paper proposes) or assumed (N(0,I))


def _fit_gmm(codes: np.ndarray, cfg: "TrialConfig", device: str) -> GMMFit:
    return fit_gmm(codes, cfg.gmm_components, cfg.seed, cfg.gmm_backend, device, cfg.gmm_max_iter)


PRIORS = {
    "normal": Prior(
        "N(0,I)", lambda codes, cfg, device: StandardNormal(codes.shape[1]), ":", {}, fitted=False
    ),
    "mvg": Prior("MVG", lambda codes, cfg, device: fit_mvg(codes), "-", {"mvg_jitter": float}),
    "gmm": Prior(
        "GMM",
        _fit_gmm,
        "--",
        {
            "gmm_components_used": int,
            "gmm_reg_covar": float,
            "gmm_converged": bool,
            "gmm_n_iter": int,
            "gmm_attempts": int,
            "gmm_error": str,
            "gmm_backend": str,
        },
    ),
}
