"""Ex-post densities over the latent codes: pure functions of numpy arrays (N, latent).

N(0,I) is the VAE's assumed prior; MVG is the mean and full covariance of the encoded training set;
GMM is a 10-component full-covariance mixture (scikit-learn), as in Ghosh et al. 2019, fitted with
their code's settings: at most 2000 EM iterations (config gmm_max_iter; scikit-learn's default of
100 stopped short of convergence on a CIFAR-10 trial) and tol 1e-3. A fit that needs help (a
singular covariance, a mixture that will not fit) says what was done in its result instead of
raising, so the trial can record it.

The GMM has two backends that fit the same model: scikit-learn's, and the same EM in float64 torch
on the trial's device (`fit_gmm_torch`), because scikit-learn's takes minutes on 50,000 x 128 codes
on 2 CPU cores and would dominate a GPU trial. Either way the result is a fitted scikit-learn
GaussianMixture, so sampling and held-out scoring are one code path.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import linalg, stats
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from trainables.config import FIELDS

# scikit-learn's default first; later ones scale with the codes' variance
GMM_REG_COVARS = (1e-6, 1e-4, 1e-2)
# EM stops when the mean log-likelihood gains less: the reference code's tol (scikit-learn's too)
GMM_TOL = 1e-3


def sample_standard_normal(dim: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim))


def sample_midpoints(codes: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Midpoints of n random pairs of distinct codes: decoded, they test hypothesis 1 directly.

    A latent space that is smooth between encoded images decodes the midpoint of two of them to a
    plausible image; a patchy one decodes it to something off the data manifold.
    """
    codes = np.asarray(codes, dtype=np.float64)
    if len(codes) < 2:
        raise ValueError(f"midpoints need at least 2 codes, got {len(codes)}")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(codes), n)
    second = (first + rng.integers(1, len(codes), n)) % len(codes)  # never the same code
    return (codes[first] + codes[second]) / 2


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
    backend: str  # "sklearn" or "torch": which implementation fitted it


def resolve_gmm_backend(backend: str, device: torch.device | str) -> str:
    """auto: the torch EM on CUDA, where scikit-learn's would dominate the trial; on CPU the
    reference, scikit-learn.

    (The torch EM is faster on CPU too, 1.6-5x on 2 cores, but CPU trials fit small mixtures: 0.03 s
    for digits.)
    """
    if backend == "auto":
        return "torch" if torch.device(device).type == "cuda" else "sklearn"
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


def fit_gmm_torch(model: GaussianMixture, codes: np.ndarray, device) -> GaussianMixture:
    """model.fit(codes), with the EM in float64 torch on `device`; `model` is the unfitted spec and
    the result.

    The same algorithm step for step, for the full-covariance mixture fit_gmm asks for:
    scikit-learn's own k-means start on the host, seeded as GaussianMixture seeds it (a small share
    of the time); then E and M steps with model.reg_covar on the diagonal until the mean
    log-likelihood gains less than model.tol, at most model.max_iter times. float64 because the
    covariances of 128-d codes need it for their Cholesky factors (and to match scikit-learn to
    ~1e-12); it costs nothing on a data-centre GPU, seconds on a gaming card.
    """
    if (model.covariance_type, model.init_params, model.n_init) != ("full", "kmeans", 1):
        raise NotImplementedError("fit_gmm_torch fits full covariances from one k-means start")
    if len(codes) < 2:
        raise ValueError(f"a mixture needs at least 2 codes, got {len(codes)}")
    k = model.n_components
    start = KMeans(k, n_init=1, random_state=np.random.RandomState(model.random_state))
    labels = torch.as_tensor(start.fit(codes).labels_, dtype=torch.long, device=device)
    x = torch.as_tensor(codes, dtype=torch.float64, device=device)
    resp = torch.nn.functional.one_hot(labels, k).double()
    weights, means, covariances, precisions_chol = _m_step(x, resp, model.reg_covar)
    n_iter = 0
    lower_bound = -math.inf
    converged = False
    while n_iter < model.max_iter and not converged:
        n_iter += 1
        previous = lower_bound
        log_prob_norm, log_resp = _e_step(x, weights, means, precisions_chol)
        weights, means, covariances, precisions_chol = _m_step(x, log_resp.exp(), model.reg_covar)
        lower_bound = log_prob_norm.item()  # one host sync per iteration
        converged = abs(lower_bound - previous) < model.tol
    fitted = {  # the attributes GaussianMixture.fit sets and sample/score read
        "weights_": weights,
        "means_": means,
        "covariances_": covariances,
        "precisions_cholesky_": precisions_chol,
        "precisions_": precisions_chol @ precisions_chol.mT,
    }
    for name, value in fitted.items():
        setattr(model, name, value.cpu().numpy())
    model.converged_ = converged
    model.n_iter_ = n_iter
    model.lower_bound_ = lower_bound
    model.n_features_in_ = x.shape[1]
    return model


def _m_step(x: torch.Tensor, resp: torch.Tensor, reg_covar: float):
    """Weights, means, covariances (+ reg_covar on the diagonal) and precision Cholesky factors, as
    scikit-learn computes them.

    One (N, d) buffer serves every component: fresh 50,000 x 128 temporaries cost as much as the
    matmuls on a CPU.
    """
    nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps
    means = resp.T @ x / nk[:, None]
    covariances = x.new_empty(len(means), x.shape[1], x.shape[1])
    weighted = torch.empty_like(x)
    for j, mean in enumerate(means):
        torch.sub(x, mean, out=weighted).mul_(resp[:, j, None].sqrt())  # sqrt(r) (x - mean)
        torch.mm(weighted.T, weighted, out=covariances[j])
    covariances /= nk[:, None, None]
    covariances.diagonal(dim1=1, dim2=2).add_(reg_covar)
    chol, info = torch.linalg.cholesky_ex(covariances)
    if info.any():
        raise ValueError(  # scikit-learn's message, so rows read the same
            "Fitting the mixture model failed because some components have ill-defined empirical "
            "covariance (for instance caused by singleton or collapsed samples). Try to decrease "
            "the number of components, increase reg_covar, or scale the input data."
        )
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    precisions_chol = torch.linalg.solve_triangular(chol, eye, upper=False).mT
    return nk / nk.sum(), means, covariances, precisions_chol


def _e_step(x: torch.Tensor, weights, means, precisions_chol) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (mean log-likelihood of x, log responsibilities (N, k))."""
    log_det = precisions_chol.diagonal(dim1=1, dim2=2).log().sum(1)
    mahalanobis = x.new_empty(len(x), len(means))
    whitened = torch.empty_like(x)
    for j, (mean, p) in enumerate(zip(means, precisions_chol, strict=True)):
        torch.mm(x, p, out=whitened).sub_(mean @ p)  # (x - mean) p, p the precision's Cholesky
        mahalanobis[:, j] = whitened.square_().sum(1)
    weighted = -0.5 * (x.shape[1] * math.log(2 * math.pi) + mahalanobis) + log_det + weights.log()
    log_prob = torch.logsumexp(weighted, dim=1)
    return log_prob.mean(), weighted - log_prob[:, None]


def sample_gmm(fit: GMMFit, n: int, seed: int) -> np.ndarray:
    fit.model.random_state = seed
    samples, _ = fit.model.sample(n)
    return np.random.default_rng(seed).permutation(samples)  # sklearn groups them by component


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
