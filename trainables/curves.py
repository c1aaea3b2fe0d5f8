"""What a curve is, and its one name: the grouping every stage shares.

A curve is every trial sharing all scientific config fields but the latent size and the seed (the
replicate): the paper plots score against latent size, one line per curve. Its fields (CURVE_FIELDS)
are the config's AXIS, READING and PROTOCOL ones, precision included, so bf16 and fp32 trials are
never pooled. A curve's `departures` are the fields where it differs from its dataset's default
config: its `label` (for people: the launcher's progress, the report's titles) and its `protocol`
(the report's tables, which show some fields in columns of their own) are both written from them.
Works on a TrialConfig's science() and on a stored row alike. No torch here.
"""

import functools
from collections.abc import Iterable, Mapping

from trainables import data
from trainables.config import FIELDS, POINT, RUNTIME, TrialConfig, make_config
from trainables.published import PAPER_DATASETS

CURVE_FIELDS = tuple(
    name for name, f in FIELDS.items() if f.metadata["role"] not in (POINT, RUNTIME)
)
NAMED_IN_FRONT = ("dataset", "model", "filters", "depth")  # what a label always starts with
# the axes a label names in a word where they depart (others as field=value)
SHORT = {
    "latent_norm": lambda value: str(value),
    "noise_std": lambda value: f"noise{value:g}",
    "freeze_latent": lambda value: "frozen" if value else "trained-latent",
}


def key(fields: Mapping) -> tuple:
    """What a curve's trials share (from cfg.science() or a stored row)."""
    return tuple((name, fields[name]) for name in CURVE_FIELDS)


def group(configs: Iterable[TrialConfig]) -> dict[tuple, list[TrialConfig]]:
    """Configs by curve (replicates together), in the order given."""
    grouped: dict[tuple, list[TrialConfig]] = {}
    for cfg in configs:
        grouped.setdefault(key(cfg.science()), []).append(cfg)
    return grouped


@functools.cache
def _dataset_defaults(dataset: str) -> dict:
    """The config a dataset starts from (TrialConfig's for a dataset this code does not know)."""
    return make_config({"dataset": dataset} if dataset in data.DATASETS else {}).science()


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def departures(curve: Mapping, shown: Iterable[str] = ()) -> dict[str, str]:
    """{field: value as text} for every curve field, in CURVE_FIELDS order, where the curve departs
    from its dataset's default config, but those in `shown` (named elsewhere)."""
    defaults = _dataset_defaults(curve["dataset"])
    shown = set(shown)
    return {
        name: _text(curve[name])
        for name in CURVE_FIELDS
        if name not in shown and curve[name] != defaults[name]
    }


def label(curve: Mapping) -> str:
    """e.g. 'cifar10 dae f128 d3-3-2-1 bn noise0.5 frozen epochs=2 precision=fp32': the dataset,
    model, filters and depth, then every departure from the dataset's default config."""
    front = [curve["dataset"], curve["model"], f"f{curve['filters']}", f"d{curve['depth']}"]
    changed = departures(curve, shown=NAMED_IN_FRONT)
    rest = [
        SHORT[name](curve[name]) if name in SHORT else f"{name}={value}"
        for name, value in changed.items()
    ]
    return " ".join([*map(str, front), *rest])


def protocol(curve: Mapping, shown: Iterable[str] = ()) -> str:
    """The departures but those in `shown` and the precision (tables give both columns of their
    own), or 'paper' / 'default' for the paper's protocol on its datasets / another dataset's
    default config."""
    changed = departures(curve, shown=(*shown, "precision"))
    if changed:
        return ", ".join(f"{name}={value}" for name, value in changed.items())
    return "paper" if curve["dataset"] in PAPER_DATASETS else "default"
