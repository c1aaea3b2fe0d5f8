"""The Fréchet distance between two Gaussians, and the Gaussian statistics of a feature matrix.

Pure functions of arrays or tensors, in float64: which network made the features is
trainables.features' business.
"""

import numpy as np
import torch


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}), in float64.

    pytorch-fid takes a general (non-symmetric) matrix square root of S1 S2 with scipy's sqrtm,
    which is slow at 2048 dims and can return complex noise or NaN for singular covariances. Only
    the trace is needed (frechet_distances says how); exact for any PSD inputs, rank-deficient ones
    included. Inputs are numpy arrays or tensors; it runs on the device of the first tensor among
    them (CPU for numpy), so a GPU trial's 2048-d statistics never leave the card.
    """
    return frechet_distances((mu2, sigma2), [(mu1, sigma1)])[0]


def frechet_distances(reference, others) -> list[float]:
    """frechet_distance from the (mu, sigma) `reference` to each (mu, sigma) in `others`.

    The reference is decomposed once, S_ref = V diag(l) V^T. With B = V diag(sqrt(l)) restricted
    to the nonzero l (k columns), S_ref^{1/2} S S_ref^{1/2} = V_k (B^T S B) V_k^T, whose nonzero
    eigenvalues are those of the k x k symmetric PSD matrix B^T S B; they are also those of S_ref S,
    so tr((S S_ref)^{1/2}) = sum(sqrt(eigvalsh(B^T S B))). One eigendecomposition of the reference
    for all of a trial's sets, then two products and a k x k eigvalsh each (cheap where the
    reference has few images).
    """
    mu_ref, sigma_ref = _float64(*reference, device=_device(reference, *others))
    others = [_float64(mu, sigma, device=mu_ref.device) for mu, sigma in others]
    for mu, sigma in others:
        _check_shapes(mu, sigma, mu_ref, sigma_ref)
    eigenvalues, eigenvectors = torch.linalg.eigh(sigma_ref)
    kept = _drop_roundoff(eigenvalues) > 0
    basis = eigenvectors[:, kept] * eigenvalues[kept].sqrt()  # B, (d, k)
    distances = []
    for mu, sigma in others:
        middle = basis.T @ sigma @ basis
        tr_covmean = _drop_roundoff(torch.linalg.eigvalsh((middle + middle.T) / 2)).sqrt().sum()
        diff = mu - mu_ref
        distances.append(float(diff @ diff + sigma.trace() + sigma_ref.trace() - 2 * tr_covmean))
    return distances


def _device(*pairs) -> torch.device:
    """The device of the first tensor among the statistics; the CPU for numpy arrays."""
    values = [v for pair in pairs for v in pair]
    return next((v.device for v in values if isinstance(v, torch.Tensor)), torch.device("cpu"))


def _float64(mu, sigma, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A mean (d,) and a symmetrised covariance (d, d) as float64 tensors on `device`."""
    mu = torch.atleast_1d(torch.as_tensor(mu, dtype=torch.float64, device=device))
    sigma = torch.atleast_2d(torch.as_tensor(sigma, dtype=torch.float64, device=device))
    if sigma.shape == (mu.shape[0], mu.shape[0]):
        sigma = (sigma + sigma.T) / 2
    return mu, sigma


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (ddof=1, like pytorch-fid) of an (N, d) feature matrix, in float64."""
    mu, sigma = moments(torch.as_tensor(features))
    return mu.cpu().numpy(), sigma.cpu().numpy()


def moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gaussian_stats as float64 tensors on the features' device."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(
            f"gaussian_stats: need an (N, d) array with N >= 2, got shape {tuple(features.shape)}"
        )
    x = features.double()
    mu = x.mean(dim=0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


def _check_shapes(mu1, sigma1, mu2, sigma2) -> None:
    d = mu1.shape[0]
    if mu1.ndim != 1 or mu1.shape != mu2.shape or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"frechet_distance: shapes do not match: mu1 {tuple(mu1.shape)}, "
            f"mu2 {tuple(mu2.shape)}, sigma1 {tuple(sigma1.shape)}, sigma2 {tuple(sigma2.shape)} "
            "(expected means (d,) and covariances (d, d))"
        )
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not torch.isfinite(value).all():
            raise ValueError(f"frechet_distance: {name} has non-finite entries")


def _drop_roundoff(eigenvalues: torch.Tensor) -> torch.Tensor:
    """Zero the eigenvalues that are roundoff (numpy.linalg.matrix_rank's tolerance) before a root.

    A singular covariance has eigenvalues that should be 0 but come out as +-1e-16 * max; their
    square roots (1e-8 * sqrt(max) each) would add up to a visible error over hundreds of
    dimensions.
    """
    if eigenvalues.numel() == 0:
        return eigenvalues
    tol = eigenvalues.numel() * torch.finfo(torch.float64).eps * eigenvalues.abs().max()
    return torch.where(eigenvalues > tol, eigenvalues, 0.0)
