"""The console script pyproject.toml installs: `dae-study launch ...` and `dae-study report ...`."""

import importlib
import os
import subprocess
import sys

from project import PYPROJECT, REPO
from test_store import make_row

from study import cli
from study.store import ResultStore

# As the installed script runs: main() reads sys.argv; says at the end whether torch was imported.
SCRIPT = (
    "import sys; from study.cli import main; sys.argv = ['dae-study', *sys.argv[1:]]; "
    "code = main(); print('torch imported:', 'torch' in sys.modules, file=sys.stderr); "
    "sys.exit(code)"
)


def dae_study(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_console_script_names_a_function_that_exists():
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts == {"dae-study": "study.cli:main"}
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_report_runs_without_torch_and_says_its_own_name(tmp_path):
    store = tmp_path / "results.parquet"
    with ResultStore(store) as writer:
        writer.write(make_row(4, status="failed", error="boom"))
    result = dae_study("report", str(store), "--out", str(tmp_path / "report"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report" / "status.md").is_file()
    assert "torch imported: False" in result.stderr
    usage = dae_study("report", "--dpi", "0", str(store))
    assert usage.returncode == 2 and usage.stderr.startswith("usage: dae-study report ")


def test_launch_takes_the_launchers_arguments(tmp_path, capsys):
    argv = ["launch", "--grid", "digits", "--dry-run", "--results", str(tmp_path / "r")]
    assert cli.main(argv) == 0
    assert "grid digits: 2 curves, 8 trials" in capsys.readouterr().out


def test_no_command_or_an_unknown_one_prints_the_commands(capsys):
    assert cli.main([]) == cli.main(["lanch"]) == cli.EXIT_USAGE
    errors = capsys.readouterr().err
    assert "unknown command 'lanch'" in errors and "dae-study launch [ARGS]" in errors
    assert cli.main(["--help"]) == 0 and "dae-study report [ARGS]" in capsys.readouterr().out
