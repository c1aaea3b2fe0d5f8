"""The GMM's EM in float64 torch on the trial's device: scikit-learn's algorithm, step for step.

scikit-learn's EM takes minutes on 50,000 x 128 codes on 2 CPU cores and would dominate a GPU
trial; trainables.priors.fit_gmm runs this one instead where the backend says so (config
gmm_backend), and the result is the same fitted scikit-learn GaussianMixture either way, so
sampling and held-out scoring are one code path.
"""

import math

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture


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
