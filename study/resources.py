"""How much of a GPU one trial asks Ray for, and in which order the trials start.

With the training step as one CUDA graph, a trial alone on a card trains fastest: without MPS the
card time-slices the processes' graphs and their kernels never overlap, so packing pays only where
a trial leaves the GPU idle, which the eager step did and the graphed step does not (measured:
docs/performance.md, "Packing"). Every CIFAR-10 and CelebA trial therefore asks for a whole GPU;
a dataset's DatasetSpec.gpu_share lists the widths that share one (digits: tiny, host-bound).
`python -m benchmarks.packing --size paper` measures it again on another card.
"""

from trainables import data
from trainables.config import TrialConfig


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


def estimated_seconds(cfg: TrialConfig) -> float:
    """A trial's GPU time, roughly: epochs x steps an epoch x step time, plus its evaluation."""
    steps = cfg.epochs * -(-data.DATASETS[cfg.dataset].train_images // cfg.batch_size)
    return steps * (STEP_FLOOR_S + STEP_WORK_S * work(cfg)) + EVAL_S


def longest_first(configs: list[TrialConfig]) -> list[TrialConfig]:
    """The trials in the order to start them: the longest first, so that the study does not end on
    one long CelebA trial while the other GPUs idle; equal estimates keep their grid order."""
    return sorted(configs, key=estimated_seconds, reverse=True)
