"""Small trials together in one process, each replaying its graphed training step on a CUDA stream
of its own: aggregate training images/s against one trial alone.

    python -m benchmarks.streams               # CPU: the same harness, the steps one after another
    python -m benchmarks.streams --size paper  # GPU: CIFAR-10 and CelebA at 32 and 64 filters,
                                               # 1, 2 and 4 trials

Separate processes time-slice a GPU (benchmarks/packing.py), so their graphs never overlap; graphs
launched on different streams of one process can. Each trial here is a model of its own (its own
seed, Adam and resident batches, built by benchmarks.train_step.resident_training, as a trial
builds its step); a round launches one step of every trial, each on its stream, and the host waits
only at the end. Aggregate images/s = trials x rounds x batch / seconds; "x alone" compares it with
one trial by itself, on one stream, the same way. Nothing in the study runs trials this way: this
measures whether it would pay.
"""

import contextlib
import time

import torch

from benchmarks.common import arguments, print_table, setup, sync
from benchmarks.train_step import model_configs, resident_training
from trainables.config import TrialConfig

SIZES = {
    "cpu": {
        "models": [("cifar10", 4)],
        "trials": (1, 2),
        "rounds": 4,
        # a tiny stand-in; bf16 autocast pays on GPUs only
        "overrides": {"batch_size": 16, "latent": 16, "decoder_width": "8f", "precision": "fp32"},
    },
    "paper": {
        "models": [("cifar10", 32), ("cifar10", 64), ("celeba", 32), ("celeba", 64)],
        "trials": (1, 2, 4),
        "rounds": 100,
        "overrides": {"batch_size": 128},
    },
}
SLACK = 0.05  # a gain within 5% of one trial alone is not worth running trials this way


def on_stream(stream: torch.cuda.Stream | None):
    return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()


def images_per_s(trainings: list, rounds: int, device: torch.device) -> float:
    """Every training's step `rounds` times, the trainings' steps of a round each on its own
    stream (on CUDA): all images trained / seconds."""
    streams = [torch.cuda.Stream(device) if device.type == "cuda" else None for _ in trainings]
    for stream in streams:
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream(device))  # the index batches are ready
    sync(device)
    clock = time.perf_counter()
    for number in range(rounds):
        for (training, order), stream in zip(trainings, streams, strict=True):
            with on_stream(stream):
                training.step.run(order[number % len(order)])
    sync(device)
    seconds = time.perf_counter() - clock
    return sum(len(order[0]) for _, order in trainings) * rounds / seconds


def together(cfg: TrialConfig, size: dict, device: torch.device) -> tuple[dict[int, float], str]:
    """Aggregate images/s of each number of trials of cfg's model at once (each its own seed),
    and how their steps ran (graph or eager)."""
    seeds = range(max(size["trials"]))
    trainings = [resident_training(cfg.replace(seed=seed), device) for seed in seeds]
    images_per_s(trainings[:1], 2, device)  # a first replay on a side stream, not timed
    measured = {k: images_per_s(trainings[:k], size["rounds"], device) for k in size["trials"]}
    kind = trainings[0][0].step.kind
    for training, _ in trainings:
        training.step.close()
    return measured, kind


def main(argv=None) -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args(argv)
    device = setup(args)
    size = SIZES[args.size]
    rows, verdicts = [], []
    for cfg in model_configs(size):
        measured, kind = together(cfg, size, device)
        print(f"# {cfg.dataset} f={cfg.filters}: images/s by trials {measured}", flush=True)
        alone = measured[1]
        rows += [
            [cfg.dataset, cfg.filters, k, kind, rate, rate / k, rate / alone]
            for k, rate in measured.items()
        ]
        best = max(measured, key=measured.get)
        pays = "pays" if measured[best] > (1 + SLACK) * alone else "does not pay"
        verdicts.append(
            f"{cfg.dataset} f={cfg.filters}: {pays} (best: {best}, x{measured[best] / alone:.2f})"
        )
    if device.type == "cuda":
        on = "its own CUDA stream each"
        rule = f"Streams in one process (> {SLACK:.0%} over one trial alone)"
        verdict = f"{rule}: {'; '.join(verdicts)}"
    else:
        on, verdict = "one after another (no streams)", "No streams on a CPU: no verdict."
    print_table(
        "Trials together in one process: aggregate training images/s",
        ["dataset", "filters", "trials", "steps", "images/s", "per trial", "x alone"],
        rows,
        [
            f"Depth 1 DAE, latent {cfg.latent}, batch {cfg.batch_size}, precision {cfg.precision}; "
            f"{size['rounds']} rounds of one step per trial, {on}; each trial its own model and "
            "resident random images.",
            verdict,
        ],
    )


if __name__ == "__main__":
    main()
