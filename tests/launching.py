"""Running the launcher from tests as researchers run it: a subprocess in a session of its
own, cleaned up after.

Ray's processes (GCS, raylet, workers) join the launcher's session and outlive a SIGKILLed launcher,
so tests track sessions, not pids (the `sessions` fixture in conftest.py kills what is left and
checks nothing is).
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Runs main() in-process and says afterwards whether anything imported Ray.
PROBE = (
    "import sys; from study.launch import main; code = main(sys.argv[1:]); "
    "print('ray imported:', 'ray' in sys.modules, file=sys.stderr); sys.exit(code)"
)


def start(
    env: dict, sessions: list[int], *args: str, cwd: Path = REPO, **popen
) -> subprocess.Popen:
    """`python study/launch.py ARGS` in a new session, recorded in `sessions` for the clean-up."""
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "study" / "launch.py"), *args],
        cwd=cwd,
        env=env,
        text=True,
        start_new_session=True,
        **popen,
    )
    sessions.append(proc.pid)
    return proc


def launch(
    env: dict, sessions: list[int], *args: str, timeout: float = 300, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    """Run the launcher to the end and return what it printed."""
    proc = start(env, sessions, *args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def probe(env: dict, *args: str, prelude: str = "") -> subprocess.CompletedProcess:
    """main(ARGS) in a fresh interpreter; its stderr ends with whether Ray was imported."""
    return subprocess.run(
        [sys.executable, "-c", prelude + PROBE, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def kill_sessions(sids: list[int], wait_s: float = 10) -> None:
    """SIGKILL every process left in these sessions and wait for them to go."""
    deadline = time.monotonic() + wait_s
    while (
        members := [pid for sid in sids for pid in session_members(sid)]
    ) and time.monotonic() < deadline:
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of session `sid`, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # after "pid (comm)": state ppid pgrp session
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def read_by_every_tool(path) -> dict[str, tuple[list[str], list[str]]]:
    """tool -> (the files it read, the trial_ids of its rows), read the ways the README says."""
    import duckdb
    import polars as pl
    import pyarrow.dataset as ds

    dataset = ds.dataset(path, format="parquet")
    query = f"SELECT filename, trial_id FROM read_parquet('{path}/*.parquet', filename = true)"
    duck = duckdb.sql(query).fetchall()
    polars = pl.scan_parquet(f"{path}/*.parquet", include_file_paths="file").collect()
    return {
        "pyarrow.dataset": (dataset.files, dataset.to_table()["trial_id"].to_pylist()),
        "duckdb": ([file for file, _ in duck], [trial_id for _, trial_id in duck]),
        "polars": (polars["file"].to_list(), polars["trial_id"].to_list()),
    }
