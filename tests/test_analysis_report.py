"""The report CLI on crafted stores written as directories of per-trial Parquet files."""

import subprocess
import sys
from pathlib import Path

from analysis_data import DIGITS_CURVES, TABLE_1_CURVES, curve_rows, make_row, write_store

from analysis.report import main

REPO = Path(__file__).resolve().parents[1]
TABLES = {
    f"{stem}.{ext}"
    for stem in ("table_2", "table_3", "optima", "gaussianity")
    for ext in ("md", "csv")
}
PAPER_FIGURES = {
    "figure_1_cifar10",
    "figure_1_celeba",
    "figure_2_5",
    "figure_3",
    "figure_4",
    "figure_noise",
}


def test_digits_only_store(tmp_path):
    failed = [
        make_row({"dataset": "digits", "latent": 8, "seed": 7}, status=s)
        for s in ("failed", "diverged")
    ]
    store = write_store(
        [*failed, *curve_rows(DIGITS_CURVES, latents=(4, 8, 16, 32))], tmp_path / "results.parquet"
    )
    assert main([str(store), "--out", str(tmp_path / "report"), "--dpi", "40"]) == 0
    files = {p.name for p in (tmp_path / "report").iterdir()}
    made = {
        "figure_1_digits.png",
        "scatter_digits.png",
        "gaussianity_width.png",
        "scores.csv",
        "README.md",
    }
    assert files == TABLES | made
    readme = (tmp_path / "report" / "README.md").read_text()
    assert "18 rows (16 ok, 1 failed, 1 diverged)" in readme
    missing = readme.split("## Could not be made")[1]
    for name in [*PAPER_FIGURES, "scatter_cifar10", "scatter_celeba", "gaussianity_depth"]:
        assert f"`{name}.png`" in missing
    assert (
        "`figure_1_cifar10.png`: Figure 1 (CIFAR-10)" in missing
        and "needs: ok cifar10 rows at depth 1" in missing
    )
    assert "`our values in table_2.md`" in missing and "inception-fid" in missing


def test_full_table_1_store(tmp_path):
    store = write_store(
        curve_rows(TABLE_1_CURVES, latents=(32, 64, 128)), tmp_path / "results.parquet"
    )
    assert main([str(store), "--out", str(tmp_path / "report"), "--dpi", "40"]) == 0
    files = {p.name for p in (tmp_path / "report").iterdir()}
    figures = {
        f"{name}.png"
        for name in [
            *PAPER_FIGURES,
            "scatter_cifar10",
            "scatter_celeba",
            "gaussianity_width",
            "gaussianity_depth",
        ]
    }
    assert files == TABLES | figures | {"scores.csv", "README.md"}
    readme = (tmp_path / "report" / "README.md").read_text()
    assert "Everything was made." in readme and "`figure_4.png`: Figure 4" in readme


def test_script_refuses_a_missing_store(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "analysis/report.py",
            str(tmp_path / "results.parquet"),
            "--out",
            str(tmp_path / "report"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert (
        run.returncode == 1
        and "no results store" in run.stderr
        and not (tmp_path / "report").exists()
    )


def test_an_empty_store_is_refused(tmp_path, capsys):
    (tmp_path / "results.parquet").mkdir()
    assert main([str(tmp_path / "results.parquet"), "--out", str(tmp_path / "report")]) == 1
    assert "holds no Parquet part files" in capsys.readouterr().err
