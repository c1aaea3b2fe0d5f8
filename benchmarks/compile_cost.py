"""torch.compile inside the graphed training step: what it saves a step, what compiling costs with
the node's Inductor cache empty and warm, and whether a whole trial repays it.

    python -m benchmarks.compile_cost               # CPU: a tiny model (minutes of compiling)
    python -m benchmarks.compile_cost --size paper  # GPU: CIFAR-10 f=128/256, CelebA f=64/128

Each model is built as a trial builds it (benchmarks.train_step.time_steps: the trainer's step on
resident random images, graphed on CUDA) three times in one process, with Inductor's cache in a new
empty folder, as on a node that has compiled nothing yet:
  first    compiled, the cache empty: the first trial of the model on the node
  plain    not compiled: the step time to beat, and the setup without compiling
  cached   compiled again after torch.compiler.reset(), as the trainer does before the node's next
           trial of the model: Inductor finds its work in the cache
Compile time = the compiled setup - the plain setup (the first run also autotunes cuDNN, which the
plain one then finds done: the first compile time is high by that, if anything). The timed steps
are full batches, one shape; a trial also trains a last partial batch, a second shape that compiles
again, so a trial's compile time is the measured one x its shapes (an upper bound: the second
compilation of a process finds the compiler started). Before the models, one trivial compilation
starts the compiler (its imports, its worker processes), which a worker pays once for all its
trials. The last lines are entries for study/resources.py's COMPILE_COSTS, made on this card.
"""

import json
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import arguments, print_table, setup, sync
from benchmarks.train_step import model_configs, time_steps
from study.resources import training_steps
from trainables.cuda_graph import batch_lengths
from trainables.data import DATASETS
from trainables.train import INDUCTOR_CACHE
from trainables.trial import device_name

SIZES = {
    "cpu": {
        "models": [("cifar10", 4)],
        "steps": 3,
        "batches": 2,
        # a tiny stand-in; bf16 autocast pays on GPUs only
        "overrides": {"batch_size": 16, "latent": 16, "decoder_width": "8f", "precision": "fp32"},
    },
    "paper": {
        # the trials that may repay it, the longest first (Table 1's CelebA f=128 trials)
        "models": [("celeba", 128), ("cifar10", 128), ("celeba", 64), ("cifar10", 256)],
        "steps": 100,
        "batches": 8,
        "overrides": {"batch_size": 128},
    },
}
# What a printed entry states of its model: the axes measured here, and the two defaults that have
# changed the step's cost since earlier measurements; the rest are Table 1's DAE defaults.
ENTRY_FIELDS = ("dataset", "filters", "decoder_width", "precision")


def start_compiler(device: torch.device) -> float:
    """Seconds of one trivial compilation: what a process pays once, before its first model."""
    sync(device)
    clock = time.perf_counter()
    torch.compile(lambda x: x.mul(2).add(1))(torch.ones(8, device=device))
    sync(device)
    return time.perf_counter() - clock


def main(argv=None) -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args(argv)
    device = setup(args)
    size = SIZES[args.size]
    graph = device.type == "cuda"
    rows, entries = [], []
    with tempfile.TemporaryDirectory() as cache:  # a node's cache folder, empty at first
        # where the trainer puts Inductor's cache: set before the compiler starts its workers
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(cache) / INDUCTOR_CACHE)
        startup_s = start_compiler(device)
        for model in model_configs(size):
            cfg = model.replace(cache_dir=cache, compile=True)
            timing = (device, size["steps"], graph, size["batches"])
            first = time_steps(cfg, *timing)
            plain = time_steps(cfg.replace(compile=False), *timing)
            cached = time_steps(cfg, *timing)
            shapes = len(set(batch_lengths(DATASETS[cfg.dataset].train_images, cfg.batch_size)))
            first_s = shapes * (first.setup_s - plain.setup_s)
            cached_s = shapes * (cached.setup_s - plain.setup_s)
            saving_s = plain.step_s - (first.step_s + cached.step_s) / 2
            steps = training_steps(cfg)
            rows.append(
                [cfg.dataset, cfg.filters, cfg.precision, first.kind, plain.step_s * 1e3]
                + [first.step_s * 1e3, cached.step_s * 1e3, first_s, cached_s]
                + [steps * saving_s - first_s, steps * saving_s - cached_s]
            )
            print(
                f"# {cfg.dataset} f={cfg.filters}: {rows[-1]}", flush=True
            )  # kept if a later one hangs
            model = json.dumps({field: getattr(cfg, field) for field in ENTRY_FIELDS})
            entries.append(
                f"    CompileCost({model}, saving_s={saving_s:.3g}, first_s={first_s:.3g}, "
                f"cached_s={cached_s:.3g}, source=MEASURED),"
            )
        cached_files = sum(len(files) for _, _, files in os.walk(Path(cache) / INDUCTOR_CACHE))
    notes = [
        f"Depth 1 DAE, latent {cfg.latent}, batch {cfg.batch_size}, {size['steps']} timed steps "
        "each; compiled ms/step: the first and the cached run. Compile s: a trial's (its batch "
        "shapes), the compiled setup - the plain setup. Trial saves: a 100-epoch trial's steps x "
        "the saving per step - the compile time; where > 0, compiling pays.",
        f"Starting the compiler, once a process: {startup_s:.1f} s. Inductor's cache held "
        f"{cached_files} files afterwards.",
    ]
    if args.size == "cpu":
        notes.append("cpu size: a tiny stand-in, eager steps; these seconds estimate nothing.")
    print_table(
        "torch.compile inside the graphed step: saving per step against compile time",
        ["dataset", "filters", "precision", "step", "plain ms/step", "compiled", "cached"]
        + ["first compile s", "cached compile s", "trial saves s, first", "cached"],
        rows,
        notes,
    )
    print("\nFor study/resources.py, COMPILE_COSTS (the figures also into docs/performance.md):")
    print(
        f'MEASURED = "{device_name(device)}, {time.strftime("%Y-%m-%d")}, torch '
        f'{torch.__version__}, benchmarks.compile_cost --size {args.size}: docs/performance.md"'
    )
    print("\n".join(entries))


if __name__ == "__main__":
    main()
