"""python study/watchdog.py: ends the processes a launcher started once the launcher is gone.

A launcher that exits normally stops its local Ray cluster itself. One killed with SIGKILL cannot:
Ray's head processes share its fate, but their agents wait a minute or more for a dead head before
they exit. So the launcher starts this process (stdlib only, started before Ray) with a pipe on
its stdin that only the launcher holds: the pipe ends when the launcher exits, however it exits.
Until then, every half second, this records the launcher's descendants (it closes its stdout once
it has taken the first look); then it ends each one still running (checked by its start time, so a
recycled pid is never hit) and exits. A process started and orphaned between two looks (its parent
died with the launcher before we saw it) is found by the tag the launcher put in its environment
(WATCH_TAG), which every process Ray starts inherits. It ignores Ctrl-C, SIGTERM and SIGHUP: they
are for the launcher, and it must outlive the launcher by a moment.
"""

import contextlib
import os
import select
import signal
import sys
import time
from pathlib import Path

WATCH_TAG = "DAE_STUDY_WATCHED"  # its value names one launch: the launcher's pid and start time
POLL_S = 0.5
GRACE_S = 2.0  # SIGTERM first, then SIGKILL what is left after this


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every running (not zombie) process, from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # after "pid (comm)": state, ppid, ... and the start time 20 fields after the state
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we looked
            continue
        if fields[0] != "Z":
            table[int(stat.parent.name)] = (int(fields[1]), fields[19])
    return table


def _descendants(roots: set[int], table: dict[int, tuple[int, str]]) -> set[int]:
    found = set()
    frontier = set(roots)
    while frontier:
        frontier = {pid for pid, (parent, _) in table.items() if parent in frontier} - found
        found |= frontier
    return found


def _same(processes: dict[int, str], table: dict[int, tuple[int, str]]) -> set[int]:
    """The pids in `processes` (pid -> start time) still held by that very process."""
    return {pid for pid, start in processes.items() if table.get(pid, (0, ""))[1] == start}


def _track(tracked: dict[int, str], launcher: dict[int, str]) -> None:
    """Add every process descended from the launcher, or from one tracked before (the parent of a
    Ray agent dies before the agent does), to `tracked`; a recycled pid is never a root."""
    table = _processes()
    roots = _same(launcher, table) | _same(tracked, table)
    for pid in _descendants(roots, table) - {os.getpid()}:
        tracked.setdefault(pid, table[pid][1])


def _track_tagged(tracked: dict[int, str], tag: str) -> None:
    """Add every process whose environment carries this launch's tag to `tracked`."""
    marker = f"{WATCH_TAG}={tag}".encode() + b"\0"
    table = _processes()
    for pid in set(table) - set(tracked) - {os.getpid()}:
        with contextlib.suppress(OSError):  # ended while we looked, or not ours to read
            if marker in Path(f"/proc/{pid}/environ").read_bytes() + b"\0":
                tracked[pid] = table[pid][1]


def _signal_all(tracked: dict[int, str], signum: int) -> dict[int, str]:
    """Send signum to each tracked process that is still the same process; return those."""
    alive = _same(tracked, _processes())
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
    return {pid: tracked[pid] for pid in alive}


def watch(launcher_pid: int, pipe: int) -> None:
    """Record the launcher's descendants until the `pipe` file descriptor ends, then end them."""
    launcher = {launcher_pid: _processes().get(launcher_pid, (0, ""))[1]}
    tracked: dict[int, str] = {}
    _track(tracked, launcher)
    os.close(1)  # the first look is taken: whoever waits on our stdout may go on
    while True:
        _track(tracked, launcher)
        readable = select.select([pipe], [], [], POLL_S)[0]
        if readable and not os.read(pipe, 4096):  # end of file: the launcher is done, or gone
            break
    _track(tracked, launcher)  # what they started since the last look
    if tag := os.environ.get(WATCH_TAG):
        _track_tagged(tracked, tag)
    tracked.pop(launcher_pid, None)
    left = _signal_all(tracked, signal.SIGTERM)
    _wait_gone(left, GRACE_S)
    _wait_gone(_signal_all(left, signal.SIGKILL), GRACE_S)  # exit only once they are gone


def _wait_gone(processes: dict[int, str], seconds: float) -> None:
    """Wait up to `seconds` until none of `processes` runs (a killed process takes a moment)."""
    deadline = time.monotonic() + seconds
    while _signal_all(processes, 0) and time.monotonic() < deadline:
        time.sleep(0.05)


if __name__ == "__main__":
    for ignored in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(ignored, signal.SIG_IGN)
    watch(int(sys.argv[1]), sys.stdin.fileno())
