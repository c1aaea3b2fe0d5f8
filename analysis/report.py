"""python analysis/report.py results.parquet --out report/ (or dae-study report ...)

Writes every table (Markdown + CSV), figure and training curve (PNG + SVG) and labelled sample grid
the store allows, and one page that shows them: report/index.html for a browser and report/README.md
in Markdown, the same blocks in the same order (analysis/page.py): what the store holds, Tables 2
and 3 beside the paper's, each curve's optimum, the other tables, the figures, the training curves,
the sample grids, then one line per group of what could not be made and which rows it needs. Scores
come from ok rows only (training curves from the diverged ones too); failed and diverged trials are
counted per curve, with their errors, in status.md, which is written whatever the store holds.

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

from analysis import claims, figures, page, samples, tables, training
from analysis.optimum import find_optima, latent_stats
from analysis.results import dataset_name, load, usable
from trainables.errors import StoreError
from trainables.filesystems import is_uri

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
STATUS_TITLE = "Status of every curve: rows per status and their errors"
SCORES_TITLE = (
    "Every curve's scores per latent size: mean, std, n and 95% t-interval over replicates, "
    "and gmm_unconverged"
)
# groups of what could not be made, besides each dataset's figures
GRIDS = "Sample grids"
OUR_VALUES = "Tables without values of ours beside the paper's"
EMPTY = "Tables without rows"
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
        tables.table_3_notes,
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
        "store",
        help="the results store: a directory of per-trial Parquet files, or the URI of its "
        "--results-mirror (s3://..., file://...)",
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
    store = None if is_uri(args.store) else Path(args.store).resolve()
    out = args.out.resolve()
    if store is not None and (out == store or store in out.parents):
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
        files, missing = _write(args.store, rows, args.out, args.dpi)
    except OSError as error:
        print(f"report: cannot write the report to {args.out}: {error}", file=sys.stderr)
        return 1
    print(
        f"report: {files} files in {args.out}, {len(missing)} could not be made; open "
        f"{args.out / 'index.html'} (or README.md)"
    )
    return 0


def _write(store: str | Path, rows: pd.DataFrame, out: Path, dpi: int) -> tuple[int, list]:
    """Every table and figure, then the page twice (README.md and index.html).
    -> (files written, [(group, what, needs)] that could not be made)."""
    ok = usable(rows)
    out.mkdir(parents=True, exist_ok=True)
    files, missing, shown = _write_tables(rows, ok, out)
    drawn = {}
    for section, entries in (
        ("figures", figures.figure_list(ok)),
        ("training", training.figure_list(rows)),
    ):
        drawn[section], lacking = _draw(entries, out, dpi)
        missing += [(_group(dataset, ok), f"{stem}.png", needs) for stem, dataset, needs in lacking]
        files += 2 * len(drawn[section])
    grids, lost = samples.write_grids(store, ok, out)
    files += len(grids)
    if not grids:
        missing.append((GRIDS, f"{samples.FOLDER}/", samples.NEEDS))
    missing += [(GRIDS, path, "the store's _samples/ folder") for path in lost]
    blocks = _page(store, rows, ok, shown, drawn, grids, missing)
    (out / "README.md").write_text(page.markdown(blocks))
    (out / "index.html").write_text(page.page(blocks, f"dae-study report: {store}"))
    return files + 2, missing  # the two pages


def _draw(entries: list, out: Path, dpi: int) -> tuple[list, list]:
    """Each figure as STEM.png and STEM.svg. -> ([(stem, description, setting)] drawn,
    [(stem, dataset, needs)] not)."""
    drawn = []
    lacking = []
    for stem, description, dataset, build in entries:
        try:
            figures_drawn = build()
        except figures.Needs as needs:
            lacking.append((stem, dataset, str(needs)))
            continue
        for suffix, setting, figure in figures_drawn:
            figure.savefig(out / f"{stem}{suffix}.png", dpi=dpi)
            figure.savefig(out / f"{stem}{suffix}.svg", metadata={"Date": None})
            drawn.append((f"{stem}{suffix}", description, setting))
    return drawn, lacking


def _group(dataset: str | None, ok: pd.DataFrame) -> str:
    name = dataset_name(dataset)
    if dataset is None:
        return "Figures across datasets"
    return f"{name} figures" + ("" if dataset in set(ok["dataset"]) else f" (no ok {dataset} rows)")


def _write_tables(rows: pd.DataFrame, ok: pd.DataFrame, out: Path) -> tuple[int, list, dict]:
    """-> (files written, missing: [(group, what, needs)],
    {stem: (title, its cells as shown, its notes, the table)})."""
    missing = []
    shown = {}
    for stem, title, build, notes_of, gmm_based, needs in TABLES:
        table = build(ok)
        notes = notes_of(table)
        tables.write_table(table, out / stem, title, notes, gmm_based)
        shown[stem] = (title, *tables.shown_table(table, notes, gmm_based), table)
        if table.filter(like="_ours").columns.any():
            if not tables.comparable(table).any():
                missing.append((OUR_VALUES, stem, needs))
        elif table.empty:
            missing.append((EMPTY, stem, needs))
    status = tables.make_status_table(rows)
    tables.write_table(status, out / "status", STATUS_TITLE, STATUS_NOTES, ())
    latent_stats(ok).to_csv(out / "scores.csv", index=False)
    return 2 * len(TABLES) + 3, missing, shown


def _counts(values: pd.Series) -> str:
    """'7 ok, 1 failed': the most common first, ties by name, so the same store reads the same."""
    counts = values.value_counts(dropna=False).items()
    return ", ".join(f"{n} {name}" for name, n in sorted(counts, key=lambda c: (-c[1], str(c[0]))))


def _holdings(rows: pd.DataFrame, ok: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: its rows by status, and its ok rows by metric, precision and the source of
    their Inception weights."""
    per_dataset = []
    for dataset, group in rows.groupby("dataset", sort=True):
        good = ok[ok["dataset"] == dataset]
        fid = good.loc[good["metric"] == "FID", "fid_weights_source"].fillna("unrecorded")
        statuses = group["status"].value_counts()
        per_dataset.append(
            {
                "dataset": dataset,
                "rows": str(len(group)),
                **{status: str(statuses.get(status, 0)) for status in tables.STATUS_ORDER},
                "ok rows by metric": _counts(good["metric"]) or "–",
                "by precision": _counts(good["precision"].fillna("unrecorded")) or "–",
                "FID weights": _counts(fid) or "–",
            }
        )
    return pd.DataFrame(per_dataset)


def _files(stem: str) -> str:
    return f"[{stem}.md]({stem}.md) · [{stem}.csv]({stem}.csv)"


def _table_blocks(stem: str, shown: dict, only_comparable: bool) -> list:
    """A table of the report with its notes: the rows that hold an FID of ours where
    only_comparable (the rest is in its files), every row otherwise."""
    title, cells, notes, table = shown[stem]
    blocks = [page.Heading(title, 3), page.Bullets(tuple(notes))]
    if only_comparable:
        cells = cells[tables.comparable(table).to_numpy()]
    if cells.empty:
        nothing = "No FID of ours to set beside the paper's" if only_comparable else "No rows"
        blocks.append(page.Text(f"{nothing} (see the last section). {_files(stem)}"))
    else:
        blocks += [page.Table(cells), page.Text(_files(stem))]
    return blocks


def _figure_blocks(drawn: list, empty: str) -> list:
    if not drawn:
        return [page.Text(empty)]
    return [
        page.Picture(
            f"{name}.png",
            description,
            f"`{name}`: {description}. Setting: {setting}. [SVG]({name}.svg)",
        )
        for name, description, setting in drawn
    ]


def _missing_lines(missing: list) -> list[str]:
    """One line per group: its files, those that need the same rows together."""
    lines = []
    for group in dict.fromkeys(group for group, _, _ in missing):
        needs = {}
        for _, what, need in (entry for entry in missing if entry[0] == group):
            needs.setdefault(need, []).append(f"`{what}`")
        if group.endswith(" rows)"):  # a dataset the store has no ok rows of: that is what it needs
            names = [name for names in needs.values() for name in names]
            lines.append(f"{group}: {', '.join(names)}.")
            continue
        parts = [
            f"{', '.join(names)} {'needs' if len(names) == 1 else 'need'} {need}"
            for need, names in needs.items()
        ]
        lines.append(f"{group}: {'; '.join(parts)}.")
    return lines


def _page(store, rows, ok, shown, drawn, grids, missing) -> list:
    """The report's page, in the order a reader wants it."""
    other_tables = [stem for stem, *_ in TABLES if stem not in ("table_2", "table_3", "optima")]
    return [
        page.Heading("dae-study report", 1),
        page.Contents(),
        page.Heading("What the store holds"),
        page.Text(f"Store `{store}`: {len(rows)} rows ({_counts(rows['status'])})."),
        page.Table(_holdings(rows, ok)),
        page.Bullets(
            (
                f"Scores use the {len(ok)} ok trials only (one row per trial_id); failed and "
                f"diverged trials are counted per curve, with their errors, in {_files('status')}.",
                "Only FID rows (Inception features) are set beside the paper's numbers; an FD "
                "(e.g. digits-cnn) is a distance in another feature space.",
                f"GMM fits that did not converge: {int(ok['gmm_unconverged'].sum())} of {len(ok)} "
                f"ok rows; scores resting on one are marked {tables.UNCONVERGED_MARK} in the tables"
                " and ringed in red in the figures.",
                "Curves of different precision are never pooled, and a figure never mixes "
                "protocols: each setting (every curve field its legend does not show, where it "
                "departs from the dataset's default config) has a file of its own, the one closest "
                "to the default the plain name, the others suffixed with where they differ from it "
                "(e.g. `figure_1_digits__epochs-2.png`); the caption names the setting.",
            )
        ),
        page.Heading("Tables 2 and 3 beside the paper's"),
        *_table_blocks("table_2", shown, only_comparable=True),
        *_table_blocks("table_3", shown, only_comparable=True),
        page.Heading("Each curve's optimum"),
        *_table_blocks("optima", shown, only_comparable=False),
        page.Heading("Other tables"),
        page.Bullets(
            (
                *(f"{shown[stem][0]}: {_files(stem)}" for stem in other_tables),
                f"{STATUS_TITLE}: {_files('status')}",
                f"{SCORES_TITLE}: [scores.csv](scores.csv)",
            )
        ),
        page.Heading("Figures"),
        *_figure_blocks(
            drawn["figures"], "None could be drawn from this store (see the last section)."
        ),
        page.Heading("Training curves"),
        *_figure_blocks(drawn["training"], "No row has a loss history (see the last section)."),
        page.Heading("Sample grids"),
        page.Text(
            "Each curve's best trial: its ok row with the lowest MVG score, whatever its latent "
            "size. Rows: test images, their reconstructions, MVG samples, GMM samples (no GMM row "
            "where the GMM could not be fitted)."
        ),
        *(
            block
            for grid in grids
            for block in (
                page.Heading(grid.title, 3),
                page.Picture(grid.file, grid.title, grid.caption),
            )
        ),
        page.Heading("What could not be made"),
        page.Bullets(tuple(_missing_lines(missing)))
        if missing
        else page.Text("Everything was made."),
    ]


if __name__ == "__main__":
    sys.exit(main())
