"""A lost node never fails a trial; a trial whose worker dies on a live node fails after three
attempts (study/deaths.py).

The rule's arithmetic in-process; then a Ray cluster of two nodes on this machine (a head with no
CPUs and a worker node, tests/test_cluster_resume.py's), the launcher joining it with --address:
the worker node is killed three times under one trial (more often than a crash is retried), and
a trial's worker process is SIGKILLed three times with its node left up.
"""

import json
import os
import subprocess
import threading

import pandas as pd
import pytest
from launching import REPO, kill_and_wait, start
from test_cluster_resume import (
    FAST_HEALTH_CHECKS,
    HEAD,
    LONG,
    TIMEOUT_S,
    free_ports,
    node,  # noqa: F401 (a fixture)
    trial_workers,
    wait_for,
)

from study import deaths
from trainables.config import make_config

# What Ray 2.60 wrote into Tune's error.txt here for a trial whose worker was SIGKILLed, and for one
# whose node was killed.
WORKER_DIED = (
    "The actor died unexpectedly before finishing this task.\n"
    "\tclass_name: ImplicitFunc\n\tactor_id: 3e3141936d86dd4b0b11c69801000000\n\tpid: 27733\n"
    "\tnamespace: 47529228-28b4-429f-a197-7a5416c8b0ee\n\tip: 192.0.2.2\n"
    "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR Worker "
    "exit detail: Worker unexpectedly exits with a connection error code 2. End of file. Some "
    "common causes include: (1) the process was killed by the OOM killer due to high memory usage, "
    "(2) ray stop --force was called, or (3) the worker crashed unexpectedly due to SIGSEGV or "
    "another unexpected error. If the process was killed by the kernel OOM killer (verifiable by "
    "checking for OOM in dmesg of the OOMing node), consider enabling resource isolation via "
    "--enable-resource-isolation to prevent node deaths by resource contention and significant "
    "loss of progress by uninformed kernel OOM killing.\n"
)
NODE_DIED = (
    "The actor died unexpectedly before finishing this task.\n"
    "\tclass_name: ImplicitFunc\n\tactor_id: 04e9430b0f75698ee93ece2c01000000\n\tpid: 29577\n"
    "\tnamespace: e18bb4d3-ce5b-47d6-85ba-c6fc007ef525\n\tip: 192.0.2.7\n"
    "The actor died because its node has died. Node Id: "
    "fec6772e01450358234da7c47f7bc9672278534df4f7f7c30ff9247d\n"
    "\tthe actor's node was terminated unexpectedly: health check failed due to missing too many "
    "heartbeats\n"
)
NODES = {"head": "192.0.2.1", "worker": "192.0.2.2", "other": "192.0.2.2"}


def test_the_grace_is_the_time_gcs_takes_to_declare_a_node_dead():
    assert deaths.grace_s(["worker"], "head", {}) == 5 * (3000 + 10000) / 1000 + 5  # Ray's own
    assert deaths.grace_s(["worker"], "head", FAST_HEALTH_CHECKS) == 3 * (500 + 500) / 1000 + 5
    assert deaths.grace_s(["head"], "head", {}) == 0  # the launcher's node is up: it runs there


def test_a_death_suspects_the_nodes_at_the_ip_it_names():
    assert deaths.suspects(NODES, WORKER_DIED) == ["other", "worker"]  # one machine, two nodes
    assert deaths.suspects(NODES, "no ip named") == sorted(NODES)
    assert deaths.suspects(NODES, NODE_DIED) == sorted(NODES)  # no node there was alive
    assert deaths.cause(WORKER_DIED).startswith(
        "The actor died unexpectedly before finishing this task. The actor is dead because its "
        "worker process has died. Worker exit type: SYSTEM_ERROR Worker exit detail: Worker "
        "unexpectedly exits with a connection error code 2. End of file."
    )
    assert "ImplicitFunc" not in deaths.cause(WORKER_DIED)


def test_a_lost_node_never_counts_and_a_third_death_on_a_live_node_fails_the_trial():
    tally, lost = deaths.record(None, NODE_DIED, ["worker"], {"head"}, now=0, grace=8)
    assert lost and tally == {"counted": [], "pending": [], "lost": 1}
    for now in (10, 20):
        tally, lost = deaths.record(tally, WORKER_DIED, ["worker"], {"head", "worker"}, now, 8)
        assert not lost and not deaths.may_fail(tally)
    # the second is within its grace still: the third may fail the trial, should both count
    tally, _ = deaths.record(tally, WORKER_DIED, ["worker"], {"head", "worker"}, 25, 8)
    assert len(tally["counted"]) == 1 and len(tally["pending"]) == 2 and deaths.may_fail(tally)
    assert deaths.wait_s(tally, 25) == 8 and deaths.failure(tally) is None
    error, history = deaths.failure(deaths.settle(tally, {"head", "worker"}, 33))
    assert error.startswith("its worker died 3 times on a live node (killed by the OOM killer")
    assert "(lost nodes, which never count: 1)" in error
    assert error.endswith(f"; last: {deaths.cause(WORKER_DIED)}")
    assert history.count("death ") == 3
    # the same deaths, had the node gone within the grace: lost nodes, and the trial goes on
    gone = deaths.settle(tally, {"head"}, 33)
    assert gone["lost"] == 3 and deaths.failure(gone) is None


# --------------------------------------------------------------- a cluster of two nodes, here


@pytest.fixture
def cluster(node, tmp_path, untrained_digits_cnn):  # noqa: F811 (the imported fixture)
    """-> (its address, the launcher's environment, the worker node). Every process knows the
    fast health checks: the head's GCS declares a lost node dead within seconds, and the
    launcher's grace for it is as short."""
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("DAE_", "RAY_"))}
    env = {
        **bare,
        **FAST_HEALTH_CHECKS,
        "RAY_AUTH_MODE": "disabled",  # the same on every node, whatever ~/.ray holds
        "DAE_CACHE_DIR": str(untrained_digits_cnn(tmp_path / "cache")),
        "PYTHONPATH": str(REPO),
    }
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    for folder in ("head", "worker"):
        (tmp_path / folder).mkdir()
    node(tmp_path / "head", env, *HEAD, str(port))
    worker = node(tmp_path / "worker", env, "--address", address, "--num-cpus", "1")
    return address, env, worker


def launch_long(cluster, sessions, tmp_path) -> tuple[subprocess.Popen, str]:
    """The LONG digits trial, checkpointed every epoch, launched into the cluster."""
    address, env, _ = cluster
    grid = tmp_path / "long.json"
    grid.write_text(json.dumps([LONG]))
    args = ["--grid-file", str(grid), "--results", str(tmp_path / "results"), "--address", address]
    args += ["--checkpoint-dir", str(tmp_path / "checkpoints")]
    with open(tmp_path / "stderr", "w") as stderr:
        proc = start(env, sessions, *args, stdout=subprocess.PIPE, stderr=stderr)
    return proc, grid


class Said:
    """What the launcher prints, read line by line as it prints it (a thread), to wait on."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self.thread.start()

    def _read(self, stdout) -> None:
        for line in stdout:
            self.lines.append(line)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def all(self) -> str:
        self.thread.join(timeout=TIMEOUT_S)
        return "".join(self.lines)


@pytest.mark.slow
def test_a_trial_whose_node_is_lost_again_and_again_is_retried_and_ends_ok(
    cluster, sessions, tmp_path
):
    """Each time, the trial's worker process dies first and the launcher sees it on a node that is
    up; its node goes right after, as a spot instance's processes die before GCS sees the node go.
    Counted at once, the third death would fail the trial: settled after the grace, none counts."""
    _, _, worker = cluster
    proc, _ = launch_long(cluster, sessions, tmp_path)
    said = Said(proc)
    checkpoint = tmp_path / "checkpoints" / f"{make_config(LONG).trial_id()}.pt"
    wait_for("first checkpoint", checkpoint.exists, proc)
    for death in range(1, deaths.RETRIED + 2):
        (pid, *_) = wait_for("the trial's worker", lambda: trial_workers(worker.sessions), proc)
        kill_and_wait(pid)
        wait_for(f"death {death}", lambda n=death: said.count("worker lost running") == n, proc)
        worker.kill()
        worker.start()
    assert proc.wait(timeout=TIMEOUT_S) == 0, (tmp_path / "stderr").read_text()
    stdout = said.all()
    assert stdout.count("its node is up: death ") == deaths.RETRIED + 1, stdout
    (row,) = pd.read_parquet(tmp_path / "results").to_dict("records")
    assert row["status"] == "ok" and 1 <= row["resumed_from_epoch"] < LONG["epochs"]


@pytest.mark.slow
def test_a_trial_that_kills_its_own_worker_is_a_failed_row_after_three_attempts(
    cluster, sessions, tmp_path
):
    _, _, worker = cluster
    proc, _ = launch_long(cluster, sessions, tmp_path)
    killed: list[int] = []
    for _ in range(deaths.RETRIED + 1):  # as the OOM killer would, with the node left up
        ready = lambda: [pid for pid in trial_workers(worker.sessions) if pid not in killed]  # noqa: E731
        killed.append(wait_for("the trial's next worker", ready, proc)[0])
        kill_and_wait(killed[-1])
    stdout, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 1, (tmp_path / "stderr").read_text()  # a trial failed
    for death in range(1, deaths.RETRIED + 2):
        assert f"its node is up: death {death} of the {deaths.RETRIED + 1} that fail" in stdout
    assert stdout.count("worker lost running") == deaths.RETRIED + 1
    (row,) = pd.read_parquet(tmp_path / "results").to_dict("records")
    assert row["status"] == "failed" and row["loss_history"] is None  # not trained a 4th time
    assert row["error"].startswith("its worker died 3 times on a live node")
    assert "worker process has died" in row["error"].split("; last: ")[1]
