"""dae-study status STORE: how far a study is, per curve, from a second terminal, while it runs.

    curve                          done  failed  diverged  remaining
    digits dae f8 d1                  3       0         0          1

Reads the store's live rows (as the launcher would keep them) and the launch's plan, PLAN: every
trial a launch means to run, which the launcher writes into the store as it starts. A planned
trial is done, failed or diverged by its live row, and remaining while it has none, or only one
from before the launch that the launch runs again (a failed row, or a diverged one under
--rerun-diverged). Rows of trials outside the plan are counted per curve below it. While a launcher
holds the store's lock, it says so with its pid, and an ETA at the rate the launch has finished
trials so far. Imports no torch or Ray, and reads a store that is being written: a part renamed
away as it is read is skipped.

A mirror's URI (--results-mirror) reads the same, from a copy of its rows and plan: it has no lock,
so the last launch is named with the machine that can tell whether it still runs.

Exit status: 0 the status was printed; 1 the store cannot be read (the message says why); 2 bad
arguments.
"""

import argparse
import datetime
import fcntl
import json
import os
import socket
import sys
from collections import Counter
from pathlib import Path

from study.layout import LOCK, PLAN, read_part
from study.mirror import fetched
from study.store import FINISHED, survey
from trainables import curves
from trainables.errors import StoreError, StoreWriteError
from trainables.files import atomic_write
from trainables.filesystems import is_uri
from trainables.schema import Status, conform

COLUMNS = ("done", "failed", "diverged", "remaining")
COUNTED = {Status.OK: "done", Status.FAILED: "failed", Status.DIVERGED: "diverged"}
OUTSIDE = "rows outside this launch's plan, per curve:"


def write_plan(store: Path, grid: str, trials, keeps=FINISHED, search: str | None = None) -> None:
    """The plan of a launch that holds the store's lock: its grid, every trial it means to run
    with its curve, when it began, and the statuses of stored rows it keeps instead of rerunning.
    A search's trials are the grid points its curves span; it picks the ones it runs as it goes.
    StoreWriteError: the store refused the file."""
    plan = {
        "grid": grid,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "keeps": sorted(keeps),
        "search": search,
        "trials": [
            {"trial_id": cfg.trial_id(), "curve": curves.label(cfg.science())} for cfg in trials
        ],
    }
    try:
        atomic_write(store / PLAN, lambda f: f.write(json.dumps(plan, indent=1).encode()))
    except OSError as exc:
        raise StoreWriteError(f"cannot write {store / PLAN}: {exc.strerror or exc}") from None


def read_plan(store: Path) -> dict | None:
    """The last launch's plan, or None for a store no launch has planned (or that lost it)."""
    try:
        plan = json.loads((store / PLAN).read_text())
        plan["started_at"] = datetime.datetime.fromisoformat(plan["started_at"])
        plan["written"] = (store / PLAN).stat().st_mtime  # what a part written since has, or later
        return plan
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(
            f"status: warning: {store / PLAN} is not a launch plan ({exc}); ignored",
            file=sys.stderr,
        )
        return None


def launcher_pid(store: Path) -> str | None:
    """The pid in the lock while a launcher holds it, else None.

    The test takes a shared lock for an instant: a launcher starting at that very instant finds the
    store held and says so (run it again)."""
    try:
        lock = open(store / LOCK)
    except FileNotFoundError:
        return None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return lock.read().strip() or "unknown"
    return None


def _label(part: Path) -> str | None:
    """The curve of the row in a part, as the launcher names it; None if the part is gone."""
    try:
        fields = conform(read_part(part), part).select(list(curves.CURVE_FIELDS)).to_pylist()[0]
    except FileNotFoundError:
        return None
    return curves.label(fields)


def count(store: Path, plan: dict | None) -> tuple[dict, dict, int, int]:
    """-> ({planned curve: Counter of COLUMNS}, {other curve: Counter}, parts unreadable,
    planned trials finished since the launch began)."""
    found = survey(store)
    unreadable = sum(part.exists() for part in [*found.unreadable, *(p for p, _ in found.foreign)])
    planned: dict[str, Counter] = {}
    finished_since = 0
    keeps = set(plan["keeps"]) if plan else set()
    for trial in plan["trials"] if plan and not plan["search"] else []:
        part = found.live.pop(trial["trial_id"], None)
        try:  # file times on one filesystem, set by the one launcher: no clocks of other nodes
            since = part is not None and part.path.stat().st_mtime >= plan["written"]
        except FileNotFoundError:
            part = None
        column = "remaining"
        if part is not None and (part.status in keeps or since):
            column = COUNTED[part.status]
            finished_since += since
        planned.setdefault(trial["curve"], Counter())[column] += 1
    others: dict[str, Counter] = {}
    for part in found.live.values():
        label = _label(part.path)
        if label is not None:
            others.setdefault(label, Counter())[COUNTED[part.status]] += 1
    if plan and plan["search"]:  # its curves, in the plan's order, with what they have so far
        for curve in dict.fromkeys(trial["curve"] for trial in plan["trials"]):
            planned[curve] = others.pop(curve, Counter())
    return planned, dict(sorted(others.items())), unreadable, finished_since


def format_duration(seconds: float) -> str:
    """How the launcher's progress and this command print a duration: H:MM:SS."""
    return str(datetime.timedelta(seconds=round(seconds)))


def _table(curves: dict, remaining: bool) -> list[str]:
    width = max(len("curve"), *(len(curve) for curve in curves))
    lines = [f"{'curve':{width}s}  " + "  ".join(f"{c:>9s}" for c in COLUMNS)]
    for curve, counts in curves.items():
        cells = [str(counts[c]) if c != "remaining" or remaining else "?" for c in COLUMNS]
        lines.append(f"{curve:{width}s}  " + "  ".join(f"{cell:>9s}" for cell in cells))
    return lines


def report(
    store: Path, now: datetime.datetime | None = None, mirror: str | None = None
) -> list[str]:
    """The lines `dae-study status` prints; `mirror`: the URI that `store` is a copy of.
    StoreError: the store cannot be read."""
    if not store.is_dir():
        what = "is not a folder" if store.exists() else "does not exist"
        raise StoreError(f"no results store at {store}: it {what}")
    if not os.access(store, os.R_OK | os.X_OK):
        raise StoreError(f"cannot read the results store {store}: permission denied")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    plan = read_plan(store)
    pid = launcher_pid(store)
    planned, others, unreadable, finished_since = count(store, plan)
    lines = [f"store {mirror or store}"]
    if plan:
        began = plan["started_at"]
        ago = format_duration((now - began).total_seconds())
        search = f", an {plan['search']} search" if plan["search"] else ""
        launch = f"grid {plan['grid']}{search}, started {began:%Y-%m-%d %H:%M:%S %Z} ({ago} ago)"
        ours = pid == str(plan["pid"])
        if mirror:
            lines.append(
                f"a mirror; the last launch: {launch}, pid {plan['pid']} on {plan['host']} "
                "(`dae-study status` of the store there says whether it still runs)"
            )
        elif pid is None:
            lines.append(f"not running; the last launch: {launch}")
        elif ours:
            lines.append(f"running: pid {pid} on {plan['host']}, {launch}")
        else:
            lines.append(f"running: pid {pid}, which has not written its plan yet")
        lines += ["", *_table(planned, remaining=not plan["search"])]
        total = sum((counts for counts in planned.values()), Counter())
        if plan["search"]:
            lines.append("remaining: ? (a search picks each next trial as it goes)")
        elif pid is not None and ours and total["remaining"]:
            lines.append(_eta(total["remaining"], finished_since, (now - began).total_seconds()))
    else:
        running = f"running: pid {pid}, which has not written its plan yet" if pid else ""
        lines.append(running or "not running; no launch has written its plan into this store")
    if others:
        lines += ["", OUTSIDE if plan else "rows per curve:", *_table(others, remaining=False)]
    if not planned and not others:
        lines.append("no rows yet")
    if unreadable:
        files = "part file" if unreadable == 1 else "part files"
        lines.append(
            f"{unreadable} {files} could not be read as rows (the next launch moves them aside)"
        )
    return lines


def _eta(remaining: int, finished: int, elapsed: float) -> str:
    """The remaining trials at the rate this launch has finished them: an estimate that assumes
    the trials to come cost what those so far did (they are run longest first, so it errs long)."""
    if not finished:
        took = format_duration(elapsed)
        return f"ETA: not yet known (no trial of this launch has finished in {took})"
    eta = format_duration(elapsed / finished * remaining)
    return (
        f"ETA: about {eta}, at the rate of this launch so far "
        f"({finished} trials finished in {format_duration(elapsed)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="How far a study is, per curve.")
    parser.add_argument(
        "store", help="the results store a launch writes, or the URI of its --results-mirror"
    )
    args = parser.parse_args(argv)
    try:
        if is_uri(args.store):
            with fetched(args.store) as copy:
                lines = report(copy, mirror=args.store)
        else:
            lines = report(Path(args.store))
    except (StoreError, OSError) as exc:
        print(f"status: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
