"""Milliseconds per training step: eager against the whole step as one CUDA graph, same card.

    python -m benchmarks.train_step               # CPU: a tiny model; the graph falls back
    python -m benchmarks.train_step --size paper  # GPU: CIFAR-10 f=32/64/128, CelebA f=32/128

Each row builds the step a trial trains with (trainables.train.prepare, the fast loop: bf16
autocast on CUDA, channels_last, cuDNN autotuning, fused Adam; cuda_graph off and on) for a depth-1
DAE at latent 128, on a few batches of random uint8 images resident on the device (a step's cost
does not depend on the pixels). Building the step and one pass over those batches warm up
(autotuning; for the graph, its warm-up steps and capture); then STEPS steps are timed, ending in
the one host sync an epoch makes. A row whose capture fails says so and times the eager step it
fell back to.
"""

import time
from dataclasses import dataclass

import torch

from benchmarks.common import arguments, print_table, random_images, setup, sync
from trainables.config import TrialConfig, make_config
from trainables.cuda_graph import batch_lengths
from trainables.data import DATASETS
from trainables.models import build_model
from trainables.train import Training, prepare

SIZES = {
    "cpu": {"models": [("cifar10", 8)], "steps": 5, "overrides": {"batch_size": 16}},
    "paper": {
        "models": [
            ("cifar10", 32),
            ("cifar10", 64),
            ("cifar10", 128),
            ("celeba", 32),
            ("celeba", 128),
        ],
        "steps": 200,
        "overrides": {"batch_size": 128},
    },
}
RESIDENT_BATCHES = 8


def model_configs(size: dict) -> list[TrialConfig]:
    """A benchmark size's models, (dataset, filters) pairs, as configs with its overrides."""
    return [
        make_config({"dataset": dataset, "filters": filters, **size["overrides"]})
        for dataset, filters in size["models"]
    ]


@dataclass
class StepTiming:
    kind: str  # "graph" or "eager": what ran
    fallback_error: str | None  # why a graph asked for did not run
    setup_s: float  # building the step and one warm-up pass: autotuning, warm-up steps, capture
    step_s: float  # one optimisation step, steady state


def resident_training(
    cfg: TrialConfig, device: torch.device, batches: int = RESIDENT_BATCHES
) -> tuple[Training, list[torch.Tensor]]:
    """cfg's model and the trainer's step for it (train.prepare, the fast loop; graphed where cfg
    asks and the capture works) on `batches` resident batches of random images, warmed up by one
    pass over them; and the index batches of that pass, to replay."""
    torch.manual_seed(cfg.seed)
    cfg = cfg.replace(device=str(device), train_loop="fast")
    model = build_model(cfg).to(device)
    shape = DATASETS[cfg.dataset].image_shape
    images = random_images(batches * cfg.batch_size, shape=shape).to(device)
    training = prepare(model, images, cfg)
    order = list(training.batches())
    for batch in order:
        training.step.run(batch)
    training.step.epoch_loss()  # waits for the warm-up pass
    return training, order


def time_steps(
    cfg: TrialConfig, device: torch.device, steps: int, graph: bool, batches: int = RESIDENT_BATCHES
) -> StepTiming:
    """Build cfg's model and the trainer's step for it (graphed if asked and possible), time it on
    `batches` resident batches of images."""
    sync(device)
    clock = time.perf_counter()
    training, order = resident_training(cfg.replace(cuda_graph=graph), device, batches)
    setup_s = time.perf_counter() - clock
    clock = time.perf_counter()
    for i in range(steps):
        training.step.run(order[i % len(order)])
    training.step.epoch_loss()  # waits for the last step, as an epoch's end does
    step_s = (time.perf_counter() - clock) / steps
    training.step.close()
    return StepTiming(training.step.kind, training.step.fallback_error, setup_s, step_s)


def trial_train_s(cfg: TrialConfig, timing: StepTiming) -> float:
    """Training time of a whole trial of cfg at this step time, on its dataset's training set."""
    steps = cfg.epochs * len(batch_lengths(DATASETS[cfg.dataset].train_images, cfg.batch_size))
    return timing.setup_s + steps * timing.step_s


def main(argv=None) -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args(argv)
    device = setup(args)
    size = SIZES[args.size]
    rows, notes = [], []
    for cfg in model_configs(size):
        eager = time_steps(cfg, device, size["steps"], graph=False)
        graphed = time_steps(cfg, device, size["steps"], graph=True)
        if graphed.fallback_error:
            notes.append(f"{cfg.dataset} f={cfg.filters}: no graph ({graphed.fallback_error})")
        rows.append(
            [cfg.dataset, cfg.filters, eager.step_s * 1e3, graphed.step_s * 1e3, graphed.kind]
            + [eager.step_s / graphed.step_s, trial_train_s(cfg, eager)]
            + [trial_train_s(cfg, graphed), graphed.setup_s]
        )
    print_table(
        "One training step: eager vs one CUDA graph",
        ["dataset", "filters", "eager ms/step", "graphed ms/step", "ran as", "speed-up"]
        + ["100-epoch train s, eager", "graphed", "graph setup s"],
        rows,
        [
            f"Depth 1, latent 128, batch {cfg.batch_size}, {cfg.precision}, "
            f"{'channels_last, cuDNN autotuning, fused Adam' if device.type == 'cuda' else 'CPU'};"
            f" {size['steps']} timed steps after one warm-up pass over {RESIDENT_BATCHES} batches.",
            "100-epoch train s: epochs x steps an epoch of the real training set x ms/step, plus "
            "the setup (the graph's warm-up and capture).",
            *notes,
        ],
    )


if __name__ == "__main__":
    main()
