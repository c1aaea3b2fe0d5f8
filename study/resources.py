"""How much of a GPU one trial asks Ray for, so that small models share a card.

ESTIMATED, not yet measured (no GPU was available when this was written): per training image the
forward and backward cost 0.47, 1.83 and 7.18 GFLOP at 32, 64 and 128 filters (CIFAR-10), i.e. about
0.2, 0.8 and 3 ms a step of 128 images at 300 TFLOP/s bf16, while launching the step's ~130 eager
kernels costs 1-2 ms of host time. So a 32-filter trial is launch-bound and four share a card, 64
filters is about balanced (two), and 128 is GPU-bound (one). CelebA has 4x the pixels, so each width
behaves like the next CIFAR-10 width up; deeper encoders double the share. Memory does not bind on
an 80 GB card. `python -m benchmarks.packing --size paper` measures throughput with 1, 2, 4 and 8
trials per card and prints the table to put here.
"""

from trainables.config import TrialConfig

# share of one GPU for a depth-1 model, by dataset and filter base
DEPTH1_GPU_SHARE = {
    "digits": {4: 0.125, 8: 0.125, 16: 0.125, 32: 0.125, 64: 0.125, 128: 0.25, 256: 0.5},
    "cifar10": {32: 0.25, 64: 0.5, 128: 1.0, 256: 1.0},
    "celeba": {32: 0.5, 64: 1.0, 128: 1.0, 256: 1.0},
}


def gpu_fraction(cfg: TrialConfig) -> float:
    """Share of one GPU for this trial (1.0 for anything the table does not know)."""
    share = DEPTH1_GPU_SHARE.get(cfg.dataset, {}).get(cfg.filters, 1.0)
    if max(cfg.stage_depths) > 1:
        share *= 2
    return min(share, 1.0)
