"""Grids as data: lists of config overrides, expanded into validated TrialConfigs.

A grid entry holds only what differs from TrialConfig's defaults (the paper's protocol). Grids are
named here (GRIDS) or read from a JSON/YAML file of the same shape (`from_file`); `expand` can apply
overrides to every entry (the launcher's --set). A curve is every trial sharing all scientific
fields but `latent` (and `seed`, which is the replicate): trainables/curves.py.
"""

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from trainables.config import FIELDS, ConfigError, TrialConfig, choices, make_config, shown
from trainables.errors import BadInput
from trainables.published import COMPARISON_LATENT

# Depth-1 DAE/VAE curves (Figure 1, Tables 2-3): every latent size in Tables 2-3 (32 ... 768) plus
# 16, 24, 48 and 1024, so that each minimum has points on both sides (VAEs above 512 may diverge:
# that is a row too).
FULL_SWEEP = (16, 24, 32, 48, 64, 80, 96, 128, 144, 152, 160, 192, 256, 384, 512, 768, 1024)
# The ablation curves (Figures 2-5) are compared near the depth-1 optimum (~96-160): coarser.
ABLATION_SWEEP = (16, 32, 48, 64, 96, 128, 144, 192, 256, 384, 512)


def _sweeps(latents, *curves: dict) -> list[dict]:
    """Each curve's overrides at every latent size, curve by curve."""
    return [{**curve, "latent": latent} for curve in curves for latent in latents]


MODELS = choices("model")
CIFAR10 = {"dataset": "cifar10"}
TABLE1_CIFAR10 = [
    *_sweeps(
        FULL_SWEEP,
        *({**CIFAR10, "model": m, "filters": f} for m in MODELS for f in (32, 64, 128, 256)),
    ),
    # DAE ablations, at the default 128 filters and depth 1 unless stated
    *_sweeps(
        ABLATION_SWEEP,
        *({**CIFAR10, "filters": 64, "depth": depth} for depth in (2, 3)),
        *({**CIFAR10, "depth": depth} for depth in (2, [3, 3, 2, 1])),
        *({**CIFAR10, "latent_norm": norm} for norm in ("bn", "sn", "ln")),
        *({**CIFAR10, "noise_std": std} for std in (0.1, 0.5, 1.0)),
        *({**CIFAR10, "freeze_latent": True, "depth": depth} for depth in (1, 2)),
    ),
]
TABLE1_CELEBA = _sweeps(
    FULL_SWEEP,
    *({"dataset": "celeba", "model": m, "filters": f} for m in MODELS for f in (32, 64, 128)),
)

# The VAE's Table 2 points (128 filters, at the latent Table 2 compares: 128 CIFAR-10, 64 CelebA)
# under each reading of how its BCE is reduced against beta * KL; the report sets each beside the
# paper's VAE row, so the reading that reproduces the paper can be read off.
VAE_READINGS = [
    {
        "dataset": dataset,
        "model": "vae",
        "filters": 128,
        "latent": latent,
        "bce_reduction": reduction,
    }
    for dataset, latent in COMPARISON_LATENT.items()
    for reduction in choices("bce_reduction")
]

# The offline default: 8 small trials, so that the whole launch fits minutes on a laptop's CPU.
# Batch 32 gives 42 steps an epoch instead of 11: more updates for the same compute on 1,347 images.
DIGITS_BASE = {"dataset": "digits", "filters": 8, "batch_size": 32, "epochs": 10}
DIGITS = _sweeps((4, 8, 16, 32), *({**DIGITS_BASE, "model": model} for model in MODELS))

# One or two seconds per trial, one trial per code path: the launcher's tests run this.
SMOKE_BASE = {
    "dataset": "digits",
    "filters": 4,
    "latent": 4,
    "epochs": 1,
    "batch_size": 64,
    "n_samples": 100,
}
SMOKE = [
    SMOKE_BASE,
    {**SMOKE_BASE, "latent": 16},  # a second latent: a curve that --search can search
    {**SMOKE_BASE, "model": "vae"},
    *({**SMOKE_BASE, "latent_norm": norm} for norm in ("bn", "sn", "ln")),
    {**SMOKE_BASE, "noise_std": 0.5},
    {**SMOKE_BASE, "freeze_latent": True},
    {**SMOKE_BASE, "depth": [2, 1, 1, 1]},
]

# Caps on a grid file, far above any real one (table1 written out is ~30 kB and ~4,000 values), so
# that a YAML alias bomb (nested anchors: a few hundred bytes expanding to billions of values) is
# refused before anything walks it.
MAX_GRID_FILE_BYTES = 1_000_000
MAX_GRID_VALUES = 100_000

GRIDS = {
    "digits": DIGITS,
    "smoke": SMOKE,
    "table1": TABLE1_CIFAR10 + TABLE1_CELEBA,
    "table1-cifar10": TABLE1_CIFAR10,
    "table1-celeba": TABLE1_CELEBA,
    "vae-readings": VAE_READINGS,
}


@dataclass(frozen=True)
class Grid:
    name: str  # what every row's `grid` column says
    entries: list[dict]  # config overrides, one trial each (times --seeds)
    source: str  # how an error names it: "grid 'smoke'" or "grid file path/to/file.yaml"


def named_grid(name: str) -> Grid:
    """One of GRIDS; BadInput suggests the closest name for a typo."""
    if name not in GRIDS:
        hint = difflib.get_close_matches(name, GRIDS, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise BadInput(
            f"unknown grid {name!r}{suggestion}; known grids: {', '.join(GRIDS)} "
            "(or pass --grid-file PATH)"
        )
    return Grid(name, GRIDS[name], f"grid {name!r}")


def from_file(path: str | Path) -> Grid:
    """A JSON or YAML file holding a list of override mappings; the grid takes the file's stem.

    Both parsers build plain data only (json, yaml.safe_load). YAML 1.1 reads 1e30 as a string:
    write 1.0e+30.
    """
    path = Path(path)
    fix = 'write a list of mappings such as [{"dataset": "digits", "latent": 8}]'
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_GRID_FILE_BYTES + 1)
        text = raw.decode()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(
            f"grid file {path}: cannot read it ({getattr(exc, 'strerror', None) or exc}); {fix}"
        ) from None
    if len(raw) > MAX_GRID_FILE_BYTES:
        raise BadInput(f"grid file {path}: larger than {MAX_GRID_FILE_BYTES:,} bytes; {fix}")
    try:
        entries = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise BadInput(
            f"grid file {path}: not valid {kind} ({str(exc).splitlines()[0][:200]}); {fix}"
        ) from None
    if _expands_beyond(entries, MAX_GRID_VALUES):
        raise BadInput(
            f"grid file {path}: expands to more than {MAX_GRID_VALUES:,} values "
            f"(YAML aliases?); {fix}"
        )
    if (
        not isinstance(entries, list)
        or not entries
        or not all(isinstance(entry, dict) for entry in entries)
    ):
        raise BadInput(
            f"grid file {path}: expected a non-empty list of mappings, got {shown(entries)}; {fix}"
        )
    return Grid(path.stem, entries, f"grid file {path}")


def _expands_beyond(data, limit: int) -> bool:
    """Whether `data`, with every shared (aliased) part counted each time it appears, holds more
    than `limit` values; stops counting there, so a bomb or a cycle costs `limit` steps at most."""
    pending = [data]
    for _ in range(limit):
        if not pending:
            return False
        node = pending.pop()
        if isinstance(node, dict):
            pending += [*node.keys(), *node.values()]
        elif isinstance(node, list):
            pending += node
    return bool(pending)


SEED_IS_THE_REPLICATE = "replicate r always runs with seed r; remove the seed and use --seeds N"


def _format_override(key: str, value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return f"--set {key}={text}"


def _check_overrides(overrides: dict) -> None:
    """Keys of --set: known config fields, and not the seed (that is the replicate)."""
    for key, value in overrides.items():
        if key == "seed":
            raise BadInput(f"{_format_override(key, value)}: {SEED_IS_THE_REPLICATE}")
        if key not in FIELDS:
            try:
                make_config({key: value})  # its message names the key and the closest known one
            except ConfigError as exc:
                raise BadInput(f"{_format_override(key, value)}: {exc}") from None


def expand(
    grid: Grid | str, seeds: int = 1, runtime: dict | None = None, overrides: dict | None = None
) -> list[TrialConfig]:
    """Grid (or grid name) -> validated configs, `seeds` replicates of each: replicate r is the
    trial with seed r.

    runtime holds the fields that do not change a trial's identity (data_root, cache_dir, ...);
    overrides (the launcher's --set) replace a field in every entry. Entries that become the same
    trial run once. Raises BadInput naming the grid, the entry, the --set if one is to blame, and
    the bad key.
    """
    grid = named_grid(grid) if isinstance(grid, str) else grid
    if seeds < 1:
        raise BadInput(f"--seeds must be at least 1, got {seeds}")
    overrides = overrides or {}
    _check_overrides(overrides)
    configs: dict[str, TrialConfig] = {}
    for index, entry in enumerate(grid.entries):
        if "seed" in entry:
            where = f"{grid.source}, entry {index} {shown(entry)}"
            raise BadInput(f"{where}: {SEED_IS_THE_REPLICATE}")
        for replicate in range(seeds):
            try:
                cfg = make_config({**entry, **(runtime or {}), **overrides, "seed": replicate})
            except ConfigError as exc:
                raise _config_error(grid, index, entry, overrides, exc) from None
            configs.setdefault(cfg.trial_id(), cfg)
    return list(configs.values())


def _config_error(
    grid: Grid, index: int, entry: dict, overrides: dict, exc: ConfigError
) -> BadInput:
    """Where the bad value came from: the --set alone, the --set with this entry, or the entry."""
    key = str(exc).split(":")[0]
    where = f"{grid.source}, entry {index} {shown(entry)}"
    if key not in overrides:
        return BadInput(f"{where}: {exc}")
    try:
        make_config({key: overrides[key]})
    except ConfigError as alone:  # wrong whatever the entry: the --set is the whole story
        return BadInput(f"{_format_override(key, overrides[key])}: {alone}")
    return BadInput(f"{where} with {_format_override(key, overrides[key])}: {exc}")
