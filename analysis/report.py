"""python analysis/report.py results.parquet --out report/

Writes every table (Markdown + CSV) and figure (PNG) the store allows, and report/README.md listing
each with a one-line description, what could not be made and which rows it needs. Scores come from
ok rows only; failed and diverged trials are counted in the README. A missing or empty store exits
with status 1.
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis import figures, tables
from analysis.optimum import find_optima, latent_stats
from analysis.results import StoreError, load, usable

PAPER_ROWS = (
    "ok cifar10 or celeba rows scored with inception-fid, "
    "depth 1, no latent norm, noise or freezing"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Tables and figures of the paper from a results store."
    )
    parser.add_argument(
        "store", type=Path, help="the results store: a directory of per-trial Parquet files"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("report"), help="folder for the report (default: report/)"
    )
    parser.add_argument(
        "--dpi", type=int, default=110, help="resolution of the PNG figures (default: 110)"
    )
    args = parser.parse_args(argv)
    try:
        rows = load(args.store)
    except StoreError as error:
        print(f"report: {error}", file=sys.stderr)
        return 1
    ok = usable(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    made, missing = _write_tables(ok, args.out)
    for stem, description, build in figures.figure_list(ok):
        try:
            figure = build()
        except figures.Needs as needs:
            missing.append((f"{stem}.png", description, str(needs)))
            continue
        figure.savefig(args.out / f"{stem}.png", dpi=args.dpi)
        made.append((f"{stem}.png", description))
    (args.out / "README.md").write_text(_readme(args.store, rows, ok, made, missing))
    print(
        f"report: {len(made)} files in {args.out}, {len(missing)} could not be made "
        f"(see {args.out / 'README.md'})"
    )
    return 0


OPTIMA_NOTES = [
    "latent: the measured latent size with the lowest mean score; "
    "mean, std, n, ci: its replicates (95% t-interval).",
    "fit_latent: vertex of a quadratic in log2(latent) over up to 5 sizes around it; "
    "fit_note says why it is empty.",
    "distinguishable: both neighbouring sizes differ by a two-sided Welch t-test at 5% "
    "(p_below, p_above); empty without replicates.",
]
GAUSSIANITY_NOTES = [
    "Means and stds over each curve's rows (all its latent sizes and seeds); "
    "skew and kurtosis are 0 for a Gaussian.",
    "heldout_ll_gap_per_dim: held-out log-likelihood of the GMM minus the MVG's, per latent unit;"
    " near 0 when one Gaussian explains the codes.",
]


def _write_tables(ok: pd.DataFrame, out: Path) -> tuple[list, list]:
    """-> (made: [(files, description)], missing: [(what, description, needs)])."""
    table_2 = tables.make_table_2(ok)
    table_3 = tables.make_table_3(ok)
    written = [
        (
            "table_2",
            "Table 2: each width and model at 128 latents (CIFAR-10) / 64 (CelebA), "
            "ours beside the paper's",
            table_2,
        ),
        (
            "table_3",
            "Table 3: each depth-1 curve at its best latent size per sampler, "
            "ours beside the paper's",
            table_3,
        ),
        (
            "optima",
            "Best latent size of every curve per sampler: measured, smooth fit, Welch test",
            find_optima(latent_stats(ok)),
        ),
        (
            "gaussianity",
            "Hypothesis 2: Gaussianity statistics of the encoded test set per curve",
            tables.make_gaussianity_table(ok),
        ),
    ]
    notes = {
        "table_2": tables.comparability_notes(table_2),
        "table_3": tables.comparability_notes(table_3),
    }
    notes.update(optima=OPTIMA_NOTES, gaussianity=GAUSSIANITY_NOTES)
    made = []
    missing = []
    for stem, title, table in written:
        tables.write_table(
            table if stem.startswith("table") else tables.readable_curves(table),
            out / stem,
            title,
            notes[stem],
        )
        made.append((f"{stem}.md, {stem}.csv", title))
    latent_stats(ok).to_csv(out / "scores.csv", index=False)
    made.append(
        (
            "scores.csv",
            "Every curve's scores per latent size: mean, std, n and 95% t-interval over replicates",
        )
    )
    for stem, table in (("table_2", table_2), ("table_3", table_3)):
        if not tables.comparable(table).any():
            missing.append(
                (f"our values in {stem}.md", "scores comparable to the paper's FIDs", PAPER_ROWS)
            )
    return made, missing


def _readme(store: Path, rows: pd.DataFrame, ok: pd.DataFrame, made: list, missing: list) -> str:
    counts = rows["status"].value_counts()
    status = ", ".join(f"{n} {name}" for name, n in counts.items())
    metrics = ", ".join(f"{n} {name}" for name, n in ok["metric"].value_counts().items()) or "none"
    lines = [
        "# dae-study report",
        "",
        f"Store: `{store}`: {len(rows)} rows ({status}). Scores use the {len(ok)} ok trials only"
        " (one row per trial_id); failed and diverged trials are counted here and nowhere else.",
        f"Ok rows by metric: {metrics}. Only FID rows (Inception features) are set beside"
        " the paper's numbers; FD (digits-cnn) is a different feature space.",
        "",
        "## Made",
        "",
        *(f"- `{name}`: {description}" for name, description in made),
        "",
        "## Could not be made",
        "",
        *(f"- `{name}`: {description}. needs: {needs}" for name, description, needs in missing),
    ]
    if not missing:
        lines.append("Everything was made.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
