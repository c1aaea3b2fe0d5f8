"""The launcher as researchers run it: subprocesses, real Ray Tune on the smoke grid, offline."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from study import grids
from study.store import ResultStore, live_parts

REPO = Path(__file__).resolve().parents[1]
# Runs main() in-process and says afterwards whether anything imported Ray.
PROBE = (
    "import sys; from study.launch import main; code = main(sys.argv[1:]); "
    "print('ray imported:', 'ray' in sys.modules, file=sys.stderr); sys.exit(code)"
)

TYPO_GRID = "import study.grids as g; g.GRIDS['typo'] = [{'dataset': 'digits', 'latnet': 8}]; "


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """No datasets, no FID weights, one digits-cnn cache shared by the module's launches."""
    root = tmp_path_factory.mktemp("launch")
    return {
        **os.environ,
        "DAE_DATA_ROOT": str(root / "data"),
        "DAE_FID_WEIGHTS": str(root / "no-weights.pth"),
        "DAE_CACHE_DIR": str(root / "cache"),
    }


@pytest.fixture
def sessions():
    """Launchers started in sessions of their own; whatever they left running is killed at the end."""
    started: list[int] = []
    yield started
    kill_sessions(started)
    assert not [pid for sid in started for pid in session_members(sid)], "Ray processes outlived the test"


def kill_sessions(sids: list[int], wait_s: float = 10) -> None:
    """SIGKILL every process left in these sessions (Ray's agents outlive a SIGKILLed driver) and wait."""
    deadline = time.monotonic() + wait_s
    while (members := [pid for sid in sids for pid in session_members(sid)]) and time.monotonic() < deadline:
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def session_members(sid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session
        except OSError:  # the process ended while we looked
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def launch(env, sessions, *args, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(
        [sys.executable, "study/launch.py", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    sessions.append(proc.pid)
    stdout, stderr = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def probe(env, *args, prelude: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", prelude + PROBE, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def smoke_ids(limit: int) -> set[str]:
    return {cfg.trial_id() for cfg in grids.expand("smoke")[:limit]}


def test_dry_run_of_table1_without_datasets_says_what_is_missing(env, tmp_path):
    result = probe(env, "--grid", "table1", "--dry-run", "--results", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "26 curves, 370 trials" in result.stdout and "0 already ok" in result.stdout
    for missing in ("cifar10 not found", "celeba not found", "FID Inception weights not found"):
        assert missing in result.stdout
    assert "ray imported: False" in result.stderr and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args, prelude, message",
    [
        (["--grid", "tabel1"], "", "unknown grid 'tabel1'; known grids: digits, smoke"),
        (["--grid", "typo"], TYPO_GRID, "unknown config key 'latnet'"),
        (["--grid", "table1-cifar10"], "", "cifar10 not found"),
        (["--grid", "table1-cifar10"], "", "FID Inception weights not found"),
        (["--grid", "smoke", "--results", "{file}/results.parquet"], "", "cannot write the results store"),
    ],
)  # fmt: skip
def test_bad_input_stops_before_ray_with_one_message(env, tmp_path, args, prelude, message):
    (tmp_path / "file").write_text("")
    args = [arg.format(file=tmp_path / "file") for arg in args]
    if "--results" not in args:
        args += ["--results", str(tmp_path / "results.parquet")]
    result = probe(env, *args, prelude=prelude)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "ray imported: False" in result.stderr


def test_a_second_launcher_on_the_same_store_is_refused(env, tmp_path):
    with ResultStore(tmp_path / "results.parquet"):
        result = probe(env, "--grid", "smoke", "--results", str(tmp_path / "results.parquet"))
    assert result.returncode == 2
    assert f"another launcher (pid {os.getpid()})" in result.stderr and "ray imported: False" in result.stderr


@pytest.fixture(scope="module")
def smoke_store(env, tmp_path_factory):
    """One real launch of the first three smoke trials (two curves)."""
    path = tmp_path_factory.mktemp("smoke") / "results.parquet"
    started: list[int] = []
    result = launch(env, started, "--grid", "smoke", "--limit", "3", "--results", str(path))
    yield path, result
    kill_sessions(started)


@pytest.mark.slow
def test_launch_runs_the_grid_into_the_store_under_our_trial_ids(smoke_store):
    path, result = smoke_store
    assert result.returncode == 0, result.stderr
    df = pd.read_parquet(path)
    assert set(df["trial_id"]) == smoke_ids(3)  # our ids, not Tune's (Tune overwrites a reported trial_id)
    assert (df["status"] == "ok").all() and (df["grid"] == "smoke").all() and (df["search"] == "grid").all()
    assert (df["replicate"] == 0).all()
    assert len(re.findall(r"^\[\d/3\] ok ", result.stdout, re.M)) == 3
    assert "FD (digits-cnn)" in result.stdout and "FID" not in result.stdout.replace("FD (", "")


@pytest.mark.slow
def test_launching_a_finished_grid_runs_nothing(env, smoke_store, tmp_path):
    path, _ = smoke_store
    before = {part.name: part.stat().st_mtime_ns for part in live_parts(path)}
    result = probe(env, "--grid", "smoke", "--limit", "3", "--results", str(path))
    assert result.returncode == 0
    assert "all 3 trials already done" in result.stdout and "ray imported: False" in result.stderr
    assert {part.name: part.stat().st_mtime_ns for part in live_parts(path)} == before


@pytest.mark.slow
def test_optuna_search_lands_tagged_rows_and_reuses_measured_latents(env, sessions, smoke_store):
    path, _ = smoke_store
    args = ["--grid", "smoke", "--limit", "3", "--search", "optuna", "--search-trials", "3", "--results", str(path)]
    result = launch(env, sessions, *args)
    assert result.returncode == 0, result.stderr
    assert "already measured (fd_mvg) 4: " in result.stdout and ", 16: " in result.stdout
    df = pd.read_parquet(path)
    searched = df[df["search"] == "optuna"]
    assert 1 <= len(searched) <= 3 and (searched["status"] == "ok").all()
    assert searched["latent"].between(5, 15).all()  # 4 and 16 were answered from the store, not trained again
    assert set(df[df["search"] == "grid"]["trial_id"]) == smoke_ids(3)


@pytest.mark.slow
def test_a_killed_launcher_keeps_finished_trials_and_the_relaunch_runs_only_the_rest(env, sessions, tmp_path):
    path = tmp_path / "results.parquet"
    args = [sys.executable, "study/launch.py", "--grid", "smoke", "--results", str(path)]
    first = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    sessions.append(first.pid)
    deadline = time.monotonic() + 240
    while not live_parts(path):
        assert first.poll() is None and time.monotonic() < deadline, "no trial finished"
        if path.exists():
            pd.read_parquet(path)  # readable while trials land
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    kept = {part.name: (part.stat().st_ino, pd.read_parquet(part)["started_at"][0]) for part in live_parts(path)}
    assert 1 <= len(kept) < len(grids.GRIDS["smoke"])  # killed mid-grid
    assert len(pd.read_parquet(path)) == len(kept)

    second = launch(env, sessions, "--grid", "smoke", "--results", str(path))
    assert second.returncode == 0, second.stderr
    assert f"{len(kept)} already done" in second.stdout
    assert len(re.findall(r"^\[\d+/\d+\] ok ", second.stdout, re.M)) == len(grids.GRIDS["smoke"]) - len(kept)
    after = {part.name: (part.stat().st_ino, pd.read_parquet(part)["started_at"][0]) for part in live_parts(path)}
    assert {name: after[name] for name in kept} == kept  # the same files, never rerun
    df = pd.read_parquet(path)
    assert set(df["trial_id"]) == smoke_ids(len(grids.GRIDS["smoke"])) and (df["status"] == "ok").all()
    assert not (path / "_superseded").exists()
