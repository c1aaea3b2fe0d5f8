"""study/watchdog.py without Ray: a stand-in launcher starts a process tree and the watchdog."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from launching import REPO, session_members

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
