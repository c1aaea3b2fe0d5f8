"""Scoring N generated images: our path against pytorch-fid's own, same network, images and card.

    python -m benchmarks.scoring                  # CPU: 50 images (~0.1 s an image at 299x299)
    python -m benchmarks.scoring --size paper     # 10,000 images, as a trial scores each set

  pytorch-fid   pytorch_fid_distance below: images on the host in a DataLoader at batch 50, a copy
                to the device per batch, features back to the host, numpy statistics, scipy sqrtm
                (calculate_frechet_distance)
  ours          trainables.features.score, what a trial runs: images already on the device,
                batches of 250, statistics and the eigenvalue trace in float64 on the device
Both use the same reference statistics, computed beforehand (a trial reads them from the cache),
and the same fp32 convolutions; on CUDA a last row shows what cuDNN's TF32 would save and how far
it moves the value. Without the Inception weights on disk the network has random weights (same
cost, the values are not FID): the header says so. The images are CIFAR-10-shaped random noise;
with fewer images than 2048 features the covariances are singular, where scipy's sqrtm is inexact,
so the 1e-3 agreement check is meaningful at --size paper.
"""

import dataclasses
import time

import numpy as np
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import arguments, inception, print_table, random_images, setup, sync
from trainables import features, frechet

SIZES = {"cpu": 50, "paper": 10_000}
TOLERANCE = 1e-3


def pytorch_fid_distance(
    images: torch.Tensor, extractor: features.Extractor, ref_stats, batch_size: int = 50
) -> float:
    """pytorch-fid's own scoring path, the baseline features.score is timed and checked against.

    As pytorch_fid.fid_score.get_activations and calculate_activation_statistics do it: the images
    on the host in a DataLoader at batch 50, one copy to the device per batch, features back to the
    host, numpy statistics, then calculate_frechet_distance (scipy's sqrtm). Same network and conv
    precision as features.score.
    """
    loader = DataLoader(TensorDataset(images.cpu()), batch_size=batch_size)
    activations = np.concatenate([extractor.features(batch, batch_size) for (batch,) in loader])
    mu = np.mean(activations, axis=0)
    sigma = np.cov(activations, rowvar=False)
    return float(calculate_frechet_distance(mu, sigma, *ref_stats))


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


def main(argv=None) -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args(argv)
    device = setup(args)
    n = SIZES[args.size]
    extractor, label = inception(device)
    reference = random_images(n, seed=1).to(device)
    generated = random_images(n, seed=2).to(device).float().div_(255).sqrt_()  # brighter
    ref_stats = frechet.gaussian_stats(extractor.features(reference))
    # also warms up cuDNN and the allocator
    mu, sigma = frechet.gaussian_stats(extractor.features(generated))

    baseline, baseline_s = timed(device, pytorch_fid_distance, generated, extractor, ref_stats)
    ours, ours_s = timed(device, features.score, generated, extractor, ref_stats)
    rows = [
        ["pytorch-fid (host DataLoader, batch 50, scipy sqrtm)", baseline_s, baseline, 0.0, 1.0],
        ["ours (on device, batch 250, eigh trace)", ours_s, ours]
        + [abs(ours - baseline), baseline_s / ours_s],
    ]
    if device.type == "cuda":
        with_tf32 = dataclasses.replace(extractor, tf32=True)
        tf32, tf32_s = timed(device, features.score, generated, with_tf32, ref_stats)
        rows.append(
            ["ours with cuDNN TF32 (not used)", tf32_s, tf32]
            + [abs(tf32 - baseline), baseline_s / tf32_s]
        )

    _, sqrtm_s = timed(device, calculate_frechet_distance, mu, sigma, *ref_stats)
    _, eigh_s = timed(device, frechet.frechet_distance, mu, sigma, *ref_stats)
    distance_alone = (
        f"The distance alone on {extractor.dim}-d statistics: "
        f"scipy sqrtm {sqrtm_s:.2f} s, eigh trace {eigh_s:.2f} s"
    )
    if device.type == "cuda":
        on_device = [torch.as_tensor(v, device=device) for v in (mu, sigma)]
        _, device_s = timed(device, frechet.frechet_distance, *on_device, *ref_stats)
        distance_alone += f" on the host, {device_s:.2f} s on {device}"
    agree = abs(ours - baseline) <= TOLERANCE
    singular = f" (n={n} < {extractor.dim}: singular covariances, see the docstring)"
    print_table(
        f"Scoring {n:,} images: ours vs pytorch-fid ({label})",
        ["path", "seconds", "Fréchet distance", "|diff| vs pytorch-fid", "x pytorch-fid"],
        rows,
        [
            f"Same value within {TOLERANCE}: {'yes' if agree else 'NO'}"
            + ("" if n > extractor.dim else singular),
            distance_alone + ".",
        ],
    )


if __name__ == "__main__":
    main()
