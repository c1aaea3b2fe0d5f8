"""Which deaths of a trial's worker count against the trial: a lost node never does, a worker that
died on a live node does, and one death more than RETRIED makes the trial's failed row.

Ray Tune retries a trial whose worker died, without limit (study/runner.py: max_failures=-1); this
decides instead. Ray's autoscaler on AWS never drains a spot node, it just disappears: its trial's
worker dies with a message that names no reason Ray Tune tells apart from a segfault or the kernel's
OOM killer, so a spot worker taken back three times would fail its trial as a crash does. The
message text changes between Ray versions; the state of the node in Ray's GCS (ray.nodes()) does
not. So a death is classified by its node: the nodes alive as the attempt started at the ip the
message names (Ray tells a trial nothing of its node but that ip), one of which ran it. If one of
them is dead now, the node was lost. If all are alive, the worker died on a live node, but only
once grace_s() has passed: a node taken back may lose its processes seconds before GCS, missing
health checks, declares it dead.

The tally of a trial travels in its Tune config (DEATHS_KEY, beside the trial's own config, which
trial_overrides never reads), so the retry that follows the death that makes it fail can write the
failed row at once, on its worker, instead of training a fourth time.
"""

import os
import re

DEATHS_KEY = "dae_study_deaths"
# Deaths on a live node a trial is retried after; the next one makes its failed row (3 attempts).
RETRIED = 2
# GCS declares a node dead after this many health checks failed in a row, each taking a period and
# at most a timeout: Ray 2.60's defaults, which its processes read from the environment, as here.
HEALTH_CHECKS = {
    "RAY_health_check_failure_threshold": 5,
    "RAY_health_check_period_ms": 3000,
    "RAY_health_check_timeout_ms": 10000,
}
GRACE_MARGIN_S = 5.0
IP = re.compile(r"\bip[:=] ?([0-9A-Fa-f.:]+[0-9A-Fa-f])")


def grace_s(suspected: list[str], own_node: str, environ=os.environ) -> float:
    """How long GCS may take to declare a lost node dead, from the health checks it runs; none
    where the only suspect is the node the launcher runs on, which is up while the launcher is (a
    launch without --address has no other)."""
    if suspected and set(suspected) <= {own_node}:
        return 0.0
    threshold, period, timeout = (float(environ.get(name, v)) for name, v in HEALTH_CHECKS.items())
    return threshold * (period + timeout) / 1000 + GRACE_MARGIN_S


def cause(text: str) -> str:
    """A death's message without the dead actor's identity (Ray indents class_name, actor_id, pid,
    ip): what happened, e.g. "The actor is dead because its worker process has died. Worker exit
    type: ... Worker exit detail: ..."."""
    return " ".join(line.strip() for line in text.splitlines() if line[:1] not in ("\t", ""))


def suspects(nodes_at_start: dict[str, str], text: str) -> list[str]:
    """The nodes the dead worker may have run on: those alive as its attempt started (node id ->
    ip) at the ip its message names; all of them if it names none that was."""
    found = IP.search(text)
    at_ip = [node for node, ip in nodes_at_start.items() if found and ip == found.group(1)]
    return sorted(at_ip or nodes_at_start)


def record(
    deaths: dict | None, text: str, suspected: list[str], alive: set[str], now: float, grace: float
) -> tuple[dict, bool]:
    """-> (the tally with this death, whether its node was lost). A death whose suspects are all
    alive is pending for `grace` seconds; older pending deaths are settled first."""
    deaths = settle(deaths or {"counted": [], "pending": [], "lost": 0}, alive, now)
    lost = not set(suspected) <= alive
    if lost:
        deaths["lost"] += 1
    else:
        death = {"suspects": suspected, "until": now + grace, "cause": cause(text)}
        deaths["pending"].append(death)
    return deaths, lost


def settle(deaths: dict, alive: set[str], now: float) -> dict:
    """The pending deaths whose grace is over, settled: counted where every suspect is alive still,
    a lost node where one is not."""
    pending, counted, lost = [], list(deaths["counted"]), deaths["lost"]
    for death in deaths["pending"]:
        if now < death["until"]:
            pending.append(death)
        elif set(death["suspects"]) <= alive:
            counted.append(death["cause"])
        else:
            lost += 1
    return {"counted": counted, "pending": pending, "lost": lost}


def may_fail(deaths: dict) -> bool:
    """Whether the pending deaths, should they count, would make the trial fail: only then does its
    retry wait for them to settle."""
    return len(deaths["counted"]) + len(deaths["pending"]) > RETRIED


def wait_s(deaths: dict, now: float) -> float:
    """Until every pending death is settled; 0 once they can be."""
    return max((death["until"] - now for death in deaths["pending"]), default=0.0)


def failure(deaths: dict) -> tuple[str, str] | None:
    """(error, traceback) of the trial's failed row once its worker died more than RETRIED times on
    a live node; None before."""
    counted = deaths["counted"]
    if len(counted) <= RETRIED:
        return None
    lost = f" (lost nodes, which never count: {deaths['lost']})"
    error = (
        f"its worker died {len(counted)} times on a live node (killed by the OOM killer or Ray's "
        f"memory monitor, or it crashed){lost if deaths['lost'] else ''}; last: {counted[-1]}"
    )
    return error, "\n".join(f"death {i}: {text}" for i, text in enumerate(counted, 1))
