"""TrialConfig: every knob of one trial, each stated once with its default and its rules.

Each field says in its metadata (`setting`) what it is for (its role), which values it takes
(`Options`, `Interval`, `Rule`) and, if it was added after rows existed, the value those rows ran
with (`before`). A grid or a user passes a plain dict of overrides; `make_config` rejects unknown
keys and impossible values with a ConfigError (a ValueError) naming the key, so nothing bad is ever
scheduled: `validate` checks every field against its own rules, then the few rules that join
fields. `trial_id()` hashes only the fields that change what a trial computes; where the data lives
or which device runs it (role RUNTIME) does not change the identity of an experiment.

Why each reading's default is what it is: docs/readings.md.
"""

import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trainables import data
from trainables.errors import BadInput

# What a field is for. Every scientific field but POINT ones defines a curve.
AXIS = "axis"  # the axes of the paper's Table 1
READING = "reading"  # a choice the paper leaves open: docs/readings.md gives the evidence
PROTOCOL = "protocol"  # the paper's fixed training and scoring protocol
POINT = "point"  # varies along a curve (latent) or between its replicates (seed)
RUNTIME = "runtime"  # where and how it runs: not part of the trial's identity
N_STAGES = 4  # encoder stages with f, 2f, 4f, 8f filters
MAX_CONVS_PER_STAGE = 64
# Every float field enters float32 arithmetic on the device (bf16 has the same exponent range): a
# magnitude outside float32's normal range becomes 0, a subnormal or inf there, so only 0 or a
# magnitude in [FLOAT32_TINY, FLOAT32_MAX] can do what it says.
FLOAT32_TINY = 1.1754943508222875e-38
FLOAT32_MAX = 3.4028234663852886e38
_NOT_SET = object()


class ConfigError(BadInput):
    """An unknown key or an impossible value; the message starts with the key."""


def shown(value, limit: int = 200) -> str:
    """A value for an error message, cut to a readable length (a grid file can hold anything):
    reprlib never walks past a few items and levels, so a huge value costs no time either."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = 60
    short.maxdict = short.maxlist = 8
    short.maxlevel = 2
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- constraints


@dataclass(frozen=True)
class Options:
    values: tuple

    def check(self, name: str, value) -> None:
        if value not in self.values:
            raise ConfigError(f"{name}: {shown(value)} is not one of {', '.join(self.values)}")


@dataclass(frozen=True)
class Interval:
    """low <= value <= high (low < value where low_open); None: unbounded on that side. The upper
    bounds of integers are far beyond any study of this paper, far inside int64 (the store's
    integers) and what numpy, torch and the memory of one GPU can take."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    why: str = ""  # what the bound protects, for the message

    def check(self, name: str, value) -> None:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            bound = f"> {self.low:,}" if self.low_open else f"at least {self.low:,}"
        elif self.high is not None and value > self.high:
            bound = f"at most {self.high:,}"
        else:
            return
        why = f" ({self.why})" if self.why else ""
        raise ConfigError(f"{name}: must be {bound}{why}, got {value:,}")


@dataclass(frozen=True)
class Rule:
    holds: Callable[[object], bool]
    must: str  # what the value must be, for the message

    def check(self, name: str, value) -> None:
        if not self.holds(value):
            raise ConfigError(f"{name}: must be {self.must}, got {shown(value)}")


def setting(default, role: str, *constraints, before=_NOT_SET, only_if: tuple | None = None):
    """A TrialConfig field: its default, role and constraints; `before`, for a field added after
    rows existed, is the value that reproduces what those trials did (see VALUES_BEFORE).
    only_if=(field, value): the field acts only where that other field holds that value, and is
    reset to its default elsewhere, so that e.g. a grid-wide --set beta=... reaches the VAEs only
    and a DAE's trial_id ignores it."""
    metadata = {"role": role, "constraints": constraints, "only_if": only_if}
    if before is not _NOT_SET:
        metadata["before"] = before
    return field(default=default, metadata=metadata)


def stage_depths(depth: str) -> tuple[int, ...]:
    """'2' -> (2, 2, 2, 2); '3-3-2-1' -> (3, 3, 2, 1): the convs of each encoder stage."""
    parts = tuple(int(p) for p in depth.split("-"))
    return parts * N_STAGES if len(parts) == 1 else parts


def _power_of_two(n: int) -> bool:
    return n >= 1 and not n & (n - 1)


COUNT = Interval(1)  # at least one
VAE = ("model", "vae")  # only_if: a field of the VAE's loss
DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]{1,4})?")


@dataclass(frozen=True)
class TrialConfig:
    # the axes of the paper's Table 1
    dataset: str = setting("cifar10", AXIS, Options(tuple(data.DATASETS)))
    model: str = setting("dae", AXIS, Options(("dae", "vae")))
    filters: int = setting(
        128, AXIS, Interval(1, 4096), Rule(_power_of_two, "a power of two (stages f, 2f, 4f, 8f)")
    )
    # "2" = two convs per stage; "3-3-2-1" = per-stage counts (make_config normalises lists)
    depth: str = setting(
        "1",
        AXIS,
        Rule(
            lambda d: max(stage_depths(d)) <= MAX_CONVS_PER_STAGE,
            f"at most {MAX_CONVS_PER_STAGE} convs per stage",
        ),
    )
    latent: int = setting(128, POINT, Interval(1, 65536))
    latent_norm: str = setting("none", AXIS, Options(("none", "bn", "sn", "ln")))
    # N(0, noise_std^2) added to the decoder input while training
    noise_std: float = setting(0.0, AXIS, Interval(0))
    freeze_latent: bool = setting(False, AXIS)  # the encoder's latent layer stays at its init
    beta: float = setting(0.01, PROTOCOL, only_if=VAE)  # the KL weight
    # readings of what the paper leaves open
    # the decoder's 8x8 start: 1024 channels (the RAE code) or 8f
    decoder_width: str = setting("1024", READING, Options(("1024", "8f")), before="8f")
    # VAE only: how the BCE is reduced before + beta * KL
    bce_reduction: str = setting(
        "sum", READING, Options(("sum", "channel-mean", "mean")), before="sum", only_if=VAE
    )
    # batch norm: PyTorch's convention (the weight of the new batch); Keras' 0.99 is 0.01
    bn_momentum: float = setting(
        0.01, READING, Interval(0, 1, low_open=True, why="PyTorch's convention"), before=0.1
    )
    bn_eps: float = setting(1e-3, READING, Interval(0, low_open=True), before=1e-5)
    # of the training forward (the loss is always fp32); early rows on CPU trained in fp32
    precision: str = setting("bf16", READING, Options(("fp32", "bf16")), before="fp32")
    # the paper's protocol
    epochs: int = setting(100, PROTOCOL, Interval(1, 100_000))
    batch_size: int = setting(
        128, PROTOCOL, Interval(2, 65536, why="batch norm needs at least 2 images per batch")
    )
    lr: float = setting(1e-3, PROTOCOL, Interval(0, low_open=True))  # the schedule's peak
    seed: int = setting(0, POINT, Interval(0, 2**32 - 1, why="numpy's seed range"))
    # images per prior and per reconstruction set that get scored (100x the paper's at most)
    n_samples: int = setting(
        10_000, PROTOCOL, Interval(2, 1_000_000, why="a covariance needs at least 2 samples")
    )
    gmm_components: int = setting(10, PROTOCOL, Interval(1, 10_000))
    gmm_max_iter: int = setting(2000, READING, Interval(1, 1_000_000), before=100)  # EM at most
    # auto: the dataset's own scorer (DatasetSpec.scorer): inception-fid for CIFAR-10 and CelebA
    feature_extractor: str = setting(
        "auto", PROTOCOL, Options(("auto", "inception-fid", "digits-cnn"))
    )
    # each prior and the interpolation pairs draw from a stream of their own (trainables/trial.py),
    # or all from the seed itself, as rows before this field did (MVG sample i was then a linear
    # map of N(0,I) sample i, and the two scores correlated)
    sampler_streams: str = setting(
        "independent", PROTOCOL, Options(("independent", "shared")), before="shared"
    )
    # where and how it runs (not part of the trial's identity); the row records what ran
    data_root: str = setting("", RUNTIME)  # "" -> $DAE_DATA_ROOT or ~/.cache/dae-study/data
    cache_dir: str = setting("", RUNTIME)  # "" -> $DAE_CACHE_DIR or ~/.cache/dae-study
    device: str = setting(
        "auto", RUNTIME, Rule(lambda d: bool(DEVICE.fullmatch(d)), "auto, cpu, cuda or cuda:N")
    )
    verify_checksums: bool = setting(True, RUNTIME)  # off only for the tests' tiny fixtures
    # how fast it runs: docs/performance.md measures each
    compile: bool = setting(False, RUNTIME)  # torch.compile of forward + loss, inside the graph
    # auto: scikit-learn's EM in float64 torch on CUDA (the same fit), scikit-learn on CPU
    gmm_backend: str = setting("auto", RUNTIME, Options(("auto", "torch", "sklearn")))
    # fast: data resident on the device; plain: the DataLoader baseline it is measured against
    train_loop: str = setting("fast", RUNTIME, Options(("fast", "plain")))
    cuda_graph: bool = setting(True, RUNTIME)  # each training step one CUDA graph replay on CUDA
    score_tf32: bool = setting(False, RUNTIME)  # TF32 convolutions in the feature network
    # mid-trial checkpoints every N epochs (0: never) into a folder or a URI; "" saves none (the
    # launcher sets <results>/_checkpoints or its --checkpoint-dir)
    checkpoint_every: int = setting(10, RUNTIME, Interval(0, 100_000))
    checkpoint_dir: str = setting("", RUNTIME)

    @property
    def stage_depths(self) -> tuple[int, ...]:
        return stage_depths(self.depth)

    @property
    def data_path(self) -> Path:
        return Path(
            self.data_root or os.environ.get("DAE_DATA_ROOT") or "~/.cache/dae-study/data"
        ).expanduser()

    @property
    def cache_path(self) -> Path:
        return Path(
            self.cache_dir or os.environ.get("DAE_CACHE_DIR") or "~/.cache/dae-study"
        ).expanduser()

    def science(self) -> dict:
        """The fields that define the experiment (what trial_id hashes and curves group by)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in RUNTIME_FIELDS}

    def trial_id(self) -> str:
        """A hash of science(); a field added later is left out while it holds its VALUES_BEFORE."""
        identity = {
            name: value
            for name, value in self.science().items()
            if name not in VALUES_BEFORE or value != VALUES_BEFORE[name]
        }
        blob = json.dumps(identity, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def replace(self, **overrides) -> "TrialConfig":
        return make_config({**dataclasses.asdict(self), **overrides})


FIELDS = {f.name: f for f in dataclasses.fields(TrialConfig)}


def fields_with(role: str) -> tuple[str, ...]:
    """The fields of one role, in declaration order."""
    return tuple(name for name, f in FIELDS.items() if f.metadata["role"] == role)


def choices(name: str) -> tuple:
    """The values a field with Options takes, e.g. choices("model") == ("dae", "vae")."""
    (options,) = [c for c in FIELDS[name].metadata["constraints"] if isinstance(c, Options)]
    return options.values


RUNTIME_FIELDS = frozenset(fields_with(RUNTIME))
READINGS = fields_with(READING)
VAE_ONLY = tuple(name for name, f in FIELDS.items() if f.metadata["only_if"] == VAE)
# Growing the config without rerunning the study: a field added to TrialConfig after rows exist
# declares the value that reproduces what trials did before it, e.g.
#     decoder_width: str = setting("1024", READING, Options(("1024", "8f")), before="8f")
# trial_id() leaves the field out while it holds that value, so every existing trial keeps its id,
# and the store and the analysis read the field's column of older rows as that value (not null), so
# no curve appears twice. The default may differ from it: new trials then get new ids and curves.
# Fields without one were all there from the first row.
VALUES_BEFORE = {f.name: f.metadata["before"] for f in FIELDS.values() if "before" in f.metadata}
# The dataclass defaults are the paper's protocol; a dataset may start from other values (the
# offline digits default is smaller: trainables/data.py). Explicit overrides still win.
DATASET_DEFAULTS = {name: entry.config_defaults for name, entry in data.DATASETS.items()}


def _normalise_depth(value) -> str:
    """2, "2", [2, 2, 2, 2] -> "2"; [3, 3, 2, 1] or "3,3,2,1" -> "3-3-2-1"."""
    if isinstance(value, bool):
        raise ConfigError(f"depth: expected an int or a list of {N_STAGES} ints, got {value!r}")
    if isinstance(value, int):
        parts = [value]
    elif isinstance(value, str):
        try:
            parts = [int(p) for p in value.replace(",", "-").split("-")]
        except ValueError:
            raise ConfigError(f"depth: cannot read {value!r}; use e.g. 2 or [3, 3, 2, 1]") from None
    elif isinstance(value, (list, tuple)) and all(
        isinstance(p, int) and not isinstance(p, bool) for p in value
    ):
        parts = list(value)
    else:
        raise ConfigError(f"depth: expected an int or a list of {N_STAGES} ints, got {value!r}")
    if len(parts) not in (1, N_STAGES):
        raise ConfigError(
            f"depth: a per-stage list needs exactly {N_STAGES} entries (one per encoder stage), "
            f"got {parts}"
        )
    if any(p < 1 for p in parts):
        raise ConfigError(f"depth: every stage needs at least one conv, got {parts}")
    if len(set(parts)) == 1:
        parts = parts[:1]
    return "-".join(str(p) for p in parts)


def _coerce(name: str, value):
    """Type-check one override against its field's type (ints from YAML/JSON floats are fine)."""
    kind = FIELDS[name].type
    if name == "depth":
        return _normalise_depth(value)
    if kind in ("int", int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {shown(value)}")
    elif kind in ("float", float):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{name}: expected a finite number, got {shown(value)}")
        value = float(value)
        if value != 0 and not FLOAT32_TINY <= abs(value) <= FLOAT32_MAX:
            raise ConfigError(
                f"{name}: {value!r} cannot be held in float32, which training computes in; use 0 "
                f"or a magnitude from {FLOAT32_TINY:.3g} to {FLOAT32_MAX:.3g}"
            )
    elif kind in ("bool", bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {shown(value)}")
    elif kind in ("str", str):
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {shown(value)}")
    return value


def validate(cfg: TrialConfig) -> TrialConfig:
    """Every field against its own constraints, then the rules across fields; resolves 'auto'."""
    for name, spec in FIELDS.items():
        for constraint in spec.metadata["constraints"]:
            constraint.check(name, getattr(cfg, name))
    if cfg.model == "vae" and not cfg.beta > 0:
        raise ConfigError(f"beta: a VAE needs a KL weight > 0, got {cfg.beta}")
    if cfg.model == "vae" and cfg.latent_norm != "none":
        raise ConfigError(
            "latent_norm: normalising the latent is a DAE experiment; "
            "a VAE's latent is its mean/log-variance pair"
        )
    scorer = data.DATASETS[cfg.dataset].scorer
    extractor = scorer if cfg.feature_extractor == "auto" else cfg.feature_extractor
    if extractor not in ("inception-fid", scorer):  # Inception scores any image; the others not
        raise ConfigError(
            f"feature_extractor: {extractor} scores only the dataset it was trained on, not "
            f"{cfg.dataset}; use inception-fid or auto"
        )
    cfg = dataclasses.replace(cfg, feature_extractor=extractor)
    idle = {  # fields that do not act here (only_if): their defaults, so no identity holds them
        name: spec.default
        for name, spec in FIELDS.items()
        if spec.metadata["only_if"]
        and getattr(cfg, spec.metadata["only_if"][0]) != spec.metadata["only_if"][1]
    }
    return dataclasses.replace(cfg, **idle)


def make_config(overrides: dict | TrialConfig | None = None) -> TrialConfig:
    """Defaults + overrides -> a validated TrialConfig; ConfigError names any bad key."""
    if isinstance(overrides, TrialConfig):
        overrides = dataclasses.asdict(overrides)
    overrides = dict(overrides or {})
    for key in overrides:
        if key not in FIELDS:
            hint = difflib.get_close_matches(key, FIELDS, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(
                f"unknown config key {key!r}{suggestion}; known keys: {', '.join(FIELDS)}"
            )
    dataset = overrides.get("dataset", FIELDS["dataset"].default)
    values = {**DATASET_DEFAULTS.get(dataset, {}), **overrides}
    return validate(TrialConfig(**{key: _coerce(key, value) for key, value in values.items()}))
