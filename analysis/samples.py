"""The report's sample grids: for each curve, the picture its best trial saved (the ok row with the
lowest MVG score, fd_mvg, whatever its latent size), copied from the store's _samples/ folder.

Each grid's rows are test images, their reconstructions, MVG samples and GMM samples (no GMM row
where the GMM could not be fitted): trainables/trial.py draws it, study/store.py saves it.
"""

import shutil
from pathlib import Path

import pandas as pd

from analysis.results import KEYS, add_labels, dataset_name

FOLDER = "samples"  # in the report folder
NEEDS = "ok rows with a sample grid (samples_png), which every launch writes since grids exist"


def best_trials(ok: pd.DataFrame) -> pd.DataFrame:
    """Per curve (and metric), its ok row with the lowest fd_mvg among those that saved a grid."""
    drawn = ok[ok["samples_png"].notna() & ok["fd_mvg"].notna()]
    if drawn.empty:
        return drawn
    curves = drawn.groupby(KEYS, dropna=False, sort=False)["fd_mvg"]
    return add_labels(drawn.loc[curves.idxmin()]).sort_values(["dataset", "model", "filters"])


def copy_grids(store: Path, ok: pd.DataFrame, out: Path) -> tuple[list[str], list[str]]:
    """Copy each curve's best grid to out/samples/<trial_id>.png.
    -> (README lines showing them, the grids a row names but the store lacks)."""
    shown = []
    lost = []
    for best in best_trials(ok).itertuples():
        source = Path(store) / best.samples_png
        if not source.is_file():
            lost.append(str(source))
            continue
        (out / FOLDER).mkdir(exist_ok=True)
        shutil.copyfile(source, out / FOLDER / f"{best.trial_id}.png")
        title = f"{dataset_name(best.dataset)} {best.label} f{best.filters}"
        shown += [
            f"### {title}, {best.protocol}",
            "",
            f"Trial `{best.trial_id}`: latent {best.latent}, seed {best.seed}, MVG "
            f"{best.fd_mvg:.2f} {best.metric}.",
            "",
            f"![{title}]({FOLDER}/{best.trial_id}.png)",
            "",
        ]
    return shown, lost
