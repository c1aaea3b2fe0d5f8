"""Lost workers and lost nodes resume from their checkpoints, launched as researchers launch.

1. A local launch whose trial's worker is SIGKILLed mid-training: Ray retries it, and the retry
   resumes from the trial's checkpoint and ends with the row an uninterrupted run gives.
2. A cluster on this machine: a Ray head with no CPUs and a worker node, each in a folder of its
   own; the launcher joins it with --address. The worker node is killed mid-trial and started again;
   the trial resumes there from its checkpoint. Every row lands in the head's store, the data comes
   from the launcher through Ray's object store, and each node resolves its own paths.

Both tell a trial's attempts apart by its checkpoint file, which appears after each epoch.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from fixtures import TINY_CIFAR10
from launching import REPO, kill_and_wait, kill_sessions, session_members, start

from study import layout
from study.grids import SMOKE_BASE
from trainables import features
from trainables.config import make_config
from trainables.testing import write_cifar10_fixture
from trainables.trial import run_trial

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
# A digits trial of a few seconds a try: long enough to be killed between two of its checkpoints.
LONG = {
    **SMOKE_BASE,
    "epochs": 4,
    "decoder_width": "8f",
    "n_samples": 50,
    "gmm_components": 2,
    "checkpoint_every": 1,
}
TIMEOUT_S = 120  # any wait here ends by then: a hung Ray fails the test, never hangs it


def wait_for(what: str, ready, proc: subprocess.Popen | None = None, timeout: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while not (found := ready()):
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the launcher ended ({proc.returncode}) before {what}")
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)
    return found


def trial_workers(sids: list[int]) -> list[int]:
    """Ray workers of these sessions that run a trial (Tune's function trainable)."""
    found = []
    for sid in sids:
        for pid in session_members(sid):
            with contextlib.suppress(OSError):
                if b"ImplicitFunc" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
    return found


def uninterrupted_row(config: dict, cache: Path) -> dict:
    """The trial run once in-process, without checkpoints: the row a resumed trial must equal."""
    row = run_trial({**config, "checkpoint_every": 0, "cache_dir": str(cache)})
    assert row["status"] == "ok", row["traceback"]
    return row


def assert_same_result(row: pd.Series, reference: dict) -> None:
    """Same loss history and scores, exactly: one thread on one machine, the same operations."""
    assert list(row["loss_history"]) == reference["loss_history"]
    for column in ("fd_mvg", "fd_gmm", "fd_normal", "fd_train_recon", "train_recon_bce"):
        assert row[column] == reference[column], column


def test_a_worker_killed_mid_training_is_retried_and_resumes_from_its_checkpoint(
    sessions, tmp_path, untrained_digits_cnn
):
    # scored in an untrained digits-cnn's features: what is judged is the resume, not the scores
    cache = untrained_digits_cnn(tmp_path / "cache")
    env = {**os.environ, "DAE_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    grid, store, saved = tmp_path / "long.json", tmp_path / "results", tmp_path / "checkpoints"
    grid.write_text(json.dumps([LONG]))
    cfg = make_config({**LONG, "checkpoint_dir": str(saved)})
    checkpoint = saved / f"{cfg.trial_id()}.pt"
    args = ["--grid-file", str(grid), "--results", str(store), "--checkpoint-dir", str(saved)]
    args += ["--tensorboard"]
    proc = start(env, sessions, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for("first checkpoint", checkpoint.exists, proc)
    (worker,) = wait_for("trial's worker", lambda: trial_workers(sessions))
    kill_and_wait(worker)
    stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, stderr
    assert "worker lost running" in stdout and "retrying" in stdout
    (row,) = pd.read_parquet(store).to_dict("records")
    assert row["status"] == "ok" and 1 <= row["resumed_from_epoch"] < LONG["epochs"]
    assert not checkpoint.exists()  # removed once the row landed
    assert_same_result(row, uninterrupted_row(LONG, cache))
    # Tune's TensorBoard logs hold the per-epoch loss (a file per attempt)
    events = list(store.glob(f"{layout.TUNE}/*/*/events.out.tfevents.*"))
    assert len(events) == 2 and all(b"train_loss" in file.read_bytes() for file in events)


# ----------------------------------------------------------------------- a cluster on one machine

# A CIFAR-10 trial that diverges in its first epoch: training proves its images arrived, and a
# diverged trial is never scored (scoring with Inception on a CPU takes half a minute).
CIFAR_DIVERGING = {**TINY_CIFAR10, "lr": 1e30}
# The head notices a lost node within seconds, not the default 15 (GCS settings, read from the
# environment of `ray start --head`).
FAST_HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}
RAY = Path(sys.executable).with_name("ray")
HEAD = ("--head", "--num-cpus", "0", "--include-dashboard", "false", "--port")  # then the port


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for each in sockets:
        each.bind(("127.0.0.1", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ports


class Node:
    """`ray start` in a session and a folder of its own, with a temp dir of its own; `kill` ends
    every process of it at once, as a lost spot instance."""

    def __init__(self, folder: Path, env: dict, *args: str):
        self.folder, self.env, self.args = folder, env, args
        self.sessions: list[int] = []
        self.temps: list[str] = []

    def start(self) -> None:
        temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit
        self.temps.append(temp)
        agent, grpc, metrics, env_agent = free_ports(4)
        command = [str(RAY), "start", *self.args, "--temp-dir", temp, "--disable-usage-stats"]
        command += ["--object-store-memory", str(100 * 2**20)]
        command += ["--dashboard-agent-listen-port", str(agent)]
        command += ["--dashboard-agent-grpc-port", str(grpc), "--metrics-export-port", str(metrics)]
        command += ["--runtime-env-agent-port", str(env_agent)]
        proc = subprocess.Popen(
            command,
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.sessions.append(proc.pid)  # Ray's processes stay in it after `ray start` returns
        output, _ = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0, output

    def kill(self) -> None:
        kill_sessions(self.sessions)
        assert not [pid for sid in self.sessions for pid in session_members(sid)]

    def close(self) -> None:
        self.kill()
        for temp in self.temps:
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def node():
    """Starts a node; at the end every process of every node started is killed (whatever the
    test did) and their temp dirs are removed."""
    started: list[Node] = []

    def start_node(folder: Path, env: dict, *args: str) -> Node:
        started.append(Node(folder, env, *args))
        started[-1].start()
        return started[-1]

    yield start_node
    for each in started:
        each.close()


def test_a_cluster_on_this_machine_stores_every_row_on_the_head_and_resumes_a_lost_node(
    node, sessions, tmp_path, untrained_digits_cnn
):
    head_dir, worker_dir = tmp_path / "head", tmp_path / "worker"
    for folder in (head_dir, worker_dir):
        folder.mkdir()
    write_cifar10_fixture(head_dir / "data")  # on the head only
    (head_dir / "fid-weights.pt").write_bytes(b"never read: the CIFAR-10 trial is not scored")
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("DAE_", "RAY_"))}
    bare["RAY_AUTH_MODE"] = "disabled"  # the same on every node, whatever ~/.ray holds
    head_env = {
        **bare,
        "DAE_DATA_ROOT": str(head_dir / "data"),
        "DAE_CACHE_DIR": str(head_dir / "cache"),
        "DAE_FID_WEIGHTS": str(head_dir / "fid-weights.pt"),
        "PYTHONPATH": str(REPO),
    }
    worker_env = {  # a data root of its own, empty: a trial that read one here would fail
        **bare,
        "DAE_DATA_ROOT": str(worker_dir / "no-data"),
        "DAE_CACHE_DIR": str(untrained_digits_cnn(worker_dir / "cache")),
        "PYTHONPATH": str(REPO),
    }
    (port,) = free_ports(1)
    node(head_dir, {**head_env, **FAST_HEALTH_CHECKS}, *HEAD, str(port))
    grid, saved = head_dir / "cluster.json", tmp_path / "checkpoints"  # stands in for s3://
    grid.write_text(json.dumps([LONG, CIFAR_DIVERGING]))
    long_id = make_config(LONG).trial_id()
    checkpoint = saved / f"{long_id}.pt"
    args = ["--grid-file", grid.name, "--results", "results", "--checkpoint-dir", str(saved)]
    proc = start(
        head_env,
        sessions,
        *args,
        "--address",
        f"127.0.0.1:{port}",
        cwd=head_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # the launcher's trials wait for the worker node, which starts while the launcher does
    worker = node(worker_dir, worker_env, "--address", f"127.0.0.1:{port}", "--num-cpus", "1")
    wait_for("first checkpoint", checkpoint.exists, proc)
    worker.kill()  # mid-trial: the next checkpoint is an epoch away
    worker.start()
    stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, stderr
    assert "worker lost running" in stdout

    rows = pd.read_parquet(head_dir / "results").set_index("trial_id")
    assert len(rows) == 2
    long = rows.loc[long_id]
    assert long["status"] == "ok" and 1 <= long["resumed_from_epoch"] < LONG["epochs"]
    assert not checkpoint.exists()
    cifar = rows.loc[make_config(CIFAR_DIVERGING).trial_id()]
    assert cifar["status"] == "diverged" and cifar["n_train"] == 40  # trained on the head's data
    # each node resolved its own cache: the scoring statistics are the worker's
    assert (worker_dir / "cache" / features.STATS_DIR).is_dir()
    assert not (head_dir / "cache").exists()
