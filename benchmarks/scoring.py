"""Scoring generated images: our path against pytorch-fid's own, same network, images and card.

    python -m benchmarks.scoring                  # CPU: sets of 50 images (~0.1 s an image)
    python -m benchmarks.scoring --size paper     # sets of 10,000 images, as a trial scores them
    python -m benchmarks.scoring --size paper --sets 2  # two sets, not six, in the all-at-once row

  pytorch-fid   pytorch_fid_distance below, on one set: images on the host in a DataLoader at batch
                50, a copy to the device per batch, features back to the host, numpy statistics,
                scipy's sqrtm (calculate_frechet_distance)
  ours          features.score_sets, what a trial runs: images already on the device, every set
                through the network in one pass of fixed-size batches (the last one padded on CUDA),
                statistics and the eigenvalue trace in float64 on the device; timed on one set, and
                on all of a trial's sets (six, or --sets) at once
On CUDA more rows show what channels_last, a larger batch and cuDNN's TF32 would change: speed,
and the distance's drift. All rows use the same reference
statistics, computed beforehand (a trial reads them from the cache), and true fp32 convolutions
unless the row says TF32. Without the Inception weights on disk the network has random weights
(same cost, the values are not FID): the header says so. The images are CIFAR-10-shaped random
noise; with fewer images than 2048 features the covariances are singular, where scipy's sqrtm is
inexact, so the 1e-3 agreement check is meaningful at --size paper.

pytorch-fid 0.3.0 calls scipy.linalg.sqrtm(..., disp=False), an argument scipy 1.18 removed: there
its distance raises TypeError. The table then times pytorch-fid's feature path alone and says so.
"""

import contextlib
import dataclasses
import time

import numpy as np
import scipy
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import arguments, inception, print_table, random_images, setup, sync
from trainables import features, frechet
from trainables.scored_sets import SCORED_SETS

SIZES = {"cpu": 50, "paper": 10_000}
TOLERANCE = 1e-3
TARGET_IMAGES_PER_S = 4_000  # issue 11: fp32 scoring on one H100/H200
TARGET_S_PER_50K = 15


def pytorch_fid_distance(
    images: torch.Tensor, extractor: features.Extractor, ref_stats, batch_size: int = 50
) -> float:
    """pytorch-fid's own scoring path, the baseline features.score is timed and checked against:
    pytorch_fid_statistics, then calculate_frechet_distance (scipy's sqrtm)."""
    return float(
        calculate_frechet_distance(
            *pytorch_fid_statistics(images, extractor, batch_size), *ref_stats
        )
    )


def pytorch_fid_statistics(
    images: torch.Tensor, extractor: features.Extractor, batch_size: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """As pytorch_fid.fid_score.get_activations and calculate_activation_statistics do it: the
    images on the host in a DataLoader at batch 50, one copy to the device per batch, features back
    to the host, numpy statistics. Same network and conv precision as features.score."""
    loader = DataLoader(TensorDataset(images.cpu()), batch_size=batch_size)
    activations = np.concatenate([extractor.features(batch, batch_size) for (batch,) in loader])
    return np.mean(activations, axis=0), np.cov(activations, rowvar=False)


def sqrtm_failure() -> str | None:
    """Why pytorch-fid's distance cannot run with this scipy, or None where it runs."""
    try:
        calculate_frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))
    except TypeError as err:
        return f"pytorch-fid's calculate_frechet_distance fails on scipy {scipy.__version__}: {err}"
    return None


def timed(device: torch.device, fn, *args):
    """-> (value, seconds); a ValueError (pytorch-fid's sqrtm on singular covariances) is NaN, and
    reported."""
    sync(device)
    start = time.perf_counter()
    try:
        value = fn(*args)
    except ValueError as err:
        print(f"{getattr(fn, '__name__', fn)} raised ValueError: {err}")
        value = float("nan")
    sync(device)
    return value, time.perf_counter() - start


@contextlib.contextmanager
def channels_last(extractor: features.Extractor):
    """The extractor's network in channels_last for the block: its convolutions then run NHWC."""
    extractor.network.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        extractor.network.to(memory_format=torch.contiguous_format)


def batched_score(images, extractor: features.Extractor, ref_stats, batch_size: int) -> float:
    mu, sigma = frechet.moments(extractor.device_features(images, batch_size))
    return frechet.frechet_distance(mu, sigma, *ref_stats)


def variant_rows(generated, extractor: features.Extractor, ref_stats, ours: float) -> list[list]:
    """CUDA: what the options left out would do to speed and value: channels_last, a larger
    batch, TF32 (score_tf32), on half the images; each warmed up (autotuned) first."""
    images = generated[: len(generated) // 2]
    plain = contextlib.nullcontext
    variants = {  # layout, batch size, TF32
        "ours, channels_last": (channels_last, features.FEATURE_BATCH, False),
        "ours, batch 500": (plain, 500, False),
        "ours with cuDNN TF32 (score_tf32)": (plain, features.FEATURE_BATCH, True),
        "ours with cuDNN TF32, channels_last": (channels_last, features.FEATURE_BATCH, True),
    }
    rows = []
    for name, (layout, batch_size, tf32) in variants.items():
        variant = dataclasses.replace(extractor, tf32=tf32)
        with layout(extractor):
            batched_score(images[:batch_size], variant, ref_stats, batch_size)  # autotunes
            value, seconds = timed(
                extractor.device, batched_score, images, variant, ref_stats, batch_size
            )
        rows.append([name, len(images), seconds, len(images) / seconds, value, abs(value - ours)])
    return rows


def main(argv=None) -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument(
        "--sets",
        type=int,
        default=len(SCORED_SETS),
        choices=range(1, len(SCORED_SETS) + 1),
        help="how many of a trial's sets the all-at-once row scores (default: all, as a trial)",
    )
    args = parser.parse_args(argv)
    device = setup(args)
    n = SIZES[args.size]
    extractor, label = inception(device)
    reference = random_images(n, seed=1).to(device)
    ref_stats = frechet.gaussian_stats(extractor.features(reference))  # also autotunes cuDNN
    sets = {  # brighter than the reference, each its own images
        name: random_images(n, seed=2 + i).to(device).float().div_(255).sqrt_()
        for i, name in enumerate(list(SCORED_SETS)[: args.sets])
    }
    generated = sets[next(iter(sets))]

    failure = sqrtm_failure()
    (mu, sigma), baseline_s = timed(device, pytorch_fid_statistics, generated, extractor)
    baseline = float("nan")
    baseline_label = "pytorch-fid's features and statistics (its distance fails: below)"
    if not failure:
        baseline, sqrtm_s = timed(device, calculate_frechet_distance, mu, sigma, *ref_stats)
        baseline_s += sqrtm_s
        baseline_label = "pytorch-fid (host DataLoader, batch 50, scipy sqrtm)"
    ours, ours_s = timed(device, features.score, generated, extractor, ref_stats)
    every, every_s = timed(device, features.score_sets, sets, extractor, ref_stats)
    scored = n * len(sets)
    rows = [
        [baseline_label, n, baseline_s, n / baseline_s, baseline, 0.0],
        ["ours: features.score", n, ours_s, n / ours_s, ours, abs(ours - baseline)],
        [f"ours: features.score_sets, {len(sets)} sets", scored, every_s, scored / every_s]
        + [every[next(iter(sets))], abs(every[next(iter(sets))] - baseline)],
    ]
    if device.type == "cuda":
        rows += variant_rows(generated, extractor, ref_stats, ours)

    distance_alone = f"The distance alone on {extractor.dim}-d statistics:"
    if not failure:
        distance_alone += f" scipy sqrtm {sqrtm_s:.2f} s,"
    _, eigh_s = timed(device, frechet.frechet_distance, mu, sigma, *ref_stats)
    distance_alone += f" eigh trace {eigh_s:.2f} s on the host"
    if device.type == "cuda":
        on_device = [torch.as_tensor(v, device=device) for v in (mu, sigma)]
        _, device_s = timed(device, frechet.frechet_distance, *on_device, *ref_stats)
        distance_alone += f", {device_s:.2f} s on {device}"
    notes = [distance_alone + "."]
    if failure:
        notes.append(f"{failure}: its distance is not timed, nor compared.")
    else:
        agree = abs(ours - baseline) <= TOLERANCE
        singular = f" (n={n} < {extractor.dim}: singular covariances, see the docstring)"
        notes.append(
            f"Same value as pytorch-fid within {TOLERANCE}: {'yes' if agree else 'NO'}"
            + ("" if n > extractor.dim else singular)
        )
    rate = scored / every_s
    if device.type == "cuda":
        verdict = "met" if rate >= TARGET_IMAGES_PER_S else "NOT met"
        notes.append(
            f"Target: fp32 scoring >= {TARGET_IMAGES_PER_S:,} images/s, 50,000 images in <= "
            f"{TARGET_S_PER_50K} s: {rate:,.0f} images/s, 50,000 in {50_000 / rate:.1f} s, "
            f"{verdict}."
        )
    notes.append("|diff|: from pytorch-fid's value in the first rows, from ours in the CUDA ones.")
    print_table(
        f"Scoring sets of {n:,} images: ours vs pytorch-fid ({label})",
        ["path", "images", "seconds", "images/s", "Fréchet distance", "|diff|"],
        rows,
        notes,
    )


if __name__ == "__main__":
    main()
