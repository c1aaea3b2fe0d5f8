"""Scoring N generated images: our path against pytorch-fid's own, same network, same images, same card.

    python -m benchmarks.scoring                  # CPU: 50 images (Inception at 299x299 costs ~0.1 s an image there)
    python -m benchmarks.scoring --size paper     # 10,000 images, as a trial scores each set

  pytorch-fid   metrics.pytorch_fid_distance: images on the host in a DataLoader at batch 50, a copy to the device
                per batch, features back to the host, numpy statistics, scipy sqrtm (calculate_frechet_distance)
  ours          metrics.score, what a trial runs: images already on the device, batches of 250, statistics and
                the eigenvalue trace in float64 on the device
Both use the same reference statistics, computed beforehand (a trial reads them from the cache), and the same fp32
convolutions; on CUDA a last row shows what cuDNN's TF32 would save and how far it moves the value. Without the
Inception weights on disk the network has random weights (same cost, the values are not FID): the header says so.
The images are CIFAR-10-shaped random noise; with fewer images than 2048 features the covariances are singular,
where scipy's sqrtm is inexact, so the 1e-3 agreement check is meaningful at --size paper.
"""

import dataclasses
import time

import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from benchmarks.common import arguments, inception, print_table, random_images, setup, sync
from trainables import metrics

SIZES = {"cpu": 50, "paper": 10_000}
TOLERANCE = 1e-3


def timed(device: torch.device, fn, *args):
    """-> (value, seconds); a ValueError (pytorch-fid's sqrtm on singular covariances) is NaN, and reported."""
    sync(device)
    start = time.perf_counter()
    try:
        value = fn(*args)
    except ValueError as err:
        print(f"{getattr(fn, '__name__', fn)} raised ValueError: {err}")
        value = float("nan")
    sync(device)
    return value, time.perf_counter() - start


def main(argv=None) -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args(argv)
    device = setup(args)
    n = SIZES[args.size]
    extractor, label = inception(device)
    reference = random_images(n, seed=1).to(device)
    generated = (
        random_images(n, seed=2).to(device).float().div_(255).sqrt_()
    )  # brighter than the reference
    ref_stats = metrics.gaussian_stats(extractor.features(reference))
    mu, sigma = metrics.gaussian_stats(
        extractor.features(generated)
    )  # also warms up cuDNN and the allocator

    baseline, baseline_s = timed(
        device, metrics.pytorch_fid_distance, generated, extractor, ref_stats
    )
    ours, ours_s = timed(device, metrics.score, generated, extractor, ref_stats)
    rows = [
        ["pytorch-fid (host DataLoader, batch 50, scipy sqrtm)", baseline_s, baseline, 0.0, 1.0],
        [
            "ours (on device, batch 250, eigh trace)",
            ours_s,
            ours,
            abs(ours - baseline),
            baseline_s / ours_s,
        ],
    ]
    if device.type == "cuda":
        tf32, tf32_s = timed(
            device, metrics.score, generated, dataclasses.replace(extractor, tf32=True), ref_stats
        )
        rows.append(
            [
                "ours with cuDNN TF32 (not used)",
                tf32_s,
                tf32,
                abs(tf32 - baseline),
                baseline_s / tf32_s,
            ]
        )

    _, sqrtm_s = timed(device, calculate_frechet_distance, mu, sigma, *ref_stats)
    _, eigh_s = timed(device, metrics.frechet_distance, mu, sigma, *ref_stats)
    distance_alone = f"The distance alone on {extractor.dim}-d statistics: scipy sqrtm {sqrtm_s:.2f} s, eigh trace {eigh_s:.2f} s"
    if device.type == "cuda":
        on_device = [torch.as_tensor(v, device=device) for v in (mu, sigma)]
        distance_alone += f" on the host, {timed(device, metrics.frechet_distance, *on_device, *ref_stats)[1]:.2f} s on {device}"
    agree = abs(ours - baseline) <= TOLERANCE
    print_table(
        f"Scoring {n:,} images: ours vs pytorch-fid ({label})",
        ["path", "seconds", "Fréchet distance", "|diff| vs pytorch-fid", "x pytorch-fid"],
        rows,
        [
            f"Same value within {TOLERANCE}: {'yes' if agree else 'NO'}"
            + (
                ""
                if n > extractor.dim
                else f" (n={n} < {extractor.dim}: singular covariances, see the docstring)"
            ),
            distance_alone + ".",
        ],
    )


if __name__ == "__main__":
    main()
