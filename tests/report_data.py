"""What crafted rows lack for the report's page: loss histories, sample grids on disk, and a store
of CIFAR-10-shaped rows of several curves that has both (for the page in a browser)."""

import io
from pathlib import Path

import numpy as np
from analysis_data import curve_rows, make_row, offset, write_store
from PIL import Image

GRID_COLUMNS = 10  # as trainables/trial.py lays a grid out: 10 images a row, 2 px apart
GRID_PADDING = 2
FIXTURE_CURVES = [
    *({"filters": f, "model": model} for f in (64, 128) for model in ("dae", "vae")),
    {"filters": 128, "depth": "2"},
    {"filters": 128, "latent_norm": "bn"},
]


def with_history(row: dict, epochs: int = 10, diverged_epoch: int | None = None) -> dict:
    """The row with a loss falling from 5x to about 1x its curve's offset, plus 256 / latent, over
    the epochs; from diverged_epoch (counted from 0, as train() counts it) on, the loss is NaN and
    training ends."""
    floor = offset({k: row[k] for k in ("dataset", "filters", "model", "depth", "noise_std")})
    losses = [floor * (1 + 4 * np.exp(-e / 2)) + 256 / row["latent"] for e in range(epochs)]
    if diverged_epoch is not None:
        losses = [*losses[:diverged_epoch], float("nan")]
    return {**row, "loss_history": losses, "diverged_epoch": diverged_epoch}


def grid_png(rows: int, tile: int = 32, seed: int = 0) -> bytes:
    """A PNG laid out as a trial's sample grid: `rows` rows of GRID_COLUMNS random tiles."""
    pitch = tile + GRID_PADDING
    shape = (GRID_PADDING + rows * pitch, GRID_PADDING + GRID_COLUMNS * pitch, 3)
    pixels = np.full(shape, 255, dtype=np.uint8)
    noise = np.random.default_rng(seed).integers(0, 256, (rows, GRID_COLUMNS, tile, tile, 3))
    for r in range(rows):
        for c in range(GRID_COLUMNS):
            y, x = GRID_PADDING + r * pitch, GRID_PADDING + c * pitch
            pixels[y : y + tile, x : x + tile] = noise[r, c]
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    return png.getvalue()


def with_grid(row: dict, store: Path) -> dict:
    """The row with a grid in the store's _samples/: 4 rows, or 3 where its GMM was not fitted."""
    path = f"_samples/{row['trial_id']}.png"
    (store / "_samples").mkdir(parents=True, exist_ok=True)
    rows = 3 if row["fd_gmm"] is None else 4
    (store / path).write_bytes(grid_png(rows, seed=len(row["trial_id"])))
    return {**row, "samples_png": path}


def fixture_store(path: Path) -> Path:
    """CIFAR-10 rows of six curves (two widths of DAE and VAE, a depth-2 and a BN DAE) at five
    latent sizes, each with a loss history and a grid; the 128-filter VAE's GMM failed at every
    latent size (no GMM row in its grid), and one DAE trial diverged in its fourth epoch."""
    path.mkdir(parents=True, exist_ok=True)
    rows = []
    for row in curve_rows([{"dataset": "cifar10", **c} for c in FIXTURE_CURVES]):
        if row["model"] == "vae" and row["filters"] == 128:
            row = {**row, "fd_gmm": None, "gmm_error": "LinAlgError: crafted"}
        rows.append(with_grid(with_history(row), path))
    diverged = make_row({"dataset": "cifar10", "filters": 64, "latent": 64, "seed": 1}, "diverged")
    rows.append(with_history(diverged, diverged_epoch=3))
    return write_store(rows, path)
