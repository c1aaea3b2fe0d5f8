"""How much of a GPU one trial asks Ray for, and in which order the trials start.

With the training step as one CUDA graph, a trial alone on a card trains fastest: without MPS the
card time-slices the processes' graphs and their kernels never overlap, so packing pays only where
a trial leaves the GPU idle, which the eager step did and the graphed step does not (measured:
docs/performance.md, "Packing"). Every CIFAR-10 and CelebA trial therefore asks for a whole GPU;
a dataset's DatasetSpec.gpu_share lists the widths that share one (digits: tiny, host-bound).
`python -m benchmarks.packing --size paper` measures it again on another card.

Whether a trial compiles its step (config `compile`) is decided here too, from measurements
(COMPILE_COSTS): where the steps it will train save more than compiling them costs.
"""

from collections import Counter
from dataclasses import dataclass

from trainables import data
from trainables.config import TrialConfig, make_config


def gpu_fraction(cfg: TrialConfig) -> float:
    """Share of one GPU for this trial: its dataset's share for a depth-1 model of its width (1.0
    where none is listed), twice that for deeper ones."""
    share = data.DATASETS[cfg.dataset].gpu_share.get(cfg.filters, 1.0)
    if max(cfg.stage_depths) > 1:
        share *= 2
    return min(share, 1.0)


# --------------------------------------------------------------------------- the longest first

# A graphed training step of batch 128, in seconds: a fixed part (launching the graph, Adam, the
# small layers) plus a part proportional to `work`, fitted to the CIFAR-10 steps
# benchmarks/train_step.py measured at 32, 64 and 128 filters (docs/performance.md). It
# overestimates CelebA's (4x the pixels, 5x5 kernels); enough to order trials, which is all it is
# for: benchmarks.table1_cost measures what a grid costs.
STEP_FLOOR_S = 1.3e-3
STEP_WORK_S = 0.2e-3
EVAL_S = 30.0  # encoding, the priors and six scored sets of 10,000 images: about half a minute


def work(cfg: TrialConfig) -> float:
    """A step's convolution work relative to a depth-1, 32-filter CIFAR-10 model: it grows with
    the square of the filters (every conv's input and output widths scale together), the pixels,
    and the convs per stage."""
    _, height, width = data.DATASETS[cfg.dataset].image_shape
    depth = sum(cfg.stage_depths) / len(cfg.stage_depths)
    return (cfg.filters / 32) ** 2 * (height * width / 1024) * depth * cfg.batch_size / 128


def training_steps(cfg: TrialConfig) -> int:
    """The optimisation steps of a whole trial: epochs x the batches of an epoch."""
    return cfg.epochs * -(-data.DATASETS[cfg.dataset].train_images // cfg.batch_size)


def estimated_seconds(cfg: TrialConfig) -> float:
    """A trial's GPU time, roughly: epochs x steps an epoch x step time, plus its evaluation."""
    return training_steps(cfg) * (STEP_FLOOR_S + STEP_WORK_S * work(cfg)) + EVAL_S


def longest_first(configs: list[TrialConfig]) -> list[TrialConfig]:
    """The trials in the order to start them: the longest first, so that the study does not end on
    one long CelebA trial while the other GPUs idle; equal estimates keep their grid order."""
    return sorted(configs, key=estimated_seconds, reverse=True)


# --------------------------------------------------------------------------- torch.compile


def model_key(cfg: TrialConfig) -> tuple:
    """What the cost of a training step depends on (not the latent size, whose two linear layers
    are a small share, nor the noise's amount): trials that share it share their step time and
    what compiling their step costs and saves."""
    axes = (cfg.dataset, cfg.model, cfg.filters, cfg.depth, cfg.latent_norm, cfg.freeze_latent)
    return (*axes, cfg.noise_std > 0, cfg.batch_size, cfg.decoder_width, cfg.precision)


@dataclass(frozen=True)
class CompileCost:
    """torch.compile inside the graphed step of one model, as measured on a card."""

    model: dict  # the overrides of TrialConfig's defaults that make the model
    saving_s: float  # per training step: the graphed step minus the compiled graphed step
    first_s: float  # compiling a trial's batch shapes with the node's Inductor cache empty
    cached_s: float | None  # the same with the cache holding them (a later trial); None: not known
    source: str  # where and how it was measured


OLD_H200 = (
    "one H200, 2026-11-26, benchmarks/throughput.py --compile, before the 1024-wide decoder; "
    "compile time per batch shape x the two a trial has; no cached compile measured: "
    "docs/performance.md#measured-on-one-nvidia-h200-2026-11-26"
)
# `python -m benchmarks.compile_cost --size paper` measures these on a card and prints entries; a
# model without one never compiles under --compile auto.
OLD_MODEL = {"dataset": "cifar10", "decoder_width": "8f", "precision": "bf16"}
COMPILE_COSTS = (
    CompileCost(
        {**OLD_MODEL, "filters": 128}, 0.85e-3, first_s=44.0, cached_s=None, source=OLD_H200
    ),
    CompileCost(
        {**OLD_MODEL, "filters": 32}, 0.38e-3, first_s=19.0, cached_s=None, source=OLD_H200
    ),
)


def expected_compile_s(cost: CompileCost, trials: int, nodes: int | None) -> float:
    """One trial's share of compiling its model, where `trials` of that model run on `nodes` nodes
    (None: not known, as on a cluster that scales): each node compiles it once with its cache
    empty, the model's later trials there find it in the cache (Inductor's, kept per node under
    the cache folder). With nodes unknown, every trial may be its node's first."""
    if cost.cached_s is None:
        return cost.first_s
    cold = trials if nodes is None else min(nodes, trials)
    return (cold * cost.first_s + (trials - cold) * cost.cached_s) / trials


def compile_pays(trials: list[TrialConfig], nodes: int | None) -> list[bool]:
    """For each trial, whether to compile its step (--compile auto): its model has a measured
    cost, its steps are graphed on a GPU, and its steps x the saving per step exceed its share of
    the compile time."""
    measured = {model_key(make_config(cost.model)): cost for cost in COMPILE_COSTS}
    of_model = Counter(model_key(cfg) for cfg in trials)

    def pays(cfg: TrialConfig) -> bool:
        cost = measured.get(model_key(cfg))
        graphed = cfg.device != "cpu" and cfg.train_loop == "fast" and cfg.cuda_graph
        if cost is None or not graphed:
            return False
        share = expected_compile_s(cost, of_model[model_key(cfg)], nodes)
        return training_steps(cfg) * cost.saving_s > share

    return [pays(cfg) for cfg in trials]
