"""TrialConfig: every knob of one trial, with its default stated once.

A grid or a user passes a plain dict of overrides; `make_config` rejects unknown keys and impossible
values with a ValueError that names the key, so nothing bad is ever scheduled. `trial_id()` hashes
only the fields that change what a trial computes; where the data lives or which device runs it
(RUNTIME_FIELDS) does not change the identity of an experiment.
"""

import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path

from trainables import data

DATASETS = tuple(data.DATASETS)
MODELS = ("dae", "vae")
LATENT_NORMS = ("none", "bn", "sn", "ln")
FEATURE_EXTRACTORS = ("auto", "inception-fid", "digits-cnn")
PRECISIONS = ("fp32", "bf16")  # of the training forward; the loss is always fp32
GMM_BACKENDS = ("auto", "torch", "sklearn")
TRAIN_LOOPS = ("fast", "plain")
DECODER_WIDTHS = ("1024", "8f")  # channels of the decoder's 8x8 start: fixed (RAE code) or 8f
BCE_REDUCTIONS = ("sum", "channel-mean", "mean")  # VAE only: how BCE is reduced before + beta*KL
VAE_ONLY = ("beta", "bce_reduction")
N_STAGES = 4  # encoder stages with f, 2f, 4f, 8f filters
RUNTIME_FIELDS = frozenset(
    {
        "data_root",
        "cache_dir",
        "device",
        "verify_checksums",
        "compile",
        "gmm_backend",
        "train_loop",
        "cuda_graph",
        "score_tf32",
        "checkpoint_every",
        "checkpoint_dir",
    }
)
# The dataclass defaults are the paper's protocol; a dataset may start from other values (the
# offline digits default is smaller: see trainables/data.py). Explicit overrides still win.
DATASET_DEFAULTS = {name: entry.config_defaults for name, entry in data.DATASETS.items()}


@dataclass(frozen=True)
class TrialConfig:
    # the scientific axes of the paper's Table 1
    dataset: str = "cifar10"
    model: str = "dae"
    filters: int = 128
    depth: str = "1"  # "2" = two convs per stage; "3-3-2-1" = per-stage counts
    latent: int = 128
    latent_norm: str = "none"
    noise_std: float = 0.0  # N(0, noise_std^2) added to the decoder input while training
    freeze_latent: bool = False  # the encoder's latent linear layer stays at its random init
    beta: float = 0.01  # KL weight, VAE only
    # readings of what the paper leaves open (README, "Choices"); "before" is what early rows ran
    decoder_width: str = field(default="1024", metadata={"before": "8f"})
    bce_reduction: str = field(default="sum", metadata={"before": "sum"})
    bn_momentum: float = field(default=0.01, metadata={"before": 0.1})  # PyTorch's convention
    bn_eps: float = field(default=1e-3, metadata={"before": 1e-5})
    # bf16 autocast (the loss in fp32 from the logits) or fp32; early rows on CPU trained in fp32
    precision: str = field(default="bf16", metadata={"before": "fp32"})
    # fixed by the paper's protocol
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3  # peak of the piecewise schedule in train.learning_rate
    seed: int = 0
    n_samples: int = 10_000  # images per prior and per reconstruction set that get scored
    gmm_components: int = 10
    gmm_max_iter: int = field(default=2000, metadata={"before": 100})  # EM iterations at most
    feature_extractor: str = "auto"  # auto: inception-fid for cifar10/celeba, digits-cnn for digits
    # where and how it runs: not part of the trial's identity
    data_root: str = ""  # "" -> $DAE_DATA_ROOT or ~/.cache/dae-study/data
    cache_dir: str = ""  # "" -> $DAE_CACHE_DIR or ~/.cache/dae-study
    device: str = "auto"  # auto: cuda when available, else cpu
    verify_checksums: bool = True  # off only for the tests' tiny fixtures
    # how fast it runs (see train.py and priors.py; benchmarks/ measures each); the row records it
    # compile: torch.compile of forward + loss, off until benchmarks/throughput.py says it pays
    compile: bool = False
    # gmm_backend: auto = scikit-learn's EM in float64 torch on CUDA (same fit), scikit-learn on CPU
    gmm_backend: str = "auto"
    # train_loop: fast = data resident on the device; plain = the DataLoader baseline to beat
    train_loop: str = "fast"
    # cuda_graph: the whole training step as one CUDA graph on CUDA (eager where capture fails)
    cuda_graph: bool = True
    # score_tf32: TF32 convolutions in the feature network (faster, moves scores ~3.5e-4 relative)
    score_tf32: bool = False
    # mid-trial checkpoints (trainables/checkpoints.py): every N epochs (0: never), into a local
    # folder or a URI (s3://bucket/prefix, gs://..., any pyarrow or fsspec filesystem); "" saves
    # none (the launcher sets <results>/_checkpoints or its --checkpoint-dir)
    checkpoint_every: int = 10
    checkpoint_dir: str = ""

    @property
    def stage_depths(self) -> tuple[int, ...]:
        parts = tuple(int(p) for p in self.depth.split("-"))
        return parts * N_STAGES if len(parts) == 1 else parts

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
# Growing the config without rerunning the study: a field added to TrialConfig after rows exist
# declares the value that reproduces what trials did before it, e.g.
#     decoder_width: str = dataclasses.field(default="1024", metadata={"before": "8f"})
# trial_id() leaves the field out while it holds that value, so every existing trial keeps its id,
# and the store and the analysis read the field's column of older rows as that value (not null), so
# no curve appears twice. The default may differ from it: new trials then get new ids and curves.
# Fields without one were all there from the first row.
VALUES_BEFORE = {f.name: f.metadata["before"] for f in FIELDS.values() if "before" in f.metadata}
# A curve is every trial sharing all scientific fields but the latent size and the seed (replicate).
CURVE_FIELDS = tuple(name for name in TrialConfig().science() if name not in ("latent", "seed"))
# The paper's fixed training and scoring protocol: a curve that changes one of these is named by it.
PROTOCOL_FIELDS = ("epochs", "batch_size", "lr", "n_samples", "gmm_components", "beta")
# Readings of what the paper leaves open (README, "Choices"): set apart from a dataset's default,
# they name a curve too.
READINGS = ("decoder_width", "bce_reduction", "bn_momentum", "bn_eps", "gmm_max_iter", "precision")
# The largest value of each integer field a trial can run with: far beyond any study of this paper,
# far inside int64 (the store's integers) and what numpy, torch and the memory of one GPU can take.
INT_MAXIMA = {
    "filters": 4096,  # the last stage then has 8f = 32768 channels
    "latent": 65536,
    "epochs": 100_000,
    "batch_size": 65536,
    "seed": 2**32 - 1,  # numpy's seed range
    "n_samples": 1_000_000,  # 100x the paper's 10,000 images per scored set
    "gmm_components": 10_000,
    "gmm_max_iter": 1_000_000,
    "checkpoint_every": 100_000,  # the most epochs
}
MAX_CONVS_PER_STAGE = 64
# Every float field enters float32 arithmetic on the device (bf16 has the same exponent range): a
# magnitude outside float32's normal range becomes 0, a subnormal or inf there, so only 0 or a
# magnitude in [FLOAT32_TINY, FLOAT32_MAX] can do what it says.
FLOAT32_TINY = 1.1754943508222875e-38
FLOAT32_MAX = 3.4028234663852886e38


def shown(value, limit: int = 200) -> str:
    """A value for an error message, cut to a readable length (a grid file can hold anything):
    reprlib never walks past a few items and levels, so a huge value costs no time either."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = 60
    short.maxdict = short.maxlist = 8
    short.maxlevel = 2
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _normalise_depth(value) -> str:
    if isinstance(value, bool):
        raise ValueError(f"depth: expected an int or a list of {N_STAGES} ints, got {value!r}")
    if isinstance(value, int):
        parts = [value]
    elif isinstance(value, str):
        try:
            parts = [int(p) for p in value.replace(",", "-").split("-")]
        except ValueError:
            raise ValueError(f"depth: cannot read {value!r}; use e.g. 2 or [3, 3, 2, 1]") from None
    elif isinstance(value, (list, tuple)) and all(
        isinstance(p, int) and not isinstance(p, bool) for p in value
    ):
        parts = list(value)
    else:
        raise ValueError(f"depth: expected an int or a list of {N_STAGES} ints, got {value!r}")
    if len(parts) not in (1, N_STAGES):
        raise ValueError(
            f"depth: a per-stage list needs exactly {N_STAGES} entries (one per encoder stage), "
            f"got {parts}"
        )
    if any(p < 1 for p in parts):
        raise ValueError(f"depth: every stage needs at least one conv, got {parts}")
    if len(set(parts)) == 1:
        parts = parts[:1]
    return "-".join(str(p) for p in parts)


def _coerce(name: str, value):
    """Type-check one override against the dataclass field (ints from YAML/JSON floats are fine)."""
    kind = FIELDS[name].type
    if name == "depth":
        return _normalise_depth(value)
    if kind in ("int", int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: expected an integer, got {shown(value)}")
    elif kind in ("float", float):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ValueError(f"{name}: expected a finite number, got {shown(value)}")
        value = float(value)
        if value != 0 and not FLOAT32_TINY <= abs(value) <= FLOAT32_MAX:
            raise ValueError(
                f"{name}: {value!r} cannot be held in float32, which training computes in; use 0 "
                f"or a magnitude from {FLOAT32_TINY:.3g} to {FLOAT32_MAX:.3g}"
            )
    elif kind in ("bool", bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected true or false, got {shown(value)}")
    elif kind in ("str", str):
        if not isinstance(value, str):
            raise ValueError(f"{name}: expected a string, got {shown(value)}")
    return value


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: {shown(value)} is not one of {', '.join(choices)}")


def validate(cfg: TrialConfig) -> TrialConfig:
    """Reject configs that cannot run, before anything is scheduled; resolve 'auto' choices."""
    _check_choice("dataset", cfg.dataset, DATASETS)
    _check_choice("model", cfg.model, MODELS)
    _check_choice("latent_norm", cfg.latent_norm, LATENT_NORMS)
    _check_choice("feature_extractor", cfg.feature_extractor, FEATURE_EXTRACTORS)
    _check_choice("precision", cfg.precision, PRECISIONS)
    _check_choice("gmm_backend", cfg.gmm_backend, GMM_BACKENDS)
    _check_choice("train_loop", cfg.train_loop, TRAIN_LOOPS)
    _check_choice("decoder_width", cfg.decoder_width, DECODER_WIDTHS)
    _check_choice("bce_reduction", cfg.bce_reduction, BCE_REDUCTIONS)
    if cfg.filters < 1 or cfg.filters & (cfg.filters - 1):
        raise ValueError(
            f"filters: must be a power of two (the stages use f, 2f, 4f, 8f), got {cfg.filters}"
        )
    for name in ("latent", "epochs", "n_samples", "gmm_components", "gmm_max_iter"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}: must be at least 1, got {getattr(cfg, name)}")
    for name, maximum in INT_MAXIMA.items():
        if getattr(cfg, name) > maximum:
            raise ValueError(f"{name}: must be at most {maximum:,}, got {getattr(cfg, name):,}")
    if cfg.seed < 0:
        raise ValueError(f"seed: must be >= 0, got {cfg.seed}")
    if cfg.checkpoint_every < 0:
        raise ValueError(f"checkpoint_every: must be >= 0 (0: never), got {cfg.checkpoint_every}")
    if max(cfg.stage_depths) > MAX_CONVS_PER_STAGE:
        raise ValueError(
            f"depth: at most {MAX_CONVS_PER_STAGE} convs per stage, got {cfg.stage_depths}"
        )
    if cfg.batch_size < 2:
        raise ValueError(
            f"batch_size: batch norm needs at least 2 images per batch, got {cfg.batch_size}"
        )
    if cfg.n_samples < 2:
        raise ValueError(f"n_samples: a covariance needs at least 2 samples, got {cfg.n_samples}")
    if cfg.noise_std < 0:
        raise ValueError(f"noise_std: must be >= 0, got {cfg.noise_std}")
    if not cfg.lr > 0:
        raise ValueError(f"lr: must be > 0, got {cfg.lr}")
    if cfg.model == "vae" and not cfg.beta > 0:
        raise ValueError(f"beta: a VAE needs a KL weight > 0, got {cfg.beta}")
    if not 0 < cfg.bn_momentum <= 1:
        raise ValueError(
            f"bn_momentum: must be in (0, 1] (PyTorch's convention), got {cfg.bn_momentum}"
        )
    if not cfg.bn_eps > 0:
        raise ValueError(f"bn_eps: must be > 0, got {cfg.bn_eps}")
    if cfg.model == "dae":  # no KL term: a grid-wide --set beta=... reaches the VAEs only
        cfg = dataclasses.replace(cfg, **{name: FIELDS[name].default for name in VAE_ONLY})
    if cfg.model == "vae" and cfg.latent_norm != "none":
        raise ValueError(
            "latent_norm: normalising the latent is a DAE experiment; "
            "a VAE's latent is its mean/log-variance pair"
        )
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]{1,4})?", cfg.device):
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {shown(cfg.device)}")
    extractor = cfg.feature_extractor
    if extractor == "auto":
        extractor = "digits-cnn" if cfg.dataset == "digits" else "inception-fid"
    if extractor == "digits-cnn" and cfg.dataset != "digits":
        raise ValueError(
            "feature_extractor: digits-cnn is trained on digits and only scores digits images"
        )
    return dataclasses.replace(cfg, feature_extractor=extractor)


def make_config(overrides: dict | TrialConfig | None = None) -> TrialConfig:
    """Defaults + overrides -> a validated TrialConfig; ValueError names any bad key."""
    if isinstance(overrides, TrialConfig):
        overrides = dataclasses.asdict(overrides)
    overrides = dict(overrides or {})
    for key in overrides:
        if key not in FIELDS:
            hint = difflib.get_close_matches(key, FIELDS, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(
                f"unknown config key {key!r}{suggestion}; known keys: {', '.join(FIELDS)}"
            )
    dataset = overrides.get("dataset", FIELDS["dataset"].default)
    values = {**DATASET_DEFAULTS.get(dataset, {}), **overrides}
    return validate(TrialConfig(**{key: _coerce(key, value) for key, value in values.items()}))
