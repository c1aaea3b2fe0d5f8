"""The report CLI on crafted stores written as directories of per-trial Parquet files: what it
makes, what it refuses, and the stores it must not crash on."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_data import (
    DIGITS_CURVES,
    TABLE_1_CURVES,
    curve_rows,
    make_row,
    write_store,
)
from PIL import Image
from report_data import grid_png, with_history

from analysis import samples
from analysis.report import main

REPO = Path(__file__).resolve().parents[1]
TABLE_STEMS = (
    "table_2",
    "table_3",
    "vae_readings",
    "optima",
    "gaussianity",
    "gap_width",
    "noise",
    "parameters",
    "winners",
    "status",
)
TABLES = {f"{stem}.{ext}" for stem in TABLE_STEMS for ext in ("md", "csv")} | {"scores.csv"}
PAGES = {"README.md", "index.html"}
PAPER_FIGURES = {
    "figure_1_cifar10",
    "figure_1_celeba",
    "figure_2_5",
    "figure_3",
    "figure_4",
    "figure_noise",
}
PER_DATASET = ("figure_1", "scatter", "gap_width", "interp_width", "noise_recon")
# The page's sections, in the order the reader meets them
SECTIONS = [
    "What the store holds",
    "Tables 2 and 3 beside the paper's",
    "Each curve's optimum",
    "Other tables",
    "Figures",
    "Training curves",
    "Sample grids",
    "What could not be made",
]


def report(store: Path, out: Path) -> tuple[set[str], str]:
    """Runs the report in-process (exit status 0 asserted) -> (file names made, its README)."""
    assert main([str(store), "--out", str(out), "--dpi", "40"]) == 0
    return {p.name for p in out.iterdir()}, (out / "README.md").read_text()


def drawn(*stems: str) -> set[str]:
    """Each figure's two files: PNG and SVG."""
    return {f"{stem}.{ext}" for stem in stems for ext in ("png", "svg")}


def missing_lines(readme: str) -> list[str]:
    return readme.split("## What could not be made")[1].strip().splitlines()


def run_script(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "analysis/report.py", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_digits_only_store(tmp_path):
    failed = make_row({"dataset": "digits", "latent": 8, "seed": 7}, status="failed")
    diverged = make_row({"dataset": "digits", "latent": 8, "seed": 8}, status="diverged")
    ok = [with_history(row) for row in curve_rows(DIGITS_CURVES, latents=(4, 8, 16, 32))]
    rows = [failed, with_history(diverged, diverged_epoch=2), *ok]
    store = write_store(rows, tmp_path / "results.parquet")
    files, readme = report(store, tmp_path / "report")
    made = drawn(
        *(f"{name}_digits" for name in ("figure_1", "scatter", "gap_width", "interp_width")),
        "gaussianity_width",
        "training_digits",
    )
    assert files == TABLES | made | PAGES
    assert "18 rows (16 ok, 1 diverged, 1 failed)" in readme  # ties by name
    for name in made:
        assert f"]({name})" in readme  # embedded (PNG) or linked (SVG)
    missing = missing_lines(readme)
    cifar = "- CIFAR-10 figures (no ok cifar10 rows): "
    (cifar_line,) = [line for line in missing if line.startswith(cifar)]
    for name in PER_DATASET:
        assert f"`{name}_cifar10.png`" in cifar_line and f"`{name}_celeba.png`" not in cifar_line
    assert "training" not in cifar_line  # training curves are drawn for the datasets stored
    assert all(f"`{name}.png`" in cifar_line for name in PAPER_FIGURES - {"figure_1_celeba"})
    (digits_line,) = [line for line in missing if line.startswith("- digits figures: ")]
    assert "`noise_recon_digits.png` needs ok digits rows of curves that differ only" in digits_line
    (tables_line,) = [line for line in missing if line.startswith("- Tables without values")]
    assert "`table_2`, `table_3` need ok cifar10 or celeba rows scored with inception-fid" in (
        tables_line
    )
    assert any(line.startswith("- Tables without rows: `noise` needs ok rows") for line in missing)
    assert [line.split(":")[0] for line in missing] == [  # one line per group, not per file
        "- Tables without values of ours beside the paper's",
        "- Tables without rows",
        "- CIFAR-10 figures (no ok cifar10 rows)",
        "- CelebA figures (no ok celeba rows)",
        "- digits figures",
        "- Figures across datasets",
        "- Sample grids",
    ]


def test_the_page_has_its_sections_in_order_in_both_formats(tmp_path):
    store = write_store(curve_rows(DIGITS_CURVES, latents=(4, 8)), tmp_path / "results.parquet")
    report(store, tmp_path / "report")
    markdown = (tmp_path / "report" / "README.md").read_text()
    page = (tmp_path / "report" / "index.html").read_text()
    assert re.findall(r"^## (.*)$", markdown, re.M) == SECTIONS
    assert [h.replace("&#x27;", "'") for h in re.findall(r"<h2 [^>]*>(.*?)</h2>", page)] == SECTIONS
    assert "http" not in page.replace('"http://www.w3.org', "")  # nothing from a network
    assert "<script" not in page
    pictures = re.findall(r'<img src="([^"]+)"', page)
    assert pictures == re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)  # the same, in order
    assert pictures and all((tmp_path / "report" / picture).is_file() for picture in pictures)


def test_full_table_1_store(tmp_path):
    store = write_store(
        curve_rows(TABLE_1_CURVES, latents=(32, 64, 128)), tmp_path / "results.parquet"
    )
    files, readme = report(store, tmp_path / "report")
    figures = {
        *PAPER_FIGURES,
        *(f"{name}_{d}" for name in PER_DATASET for d in ("cifar10", "celeba")),
        "gaussianity_width",
        "gaussianity_depth",
    } - {"noise_recon_celeba"}  # the noise curves are CIFAR-10's
    assert files == TABLES | drawn(*figures) | PAGES
    missing = "\n".join(missing_lines(readme))
    assert "`noise_recon_celeba.png`" in missing and "`figure_4`: Figure 4" in readme
    assert "`training_cifar10.png` needs ok or diverged cifar10 rows with a loss_history" in missing
    assert "vae_readings" not in missing  # the sum reading is the default


def test_script_refuses_a_missing_store(tmp_path):
    run = run_script(tmp_path / "results.parquet", "--out", tmp_path / "report")
    assert (
        run.returncode == 1
        and "no results store" in run.stderr
        and not (tmp_path / "report").exists()
    )


def test_an_empty_store_is_refused(tmp_path, capsys):
    (tmp_path / "results.parquet").mkdir()
    assert main([str(tmp_path / "results.parquet"), "--out", str(tmp_path / "report")]) == 1
    assert "holds no Parquet part files" in capsys.readouterr().err


@pytest.mark.parametrize("inside", [".", "report", "deeper/report"])
def test_a_report_inside_the_store_is_refused(tmp_path, capsys, inside):
    store = write_store(curve_rows(DIGITS_CURVES[:1], latents=(4,)), tmp_path / "results.parquet")
    before = sorted(store.rglob("*"))
    assert main([str(store), "--out", str(store / inside)]) == 2
    assert "inside the results store" in capsys.readouterr().err
    assert sorted(store.rglob("*")) == before  # nothing written there


def test_a_relative_out_inside_the_store_is_refused(tmp_path):
    store = write_store(curve_rows(DIGITS_CURVES[:1], latents=(4,)), tmp_path / "results.parquet")
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "analysis/report.py"),
            "results.parquet",
            "--out",
            "results.parquet/../results.parquet/report",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2 and "inside the results store" in run.stderr
    assert not (store / "report").exists()


def test_a_store_where_every_trial_failed_gets_its_failures_reported(tmp_path):
    rows = [make_row({"dataset": "digits", "latent": latent}, status="failed") for latent in (4, 8)]
    rows.append(make_row({"dataset": "cifar10", "latent": 64}, status="diverged"))
    rows[0]["error"] = "DatasetMissing: no digits here\nTraceback line"
    files, readme = report(write_store(rows, tmp_path / "results.parquet"), tmp_path / "report")
    assert "3 rows (2 failed, 1 diverged)" in readme and {"status.md", "README.md"} <= files
    status = pd.read_csv(tmp_path / "report" / "status.csv")
    digits = status[status["dataset"] == "digits"].iloc[0]
    assert (digits["rows"], digits["ok"], digits["failed"], digits["diverged"]) == (2, 0, 2, 0)
    assert digits["errors"] == "1 x DatasetMissing: no digits here; 1 x crafted failed"
    assert status[status["dataset"] == "cifar10"].iloc[0]["errors"] == "1 x crafted diverged"
    assert not any(name.endswith(".png") for name in files)


def test_a_store_without_plain_depth_1_rows(tmp_path):
    """Only noise curves: Table 3 once failed here, merging on noise_std."""
    rows = [make_row({"latent": latent, "noise_std": 0.5}) for latent in (32, 64)]
    files, readme = report(write_store(rows, tmp_path / "results.parquet"), tmp_path / "report")
    (line,) = [line for line in missing_lines(readme) if line.startswith("- Tables without values")]
    assert TABLES <= files and "`table_3`" in line


@pytest.mark.parametrize(
    "column, value, says",
    [
        ("fd_mvg", "high", "column fd_mvg is not double"),
        ("latent", "sixteen", "column latent is not int64"),
        (None, None, "lacks the columns trial_id, status"),
    ],
)
def test_a_part_of_the_wrong_shape_is_refused_by_name(tmp_path, column, value, says):
    store = write_store(curve_rows(DIGITS_CURVES, latents=(4, 8)), tmp_path / "results.parquet")
    row = make_row({"dataset": "digits", "latent": 16})
    part = pd.DataFrame([{**row, column: value}] if column else [{"x": 1}])
    part.to_parquet(store / "zz-stray.parquet")
    run = run_script(store, "--out", tmp_path / "report")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith(f"report: {store / 'zz-stray.parquet'}") and says in run.stderr


def test_each_curves_best_trial_shows_its_sample_grid_with_its_rows_named(tmp_path):
    """Best: the lowest MVG score on the curve (of these latents, 32, the nearest to the bowl's
    minimum at 96). A grid its row names but the store lacks, or that is no picture, is listed as
    missing. The VAE f8's GMM was not fitted: its grid has 3 rows, and 3 names."""
    rows = curve_rows(DIGITS_CURVES, latents=(4, 8, 16, 32))
    for row in rows:
        row["samples_png"] = f"_samples/{row['trial_id']}.png"
        if (row["model"], row["filters"]) == ("vae", 8):
            row.update(fd_gmm=None, gmm_error="LinAlgError: crafted")
    store = write_store(rows, tmp_path / "results.parquet")
    best = {row["trial_id"]: row for row in rows if row["latent"] == 32}
    lost, broken, *kept = best
    (store / "_samples").mkdir()
    (store / "_samples" / f"{broken}.png").write_bytes(b"not a picture")
    for trial_id in kept:
        fitted = best[trial_id]["fd_gmm"] is not None
        (store / "_samples" / f"{trial_id}.png").write_bytes(grid_png(4 if fitted else 3))
    files, readme = report(store, tmp_path / "report")
    assert "samples" in files
    copied = tmp_path / "report" / "samples"
    assert {path.name for path in copied.iterdir()} == {f"{trial_id}.png" for trial_id in kept}
    for trial_id in kept:
        source = Image.open(store / "_samples" / f"{trial_id}.png")
        names = 4 if best[trial_id]["fd_gmm"] is not None else 3
        assert ink_bands(Image.open(copied / f"{trial_id}.png"), source) == names
    shown = readme.split("## Sample grids")[1]
    for trial_id in kept:
        assert f"### digits {best[trial_id]['model'].upper()} f" in shown
        assert f"(samples/{trial_id}.png)" in shown and f"Trial `{trial_id}`: latent 32" in shown
    (line,) = [line for line in missing_lines(readme) if line.startswith("- Sample grids: ")]
    assert f"{store / '_samples' / lost}.png" in line and f"{store / '_samples' / broken}" in line


def ink_bands(labelled: Image.Image, source: Image.Image) -> int:
    """How many separate bands of text the margin left of the grid holds, each centred on a row of
    the grid; the grid itself is the source, enlarged."""
    grid_width = source.width * samples.ENLARGE
    margin = labelled.width - grid_width
    pixels = np.asarray(labelled.convert("L"))
    enlarged = source.convert("L").resize((grid_width, pixels.shape[0]), Image.Resampling.NEAREST)
    assert (pixels[:, margin:] == np.asarray(enlarged)).all()
    inked = (pixels[:, :margin] < 128).any(axis=1)
    starts = np.flatnonzero(inked & ~np.r_[False, inked[:-1]])
    ends = np.flatnonzero(inked & ~np.r_[inked[1:], False])
    pitch = pixels.shape[0] / len(starts)
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        assert start < (i + 0.5) * pitch < end  # the name of row i sits beside row i
    return len(starts)
