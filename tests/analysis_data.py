"""Crafted result rows with known answers, and a writer that stores them as per-trial parts.

Every MVG curve is a bowl in log2(latent) with its minimum at OPTIMUM: (log2(latent) - log2(96))^2 +
offset, so the best measured latent, the smooth-fit minimum (96) and the score there (offset) are
known exactly. The GMM bowl sits GMM_BELOW lower; N(0,I) sits just above the MVG for VAEs and 300
above it for DAEs; Interp sits INTERP_ABOVE above it, and Endpoints with Test R at half of it.
Every row trained in fp32 and its GMM converged, unless a test says otherwise.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.results import usable
from trainables import published
from trainables.config import make_config

OPTIMUM = 96
GMM_BELOW = 5.0
INTERP_ABOVE = 2.0
LATENTS = (32, 64, 96, 128, 256)
TABLE_1_CURVES = [  # the paper's Table 1
    *(
        {"dataset": dataset, "filters": f, "model": model}
        for dataset, widths in (("cifar10", (32, 64, 128, 256)), ("celeba", (32, 64, 128)))
        for f in widths
        for model in ("dae", "vae")
    ),
    *({"filters": 64, "depth": depth} for depth in ("2", "3")),
    *({"filters": 128, "depth": depth} for depth in ("2", "3-3-2-1")),
    *({"latent_norm": norm} for norm in ("bn", "sn", "ln")),
    *({"noise_std": noise} for noise in (0.1, 0.5, 1.0)),
    *({"freeze_latent": True, "depth": depth} for depth in ("1", "2")),
]
DIGITS_CURVES = [
    {"dataset": "digits", "filters": f, "model": model} for f in (8, 16) for model in ("dae", "vae")
]


def offset(config: dict) -> float:
    """A curve's minimum MVG score: lower for wider models, higher for deeper ones, VAEs and
    noisier ones, so that every curve has its own."""
    cfg = make_config(config)
    return (
        100.0
        - 10 * np.log2(cfg.filters)
        + (2.0 if cfg.depth != "1" else 0.0)
        + (3.0 if cfg.model == "vae" else 0.0)
        + 20 * cfg.noise_std
    )


def bowl(latent: int, config: dict) -> float:
    return (np.log2(latent) - np.log2(OPTIMUM)) ** 2 + offset(config)


def make_row(
    config: dict,
    status: str = "ok",
    mvg: float | None = None,
    seed_offset: int = 0,
    gmm_converged: bool = True,
) -> dict:
    """A result row for a config; mvg overrides the bowl. Not-ok rows carry no scores, as real
    ones do. The test BCE is the curve's offset plus 64 / latent."""
    cfg = make_config({"precision": "fp32", **config})
    mvg = bowl(cfg.latent, config) if mvg is None else mvg
    rng = np.random.default_rng(cfg.seed + seed_offset)
    scale = 1.0 if cfg.model == "vae" else 5.0
    row = {
        **cfg.science(),
        "trial_id": cfg.trial_id(),
        "grid": "crafted",
        "replicate": cfg.seed,
        "search": "grid",
        "fid": cfg.feature_extractor == "inception-fid",
        "precision": cfg.precision,
        "status": status,
        "error": None if status == "ok" else f"crafted {status}",
        "started_at": f"2024-01-01T00:00:{cfg.seed % 60:02d}+00:00",
        "fd_train_recon": mvg / 3,
        "fd_test_recon": mvg / 2,
        "fd_normal": mvg + (1.0 if cfg.model == "vae" else 300.0),
        "fd_mvg": mvg,
        "fd_gmm": mvg - GMM_BELOW,
        "fd_interp": mvg + INTERP_ABOVE,
        "fd_endpoints": mvg / 2,  # as Test R: what decoding encoded test images scores
        "gmm_converged": gmm_converged,
        "gmm_n_iter": 50 if gmm_converged else cfg.gmm_max_iter,
        "test_recon_bce": offset(config) + 64 / cfg.latent,
        "train_recon_bce": offset(config),
        "code_abs_skew": 4.0 / cfg.filters,
        "code_excess_kurtosis": 8.0 / cfg.filters + 0.1 * len(cfg.depth),
        "heldout_ll_gap_per_dim": 2.0 / cfg.filters,
        "code_dead_units": 0,
        "encoder_params": 1000 * cfg.filters,
        "decoder_params": 1200 * cfg.filters,
        "code_sample_dims": [0, 1, 2, 3],
        "code_sample": (rng.standard_normal((50, 4)) * scale).tolist(),
    }
    if status != "ok":
        scored = ("fd_", "code_", "heldout_", "gmm_converged", "gmm_n_iter", "test_r", "train_r")
        row.update(dict.fromkeys([c for c in row if c.startswith(scored)]))
    return row


def gap_rows(gap_at_32: float, dataset: str = "cifar10") -> list[dict]:
    """DAE rows at the comparison latent with MVG - GMM = gap_at_32 - 2 per doubling of filters,
    three replicates at -1, 0 and +1 around it; one replicate at 64 filters has an unconverged
    GMM."""
    latent = published.COMPARISON_LATENT[dataset]
    rows = []
    for filters in (32, 64, 128, 256):
        gap = gap_at_32 - 2 * np.log2(filters / 32)
        for seed, delta in enumerate((-1.0, 0.0, 1.0)):
            config = {"dataset": dataset, "filters": filters, "latent": latent, "seed": seed}
            converged = not (filters == 64 and seed == 0)
            row = make_row(config, mvg=50.0, gmm_converged=converged)
            rows.append({**row, "fd_gmm": 50.0 - gap - delta})
    return rows


def curve_rows(curves: list[dict], latents=LATENTS, seeds=(0,)) -> list[dict]:
    return [
        make_row({**curve, "latent": latent, "seed": seed})
        for curve in curves
        for latent in latents
        for seed in seeds
    ]


def ok_rows(curves: list[dict], **kwargs) -> pd.DataFrame:
    """curve_rows as the analysis sees them after reading a store."""
    return usable(pd.DataFrame(curve_rows(curves, **kwargs)))


def only(table: pd.DataFrame, **where) -> pd.Series:
    """The one row of a table whose columns equal the given values."""
    rows = table
    for key, value in where.items():
        rows = rows[rows[key] == value]
    assert len(rows) == 1, where
    return rows.iloc[0]


def write_store(rows: list[dict], path: Path) -> Path:
    """One Parquet part file per row, written by pandas as a trial's row would be."""
    path.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        pd.DataFrame([row]).to_parquet(path / f"part-{i:05d}.parquet")
    return path
