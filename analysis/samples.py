"""The report's sample grids: for each curve, the picture its best trial saved (the ok row with the
lowest MVG score, fd_mvg, whatever its latent size), from the store's _samples/ folder, enlarged and
with the name of each of its rows drawn beside it.

A grid's rows are test images, their reconstructions, MVG samples and GMM samples (no GMM row
where the GMM could not be fitted): trainables/trial.py draws it, study/store.py saves it. The names
are drawn here, at report time, rather than by the trial: so the grids of rows stored before there
were names get them too, and the trial (on a GPU node) needs no fonts.
"""

import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from analysis.results import KEYS, add_labels, dataset_name
from study.layout import read_file

FOLDER = "samples"  # in the report folder
NEEDS = "ok rows with a sample grid (samples_png), which every launch writes since grids exist"
ROW_NAMES = ("test images", "reconstructions", "MVG samples", "GMM samples")
ENLARGE = 2  # each pixel of the trial's grid becomes ENLARGE x ENLARGE
FONT_PX = 18
PAD_PX = 10


@dataclass(frozen=True)
class Grid:
    file: str  # in the report folder
    title: str
    caption: str


def best_trials(ok: pd.DataFrame) -> pd.DataFrame:
    """Per curve (and metric), its ok row with the lowest fd_mvg among those that saved a grid."""
    drawn = ok[ok["samples_png"].notna() & ok["fd_mvg"].notna()]
    if drawn.empty:
        return drawn
    curves = drawn.groupby(KEYS, dropna=False, sort=False)["fd_mvg"]
    return add_labels(drawn.loc[curves.idxmin()]).sort_values(["dataset", "model", "filters"])


def row_names(row) -> tuple[str, ...]:
    """The names of a grid's rows, top to bottom: no GMM row where its GMM was not fitted."""
    fitted = not pd.isna(row.fd_gmm) and pd.isna(row.gmm_error)
    return ROW_NAMES if fitted else ROW_NAMES[:-1]


def labelled(grid: Image.Image, names: tuple[str, ...]) -> Image.Image:
    """The grid enlarged, with each name right-aligned in a white margin beside its row (the grid's
    height split evenly between its rows)."""
    grid = grid.convert("RGB")
    grid = grid.resize((grid.width * ENLARGE, grid.height * ENLARGE), Image.Resampling.NEAREST)
    font = ImageFont.load_default(size=FONT_PX)
    margin = int(max(font.getlength(name) for name in names)) + 2 * PAD_PX
    page = Image.new("RGB", (margin + grid.width, grid.height), "white")
    page.paste(grid, (margin, 0))
    draw = ImageDraw.Draw(page)
    for i, name in enumerate(names):
        middle = (i + 0.5) * grid.height / len(names)
        draw.text((margin - PAD_PX, middle), name, fill="black", font=font, anchor="rm")
    return page


def write_grids(store: str | Path, ok: pd.DataFrame, out: Path) -> tuple[list[Grid], list[str]]:
    """Each curve's best grid, labelled, as out/samples/<trial_id>.png.
    -> (the grids written, the grids a row names that the store lacks or that are no picture)."""
    shown = []
    lost = []
    for best in best_trials(ok).itertuples():
        try:
            with Image.open(io.BytesIO(read_file(store, best.samples_png))) as grid:
                picture = labelled(grid, row_names(best))
        except OSError:  # missing, or not an image (PIL's UnidentifiedImageError)
            lost.append(f"{store}/{best.samples_png}")
            continue
        (out / FOLDER).mkdir(exist_ok=True)
        file = f"{FOLDER}/{best.trial_id}.png"
        picture.save(out / file)
        title = f"{dataset_name(best.dataset)} {best.label} f{best.filters}"
        caption = (
            f"Trial `{best.trial_id}`: latent {best.latent}, seed {best.seed}, MVG "
            f"{best.fd_mvg:.2f} {best.metric}."
        )
        shown.append(Grid(file, f"{title}, {best.protocol}", caption))
    return shown, lost
