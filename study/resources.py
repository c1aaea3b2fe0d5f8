"""How much of a GPU one trial asks Ray for, and in which order the trials start.

MEASURED with the training step as one CUDA graph (benchmarks/packing.py on one H200, CIFAR-10,
depth 1, batch 128): one trial alone trained 105,600 images/s at 32 filters and 65,900 at 64; two,
four or eight at once gave 6-14% less in aggregate (32 filters: 98,700, 91,800, 92,800; 64: 56,800,
60,200, 56,900). Without MPS the card time-slices the processes' graphs and their kernels never
overlap, so packing pays only where a trial leaves the GPU idle, which the eager step did (about
6 ms of host launches a step whatever the width) and the graphed step does not. Every CIFAR-10 and
CelebA trial therefore asks for a whole GPU. The digits default, tiny and host-bound, still packs
(not measured). `python -m benchmarks.packing --size paper` measures it again on another card and
prints the entries to put here.
"""

from trainables import data
from trainables.config import TrialConfig

# share of one GPU for a depth-1 model, by dataset and filter base
DEPTH1_GPU_SHARE = {
    "digits": {4: 0.125, 8: 0.125, 16: 0.125, 32: 0.125, 64: 0.125, 128: 0.25, 256: 0.5},
    "cifar10": {32: 1.0, 64: 1.0, 128: 1.0, 256: 1.0},
    "celeba": {32: 1.0, 64: 1.0, 128: 1.0, 256: 1.0},
}


def gpu_fraction(cfg: TrialConfig) -> float:
    """Share of one GPU for this trial (1.0 for anything the table does not know)."""
    share = DEPTH1_GPU_SHARE.get(cfg.dataset, {}).get(cfg.filters, 1.0)
    if max(cfg.stage_depths) > 1:
        share *= 2
    return min(share, 1.0)


# --------------------------------------------------------------------------- the longest first

TRAIN_IMAGES = {"digits": 1_347, "cifar10": 50_000, "celeba": 162_770}  # the training splits
# A graphed training step of batch 128, in seconds: a fixed part (launching the graph, Adam, the
# small layers) plus a part proportional to `work`; fitted to the steps benchmarks/train_step.py
# measured on one H200 at 32, 64 and 128 filters on CIFAR-10 (1.49, 2.33, 4.54 ms). For CelebA (4x
# the pixels, 5x5 kernels) it overestimates: 14 ms at 128 filters against 9.7 ms measured; enough
# to order trials, which is all it is for.
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
    steps = cfg.epochs * -(-TRAIN_IMAGES[cfg.dataset] // cfg.batch_size)
    return steps * (STEP_FLOOR_S + STEP_WORK_S * work(cfg)) + EVAL_S


def longest_first(configs: list[TrialConfig]) -> list[TrialConfig]:
    """The trials in the order to start them: the longest first, so that the study does not end on
    one long CelebA trial while the other GPUs idle; equal estimates keep their grid order."""
    return sorted(configs, key=estimated_seconds, reverse=True)
