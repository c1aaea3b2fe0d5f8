"""The GMM prior's fit: scikit-learn against the same EM in float64 torch on the trial's device.

    python -m benchmarks.gmm                  # CPU: 10,000 codes of 16 and 32 dims
    python -m benchmarks.gmm --size paper     # 50,000 codes of 64 dims (a CIFAR-10 trial's
                                              # training set; scikit-learn takes a minute or more
                                              # at 128 dims on 16 cores)
    python -m benchmarks.gmm --size paper --repeats 3 --device cpu   # the same on a shared CPU,
                                                                     # medians of 3

Both fit priors.fit_gmm's model (10 components, full covariances, reg_covar 1e-6, k-means start,
tol 1e-3) to the same codes; the held-out log-likelihood per code (what priors.gaussianity records)
shows they fit the same mixture. The codes are synthetic and non-Gaussian (a quadratic warp of a
Gaussian, like an autoencoder's codes they need tens of EM iterations): the iteration count, and
with it the time, depends on the codes.
"""

import statistics
import time

import numpy as np
import torch
from sklearn.cluster import KMeans

from benchmarks.common import arguments, print_table, setup, sync
from trainables import priors

SIZES = {
    "cpu": {"n": 10_000, "dims": (16, 32), "repeats": 3},
    "paper": {"n": 50_000, "dims": (64,), "repeats": 1},
}
HELD_OUT = 10_000
COMPONENTS = 10
SEED = 0


def warped_codes(n: int, dims: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, dims))
    a, b = rng.standard_normal((2, dims, dims)) / np.sqrt(dims)
    return z @ a + 0.5 * (z**2 - 1) @ b


def time_fit(train: np.ndarray, backend: str, device) -> tuple[priors.GMMFit, float]:
    start = time.perf_counter()
    fit = priors.fit_gmm(train, COMPONENTS, SEED, backend=backend, device=device)
    sync(torch.device(device))
    return fit, time.perf_counter() - start


def time_kmeans(train: np.ndarray) -> float:
    """The k-means start both backends share (scikit-learn's, on the host)."""
    start = time.perf_counter()
    KMeans(COMPONENTS, n_init=1, random_state=np.random.RandomState(SEED)).fit(train)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, help="timed fits per backend (default: 3 at cpu size, 1 at paper)"
    )
    args = parser.parse_args(argv)
    device = setup(args)
    size = SIZES[args.size] | ({"repeats": args.repeats} if args.repeats else {})
    rows = []
    for dims in size["dims"]:
        codes = warped_codes(size["n"] + HELD_OUT, dims)
        train = codes[: size["n"]]
        held_out = codes[size["n"] :]
        backends = {"sklearn": torch.device("cpu"), "torch": device}
        seconds = {backend: [] for backend in backends}
        fits = {}
        for _ in range(size["repeats"]):  # interleaved, medians below: shared machines are noisy
            for backend, where in backends.items():
                fits[backend], elapsed = time_fit(train, backend, where)  # the same fit every time
                seconds[backend].append(elapsed)
        kmeans_s = statistics.median(time_kmeans(train) for _ in range(size["repeats"]))
        reference_ll = fits["sklearn"].model.score(held_out)
        reference_s = statistics.median(seconds["sklearn"])
        for backend, fit in fits.items():
            held_out_ll = fit.model.score(held_out)
            fit_s = statistics.median(seconds[backend])
            codes_label = f"{size['n']:,} x {dims}"
            rows.append(
                [codes_label, backend, str(backends[backend]), fit_s, fit.n_iter, fit.converged]
                + [held_out_ll, abs(held_out_ll - reference_ll), reference_s / fit_s, kmeans_s]
            )
    print_table(
        "GMM prior: scikit-learn vs torch EM (same model)",
        ["codes", "backend", "device", "fit s", "EM iters", "converged", "held-out LL/code"]
        + ["|diff| vs sklearn", "x sklearn", "k-means start s"],
        rows,
        [
            f"{COMPONENTS} components, full covariances, seed {SEED}; held-out: {HELD_OUT:,} more "
            f"codes; fit s = median of {size['repeats']} interleaved repeats; both backends "
            "include the k-means start."
        ],
    )


if __name__ == "__main__":
    main()
