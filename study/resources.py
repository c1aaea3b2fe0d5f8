"""How much of a GPU one trial asks Ray for, so that small models share a card.

ESTIMATE pending the packing benchmark in benchmarks/: the shares assume an 80 GB A100/H100-class card
and scale with activation size (filters^2 x image pixels); deeper encoders double them. Replace the
numbers with measured ones (throughput per trial flat as trials are added to one card) when it lands.
"""

from trainables.config import TrialConfig

# share of one GPU for a depth-1 model, by dataset and filter base
DEPTH1_GPU_SHARE = {
    "digits": {4: 0.0625, 8: 0.0625, 16: 0.0625, 32: 0.125, 64: 0.125, 128: 0.25, 256: 0.5},
    "cifar10": {32: 0.125, 64: 0.125, 128: 0.25, 256: 0.5},
    "celeba": {32: 0.25, 64: 0.25, 128: 0.5, 256: 1.0},
}


def gpu_fraction(cfg: TrialConfig) -> float:
    """Share of one GPU for this trial (1.0 for anything the table does not know)."""
    share = DEPTH1_GPU_SHARE.get(cfg.dataset, {}).get(cfg.filters, 1.0)
    if max(cfg.stage_depths) > 1:
        share *= 2
    return min(share, 1.0)
