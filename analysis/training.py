"""Training curves: each trial's mean training loss per epoch (the row's loss_history), one panel
per curve, one line per latent size and seed; a diverged trial is marked where its loss first was
not finite (diverged_epoch).

Drawn from the ok and the diverged rows (a diverged trial has no scores, so it is no ok row), per
dataset, and split into one figure per setting as every figure of the report is
(figures.per_setting): a curve's panel is named by the fields of Table 1's axes, the rest is the
setting. The loss axis is logarithmic where the losses of a figure span more than LOG_SPAN.
"""

import functools

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.figures import Drawn, per_setting, precision_style
from analysis.results import dataset_name, model_label
from trainables.schema import Status

PANEL_FIELDS = ("model", "latent_norm", "filters", "depth", "noise_std", "freeze_latent")
PANEL_COLUMNS = 4
LOG_SPAN = 10  # max / min loss of a figure above which its loss axis is logarithmic
DIVERGED = {"marker": "X", "markersize": 9, "color": "red", "linestyle": "none"}
STEM = "training_{}"
DESCRIPTION = (
    "Training curves ({}): each trial's training loss per epoch, one panel per curve, "
    "diverged trials marked with a red X at the epoch their loss stopped being finite"
)


def trained(rows: pd.DataFrame) -> pd.DataFrame:
    """The ok and diverged rows with a loss history, one per trial_id (the latest), with the
    `metric` column per_setting splits by: the loss, the same for every row."""
    done = rows[rows["status"].isin([Status.OK, Status.DIVERGED]) & rows["loss_history"].notna()]
    if "started_at" in done.columns:
        done = done.sort_values("started_at", kind="stable")
    return done.drop_duplicates("trial_id", keep="last").assign(metric="training loss")


def _panel_title(curve: dict, rows: pd.DataFrame) -> str:
    """e.g. 'DAE (BN) 128 filters, depth 2, noise 0.5, frozen bf16'."""
    parts = [f"{model_label(curve['model'], curve['latent_norm'])} {curve['filters']} filters"]
    parts.append(f"depth {curve['depth']}")
    parts += [f"noise {curve['noise_std']:g}"] if curve["noise_std"] else []
    parts += ["frozen"] if curve["freeze_latent"] else []
    return ", ".join(parts) + precision_style(curve, rows)[0]


def _draw(rows: pd.DataFrame) -> Figure:
    """One panel per curve (PANEL_FIELDS and precision): every trial's losses against the epoch."""
    curves = sorted(
        rows.groupby([*PANEL_FIELDS, "precision"], dropna=False),
        key=lambda item: (item[0][0], item[0][1] != "none", *item[0][1:]),  # plain before norms
    )
    latents = sorted(rows["latent"].unique())
    colours = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(latents)))
    losses = np.concatenate([np.asarray(h, dtype=float) for h in rows["loss_history"]])
    finite = losses[np.isfinite(losses) & (losses > 0)]
    logarithmic = finite.size > 0 and finite.max() / finite.min() > LOG_SPAN
    columns = min(PANEL_COLUMNS, len(curves))
    height = -(-len(curves) // columns)
    fig = Figure(figsize=(4.6 * columns, 3.4 * height + 1.0), layout="constrained")
    axes = fig.subplots(height, columns, squeeze=False).ravel()
    for ax, (key, trials) in zip(axes, curves, strict=False):
        curve = dict(zip([*PANEL_FIELDS, "precision"], key, strict=True))
        labelled = set()  # one legend entry per latent size, whatever its seeds
        for trial in trials.sort_values(["latent", "seed"]).itertuples():
            history = np.asarray(trial.loss_history, dtype=float)
            label = "_nolegend_" if trial.latent in labelled else f"latent {trial.latent}"
            labelled.add(trial.latent)
            colour = colours[latents.index(trial.latent)]
            ax.plot(np.arange(1, len(history) + 1), history, color=colour, label=label)
            if trial.status == "diverged" and not pd.isna(trial.diverged_epoch):
                _mark_divergence(ax, history, int(trial.diverged_epoch))
        if logarithmic:
            ax.set_yscale("log")
        ax.set(title=_panel_title(curve, rows), xlabel="epoch", ylabel="training loss")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize="x-small", ncol=2)
    for ax in axes[len(curves) :]:
        ax.set_visible(False)
    return fig


def _mark_divergence(ax, history: np.ndarray, diverged_epoch: int) -> None:
    """A red X at the top of the panel above the epoch whose loss was not finite (diverged_epoch
    counts from 0, the plot's epochs from 1), joined by a dotted line to the last finite loss."""
    epoch = diverged_epoch + 1
    top = ax.get_xaxis_transform()  # x in epochs, y in the panel's height
    labelled = "diverged" in [line.get_label() for line in ax.get_lines()]
    ax.plot(
        [epoch], [0.95], transform=top, label="_nolegend_" if labelled else "diverged", **DIVERGED
    )
    finite = np.flatnonzero(np.isfinite(history[:diverged_epoch]))
    if finite.size:
        last = finite[-1]
        joint = {"arrowstyle": "-", "linestyle": ":", "color": DIVERGED["color"]}
        ax.annotate("", (epoch, 0.95), (last + 1, history[last]), top, "data", arrowprops=joint)


def training_curves(rows: pd.DataFrame, dataset: str) -> Drawn:
    done = trained(rows)
    done = done[done["dataset"] == dataset]
    title = f"Training curves ({dataset_name(dataset)}): mean loss per epoch"
    needs = f"ok or diverged {dataset} rows with a loss_history"
    return per_setting(done, PANEL_FIELDS, title, needs, _draw)


def figure_list(rows: pd.DataFrame) -> list[tuple[str, str, str, object]]:
    """As figures.figure_list, for each dataset that has rows."""
    return [
        (
            STEM.format(d),
            DESCRIPTION.format(dataset_name(d)),
            d,
            functools.partial(training_curves, rows, d),
        )
        for d in sorted(set(rows["dataset"]))
    ]
