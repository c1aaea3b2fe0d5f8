"""Reliability: every failure becomes a visible, harmless row; restarts lose nothing; bad input
gets one clear error.

Faults go in through the real entry points: the launcher CLI in a subprocess where the fault is
about the launcher, run_trial and the store in-process where that is faster. One launch of a
five-trial grid file carries the trial-level faults, so Ray starts once for all of them:

    trial             fault injected                         row expected
    digits            none                                   ok
    digits, lr=1e30   the loss goes non-finite               diverged, its epoch, partial losses
    cifar10 latent 4  data_batch_1 ends half-way while the   failed, DatasetCorrupt, ran once
                      trial reads (its data_root is relative
                      to the launcher's folder)
    cifar10 latent 6  its worker SIGKILLed on the first      ok, from Ray's retry
                      attempt
    cifar10 latent 8  its worker SIGKILLed on every attempt  failed, "its worker died 3 times"

Each cifar10 trial reads data_batch_1 from a named pipe that the test serves, so every attempt of
that trial announces itself by opening the pipe: "killed mid-run", "truncated mid-run" and "ran
exactly N times" are then deterministic instead of a race against a timer. While the last attempt
of latent 8 is held open, a second launcher tries the same store.
"""

import ast
import contextlib
import dataclasses
import json
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import ALIAS_BOMB
from launching import (
    REPO,
    kill_sessions,
    launch,
    probe,
    read_by_every_tool,
    session_members,
    start,
)
from sklearn.mixture import GaussianMixture

from study import deaths, grids
from study.layout import CHECKPOINTS, CORRUPT, FOREIGN, SAMPLES, SUPERSEDED, live_parts, read_part
from study.store import ResultStore
from trainables import data, digits_cnn, features, priors
from trainables.config import choices, make_config
from trainables.schema import RESULT_COLUMNS
from trainables.scored_sets import SCORED_SETS
from trainables.testing import write_celeba_fixture, write_cifar10_fixture
from trainables.trial import new_row, run_trial

# fp32 and the 8x8x8f decoder: what a CPU runs fast (CIFAR-10 defaults to bf16 and 8x8x1024)
CIFAR_TINY = {
    "dataset": "cifar10",
    "filters": 4,
    "epochs": 1,
    "batch_size": 16,
    "n_samples": 2,
    "precision": "fp32",
    "decoder_width": "8f",
}
DIVERGING = {**grids.SMOKE_BASE, "lr": 1e30, "epochs": 2}


# In-process trials run one torch thread (launched trials already do: --cpus-per-trial 1).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Offline launcher environment: FID weights in the real layout (random values), one digits-cnn
    cache."""
    root = tmp_path_factory.mktemp("reliability")
    weights = root / features.FID_WEIGHTS_FILE
    torch.save(features.random_inception_state_dict(), weights)
    # An untrained digits-cnn, cached where every trial looks: these tests judge what becomes of
    # rows, not the scores, and each process (launcher workers included) is spared training one.
    (root / "cache").mkdir()
    torch.save(digits_cnn.DigitsCNN().state_dict(), root / "cache" / digits_cnn.DIGITS_CNN_FILE)
    return {
        **os.environ,
        "DAE_DATA_ROOT": str(root / "no-data"),
        "DAE_FID_WEIGHTS": str(weights),
        "DAE_CACHE_DIR": str(root / "cache"),
    }


# --------------------------------------------------------------------------- the faults launch


class PipedBatch:
    """A CIFAR-10 fixture whose data_batch_1 is a named pipe; `plan[i]` is what attempt i of its
    trial gets.

    "feed": the real batch; "truncate": its first half, then end of file (a file cut short
    mid-run); "kill": the reading process, a Ray worker, is SIGKILLed (a lost worker). An attempt
    beyond the plan is killed too and counted, so an unwanted retry fails the test instead of
    hanging it. hooks[i] runs before attempt i is served.
    """

    def __init__(
        self, root: Path, plan: list[str], hooks: dict[int, Callable[[], None]] | None = None
    ):
        write_cifar10_fixture(root)
        self.root, self.plan, self.hooks = root, plan, hooks or {}
        self.pipe = root / data.CIFAR_DIR / "data_batch_1"
        self.batch = self.pipe.read_bytes()
        self.pipe.unlink()
        os.mkfifo(self.pipe)
        self.readers: list[int] = []  # pid of each attempt
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    fd = os.open(
                        self.pipe, os.O_WRONLY | os.O_NONBLOCK
                    )  # ENXIO until a trial opens it
                except OSError:
                    time.sleep(0.05)
                    continue
                with open(
                    fd, "wb"
                ) as pipe:  # owns the fd: closed exactly once, whatever the attempt did
                    self._attempt(pipe)
        except (
            BaseException
        ) as exc:  # reported by the test, which cannot see this thread's exceptions
            self.errors.append(exc)

    def _attempt(self, pipe) -> None:
        os.set_blocking(pipe.fileno(), True)
        self.readers.append(reader_of(self.pipe))
        attempt = len(self.readers) - 1
        if attempt in self.hooks:
            self.hooks[attempt]()
        action = self.plan[attempt] if attempt < len(self.plan) else "kill"
        if action == "kill":
            kill_and_wait(self.readers[-1])
            return
        pipe.write(self.batch if action == "feed" else self.batch[: len(self.batch) // 2])
        pipe.close()  # end of file for the reader
        while has_open(
            self.readers[-1], self.pipe
        ):  # else its lingering read end looks like a new attempt
            time.sleep(0.02)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def reader_of(pipe: Path, wait_s: float = 30) -> int:
    """The pid that has `pipe` open for reading (the worker running the trial)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for proc in Path("/proc").glob("[0-9]*"):
            if has_open(int(proc.name), pipe):
                return int(proc.name)
        time.sleep(0.05)
    raise TimeoutError(f"nobody has {pipe} open for reading")


def has_open(pid: int, pipe: Path) -> bool:
    """Whether process `pid` holds `pipe` open for reading, from /proc/PID/fd and fdinfo."""
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        with contextlib.suppress(OSError):  # the process or the fd went away while we looked
            if os.readlink(fd) == str(pipe):
                info = (
                    fd.parent.parent / "fdinfo" / fd.name
                ).read_text()  # our own write end links there too
                if int(info.split("flags:")[1].split()[0], 8) & os.O_ACCMODE == os.O_RDONLY:
                    return True
    return False


def kill_and_wait(pid: int, wait_s: float = 30) -> None:
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


@dataclasses.dataclass
class FaultsLaunch:
    result: subprocess.CompletedProcess
    store: Path
    rows: pd.DataFrame  # the store after the launch, indexed by trial_id
    ids: dict[str, str]  # fault name -> trial_id
    pipes: dict[str, PipedBatch]
    second: subprocess.CompletedProcess  # the launcher that tried the same store
    dry_run: subprocess.CompletedProcess  # and a dry run of it
    parts_before_second: dict[str, tuple[int, int]]
    parts_after_second: dict[str, tuple[int, int]]
    launcher_pid: int

    def row(self, name: str) -> pd.Series:
        return self.rows.loc[self.ids[name]]


@pytest.fixture(scope="module")
def faults(env, tmp_path_factory):
    """Launch the five-trial faults grid once (see the module docstring); collect what happened."""
    root = tmp_path_factory.mktemp("faults")
    store, grid_file = root / "results.parquet", root / "faults.json"
    cifar = {**CIFAR_TINY, "verify_checksums": False}
    entries = {
        "ok": grids.SMOKE_BASE,
        "diverged": DIVERGING,
        # relative, as a user may write it: the launcher's folder, not the Ray worker's
        "crash": {**cifar, "latent": 4, "data_root": os.path.relpath(root / "crash", REPO)},
        "lost-once": {**cifar, "latent": 6, "data_root": str(root / "lost-once")},
        "lost-always": {**cifar, "latent": 8, "data_root": str(root / "lost-always")},
    }
    grid_file.write_text(json.dumps(list(entries.values())))
    seen: dict = {}
    started: list[int] = []

    def second_launcher() -> None:
        """While the first launcher is mid-grid (this trial is held), a second one tries the same
        store."""
        deadline = time.monotonic() + 120
        while (
            len(live_parts(store)) < 3 and time.monotonic() < deadline
        ):  # let some rows land first
            time.sleep(0.1)
        seen["before"] = snapshot(store)
        seen["second"] = probe(env, "--grid-file", str(grid_file), "--results", str(store))
        seen["after"] = snapshot(store)
        dry = ["--grid-file", str(grid_file), "--results", str(store), "--dry-run"]
        seen["dry"] = probe(env, *dry)  # still held: the trial waits for this hook to return

    pipes = {
        "crash": PipedBatch(root / "crash", ["truncate"]),
        "lost-once": PipedBatch(root / "lost-once", ["kill", "feed"]),
        "lost-always": PipedBatch(
            root / "lost-always", ["kill"] * (1 + deaths.RETRIED), {2: second_launcher}
        ),
    }
    try:
        proc = start(
            env,
            started,
            "--grid-file",
            str(grid_file),
            "--results",
            str(store),
            "--data-on-nodes",  # each attempt reads its pipe: the launcher must not read it first
            stdout=-1,
            stderr=-1,
        )
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        for pipe in pipes.values():
            pipe.close()
        kill_sessions(started)
    assert not session_members(proc.pid), "Ray processes outlived the launch"
    for pipe in pipes.values():
        assert not pipe.errors, pipe.errors
    rows = pd.read_parquet(store)
    return FaultsLaunch(
        result=subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr),
        store=store,
        rows=rows.set_index("trial_id", drop=False),
        ids={name: make_config(entry).trial_id() for name, entry in entries.items()},
        pipes=pipes,
        second=seen["second"],
        dry_run=seen["dry"],
        parts_before_second=seen["before"],
        parts_after_second=seen["after"],
        launcher_pid=proc.pid,
    )


@pytest.mark.slow
def test_every_trial_of_the_faults_grid_ends_as_exactly_one_row(faults):
    """The study goes on past every fault: five trials, five rows, the launch exits 1 because some
    failed."""
    assert faults.result.returncode == 1, faults.result.stderr
    assert faults.rows["trial_id"].is_unique and set(faults.rows.index) == set(faults.ids.values())
    statuses = {name: faults.row(name)["status"] for name in faults.ids}
    assert statuses == {
        "ok": "ok",
        "diverged": "diverged",
        "crash": "failed",
        "lost-once": "ok",
        "lost-always": "failed",
    }
    assert "Traceback" not in faults.result.stderr
    assert (faults.rows["grid"] == "faults").all()  # tagged with the grid file's stem


@pytest.mark.slow
def test_a_diverging_trial_is_stored_with_its_epoch_and_partial_losses(faults):
    row = faults.row("diverged")
    history = list(row["loss_history"])
    assert row["diverged_epoch"] == len(history) - 1 < DIVERGING["epochs"]  # stopped early
    assert all(math.isfinite(loss) for loss in history[:-1]) and not math.isfinite(history[-1])
    assert f"non-finite in epoch {int(row['diverged_epoch'])}" in row["error"]
    assert all(pd.isna(row[f"fd_{name}"]) for name in SCORED_SETS)
    assert re.search(r"^\[\d/5\] diverged digits .* lr=1e\+30 ", faults.result.stdout, re.M)


@pytest.mark.slow
def test_a_trial_whose_data_breaks_mid_run_is_a_failed_row_and_is_not_retried(faults):
    """A deterministic error is a row, not a Ray failure: the pipe was opened exactly once."""
    row = faults.row("crash")
    assert row["error"].startswith("DatasetCorrupt: ") and "data_batch_1" in row["error"]
    assert "DatasetCorrupt" in row["traceback"] and "_read_cifar_batch" in row["traceback"]
    assert len(faults.pipes["crash"].readers) == 1
    assert not (faults.store / SUPERSEDED).exists()  # a rerun would have superseded the first row
    assert re.search(
        r"^\[\d/5\] failed cifar10 .* latent 4: DatasetCorrupt", faults.result.stdout, re.M
    )


@pytest.mark.slow
def test_a_worker_killed_once_is_retried_by_ray_and_its_row_is_the_real_one(faults):
    pipe = faults.pipes["lost-once"]
    assert len(pipe.readers) == 2 and pipe.readers[0] != pipe.readers[1]  # a fresh worker process
    row = faults.row("lost-once")
    assert row["status"] == "ok" and all(math.isfinite(row[f"fd_{name}"]) for name in SCORED_SETS)
    retried = re.search(
        r"^worker lost running cifar10 dae f4 d1 .* latent 6: its node is up: .*; retrying$",
        faults.result.stdout,
        re.M,
    )
    assert retried, (
        faults.result.stdout
    )  # seen missing once in ~6 full-suite runs: the launcher's output says why


@pytest.mark.slow
def test_a_worker_killed_on_every_attempt_ends_as_a_failed_row(faults):
    pipe = faults.pipes["lost-always"]
    assert len(pipe.readers) == 1 + deaths.RETRIED  # Ray's retries, and not one more
    row = faults.row("lost-always")
    assert row["error"].startswith(f"its worker died {1 + deaths.RETRIED} times on a live node")
    assert row["latent"] == 8 and row["dataset"] == "cifar10"  # the config is in the row
    assert "death 1: The actor died" in row["traceback"]


@pytest.mark.slow
def test_a_second_launcher_on_a_busy_store_is_refused_and_changes_nothing(faults):
    for second in (faults.second, faults.dry_run):  # a dry run says what the launch would meet
        assert second.returncode == 2
        assert f"another launcher (pid {faults.launcher_pid}) is writing to" in second.stderr
        assert "ray imported: False" in second.stderr and "Traceback" not in second.stderr
    assert faults.parts_before_second  # rows had landed: it had something to break
    # no part it saw changed (the first launcher's other trials may land meanwhile)
    before = faults.parts_before_second
    assert {name: faults.parts_after_second.get(name) for name in before} == before


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


@pytest.mark.slow
def test_a_relaunch_keeps_ok_and_diverged_rows_and_plans_only_the_failed_trials(faults, env):
    """A divergence is a result the seed fixes; a failure is the machinery's, so only failed trials
    run again."""
    args = [
        "--grid-file",
        str(faults.store.parent / "faults.json"),
        "--results",
        str(faults.store),
        "--dry-run",
    ]
    keep, rerun = run_mains(
        env, [{"argv": args, "env": {}}, {"argv": [*args, "--rerun-diverged"], "env": {}}]
    )
    assert keep["code"] == 0 and f"3 already done in {faults.store}, 2 to run" in keep["stdout"]
    assert rerun["code"] == 0 and f"2 already done in {faults.store}, 3 to run" in rerun["stdout"]


# ------------------------------------------------------------------ killed launcher, corrupt part


@pytest.mark.slow
def test_a_killed_launcher_loses_nothing_and_a_corrupt_part_is_set_aside(env, sessions, tmp_path):
    """SIGKILL mid-grid: pandas, pyarrow.dataset, DuckDB and Polars read the store at every poll
    and see whole rows only; the relaunch reruns only the unfinished trials and the one whose part
    file we then damaged (reported, moved to _corrupt/, not trusted)."""
    path = tmp_path / "results.parquet"
    grid = ["--grid", "smoke", "--limit", "5", "--results", str(path)]
    smoke = grids.expand("smoke")[:5]
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
    for part in live_parts(path):
        read_part(
            part
        )  # every visible file is a whole part; a write cut short left only a hidden temp file
    assert {p.name for p in path.iterdir()} - {p.name for p in live_parts(path)} <= {
        ".lock",
        "_tune",
        SAMPLES,
        CHECKPOINTS,
    } | {p.name for p in path.glob(".tmp-*")}
    kept = snapshot(path)
    assert 2 <= len(kept) < len(smoke)  # killed mid-grid
    damaged, *intact = sorted(live_parts(path))
    damaged.write_bytes(
        damaged.read_bytes()[:200]
    )  # as a crash during a copy or a sync would leave it

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
def test_sigterm_while_ray_starts_stops_the_launch_with_143(env, sessions, tmp_path):
    """The first seconds after Ray starts used to ignore a stop, and SIGTERM ended in a native
    stack dump (134)."""
    path = tmp_path / "results.parquet"
    proc = start(env, sessions, "--grid", "smoke", "--results", str(path), stdout=-1, stderr=-1)
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
    env, sessions, tmp_path
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
    proc = start(env, sessions, *args, "--results", str(path), stdout=-1, stderr=-1)
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
def test_a_store_that_fails_mid_run_gives_one_message_and_exit_3(env, sessions, tmp_path):
    """_superseded/ is a file, so the rerun of a failed trial cannot keep the old row: one line
    naming the path and the cause, and exit 3 (it was a 100-line double traceback, and exit 1)."""
    path, grid_file = tmp_path / "results.parquet", tmp_path / "broken.json"
    root = write_cifar10_fixture(tmp_path / "data")  # a batch cut short: the trial fails at once
    batch = root / data.CIFAR_DIR / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[:100])
    entry = {**CIFAR_TINY, "verify_checksums": False, "data_root": str(root)}
    grid_file.write_text(json.dumps([entry]))
    with ResultStore(path) as store:
        store.write({**new_row(make_config(entry)), "status": "failed", "error": "first try"})
    (path / SUPERSEDED).write_text("a file where the folder belongs")
    # the trial reads its data itself (the launcher would refuse the cut batch before Ray starts)
    args = ["--grid-file", str(grid_file), "--results", str(path), "--data-on-nodes"]
    result = launch(env, sessions, *args)
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


def test_files_the_launcher_does_not_own_are_named_and_never_crash_it(env, tmp_path):
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
        env, [{"argv": [*args, "--dry-run"], "env": {}}, {"argv": args, "env": {}}]
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


WRITER = """
import sys
from study.store import ResultStore
from trainables.config import make_config
from trainables.schema import RESULT_COLUMNS
store = ResultStore(sys.argv[1])
for i in range(100_000):  # eight trials, each row rewritten over and over (superseding the last)
    cfg = make_config({"dataset": "digits", "latent": 1 + i % 8})
    row = dict.fromkeys(RESULT_COLUMNS)
    row.update(cfg.science(), trial_id=cfg.trial_id(), status="failed", error=f"write {i}")
    row["loss_history"] = [1.0] * 500
    store.write(row)
    if i == 7:
        print("all eight written", flush=True)
"""


def test_a_store_writer_killed_at_random_moments_never_leaves_a_broken_table(tmp_path):
    """SIGKILL lands mid-write: readers never see a partial part, and every trial written keeps a
    live row."""
    path = tmp_path / "results.parquet"
    rng = np.random.default_rng(0)
    for _ in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline() == "all eight written\n"
        time.sleep(rng.uniform(0.3, 0.8))
        writer.kill()
        writer.wait()
        assert len(pd.read_parquet(path)) == len(live_parts(path))
        with ResultStore(path) as store:  # what a relaunch sees
            assert store.corrupt == [] and len(store.status) == 8
    assert list((path / SUPERSEDED).iterdir())  # it did rewrite rows while being killed


# ------------------------------------------------------------------ trial-level faults, in-process


TINY_DIGITS = {**grids.SMOKE_BASE, "n_samples": 50}


def test_an_out_of_memory_error_is_a_failed_row_naming_it(tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr("trainables.models.AutoEncoder.forward", out_of_memory)
    row = run_trial({**TINY_DIGITS, "cache_dir": str(tmp_path)})
    assert row["status"] == "failed" and row["trial_id"] == make_config(TINY_DIGITS).trial_id()
    assert row["error"] == "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"
    assert "in out_of_memory" in row["traceback"] and "OutOfMemoryError" in row["traceback"]


def unexplained_gaps(row: dict) -> list[str]:
    """Float columns of an ok row that are None or not finite without a column that says why."""
    reasons = {
        "fd_gmm": row["gmm_error"],
        "heldout_ll_gmm": row["gmm_error"],
        "heldout_ll_gap_per_dim": row["gmm_error"],
        "code_abs_skew": row["code_dead_units"] == row["latent"],  # no live unit to measure
        "code_excess_kurtosis": row["code_dead_units"] == row["latent"],
    }
    gaps = []
    for name, kind in RESULT_COLUMNS.items():
        value = row[name]
        if kind is float and (value is None or not math.isfinite(value)) and not reasons.get(name):
            gaps.append(f"{name}={value}")
    return gaps


def few_codes(monkeypatch, n_train: int, dead_every: int = 0) -> None:
    """Train on n_train images only (a small trial); with dead_every, zero every dead_every-th
    latent unit."""
    from trainables import trial

    load, encode = trial.load_for_config, trial._encode

    def few(cfg):
        full = load(cfg)
        return dataclasses.replace(full, train=full.train[:n_train])

    def with_dead_units(model, images):
        codes, bce = encode(model, images)
        codes[:, ::dead_every] = 0.0
        return codes, bce

    monkeypatch.setattr(trial, "load_for_config", few)
    if dead_every:
        monkeypatch.setattr(trial, "_encode", with_dead_units)


def test_a_singular_covariance_and_an_unconverged_gmm_are_recorded_not_fatal(env, monkeypatch):
    """More latent units (16) than training codes (12), half of them dead, and EM stopped after one
    step."""
    few_codes(monkeypatch, n_train=12, dead_every=2)
    config = {**TINY_DIGITS, "latent": 16, "batch_size": 4, "gmm_max_iter": 1}
    row = run_trial({**config, "cache_dir": env["DAE_CACHE_DIR"]})
    assert row["status"] == "ok", row["traceback"]
    assert row["n_train"] == 12 and row["code_dead_units"] == 8
    assert row["mvg_jitter"] > 0  # what was done to the singular covariance
    assert row["gmm_converged"] is False and row["gmm_n_iter"] == 1 and row["gmm_error"] is None
    assert all(math.isfinite(row[f"fd_{name}"]) for name in SCORED_SETS)
    assert unexplained_gaps(row) == []


@pytest.mark.parametrize("fits_from", [5, None], ids=["fewer-components", "never"])
def test_a_gmm_that_will_not_fit_is_recorded_with_what_was_tried(env, monkeypatch, fits_from):
    """The mixture fails at 10 components (and, in `never`, at any size): the row says what was done
    instead."""
    real_fit = GaussianMixture.fit

    def fit(self, codes, y=None):
        if fits_from is None or self.n_components > fits_from:
            raise ValueError(
                "Fitting the mixture model failed because some components have ill-defined "
                "covariance"
            )
        return real_fit(self, codes, y)

    monkeypatch.setattr(GaussianMixture, "fit", fit)
    few_codes(monkeypatch, n_train=200)
    row = run_trial({**TINY_DIGITS, "cache_dir": env["DAE_CACHE_DIR"]})
    assert row["status"] == "ok", row["traceback"]
    tries = len(priors.GMM_REG_COVARS)
    if fits_from:
        assert (row["gmm_components_used"], row["gmm_attempts"], row["gmm_error"]) == (
            5,
            tries + 1,
            None,
        )
        assert math.isfinite(row["fd_gmm"])
    else:
        assert (
            row["gmm_components_used"] == 0 and row["gmm_attempts"] == 4 * tries
        )  # 10, 5, 2, 1 components
        assert row["gmm_error"].startswith("ValueError: Fitting the mixture model failed")
        assert row["fd_gmm"] is None
    assert all(math.isfinite(row[f"fd_{name}"]) for name in SCORED_SETS if name != "gmm")
    assert unexplained_gaps(row) == []


# --------------------------------------------------------------------------- safe loading


class Payload:
    """Unpickling this creates a directory: the proof that a loader executed code from a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_a_malicious_digits_cnn_cache_is_not_executed_but_replaced(tmp_path, monkeypatch):
    marker, cache = tmp_path / "pwned", tmp_path / "cache"
    cache.mkdir()
    torch.save(Payload(marker), cache / digits_cnn.DIGITS_CNN_FILE)
    untrained_digits_cnn(monkeypatch)
    digits_cnn.load_digits_cnn(cache)
    assert not marker.exists()
    assert_plain_digits_cnn(cache / digits_cnn.DIGITS_CNN_FILE)


def untrained_digits_cnn(monkeypatch) -> None:
    """load_digits_cnn() builds an untrained network where it would train one: these tests look
    at the file only."""
    monkeypatch.setattr(
        digits_cnn, "train_digits_cnn", lambda *args, **kwargs: digits_cnn.DigitsCNN().eval()
    )


def assert_plain_digits_cnn(path: Path) -> None:
    """The cache file now holds a plain state dict (tensors only) of the digits-cnn."""
    assert set(torch.load(path, weights_only=True)) == set(digits_cnn.DigitsCNN().state_dict())


def flat_extractor() -> features.Extractor:
    """A feature 'network' that only flattens: reference_stats's caching without a real network."""
    return features.Extractor("flat", 12, torch.nn.Flatten(), torch.device("cpu"), "w0")


def test_malicious_weights_and_caches_are_refused_without_running_them(tmp_path):
    """FID weights, reference statistics, the CelebA cache and a CIFAR-10 batch, each replaced by a
    payload."""
    marker = tmp_path / "pwned"
    weights = tmp_path / "weights.pth"
    torch.save({"conv.weight": Payload(marker)}, weights)
    with pytest.raises(pickle.UnpicklingError):
        features.inception_network(weights=weights)

    extractor = flat_extractor()
    images = torch.randint(0, 256, (4, 3, 2, 2), dtype=torch.uint8)
    features.reference_stats("x", images, extractor, tmp_path)
    (stats,) = (tmp_path / features.STATS_DIR).iterdir()
    np.savez(stats, mu=np.array([Payload(marker)], dtype=object), sigma=np.zeros((12, 12)))
    with contextlib.suppress(
        ValueError
    ):  # refused ("allow_pickle=False"), or recomputed once caches self-heal
        features.reference_stats("x", images, extractor, tmp_path)

    root = write_celeba_fixture(tmp_path / "data", n_train=3, n_valid=0, n_test=2)
    cache = tmp_path / "cache" / "celeba64" / "train-3.npy"
    cache.parent.mkdir(parents=True)
    np.save(cache, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    assert data.load_dataset("celeba", root, tmp_path / "cache", verify=False).train.shape == (
        3,
        3,
        64,
        64,
    )
    data.clear_memo()

    root = write_cifar10_fixture(tmp_path / "cifar")
    with open(root / data.CIFAR_DIR / "data_batch_1", "wb") as f:
        pickle.dump(Payload(marker), f)
    with pytest.raises(
        data.DatasetCorrupt, match="md5 differs"
    ):  # the checksum is checked before unpickling
        data.load_dataset("cifar10", root, tmp_path, verify=True)
    assert not marker.exists()


def test_an_empty_digits_cnn_cache_is_rebuilt(tmp_path, monkeypatch):
    """A zero-length file, as a full disk or an interrupted copy leaves: retrained, not a failed
    trial."""
    (tmp_path / digits_cnn.DIGITS_CNN_FILE).write_bytes(b"")
    untrained_digits_cnn(monkeypatch)
    digits_cnn.load_digits_cnn(tmp_path)
    assert_plain_digits_cnn(tmp_path / digits_cnn.DIGITS_CNN_FILE)


def test_a_truncated_reference_stats_cache_is_recomputed(tmp_path):
    """A damaged statistics cache is recomputed and overwritten, not trusted and not fatal."""
    extractor = flat_extractor()
    images = torch.randint(0, 256, (4, 3, 2, 2), dtype=torch.uint8)
    mu, sigma = features.reference_stats("x", images, extractor, tmp_path)
    (stats,) = (tmp_path / features.STATS_DIR).iterdir()
    stats.write_bytes(stats.read_bytes()[:100])
    again_mu, again_sigma = features.reference_stats("x", images, extractor, tmp_path)
    np.testing.assert_array_equal(again_mu, mu)
    np.testing.assert_array_equal(again_sigma, sigma)


@pytest.mark.parametrize(
    "mu, sigma",
    [
        (np.full(12, np.nan), np.full((12, 12), np.nan)),  # a valid npz, full of NaN
        (np.zeros(12), np.full((12, 12), np.inf)),
        (np.zeros(3), np.eye(3)),  # the wrong feature size
        (np.zeros(12, dtype=np.int64), np.eye(12, dtype=np.int64)),
    ],
    ids=["nan", "inf", "wrong shape", "not floats"],
)
def test_a_reference_stats_cache_that_cannot_be_right_is_recomputed(tmp_path, mu, sigma):
    extractor = flat_extractor()
    images = torch.randint(0, 256, (4, 3, 2, 2), dtype=torch.uint8)
    expected = features.reference_stats("x", images, extractor, tmp_path)
    (stats,) = (tmp_path / features.STATS_DIR).iterdir()
    np.savez(stats, mu=mu, sigma=sigma)
    for _ in range(2):  # recomputed, and the cache rewritten: the second call reads it back
        again = features.reference_stats("x", images, extractor, tmp_path)
        np.testing.assert_array_equal(again[0], expected[0])
        np.testing.assert_array_equal(again[1], expected[1])


def test_a_digits_cnn_cache_holding_nan_is_retrained(tmp_path, monkeypatch):
    nan = {k: torch.full_like(v, torch.nan) for k, v in digits_cnn.DigitsCNN().state_dict().items()}
    torch.save(nan, tmp_path / digits_cnn.DIGITS_CNN_FILE)  # loads fine, scores NaN
    untrained_digits_cnn(monkeypatch)
    model = digits_cnn.load_digits_cnn(tmp_path)
    assert all(tensor.isfinite().all() for tensor in model.state_dict().values())
    cached = torch.load(tmp_path / digits_cnn.DIGITS_CNN_FILE, weights_only=True)
    assert all(tensor.isfinite().all() for tensor in cached.values())


# (file, function) where unpickling is accepted: none (CIFAR-10's batches go through an unpickler
# that refuses every global but numpy's array parts)
ACCEPTED_PICKLES: set[tuple[str, str]] = set()


def unsafe_loads(path: Path) -> list[str]:
    """Calls in a source file that could unpickle: torch.load without weights_only=True, np.load
    without allow_pickle=False, any pickle/joblib/dill/cloudpickle load, pandas read_pickle."""
    found = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            call = f"{owner}.{node.func.attr}"
            keywords = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
            unsafe = (
                (call == "torch.load" and keywords.get("weights_only") is not True)
                or (call in ("np.load", "numpy.load") and keywords.get("allow_pickle") is not False)
                or (
                    owner in ("pickle", "joblib", "dill", "cloudpickle")
                    and node.func.attr in ("load", "loads")
                )
                or node.func.attr in ("read_pickle", "Unpickler")
            )
            if unsafe and (str(path.relative_to(REPO)), function) not in ACCEPTED_PICKLES:
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {call} in {function}")
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(path.read_text()), "<module>")
    return found


def test_no_source_file_can_unpickle_an_untrusted_file():
    sources = [
        p for folder in ("trainables", "study", "analysis") for p in (REPO / folder).rglob("*.py")
    ]
    assert len(sources) > 10
    assert [hit for path in sources for hit in unsafe_loads(path)] == []


def test_the_safe_load_scan_finds_what_it_is_for(tmp_path, monkeypatch):
    """The scan above must be able to fail: each unsafe form is found, its safe twin is not."""
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    source = tmp_path / "loader.py"
    source.write_text(
        "def f(p):\n"
        "    torch.load(p)\n"
        "    torch.load(p, weights_only=False)\n"
        "    torch.load(p, weights_only=True)\n"
        "    np.load(p)\n"
        "    np.load(p, allow_pickle=False)\n"
        "    pickle.loads(p)\n"
        "    pd.read_pickle(p)\n"
    )
    assert [hit.split(" ")[0] for hit in unsafe_loads(source)] == [
        "loader.py:2",
        "loader.py:3",
        "loader.py:5",
        "loader.py:7",
        "loader.py:8",
    ]


# ------------------------------------------------------------------ bad input through the CLI


# id -> (arguments, what the message must name: the problem, then the fix)
BAD_INPUT = {
    "unknown grid": (["--grid", "tabel1"], "unknown grid 'tabel1'", "known grids: digits, smoke"),
    "unknown --set key": (
        ["--set", "latnet=8"],
        "unknown config key 'latnet'",
        "did you mean 'latent'?",
    ),
    "misspelled key in a grid file": (
        ["--grid-file", "{typo}"],
        "entry 0 {{'laten': 8}}",
        "did you mean 'latent'?",
    ),
    "latent 0": (["--set", "latent=0"], "--set latent=0: latent: must be", "at least 1"),
    "filters not a power of two": (
        ["--set", "filters=12"],
        "--set filters=12: filters:",
        "must be a power of two",
    ),
    "depth of the wrong length": (
        ["--set", "depth=[3,3,2]"],
        "depth: a per-stage list",
        "needs exactly 4 entries",
    ),
    "negative noise": (
        ["--set", "noise_std=-0.5"],
        "--set noise_std=-0.5: noise_std:",
        "must be at least 0",
    ),
    "seed set by hand": (
        ["--set", "seed=3"],
        "--set seed=3: replicate r always runs with seed r",
        "use --seeds N",
    ),
    "seed in a grid file": (
        ["--grid-file", "{seeded}"],
        "entry 0 {{'seed': 2}}: replicate r",
        "use --seeds N",
    ),
    "--set without a value": (
        ["--set", "latent"],
        "argument --set: expected KEY=VALUE",
        "e.g. epochs=2",
    ),
    "grid file not a list": (
        ["--grid-file", "{mapping}"],
        "expected a non-empty list of mappings",
        "write a list",
    ),
    "grid file missing": (
        ["--grid-file", "{nowhere}/g.yaml"],
        "cannot read it",
        "write a list of mappings",
    ),
    "missing dataset root": (
        ["--set", "dataset=cifar10", "--data-root", "{nowhere}"],
        "cifar10 not found: looked for {nowhere}/cifar-10-batches-py",
        "set DAE_DATA_ROOT / --data-root",
    ),
    "missing Inception weights": (
        ["--set", "dataset=cifar10", "--set", "verify_checksums=false", "--data-root", "{cifar}"],
        "FID Inception weights not found at {nowhere}/fid.pth",
        "set DAE_FID_WEIGHTS",
    ),
    "results path under a file": (
        ["--results", "{file}/r"],
        "cannot write the results store",
        "pass --results",
    ),
    "results path is a file": (
        ["--results", "{file}"],
        "it is a file, not a folder",
        "pass --results a folder",
    ),
    "dry run, results path is a file": (
        ["--dry-run", "--results", "{file}"],
        "it is a file, not a folder",
        "pass --results a folder",
    ),
    "dry run, results path under a file": (
        ["--dry-run", "--results", "{file}/r"],
        "cannot write the results store",
        "pass --results",
    ),
    # values that pass a type check but no store column or hardware can hold
    "n_samples beyond int64": (
        ["--set", "n_samples=1e19"],
        "--set n_samples=1e+19: n_samples: must be at most 1,000,000",
        "got 10,000,000,000,000,000,000",
    ),
    "a billion epochs": (["--set", "epochs=1e9"], "epochs: must be at most", "100,000"),
    "a subnormal lr": (["--set", "lr=1e-320"], "lr: 1e-320 cannot be held in float32", "use 0"),
    "noise beyond float32": (["--set", "noise_std=1e308"], "noise_std: 1e+308 cannot", "use 0"),
    "cuda without an index": (["--set", "device=cuda:"], "device: must be", "cuda:N, got"),
    "cuda with a name": (["--set", "device=cuda:abc"], "device: must be", "cuda:N, got"),
    "a GPU a trial cannot see": (
        ["--set", "device=cuda:7"],
        "device: cuda:7 asks for GPU 7, but a trial here sees",
        "use device=cuda or auto",
    ),
    "more cores than the machine": (
        ["--cpus-per-trial", "{cores}"],
        "--cpus-per-trial {cores}: this machine has",
        "pass --cpus-per-trial",
    ),
    "an address nothing listens on": (
        ["--address", "127.0.0.1:1"],
        "--address 127.0.0.1:1: cannot reach a Ray cluster there",
        "leave --address out",
    ),
    "a YAML alias bomb": (
        ["--grid-file", "{bomb}"],
        "expands to more than 100,000 values",
        "write a list of mappings",
    ),
}


@pytest.fixture(scope="module")
def bad_inputs(env, tmp_path_factory):
    """Every BAD_INPUT case through main(), in one interpreter; and the paths the cases name."""
    root = tmp_path_factory.mktemp("bad-input")
    paths = {
        "typo": root / "typo.yaml",
        "mapping": root / "mapping.json",
        "seeded": root / "seeded.json",
        "file": root / "a-file",
        "nowhere": root / "nowhere",
        "cifar": write_cifar10_fixture(root / "cifar"),
        "results": root / "results.parquet",
        "bomb": root / "bomb.yaml",
        "cores": (os.cpu_count() or 1) + 1,
    }
    paths["bomb"].write_text(ALIAS_BOMB)
    paths["typo"].write_text("- {laten: 8}\n")
    paths["mapping"].write_text('{"dataset": "digits"}')
    paths["seeded"].write_text('[{"seed": 2}]')
    paths["file"].write_text("")
    cases = []
    for name, (argv, *_) in BAD_INPUT.items():
        argv = [arg.format(**paths) for arg in argv]
        if not {"--grid", "--grid-file"} & set(argv):
            argv = ["--grid", "smoke", *argv]
        if "--results" not in argv:
            argv += ["--results", str(paths["results"])]
        weights = (
            {"DAE_FID_WEIGHTS": str(paths["nowhere"] / "fid.pth")} if "Inception" in name else {}
        )
        cases.append({"argv": argv, "env": weights})
    return dict(zip(BAD_INPUT, run_mains(env, cases), strict=True)), paths


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_gets_one_message_naming_problem_and_fix_before_ray(bad_inputs, case):
    outcomes, paths = bad_inputs
    outcome, (_, problem, fix) = outcomes[case], BAD_INPUT[case]
    stderr = outcome["stderr"]
    assert outcome["code"] == 2 and outcome["ray"] is False
    assert len(re.findall(r"^(launch|launch\.py|-c): error: ", stderr, re.M)) == 1, stderr
    assert problem.format(**paths) in stderr and fix.format(**paths) in stderr
    assert "Traceback" not in stderr and len(stderr) < 1500  # a 435-byte YAML once printed 116 MB
    assert not paths["results"].exists()  # nothing was opened, let alone scheduled


def test_the_launcher_script_exits_non_zero_on_a_misspelled_key(env, tmp_path):
    """The same through `python study/launch.py` itself: one stderr line, exit status 2, within
    seconds."""
    argv = ["--grid", "smoke", "--set", "latnet=8", "--results", str(tmp_path / "r")]
    result = subprocess.run(
        [sys.executable, "study/launch.py", *argv],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(
        "launch: error: --set latnet=8: unknown config key 'latnet' (did you mean"
    )
    assert len(result.stderr.splitlines()) == 1
