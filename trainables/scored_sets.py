"""The image sets a trial scores against the reference (test) images: one table for every stage.

Two sets reconstruct real images, one per prior (trainables.priors.PRIORS) decodes the codes drawn
from it, Interp decodes midpoints between pairs of encoded test images and Endpoints one end of
each of the same pairs (Interp's baseline: a model that reconstructs well scores a low Interp
whether or not its latent space is smooth between codes). Each set gives the row its
`fd_<name>` column; the launcher's summary and --search-metric, the report's tables, its figures'
legends and line styles and the paper's columns all derive from this table, so a new prior or set
appears everywhere at once. No torch here: the store and the analysis read it.
"""

from dataclasses import dataclass

from trainables.priors import PRIORS

RECONSTRUCTION = "reconstruction"
SAMPLER = "sampler"
INTERPOLATION = "interpolation"


@dataclass(frozen=True)
class ScoredSet:
    name: str  # the row's fd_<name> column
    label: str  # the paper's name: Train R, Test R, N(0,I), MVG, GMM; ours: Interp
    kind: str  # RECONSTRUCTION, SAMPLER or INTERPOLATION
    style: str = "-"  # matplotlib line style where one figure draws several sets
    fitted: bool = False  # a sampler whose prior is fitted to the codes (what the paper proposes)

    @property
    def column(self) -> str:
        return f"fd_{self.name}"


# In the row's column order: Train R reconstructs training images, Test R the reference images.
SCORED_SETS = {
    entry.name: entry
    for entry in (
        ScoredSet("train_recon", "Train R", RECONSTRUCTION),
        ScoredSet("test_recon", "Test R", RECONSTRUCTION),
        *(ScoredSet(name, p.label, SAMPLER, p.style, p.fitted) for name, p in PRIORS.items()),
        ScoredSet("interp", "Interp", INTERPOLATION),
        ScoredSet("endpoints", "Endpoints", INTERPOLATION),
    )
}
LABELS = {name: entry.label for name, entry in SCORED_SETS.items()}
SAMPLERS = tuple(name for name, entry in SCORED_SETS.items() if entry.kind == SAMPLER)
# The samplers the paper proposes (fitted ex post), which the launcher summarises and --search can
# minimise; N(0,I) is scored too, and far worse for a DAE.
FITTED = tuple(name for name in SAMPLERS if SCORED_SETS[name].fitted)
SCORE_COLUMNS = tuple(entry.column for entry in SCORED_SETS.values())
