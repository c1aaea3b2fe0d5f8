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
    the trace is needed: with A = S1^{1/2} (symmetric, from an eigendecomposition), S1 S2 = A (A S2)
    has the same eigenvalues as A S2 A, which is symmetric PSD, so
    tr((S1 S2)^{1/2}) = sum(sqrt(eigvalsh(A S2 A))). This is exact for any PSD inputs,
    rank-deficient ones included.

    Inputs are numpy arrays or tensors; it runs on the device of the first tensor among them (CPU
    for numpy), so a GPU trial's 2048-d statistics never leave the card.
    """
    inputs = (mu1, sigma1, mu2, sigma2)
    device = next((v.device for v in inputs if isinstance(v, torch.Tensor)), "cpu")
    mu1, sigma1, mu2, sigma2 = (
        torch.as_tensor(v, dtype=torch.float64, device=device) for v in inputs
    )
    mu1, mu2, sigma1, sigma2 = torch.atleast_1d(mu1, mu2) + torch.atleast_2d(sigma1, sigma2)
    _check_shapes(mu1, sigma1, mu2, sigma2)
    sigma1 = (sigma1 + sigma1.T) / 2
    sigma2 = (sigma2 + sigma2.T) / 2

    eigenvalues, eigenvectors = torch.linalg.eigh(sigma1)
    root1 = (eigenvectors * _drop_roundoff(eigenvalues).sqrt()) @ eigenvectors.T  # S1^{1/2}
    middle = root1 @ sigma2 @ root1
    tr_covmean = _drop_roundoff(torch.linalg.eigvalsh((middle + middle.T) / 2)).sqrt().sum()

    diff = mu1 - mu2
    return float(diff @ diff + sigma1.trace() + sigma2.trace() - 2 * tr_covmean)


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
