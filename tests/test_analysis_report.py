"""The report CLI on crafted stores written as directories of per-trial Parquet files: what it
makes, what it refuses, and the stores it must not crash on."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from analysis_data import (
    DIGITS_CURVES,
    TABLE_1_CURVES,
    curve_rows,
    make_row,
    write_store,
)

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
PAPER_FIGURES = {
    "figure_1_cifar10",
    "figure_1_celeba",
    "figure_2_5",
    "figure_3",
    "figure_4",
    "figure_noise",
}
PER_DATASET = ("figure_1", "scatter", "gap_width", "interp_width", "noise_recon")


def report(store: Path, out: Path) -> tuple[set[str], str]:
    """Runs the report in-process (exit status 0 asserted) -> (file names made, its README)."""
    assert main([str(store), "--out", str(out), "--dpi", "40"]) == 0
    return {p.name for p in out.iterdir()}, (out / "README.md").read_text()


def run_script(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "analysis/report.py", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_digits_only_store(tmp_path):
    failed = [
        make_row({"dataset": "digits", "latent": 8, "seed": 7}, status=s)
        for s in ("failed", "diverged")
    ]
    store = write_store(
        [*failed, *curve_rows(DIGITS_CURVES, latents=(4, 8, 16, 32))], tmp_path / "results.parquet"
    )
    files, readme = report(store, tmp_path / "report")
    made = {f"{name}_digits.png" for name in ("figure_1", "scatter", "gap_width", "interp_width")}
    assert files == TABLES | made | {"gaussianity_width.png", "README.md"}
    assert "18 rows (16 ok, 1 failed, 1 diverged)" in readme
    missing = readme.split("## Could not be made")[1]
    for name in [
        *PAPER_FIGURES,
        "scatter_cifar10",
        "scatter_celeba",
        "gaussianity_depth",
        "noise_recon_digits",
    ]:
        assert f"`{name}.png`" in missing
    assert (
        "`figure_1_cifar10.png`: Figure 1 (CIFAR-10)" in missing
        and "needs: ok cifar10 rows at depth 1" in missing
    )
    assert "`our values in table_2.md`" in missing and "inception-fid" in missing
    assert "`rows in noise.md`" in missing


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
    assert files == TABLES | {f"{name}.png" for name in figures} | {"README.md"}
    missing = readme.split("## Could not be made")[1]
    assert "`noise_recon_celeba.png`" in missing and "`figure_4.png`: Figure 4" in readme
    assert "`our values in vae_readings.md`" not in missing  # the sum reading is the default


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
    assert TABLES <= files and "`our values in table_3.md`" in readme


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


def test_each_curves_best_trial_shows_its_sample_grid(tmp_path):
    """Best: the lowest MVG score on the curve (of these latents, 32, the nearest to the bowl's
    minimum at 96). A grid its row names but the store lacks is listed as missing."""
    rows = curve_rows(DIGITS_CURVES, latents=(4, 8, 16, 32))
    for row in rows:
        row["samples_png"] = f"_samples/{row['trial_id']}.png"
    store = write_store(rows, tmp_path / "results.parquet")
    best = {row["trial_id"]: row for row in rows if row["latent"] == 32}
    lost, *kept = best
    (store / "_samples").mkdir()
    for trial_id in kept:
        (store / "_samples" / f"{trial_id}.png").write_bytes(trial_id.encode())
    files, readme = report(store, tmp_path / "report")
    assert "samples" in files
    copied = tmp_path / "report" / "samples"
    assert {path.name: path.read_bytes() for path in copied.iterdir()} == {
        f"{trial_id}.png": trial_id.encode() for trial_id in kept
    }
    shown = readme.split("## Sample grids")[1]
    for trial_id in kept:
        assert f"![digits {best[trial_id]['model'].upper()} f" in shown
        assert f"(samples/{trial_id}.png)" in shown and f"Trial `{trial_id}`: latent 32" in shown
    assert f"{store / '_samples' / lost}.png" in readme.split("## Could not be made")[1]
