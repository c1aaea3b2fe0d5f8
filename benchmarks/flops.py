"""A training step's arithmetic, counted, against the card's dense peak for the step's precision.

torch.utils.flop_counter.FlopCounterMode counts the convolutions and matrix products of one forward
and backward (the tensor-core work; batch norm and the elementwise operations are not counted) on
any device, a CPU included. They are counted on two images and scaled to the batch: every counted
operation is linear in the batch size.
"""

import re

import torch
from torch.utils.flop_counter import FlopCounterMode

from trainables.config import TrialConfig
from trainables.data import DATASETS
from trainables.models import build_model, reconstruction_loss

# Dense peaks (no 2:4 structured sparsity) in TFLOP/s, by card and the training step's precision:
# bf16 and tf32 on the tensor cores, true fp32 on the CUDA cores. Source: NVIDIA's H100 Tensor Core
# GPU datasheet (SXM5 and PCIe) and H200 Tensor Core GPU datasheet, whose tensor-core rates are
# given "with sparsity": the dense rate is half of that. The H200 (SXM) computes as an H100 SXM.
# Matched against torch.cuda.get_device_name in this order: the first pattern found wins.
DENSE_PEAK_TFLOPS = (
    ("H100 PCIe", r"H100 PCIe", {"bf16": 756.5, "tf32": 378.0, "fp32": 51.0}),
    ("H100 SXM", r"H100 (80GB HBM3|SXM)", {"bf16": 989.5, "tf32": 494.5, "fp32": 67.0}),
    ("H200 SXM", r"H200$", {"bf16": 989.5, "tf32": 494.5, "fp32": 67.0}),
)


def peak_card(device: torch.device) -> str | None:
    """The table's name for this card; None for one it does not hold (a CPU among them)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((card for card, pattern, _ in DENSE_PEAK_TFLOPS if re.search(pattern, name)), None)


def dense_peak(device: torch.device, precision: str) -> float | None:
    """This card's dense peak in TFLOP/s for `precision`; None where the table does not say."""
    peaks = {card: peaks for card, _, peaks in DENSE_PEAK_TFLOPS}.get(peak_card(device), {})
    return peaks.get(precision)


def step_flops(cfg: TrialConfig, device: torch.device) -> float:
    """Forward + backward FLOPs of one training step of cfg's model at its batch size."""
    model = build_model(cfg).to(device)
    x = torch.rand(2, *DATASETS[cfg.dataset].image_shape, device=device)
    with FlopCounterMode(display=False) as counter:
        logits, _ = model(x)
        reconstruction_loss(logits, x, "sum").mean().backward()
    return counter.get_total_flops() / len(x) * cfg.batch_size
