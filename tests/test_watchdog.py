"""study/watchdog.py: without Ray, a stand-in launcher starts a process tree and the watchdog; then
a real launcher SIGKILLed mid-grid, whose watchdog ends Ray's processes, and whose store keeps
every finished row for the relaunch (a part damaged meanwhile is set aside)."""

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
from launching import REPO, launch, read_by_every_tool, session_members, snapshot, start

from study import grids
from study.layout import (
    CHECKPOINTS,
    CORRUPT,
    LOCK,
    PLAN,
    SAMPLES,
    SUPERSEDED,
    TEMP_PREFIX,
    TUNE,
    live_parts,
    read_part,
)
from study.watchdog import WATCH_TAG

SLEEPER = "import time; time.sleep(600)"
# A child that starts a grandchild, as Ray's raylet starts its agents, and prints its pid.
CHILD = (
    "import subprocess, sys; "
    f"print(subprocess.Popen([sys.executable, '-c', {SLEEPER!r}]).pid, flush=True); {SLEEPER}"
)
# The stand-in launcher tags its environment and starts the child, then the watchdog as
# study/runner.py does (waiting for its first look), and prints the pids: child, grandchild,
# watchdog.
LAUNCHER = f"""
import os, subprocess, sys
os.environ[{WATCH_TAG!r}] = "launch-1"
child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], stdout=subprocess.PIPE, text=True)
grandchild = child.stdout.readline().strip()
dog = subprocess.Popen([sys.executable, {str(REPO / "study" / "watchdog.py")!r}, str(os.getpid())],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
dog.stdout.read()
print(child.pid, grandchild, dog.pid, flush=True)
{SLEEPER}
"""


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_and_wait_for(launcher: subprocess.Popen, dog: int) -> None:
    """SIGKILL the stand-in launcher, then wait until its watchdog has done its work and exited."""
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 60
    while running(dog):
        assert time.monotonic() < deadline, "the watchdog never finished"
        time.sleep(0.05)


def test_a_killed_launchers_processes_end_with_it_even_orphaned_ones(sessions):
    """SIGKILL leaves the launcher no time to clean up: the watchdog ends what it had started,
    including a grandchild whose parent died first (reparented, as Ray's agents are when the raylet
    dies with the launcher), and nothing else."""
    bystander = subprocess.Popen([sys.executable, "-c", SLEEPER])
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    sessions.append(launcher.pid)
    try:
        child, grandchild, dog = map(int, launcher.stdout.readline().split())
        os.kill(child, signal.SIGKILL)  # the grandchild is an orphan now
        kill_and_wait_for(launcher, dog)
        assert not running(grandchild) and not session_members(launcher.pid)
        assert running(bystander.pid)  # not the launcher's: left alone
    finally:
        bystander.kill()
        bystander.wait()


def test_a_process_orphaned_before_the_watchdog_saw_it_is_found_by_its_tag(sessions):
    """A Ray process started and orphaned between two looks never shows as a descendant: the tag in
    its environment names it. A process tagged for another launch is left alone."""
    theirs = subprocess.Popen([sys.executable, "-c", SLEEPER], env={**os.environ, WATCH_TAG: "2"})
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    sessions.append(launcher.pid)
    # not the launcher's descendant, as if reparented before the first look: only the tag says so
    ours = subprocess.Popen(
        [sys.executable, "-c", SLEEPER], env={**os.environ, WATCH_TAG: "launch-1"}
    )
    try:
        dog = int(launcher.stdout.readline().split()[2])
        kill_and_wait_for(launcher, dog)
        ours.wait(timeout=10)  # ended by the watchdog (it fails here if not)
        assert running(theirs.pid)
    finally:
        for process in (ours, theirs):
            process.kill()
            process.wait()


# ------------------------------------------------------------------ killed launcher, corrupt part


@pytest.mark.slow
def test_a_killed_launcher_loses_nothing_and_a_corrupt_part_is_set_aside(
    random_weights_env, sessions, tmp_path
):
    """SIGKILL mid-grid: pandas, pyarrow.dataset, DuckDB and Polars read the store at every poll
    and see whole rows only; the relaunch reruns only the unfinished trials and the one whose part
    file we then damaged (reported, moved to _corrupt/, not trusted)."""
    path = tmp_path / "results.parquet"
    grid = ["--grid", "smoke", "--limit", "5", "--results", str(path)]
    smoke = grids.expand("smoke")[:5]
    env = random_weights_env
    first = start(env, sessions, *grid, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while len(live_parts(path)) < 2:
        assert first.poll() is None and time.monotonic() < deadline, "no two trials finished"
        if any(path.glob("*.parquet")):  # readers while rows land: complete parts only
            before = len(live_parts(path))
            assert before <= len(pd.read_parquet(path)) <= len(live_parts(path))
            for tool, (files, trial_ids) in read_by_every_tool(path).items():
                assert all(f.endswith(".parquet") and "/." not in f for f in files), (tool, files)
                assert len(set(trial_ids)) == len(trial_ids) == len(files), tool
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    # Ray's agents used to outlive a SIGKILLed launcher for a minute; its watchdog ends them
    watchdog_gone(first.pid)
    assert not session_members(first.pid), "Ray processes outlived the launcher's watchdog"
    # every visible file is a whole part; a write cut short left only a hidden temp file
    for part in live_parts(path):
        read_part(part)
    launchers_own = {LOCK, TUNE, PLAN, SAMPLES, CHECKPOINTS}
    temp_files = {p.name for p in path.glob(f"{TEMP_PREFIX}*")}
    assert {p.name for p in path.iterdir()} - {p.name for p in live_parts(path)} <= (
        launchers_own | temp_files
    )
    kept = snapshot(path)
    assert 2 <= len(kept) < len(smoke)  # killed mid-grid
    damaged, *intact = sorted(live_parts(path))
    # as a crash during a copy or a sync would leave it
    damaged.write_bytes(damaged.read_bytes()[:200])

    second = launch(env, sessions, *grid)
    assert second.returncode == 0, second.stderr
    assert re.search(
        rf"warning: unreadable part file moved to .*/{CORRUPT}/{damaged.stem}\.", second.stderr
    )
    assert f"{len(intact)} already done" in second.stdout
    assert len(re.findall(r"^\[\d+/\d+\] ok ", second.stdout, re.M)) == len(smoke) - len(intact)
    after = snapshot(path)
    assert {part.name: after[part.name] for part in intact} == {
        part.name: kept[part.name] for part in intact
    }
    df = pd.read_parquet(path)
    assert (
        sorted(df["trial_id"]) == sorted(cfg.trial_id() for cfg in smoke)
        and (df["status"] == "ok").all()
    )
    assert [p.name.split(".")[0] for p in (path / CORRUPT).iterdir()] == [damaged.stem]
    assert not (path / SUPERSEDED).exists() and not list(path.glob(".tmp-*"))


def watchdog_gone(sid: int, wait_s: float = 60) -> None:
    """Wait until the launcher's watchdog (study/watchdog.py) in session `sid` has done its work:
    it exits only after it has ended every process the launcher left."""
    deadline = time.monotonic() + wait_s
    while any(is_watchdog(pid) for pid in session_members(sid)):
        assert time.monotonic() < deadline, "the watchdog is still running"
        time.sleep(0.1)


def is_watchdog(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return b"study/watchdog.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False
