"""python analysis/report.py results.parquet --out report/ (or dae-study report ...)

Writes every table (Markdown + CSV) and figure (PNG) the store allows, and report/README.md listing
each with a one-line description, what could not be made and which rows it needs. Scores come from
ok rows only; failed and diverged trials are counted per curve, with their errors, in status.md,
which is written whatever the store holds.

Exit status: 0 the report was written, however little the store allowed (a store whose every trial
failed gives the status table and the README); 1 the store cannot be read (missing, empty, or a part
that is not a result row of this study: the message names the file) or the report folder cannot be
written; 2 bad arguments, among them an --out inside the store (a report there would put files that
are not Parquet parts into it).
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis import claims, figures, samples, tables
from analysis.optimum import find_optima, latent_stats
from analysis.results import load, usable
from trainables.errors import StoreError

PAPER_ROWS = (
    "ok cifar10 or celeba rows scored with inception-fid, "
    "depth 1, no latent norm, noise or freezing"
)
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
GAP_NOTES = [
    "Hypothesis 2 says wider encoders give more Gaussian codes: then a single Gaussian (MVG) "
    "samples as well as a GMM, and MVG - GMM shrinks towards 0 with width.",
    "gap: MVG score - GMM score of each row at the comparison latent (CIFAR-10 128, CelebA 64; "
    "another dataset: the middle latent size its curves share), mean over replicates beside the "
    "paper's Table 2; ci: 95% t-interval of the paired differences.",
]
STATUS_NOTES = [
    "Every row of the store per curve, whatever its status; errors: each distinct first line of "
    "the error, with how many rows gave it.",
]


def _notes(*fixed, then=None):
    """notes(table) -> the fixed notes, then those `then(table)` derives from the table."""
    return lambda table: [*fixed, *(then(table) if then else [])]


# (file stem, title, build(ok rows) -> table, notes(table), columns marked where a GMM did not
# converge, which rows an empty table needs)
TABLES = [
    (
        "table_2",
        "Table 2: each width and model at 128 latents (CIFAR-10) / 64 (CelebA), "
        "ours beside the paper's",
        tables.make_table_2,
        tables.comparability_notes,
        ("gmm",),
        PAPER_ROWS,
    ),
    (
        "table_3",
        "Table 3: each depth-1 curve at its best latent size per sampler, ours beside the paper's",
        tables.make_table_3,
        tables.comparability_notes,
        ("gmm",),
        PAPER_ROWS,
    ),
    (
        "vae_readings",
        "The VAE loss readings (bce_reduction) at 128 filters beside the paper's VAE row of "
        "Table 2: which one reproduces it",
        claims.make_readings_table,
        _notes(*claims.READINGS_NOTES, then=tables.comparability_notes),
        ("gmm",),
        "ok cifar10 or celeba VAE rows scored with inception-fid, 128 filters, depth 1, at 128 "
        "(CIFAR-10) or 64 (CelebA) latents, e.g. from --grid vae-readings",
    ),
    (
        "optima",
        "Best latent size of every curve per sampler: measured, smooth fit, Welch test",
        lambda ok: tables.readable_curves(find_optima(latent_stats(ok))),
        _notes(*OPTIMA_NOTES),
        ("mean",),
        "ok rows",
    ),
    (
        "gaussianity",
        "Hypothesis 2: Gaussianity statistics of the encoded test set per curve",
        lambda ok: tables.readable_curves(tables.make_gaussianity_table(ok)),
        _notes(*GAUSSIANITY_NOTES),
        ("heldout_ll_gap_per_dim_mean",),
        "ok rows",
    ),
    (
        "gap_width",
        "Hypothesis 2: MVG - GMM score against width at the comparison latent, beside the paper's",
        claims.make_gap_table,
        _notes(
            *GAP_NOTES,
            then=lambda table: [*tables.comparability_notes(table), *claims.gap_trends(table)],
        ),
        ("gap",),
        "ok rows at depth 1, no latent norm, noise or freezing, at the comparison latent",
    ),
    (
        "noise",
        "The noise experiment: Test R and test BCE per noise std and latent size",
        claims.make_noise_table,
        _notes(*claims.NOISE_NOTES),
        (),
        "ok rows of curves that differ only in noise_std (e.g. the table1 grid's noise curves)",
    ),
    (
        "parameters",
        "Encoder and decoder parameter counts per curve, beside the paper's stated ranges",
        claims.make_parameter_table,
        _notes(*claims.PARAMETER_NOTES),
        (),
        "ok rows",
    ),
    (
        "winners",
        "DAE against VAE at each width, per dataset and sampler: the difference and its "
        "confidence interval",
        claims.make_winners_table,
        _notes(*claims.WINNER_NOTES),
        ("difference",),
        "ok DAE and VAE rows of the same dataset, width and setting, depth 1, "
        "no latent norm, noise or freezing",
    ),
]


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
    if args.dpi < 1:
        parser.error(f"--dpi must be at least 1, got {args.dpi}")
    store = args.store.resolve()
    out = args.out.resolve()
    if out == store or store in out.parents:
        print(
            f"report: --out {args.out} is inside the results store {args.store}; a report there "
            "would put files that are not Parquet parts into the store. "
            "Choose a folder outside it.",
            file=sys.stderr,
        )
        return 2
    try:
        rows = load(args.store)
    except StoreError as error:
        print(f"report: {error}", file=sys.stderr)
        return 1
    try:
        made, missing = _write(args.store, rows, args.out, args.dpi)
    except OSError as error:
        print(f"report: cannot write the report to {args.out}: {error}", file=sys.stderr)
        return 1
    print(
        f"report: {len(made)} files in {args.out}, {len(missing)} could not be made "
        f"(see {args.out / 'README.md'})"
    )
    return 0


def _write(store: Path, rows: pd.DataFrame, out: Path, dpi: int) -> tuple[list, list]:
    """Every table and figure, then the README. -> (made, missing), as the README lists them."""
    ok = usable(rows)
    out.mkdir(parents=True, exist_ok=True)
    made, missing = _write_tables(rows, ok, out)
    for stem, description, build in figures.figure_list(ok):
        try:
            drawn = build()
        except figures.Needs as needs:
            missing.append((f"{stem}.png", description, str(needs)))
            continue
        for suffix, setting, figure in drawn:
            figure.savefig(out / f"{stem}{suffix}.png", dpi=dpi)
            made.append((f"{stem}{suffix}.png", f"{description} [{setting}]"))
    grids, lost = samples.copy_grids(store, ok, out)
    if grids:
        made.append((f"{samples.FOLDER}/", "Sample grids of each curve's best trial (below)"))
    else:
        missing.append((f"{samples.FOLDER}/", "sample grids", samples.NEEDS))
    missing += [
        (path, "a sample grid its row names", "the store's _samples/ folder") for path in lost
    ]
    (out / "README.md").write_text(_readme(store, rows, ok, made, missing, grids))
    return made, missing


def _write_tables(rows: pd.DataFrame, ok: pd.DataFrame, out: Path) -> tuple[list, list]:
    """-> (made: [(files, description)], missing: [(what, description, needs)])."""
    made = []
    missing = []
    for stem, title, build, notes, gmm_based, needs in TABLES:
        table = build(ok)
        tables.write_table(table, out / stem, title, notes(table), gmm_based)
        made.append((f"{stem}.md, {stem}.csv", title))
        if table.filter(like="_ours").columns.any():
            if not tables.comparable(table).any():
                missing.append(
                    (f"our values in {stem}.md", "scores comparable to the paper's FIDs", needs)
                )
        elif table.empty:
            missing.append((f"rows in {stem}.md", title, needs))
    status = tables.make_status_table(rows)
    status_title = "Status of every curve: rows per status and their errors"
    tables.write_table(status, out / "status", status_title, STATUS_NOTES, ())
    made.append(("status.md, status.csv", status_title))
    latent_stats(ok).to_csv(out / "scores.csv", index=False)
    made.append(
        (
            "scores.csv",
            "Every curve's scores per latent size: mean, std, n and 95% t-interval over "
            "replicates, and gmm_unconverged",
        )
    )
    return made, missing


def _counts(values: pd.Series) -> str:
    return ", ".join(f"{n} {name}" for name, n in values.value_counts(dropna=False).items())


def _readme(
    store: Path, rows: pd.DataFrame, ok: pd.DataFrame, made: list, missing: list, grids: list
) -> str:
    sources = ok.loc[ok["metric"] == "FID", "fid_weights_source"].fillna("unrecorded")
    lines = [
        "# dae-study report",
        "",
        f"Store: `{store}`: {len(rows)} rows ({_counts(rows['status'])}). Scores use the "
        f"{len(ok)} ok trials only (one row per trial_id); failed and diverged trials are counted "
        "per curve, with their errors, in `status.md`.",
        f"Ok rows by metric: {_counts(ok['metric']) or 'none'}. Only FID rows (Inception features)"
        " are set beside the paper's numbers; FD (digits-cnn) is a different feature space.",
        f"FID rows by the source of their Inception weights: {_counts(sources) or 'none'}.",
        f"Ok rows by training precision: {_counts(ok['precision'].fillna('unrecorded')) or 'none'}."
        " Curves of different precision are never pooled: tables have a precision column, and"
        " figures say it in the title, or in the labels where their curves differ.",
        f"GMM fits that did not converge: {int(ok['gmm_unconverged'].sum())} of {len(ok)} ok rows."
        f" Scores resting on one are marked {tables.UNCONVERGED_MARK} in the tables "
        "(gmm_unconverged counts them) and ringed in red in the figures.",
        "Figures never mix protocols: a figure's curves are split by every curve field its legend "
        "does not show and where they depart from the dataset's default config, one file per "
        "setting. The setting closest to the default keeps the plain name; each other one is "
        "suffixed with the fields where it differs from that one (e.g. "
        "`figure_1_digits__epochs-2.png`), and each title names its setting.",
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
    if grids:
        lines += [
            "",
            "## Sample grids",
            "",
            "Each curve's best trial: its ok row with the lowest MVG score, whatever its latent "
            "size. Rows: test images, their reconstructions, MVG samples, GMM samples (no GMM row "
            "where the GMM could not be fitted).",
            "",
            *grids,
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
