"""Small models share a GPU: aggregate training images/s with 1, 2 and 4 concurrent trials on one
device, each training with graphed steps as a trial does.

    python -m benchmarks.packing               # CPU, tiny: 4 and 8 filters x 1 and 2 processes
                                               # (checks that it works)
    python -m benchmarks.packing --size paper  # GPU: 32 and 64 filters x 1, 2, 4 processes
                                               # (8 measured once on an H200: no better than 4)

Each trial is a process of its own, as Ray runs them, training the real model with
trainables.train.train (on CUDA: the step as one CUDA graph, bf16, channels_last) on a
CIFAR-10-shaped random uint8 tensor resident on the device. After a warm-up (cuDNN autotuning, lazy
initialisation) all processes start together behind a barrier; each one's steady state is its
epochs after the first (the first holds the graph's capture), and aggregate images/s = all images
of those epochs / (last end - first steady start). The recommended share of a GPU for a model size
is 1/k for the smallest k within SLACK of the best aggregate rate whose k processes fit in the
card's memory together (each one's peak training memory plus EVAL_RESERVE_GIB for its CUDA context
and its scoring phase, Inception at batch 250). The last lines print the entries for
study/resources.py's DEPTH1_GPU_SHARE.
"""

import multiprocessing
import os
import time

import torch

from benchmarks.common import arguments, print_table, random_images, setup
from trainables.config import make_config
from trainables.models import build_model
from trainables.train import train

SIZES = {
    "cpu": {"filters": (4, 8), "processes": (1, 2), "images": 256, "epochs": 2},
    "paper": {"filters": (32, 64), "processes": (1, 2, 4), "images": 50_000, "epochs": 3},
}
SLACK = 0.05  # a smaller share that is within 5% of the best rate is not worth the crowding
# CUDA context ~0.5 + Inception at batch 250 (~14 MiB of activations an image, measured on CPU)
EVAL_RESERVE_GIB = 4.5
WARMUP_BATCHES = 8


def _worker(
    filters: int, images: int, epochs: int, device: str, threads: int, barrier, results
) -> None:
    torch.set_num_threads(threads)
    cfg = make_config({"filters": filters, "epochs": epochs, "device": device})
    data = random_images(images).to(device)
    model = build_model(cfg).to(device)
    train(model, data[: WARMUP_BATCHES * cfg.batch_size], cfg.replace(epochs=1))
    barrier.wait()
    result = train(model, data, cfg)
    end = time.time()
    steady_start = end - sum(result.epoch_seconds[1:])
    peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.startswith("cuda") else 0.0
    results.put((steady_start, end, images * (epochs - 1), peak_gib, result.train_step))


def measure(filters: int, processes: int, size: dict, device: torch.device) -> dict:
    """k trials at once on one device -> aggregate images/s and the largest peak memory of one."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    barrier = context.Barrier(processes)
    results = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // processes)
    args = (filters, size["images"], size["epochs"], str(device), threads, barrier, results)
    workers = [context.Process(target=_worker, args=args) for _ in range(processes)]
    for process in workers:
        process.start()
    reports = [results.get(timeout=600) for _ in workers]
    for process in workers:
        process.join()
    starts, ends, images, peaks, kinds = zip(*reports, strict=True)
    return {
        "images_per_s": sum(images) / (max(ends) - min(starts)),
        "peak_gib": max(peaks),
        "ran_as": "/".join(sorted(set(kinds))),
    }


def recommend(measured: dict[int, dict], memory_gib: float | None) -> int:
    """The smallest concurrency within SLACK of the best aggregate rate, among those that fit in
    memory."""
    fits = [
        k
        for k, m in measured.items()
        if memory_gib is None or k * (m["peak_gib"] + EVAL_RESERVE_GIB) <= memory_gib
    ]
    if not fits:
        return 1
    best = max(measured[k]["images_per_s"] for k in fits)
    return min(k for k in fits if measured[k]["images_per_s"] >= (1 - SLACK) * best)


def main(argv=None) -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args(argv)
    device = setup(args)
    size = SIZES[args.size]
    memory_gib = (
        torch.cuda.get_device_properties(device).total_memory / 2**30
        if device.type == "cuda"
        else None
    )
    rows = []
    fractions = {}
    for filters in size["filters"]:
        measured = {k: measure(filters, k, size, device) for k in size["processes"]}
        chosen = recommend(measured, memory_gib)
        fractions[filters] = 1 / chosen
        alone = measured[min(measured)]["images_per_s"]
        for k, m in measured.items():
            rate = m["images_per_s"]
            mark = "<- recommended" if k == chosen else ""
            rows.append(
                [filters, k, m["ran_as"], rate, rate / k, rate / alone, m["peak_gib"], mark]
            )
    print_table(
        "Packing: concurrent trials per device",
        ["filters", "trials", "steps", "aggregate images/s", "per trial", "x one trial"]
        + ["peak GiB per trial", ""],
        rows,
        [
            f"{size['images']:,} CIFAR-10-shaped random images x {size['epochs']} epochs per "
            "trial (the first not counted), batch 128, depth 1, latent 128, the trainer's "
            f"defaults for {device.type} (precision, layout, CUDA graph).",
            "Recommended GPU fraction per model size (depth 1): "
            + ", ".join(f"{f} filters -> {share:g}" for f, share in fractions.items()),
            "For study/resources.py, DEPTH1_GPU_SHARE['cifar10']: "
            + ", ".join(f"{f}: {share:g}" for f, share in fractions.items()),
        ],
    )


if __name__ == "__main__":
    main()
