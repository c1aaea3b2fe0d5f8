"""What every benchmark shares: the device label, CIFAR-10-shaped data without a download, one
table format.

Run the benchmarks from the repository root as modules (python -m benchmarks.NAME); `--size paper`
selects the paper's sizes (meant for a GPU), the default `--size cpu` small sizes that finish in a
minute or two on a laptop.
"""

import argparse
import os
import platform
import statistics

import torch

from trainables.errors import WeightsMissing
from trainables.features import get_extractor
from trainables.trial import device_name, resolve_device


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--size", choices=("cpu", "paper"), default="cpu", help="small sizes, or the paper's"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N"
    )
    return parser


def setup(args: argparse.Namespace) -> torch.device:
    """Resolve the device and print what runs where, so every table says which machine made it."""
    device = resolve_device(args.device)
    host = f"{platform.node()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    print(f"# device: {device_name(device)}; host: {host}")
    return device


def random_images(n: int, seed: int = 0, shape: tuple[int, ...] = (3, 32, 32)) -> torch.Tensor:
    """uint8 (n, 3, 32, 32) noise in the CIFAR-10 layout: the real data's work per image, no
    download."""
    return torch.randint(
        0, 256, (n, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def inception(device: torch.device):
    """(extractor, label): the real FID network if its weights are on disk, else the same network
    with random weights (identical cost; its distances are not FID)."""
    try:
        extractor = get_extractor("inception-fid", device, cache_dir="")
        return extractor, f"FID Inception, real weights ({extractor.weights_source})"
    except WeightsMissing:
        return get_extractor(
            "inception-fid", device, "", random_weights=True
        ), "FID Inception, RANDOM weights"


def medians(runs: list[dict]) -> dict:
    """Per-key medians of repeated measurements: the machines these run on are often shared."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def print_table(title: str, header: list[str], rows: list[list], notes: list[str] = ()) -> None:
    """A markdown table: numbers right-aligned with sensible precision, notes below it."""
    cells = [[format_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f"\n## {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
    for note in notes:
        print(f"\n{note}")


def format_cell(value) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:,.4g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:.2e}"
