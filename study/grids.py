"""Named grids as data: lists of config overrides, expanded into validated TrialConfigs.

A grid entry holds only what differs from TrialConfig's defaults (the paper's protocol). A curve is
every trial sharing all scientific fields but `latent` (and `seed`, which is the replicate), as in
DESIGN.md; `curve_label` names one for people.
"""

from trainables.config import TrialConfig, make_config

# Depth-1 DAE/VAE curves (Figure 1, Tables 2-3): every latent size in Tables 2-3 (32 ... 768) plus 16, 24,
# 48 and 1024, so that each minimum has points on both sides (VAEs above 512 may diverge: that is a row too).
FULL_SWEEP = (16, 24, 32, 48, 64, 80, 96, 128, 144, 152, 160, 192, 256, 384, 512, 768, 1024)
# The ablation curves (Figures 2-5) are compared near the depth-1 optimum (~96-160): a coarser sweep.
ABLATION_SWEEP = (16, 32, 48, 64, 96, 128, 144, 192, 256, 384, 512)
MODELS = ("dae", "vae")


def sweeps(latents, *curves: dict) -> list[dict]:
    """Each curve's overrides at every latent size, curve by curve."""
    return [{**curve, "latent": latent} for curve in curves for latent in latents]


CIFAR10 = {"dataset": "cifar10"}
TABLE1_CIFAR10 = [
    *sweeps(FULL_SWEEP, *({**CIFAR10, "model": m, "filters": f} for m in MODELS for f in (32, 64, 128, 256))),
    # DAE ablations, at the default 128 filters and depth 1 unless stated
    *sweeps(
        ABLATION_SWEEP,
        *({**CIFAR10, "filters": 64, "depth": depth} for depth in (2, 3)),
        *({**CIFAR10, "depth": depth} for depth in (2, [3, 3, 2, 1])),
        *({**CIFAR10, "latent_norm": norm} for norm in ("bn", "sn", "ln")),
        *({**CIFAR10, "noise_std": std} for std in (0.1, 0.5, 1.0)),
        *({**CIFAR10, "freeze_latent": True, "depth": depth} for depth in (1, 2)),
    ),
]
TABLE1_CELEBA = sweeps(
    FULL_SWEEP, *({"dataset": "celeba", "model": m, "filters": f} for m in MODELS for f in (32, 64, 128))
)

# The offline default: 8 trials of ~20 s on one core, so the whole launch fits 3 minutes on 2 cores.
# Batch 32 gives 42 steps an epoch instead of 11: more updates for the same compute on 1,347 images.
DIGITS_BASE = {"dataset": "digits", "filters": 8, "batch_size": 32, "epochs": 10}
DIGITS = sweeps((4, 8, 16, 32), *({**DIGITS_BASE, "model": model} for model in MODELS))

# One or two seconds per trial, one trial per code path: the launcher's tests run this.
SMOKE_BASE = {"dataset": "digits", "filters": 4, "latent": 4, "epochs": 1, "batch_size": 64, "n_samples": 100}
SMOKE = [
    SMOKE_BASE,
    {**SMOKE_BASE, "latent": 16},  # a second latent: a curve that --search can search
    {**SMOKE_BASE, "model": "vae"},
    *({**SMOKE_BASE, "latent_norm": norm} for norm in ("bn", "sn", "ln")),
    {**SMOKE_BASE, "noise_std": 0.5},
    {**SMOKE_BASE, "freeze_latent": True},
    {**SMOKE_BASE, "depth": [2, 1, 1, 1]},
]

GRIDS = {
    "digits": DIGITS,
    "smoke": SMOKE,
    "table1": TABLE1_CIFAR10 + TABLE1_CELEBA,
    "table1-cifar10": TABLE1_CIFAR10,
    "table1-celeba": TABLE1_CELEBA,
}


def expand(name: str, seeds: int = 1, runtime: dict | None = None) -> list[TrialConfig]:
    """Grid name -> validated configs, `seeds` replicates of each: replicate r is the trial with seed r.

    runtime holds the fields that do not change a trial's identity (data_root, cache_dir, ...).
    Raises ValueError naming the grid, the entry and the bad key.
    """
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; known grids: {', '.join(GRIDS)}")
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    configs = []
    for index, overrides in enumerate(GRIDS[name]):
        for replicate in range(seeds):
            try:
                configs.append(make_config({**overrides, **(runtime or {}), "seed": replicate}))
            except ValueError as exc:
                raise ValueError(f"grid {name!r}, entry {index} {overrides}: {exc}") from None
    return configs


CURVE_FIELDS = tuple(name for name in TrialConfig().science() if name not in ("latent", "seed"))


def curve_key(fields: dict) -> tuple:
    """What a curve shares, from cfg.science() or a stored row: every scientific field but latent and seed."""
    return tuple((name, fields[name]) for name in CURVE_FIELDS)


def curve_label(cfg: TrialConfig) -> str:
    """e.g. 'cifar10 dae f128 d3-3-2-1 bn noise0.5 frozen': the axes of Table 1, only where set."""
    parts = [cfg.dataset, cfg.model, f"f{cfg.filters}", f"d{cfg.depth}"]
    if cfg.latent_norm != "none":
        parts.append(cfg.latent_norm)
    if cfg.noise_std > 0:
        parts.append(f"noise{cfg.noise_std:g}")
    if cfg.freeze_latent:
        parts.append("frozen")
    defaults = make_config({"dataset": cfg.dataset, "model": cfg.model})
    protocol = ("beta", "epochs", "batch_size", "lr", "n_samples", "gmm_components")
    parts += [f"{k}={getattr(cfg, k)}" for k in protocol if getattr(cfg, k) != getattr(defaults, k)]
    return " ".join(parts)


def curves(configs: list[TrialConfig]) -> dict[tuple, list[TrialConfig]]:
    """Group configs by curve (replicates together), in grid order."""
    grouped: dict[tuple, list[TrialConfig]] = {}
    for cfg in configs:
        grouped.setdefault(curve_key(cfg.science()), []).append(cfg)
    return grouped
