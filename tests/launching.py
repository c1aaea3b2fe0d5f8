"""Running the launcher from tests as researchers run it: a subprocess in a session of its
own, cleaned up after.

Ray's processes (GCS, raylet, workers) join the launcher's session and outlive a SIGKILLed launcher,
so tests track sessions, not pids (the `sessions` fixture in conftest.py kills what is left and
checks nothing is).
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from study.layout import live_parts

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


# main() for each case in one interpreter (imports paid once): its exit status, stdout, stderr, and
# whether Ray was imported
MAINS = """
import contextlib, io, json, os, sys
from study.launch import main
results = []
for case in json.load(sys.stdin):
    saved = dict(os.environ)
    os.environ.update(case["env"])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(case["argv"])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    os.environ.clear()
    os.environ.update(saved)
    ray = "ray" in sys.modules
    results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "ray": ray})
json.dump(results, sys.stdout)
"""


def run_mains(env: dict, cases: list[dict]) -> list[dict]:
    """Each {"argv": [...], "env": {...}} through study.launch.main in one fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", MAINS],
        input=json.dumps(cases),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


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


def kill_and_wait(pid: int, wait_s: float = 30) -> None:
    """SIGKILL one process and wait until it is dead (its files closed), reaped or not."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return  # gone
        if state == "Z":
            return  # dead, its files closed; its parent has not reaped it yet
        time.sleep(0.02)
    raise TimeoutError(f"pid {pid} survived SIGKILL")


def snapshot(store: Path) -> dict[str, tuple[int, int]]:
    """Live part name -> (inode, mtime): a file rewritten or replaced gets a new pair."""
    return {part.name: (part.stat().st_ino, part.stat().st_mtime_ns) for part in live_parts(store)}


def read_by_every_tool(path) -> dict[str, tuple[list[str], list[str]]]:
    """tool -> (the files it read, the trial_ids of its rows), read the ways docs/store.md says."""
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
