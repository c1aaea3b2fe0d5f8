"""dae-study launch [--grid NAME], or python study/launch.py [--grid NAME]: run a named grid
(default: digits), or an Optuna search over its curves, into the store.

Every input is checked before Ray starts (grid, config keys and values, datasets, scoring weights,
the results path, another launcher, the cores and GPUs a trial asks for, the --address); a bad one
ends the launch with one message on stderr. Trials already `ok` or `diverged` in the store are
skipped (a divergence is a result; --rerun-diverged runs them again), so the same command resumes a
stopped launch and reruns only the trials that `failed`. Relative paths (--data-root, --cache-dir,
--results, --results-mirror, --checkpoint-dir, DAE_DATA_ROOT, DAE_CACHE_DIR, DAE_FID_WEIGHTS) are
taken from where the launcher starts.

Each dataset is read once, here, and handed to the trials through Ray's object store, so no worker
needs a data folder (--data-on-nodes: each trial reads its own node's). Trials save a checkpoint
every `checkpoint_every` epochs into --checkpoint-dir (a folder or a URI such as s3://bucket/prefix;
default _checkpoints/ in the store): a trial retried after a lost worker, or run again by a
relaunch, goes on from its latest one.

Exit status:
  0    every trial ended ok or diverged
  1    some trial failed (its row says why)
  2    bad input: nothing was scheduled
  3    the store could not be written (read-only, full, a file where a folder belongs): the rows
       written before it are kept; fix it and rerun the same command to resume. Also when the
       --results-mirror lacks some of the store's files at the end: rerun to copy them
  130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM; 129 by SIGHUP: Ray is stopped, the rows
       stored are kept; rerun the same command to resume. A second signal ends it at once.

Custom grids without editing code:
  --set KEY=VALUE   override one config field in every trial of the grid (repeatable); VALUE is
                    read as JSON where it parses (2, 1e-4, true, [3,3,2,1]) and as a string
                    otherwise, e.g. --grid digits --set epochs=2 --set batch_size=64
  --grid-file PATH  a JSON (.json) or YAML list of override mappings, one trial each, instead of
                    --grid, e.g. [{"dataset": "digits", "latent": 8},
                                  {"dataset": "digits", "latent": 16, "model": "vae"}];
                    rows are tagged with the file's stem as their grid name

torch.compile: --compile sets every trial's `compile`; auto (the default) compiles a trial where
study/resources.py's measurements say its steps repay the compiling, and only where trials get
GPUs (--dry-run lists them).
"""

import argparse
import contextlib
import dataclasses
import json
import math
import os
import signal
import socket
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

if __name__ == "__main__":  # the imports below take seconds; a stop then is a clean exit
    from study.cli import stop_cleanly_while_importing

    stop_cleanly_while_importing("launch")

import torch

from analysis.results import usable
from study import grids, layout, status
from study.mirror import Mirror, MirroredStore
from study.resources import compile_pays, gpu_fraction
from study.store import FINISHED, ResultStore, check_usable, survey
from trainables import curves, data, features
from trainables.config import TrialConfig
from trainables.errors import BadInput, DatasetMissing, StoreWriteError, StudyError, WeightsMissing
from trainables.filesystems import filesystem
from trainables.schema import Status
from trainables.scored_sets import FITTED, LABELS

EXIT_FAILED_TRIAL = 1  # a trial's row says `failed`; the launch itself went well
# Ray runs each trial in a folder of its own: a relative path in these means the launcher's folder.
PATH_VARIABLES = ("DAE_DATA_ROOT", "DAE_CACHE_DIR", "DAE_FID_WEIGHTS")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
ADDRESS_TIMEOUT_S = 10
RAY_PORT = 6379  # a Ray head's default port; 10001 for a Ray Client (ray://) address
RAY_CLIENT_PORT = 10001
RESUME = "rerun the same command to resume"


@contextlib.contextmanager
def _stop_on_signals():
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt, in every phase of the launch, and are
    recorded in the list this yields; a second one while the launch winds down ends the process at
    once (study/watchdog.py then ends what Ray left). KeyboardInterrupt, because it is the one
    exception that Ray's native calls and Ray Tune's loop let through as it is.

    A signal that was ignored (SIGHUP under nohup) stays ignored.
    """
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    handled = [signum for signum, handler in saved.items() if handler is not signal.SIG_IGN]
    received: list[int] = []

    def stop(signum, frame):
        received.append(signum)
        for other in handled:
            signal.signal(other, lambda again, frame: os._exit(128 + again))
        raise KeyboardInterrupt

    for signum in handled:
        signal.signal(signum, stop)
    try:
        yield received
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def _gpu_share(text: str) -> str | float:
    if text in ("auto", "table"):
        return text
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1024:
        raise argparse.ArgumentTypeError(f"expected auto, table or a number >= 0, got {text!r}")
    return share


def _override(text: str) -> tuple[str, object]:
    """--set KEY=VALUE -> (key, value): JSON where it parses, else the plain string; the keys are
    checked later."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. epochs=2), got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--grid",
        default="digits",
        help=f"a named grid, one of: {', '.join(grids.GRIDS)} (default %(default)s)",
    )
    which.add_argument(
        "--grid-file", help="a JSON or YAML list of config override mappings, one trial each"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        type=_override,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field in every trial (repeatable), e.g. --set epochs=2",
    )
    parser.add_argument(
        "--results", default="results.parquet", help="the store directory (default %(default)s)"
    )
    parser.add_argument(
        "--results-mirror",
        metavar="URI",
        help="copy every row, sample grid and the plan there as it lands (s3://bucket/prefix, "
        "gs://..., file:///folder, a folder), and start by pulling the rows the store lacks from "
        "there: results that outlive this machine (study/mirror.py)",
    )
    parser.add_argument(
        "--data-root", help="datasets folder (default $DAE_DATA_ROOT or ~/.cache/dae-study/data)"
    )
    parser.add_argument(
        "--cache-dir", help="reference statistics, digits-cnn (default $DAE_CACHE_DIR)"
    )
    parser.add_argument(
        "--checkpoint-dir",
        help="where trials save their mid-trial checkpoints (config checkpoint_every): a folder or "
        "a URI such as s3://bucket/prefix that every node can reach (default: _checkpoints/ in "
        "the store, which only this machine's trials can reach)",
    )
    parser.add_argument(
        "--data-on-nodes",
        action="store_true",
        help="each trial reads its dataset from its own node's data root (default: the launcher "
        "loads each dataset once and hands it to the trials through Ray's object store)",
    )
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="write Tune's TensorBoard logs (each trial's loss per epoch) under the store's _tune/",
    )
    parser.add_argument(
        "--seeds", type=int, default=1, help="replicates per trial; replicate r uses seed r"
    )
    parser.add_argument(
        "--limit", type=int, help="only the first N trials of the grid (quick checks)"
    )
    parser.add_argument(
        "--gpus-per-trial",
        type=_gpu_share,
        default="auto",
        help="auto: the per-model-size table when the cluster has GPUs, else CPU only; "
        "table: that table even before autoscaled GPU nodes exist; "
        "F: share F of a GPU for every trial",
    )
    parser.add_argument(
        "--cpus-per-trial", type=int, default=1, help="also torch's thread count per trial"
    )
    parser.add_argument(
        "--max-concurrent", type=int, help="at most N trials at once (default: as resources allow)"
    )
    parser.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="torch.compile each trial's training step: auto where study/resources.py's "
        "measurements say it pays (default), on, off",
    )
    parser.add_argument(
        "--rerun-diverged",
        action="store_true",
        help="run trials stored as diverged again (default: keep them)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan and what is missing; run nothing"
    )
    parser.add_argument(
        "--address", help="join this Ray cluster (e.g. auto) instead of starting a local one"
    )
    parser.add_argument(
        "--download", action="store_true", help="fetch missing datasets and FID weights first"
    )
    parser.add_argument(
        "--search", choices=["optuna"], help="search each curve's latent size instead of the grid"
    )
    parser.add_argument(
        "--search-trials", type=int, default=8, help="new trials per curve (default %(default)s)"
    )
    parser.add_argument(
        "--search-metric",
        choices=[f"fd_{name}" for name in FITTED],
        default="fd_mvg",
        help="what the search minimises",
    )
    args = parser.parse_args(argv)
    for name in ("seeds", "limit", "cpus_per_trial", "max_concurrent", "search_trials"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _plan(args: argparse.Namespace) -> list[TrialConfig]:
    """The grid's trials, validated, with the runtime paths (not part of a trial's identity) made
    absolute; what they ask of this machine or of --address is checked."""
    for variable in PATH_VARIABLES:
        if os.environ.get(variable):  # local Ray workers inherit the launcher's environment
            os.environ[variable] = _absolute(os.environ[variable])
    runtime = {
        key: _absolute(value)
        for key, value in (
            ("data_root", args.data_root),
            ("cache_dir", args.cache_dir),
            ("checkpoint_dir", args.checkpoint_dir),
        )
        if value
    }
    if "compile" in dict(args.overrides):
        raise BadInput("--set compile: --compile auto|on|off decides it for every trial")
    grid = grids.from_file(args.grid_file) if args.grid_file else grids.named_grid(args.grid)
    args.grid = grid.name  # the tag every row carries
    trials = grids.expand(grid, args.seeds, runtime, dict(args.overrides))[: args.limit]
    # mid-trial checkpoints go into the store unless --checkpoint-dir says otherwise
    in_store = str(Path(args.results).expanduser().absolute() / layout.CHECKPOINTS)
    trials = [
        dataclasses.replace(
            cfg,
            data_root=_absolute(cfg.data_root),
            cache_dir=_absolute(cfg.cache_dir),
            checkpoint_dir=_absolute(cfg.checkpoint_dir or in_store),
        )
        for cfg in trials
    ]
    for location in sorted({cfg.checkpoint_dir for cfg in trials if cfg.checkpoint_every}):
        try:
            filesystem(location, "checkpoint_dir")
        except (ValueError, OSError) as exc:  # an unknown protocol, a bucket that cannot be reached
            raise BadInput(f"--checkpoint-dir {location}: {exc}") from None
    if args.address:
        _check_address(args.address)
        if any(cfg.checkpoint_every and cfg.checkpoint_dir == in_store for cfg in trials):
            _warn(
                f"checkpoints go to {in_store} on the disk of each node that runs a trial, so a "
                "trial retried on another node starts over; give every node the same place with "
                "--checkpoint-dir (e.g. s3://bucket/prefix)"
            )
    else:
        _check_local_resources(args, trials)
    return _with_compile(args, trials)


def _with_compile(args: argparse.Namespace, trials: list[TrialConfig]) -> list[TrialConfig]:
    """Each trial's `compile` as --compile says. auto needs GPUs for the trials (this machine's,
    or a cluster's with --address, whose nodes are not known yet)."""
    if args.compile != "auto":
        decisions = [args.compile == "on"] * len(trials)
    elif args.gpus_per_trial != 0 and (args.address or torch.cuda.device_count() > 0):
        decisions = compile_pays(trials, nodes=None if args.address else 1)
    else:
        decisions = [False] * len(trials)
    return [
        dataclasses.replace(cfg, compile=compiled)
        for cfg, compiled in zip(trials, decisions, strict=True)
    ]


def _absolute(path: str) -> str:
    """A relative path from the launcher's folder; '' (the default), '~' (each node's own home)
    and a URI (a checkpoint_dir such as s3://bucket/prefix) stay as they are."""
    kept = not path or path.startswith("~") or "://" in path
    return path if kept else os.path.abspath(path)


def _check_local_resources(args: argparse.Namespace, trials: list[TrialConfig]) -> None:
    """What a trial asks for must exist on this machine, or Ray waits for it forever. (On a
    cluster, --address, nodes come and go: Ray and the trial rows say what is missing there.)"""
    cores = os.cpu_count() or 1
    if args.cpus_per_trial > cores:
        raise BadInput(
            f"--cpus-per-trial {args.cpus_per_trial}: this machine has {cores} CPU cores, so no "
            f"trial could ever start; pass --cpus-per-trial {cores} or less"
        )
    gpus = torch.cuda.device_count()
    share = args.gpus_per_trial
    if (share == "table" and not gpus) or (share not in ("auto", "table") and share > gpus):
        having = f"has {gpus} GPUs" if gpus else "has none"
        raise BadInput(f"--gpus-per-trial {share} asks for GPUs, but this machine {having}")
    for cfg in trials:
        if not cfg.device.startswith("cuda"):
            continue
        index = int(cfg.device.partition(":")[2] or 0)
        seen = _gpus_seen_by_a_trial(share, cfg, gpus)
        if index >= seen:
            raise BadInput(
                f"device: {cfg.device} asks for GPU {index}, but a trial here sees {seen} GPU(s) "
                "(Ray shows each trial its share of a card as cuda:0); use device=cuda or auto"
            )


def _gpus_seen_by_a_trial(share: str | float, cfg: TrialConfig, gpus: int) -> int:
    """Ray sets CUDA_VISIBLE_DEVICES to the cards it gives a trial; with no share, it leaves the
    machine's."""
    if share == "auto":
        share = "table" if gpus else 0
    if share == "table":
        share = gpu_fraction(cfg)
    return min(gpus, math.ceil(share)) if share else gpus


def _check_address(address: str) -> None:
    """A host:port that answers, within seconds: ray.init retries an unreachable one for minutes.
    `auto` (the cluster this machine belongs to) is Ray's to find; it fails at once."""
    if address == "auto":
        return
    client = address.startswith("ray://")
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon:
        host, port = port, str(RAY_CLIENT_PORT if client else RAY_PORT)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), ADDRESS_TIMEOUT_S):
            return
    except ValueError:
        why = f"{port!r} is not a port number"
    except OSError as exc:  # refused, unknown host, timed out
        why = exc.strerror or str(exc) or type(exc).__name__
    raise BadInput(
        f"--address {address}: cannot reach a Ray cluster there ({why}); check the address "
        "(host:port of the head, or auto on a node of the cluster), or leave --address out to "
        "run on this machine"
    )


def _missing_inputs(trials: list[TrialConfig]) -> list[str]:
    """One message for each dataset or scoring network the trials need that this machine lacks."""
    checks = [partial(data.check_available, name, root) for name, root in sorted(_datasets(trials))]
    checks += [
        partial(features.check_extractor, name)
        for name in sorted({cfg.feature_extractor for cfg in trials})
    ]
    missing = []
    for check in checks:
        try:
            check()
        except (DatasetMissing, WeightsMissing) as exc:
            missing.append(str(exc))
    return missing


def _datasets(trials: list[TrialConfig]) -> set[tuple[str, Path]]:
    return {(cfg.dataset, cfg.data_path) for cfg in trials}


def _download_inputs(trials: list[TrialConfig]) -> None:
    for name, root in sorted(_datasets(trials)):
        data.download(name, root)
    if any(cfg.feature_extractor == "inception-fid" for cfg in trials):
        try:
            features.find_fid_weights()  # either source will do
        except features.WeightsMissing:
            features.download_fid_weights()


def _print_plan(args: argparse.Namespace, trials: list[TrialConfig], done: set[str]) -> None:
    """The dry run: curves, counts, and what is missing."""
    grouped = curves.group(trials)
    todo = sum(cfg.trial_id() not in done for cfg in trials)
    print(
        f"grid {args.grid}: {len(grouped)} curves, {len(trials)} trials ({args.seeds} seed(s) each)"
    )
    for curve in grouped.values():
        latents = sorted({cfg.latent for cfg in curve})
        label = curves.label(curve[0].science())
        print(f"  {label:48s} {len(latents):3d} latents: {' '.join(map(str, latents))}")
    compiled = Counter(curves.label(cfg.science()) for cfg in trials if cfg.compile)
    print(f"torch.compile (--compile {args.compile}): {compiled.total()} of {len(trials)} trials")
    for label, count in compiled.items():
        print(f"  {label:48s} {count:3d} trials")
    print(f"{len(trials) - todo} already done in {Path(args.results).absolute()}, {todo} to run")
    if args.search:
        searches = len(grouped) * args.seeds
        print(
            f"--search {args.search}: {searches} searches x {args.search_trials} trials "
            f"on {args.search_metric}"
        )
    missing = _missing_inputs(trials)
    print(
        "missing (the launch stops here until they are provided):"
        if missing
        else "all inputs present"
    )
    for message in missing:
        print("  " + message.replace("\n", "\n  "))


def _summary(store: ResultStore, trials: list[TrialConfig]) -> None:
    """Per curve of the launch and sampler: the latent size with the lowest mean score over the ok
    rows, as the report's optima table finds it."""
    # scipy.stats takes seconds to import: paid only by a launch that gets this far
    from analysis.optimum import find_optima, latent_stats

    labels = {curves.key(cfg.science()): curves.label(cfg.science()) for cfg in trials}
    ok = usable(store.read())
    ok_rows = Counter(curves.key(row) for row in ok.to_dict("records"))
    optima = {
        (curves.key(best), best["sampler"]): best
        for best in find_optima(latent_stats(ok)).to_dict("records")
    }
    width = max(len(label) for label in labels.values())
    print(f"\n{'curve':{width}s}  sampler  best latent  score     metric           ok rows")
    for key, label in labels.items():
        for sampler in FITTED:
            name = LABELS[sampler]
            best = optima.get((key, sampler))
            if best is None:
                print(f"{label:{width}s}  {name:7s}  (no ok rows yet)")
                continue
            print(
                f"{label:{width}s}  {name:7s}  {int(best['latent']):11d}  {best['mean']:8.2f}  "
                f"{best['metric']:15s}  {ok_rows[key]}"
            )
    rows = len(store.status)
    readable = (
        "move the files named above out of it for pandas.read_parquet to read it"
        if store.stray
        else "pandas.read_parquet reads it as one table"
    )
    print(f"\nresults: {store.path} ({rows} rows; {readable})")


def _warn_about_files(store: ResultStore) -> None:
    """Name every file opening the store set aside, and those it leaves but does not own."""
    for part in store.corrupt:
        _warn(f"unreadable part file moved to {part}; its trial will run again")
    for why, moved in store.foreign:
        _warn(f"{why}; moved to {moved}")
    for part, moved in store.outranked:
        _warn(f"{part} is a second row of a trial, not the better or newer one; moved to {moved}")
    if store.stray:
        _warn_stray(store.path, store.stray)


def _warn_stray(path: Path, stray: list[Path]) -> None:
    names = [str(file.relative_to(path)) for file in stray]
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    _warn(
        f"{path} holds files that are not result rows: {', '.join(names[:5])}{more}. The launcher "
        f"and the report skip them, but pandas.read_parquet({str(path)!r}) fails on them: move "
        "them out of the store"
    )


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _run(args: argparse.Namespace, trials: list[TrialConfig], store: ResultStore) -> int:
    _warn_about_files(store)
    status.write_plan(store.path, args.grid, trials, _finished(args), args.search)
    if isinstance(store, MirroredStore):
        store.catch_up()  # the plan, for `dae-study status URI`
        if store.pulled:
            print(f"{store.pulled} rows pulled from the results mirror {store.mirror.uri}")
    done = store.done(_finished(args))
    todo = [cfg for cfg in trials if cfg.trial_id() not in done]
    if not args.search and not todo:
        print(f"all {len(trials)} trials already done in {store.path}; nothing to run")
        _summary(store, trials)
        return 0
    try:
        loaded = {} if args.data_on_nodes else _load_datasets(trials if args.search else todo)
    except BadInput as exc:  # DatasetCorrupt: a checksum, an unreadable file
        _tell(f"launch: error: {exc}")
        return exc.exit_code
    from study import runner  # imports Ray: only when there is something to run

    start = time.monotonic()
    try:
        with runner.ray_session(args.address):
            resources = runner.Resources(
                args.cpus_per_trial, runner.gpu_request(args.gpus_per_trial), args.max_concurrent
            )
            extras = runner.Extras(runner.share_datasets(loaded), args.tensorboard)
            loaded.clear()  # the object store holds them now
            data.clear_memo()
            if args.search:
                callbacks = runner.run_searches(
                    store,
                    args.grid,
                    trials,
                    resources,
                    args.search_trials,
                    args.search_metric,
                    extras,
                )
            else:
                print(
                    f"grid {args.grid}: {len(trials)} trials, {len(trials) - len(todo)} already "
                    f"done, {len(todo)} to run"
                )
                callbacks = [runner.run_grid(store, args.grid, todo, resources, extras)]
    except runner.Abort as abort:  # carried out of Tune's loop: the store refused a write
        raise abort.error from None
    _summary(store, trials)
    print(f"finished in {status.format_duration(time.monotonic() - start)}")
    return EXIT_FAILED_TRIAL if any(callback.failed for callback in callbacks) else 0


def _load_datasets(trials: list[TrialConfig]) -> dict[tuple, data.Dataset]:
    """Each dataset the trials need, read once here (checksums verified) for Ray to hand out."""
    return {data.source(cfg): data.load_for_config(cfg) for cfg in trials}


def _finished(args: argparse.Namespace) -> frozenset[str]:
    """The statuses a relaunch keeps instead of running the trial again."""
    return frozenset({Status.OK}) if args.rerun_diverged else FINISHED


def _dry_run(args: argparse.Namespace, trials: list[TrialConfig], mirror: Mirror | None) -> int:
    path = Path(args.results).expanduser().absolute()
    check_usable(path)  # what the launch would refuse: a file, no permission, another launcher
    found = survey(path)
    if found.stray:
        _warn_stray(path, found.stray)
    live = list(found.live.values())
    if mirror is not None:  # what the launch would pull from it
        live += [part for _, part, _ in mirror.live_rows(mirror.files())[0].values()]
    finished = _finished(args)
    _print_plan(args, trials, {part.trial_id for part in live if part.status in finished})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    with _stop_on_signals() as received:
        return _launch(args, received)


def _launch(args: argparse.Namespace, received: list[int]) -> int:
    try:
        trials = _plan(args)
        mirror = _mirror(args)
        if args.download:
            _download_inputs(trials)
        if args.dry_run:
            return _dry_run(args, trials, mirror)
        missing = _missing_inputs(trials)
        if missing:
            raise BadInput("\n".join(missing))
        store = ResultStore(args.results) if mirror is None else MirroredStore(args.results, mirror)
    except KeyboardInterrupt:
        return _interrupted(received, "nothing ran")
    except StudyError as exc:  # bad input, missing files, an unusable store: nothing ran
        print(f"launch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    with store:
        try:
            code = _run(args, trials, store)
        except KeyboardInterrupt:
            code = _interrupted(received, f"{_stored(store)}; {RESUME}")
        except StoreWriteError as exc:
            _tell(f"launch: error: {exc}; {_stored(store)}; make it writable and {RESUME}")
            code = exc.exit_code
        except StudyError as exc:  # e.g. ray.init could not join --address
            _tell(f"launch: error: {exc}")
            code = exc.exit_code
        return _finish_mirror(store, code)


def _mirror(args: argparse.Namespace) -> Mirror | None:
    """--results-mirror, checked as the launch starts: BadInput if it cannot be written."""
    if not args.results_mirror:
        return None
    mirror = Mirror(_absolute(args.results_mirror))
    mirror.check(Path(args.results).expanduser().absolute())
    return mirror


def _finish_mirror(store: ResultStore, code: int) -> int:
    """The mirror's last catch-up, however the launch ended. A launch whose trials all ran (exit
    status 0 or 1) with the mirror still behind after it ends as a store that cannot be written
    (3): its rows are safe on this machine only, and rerunning the command copies them."""
    if not isinstance(store, MirroredStore):
        return code
    line = store.finish()
    if store.behind is None:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(line, flush=True)
        return code
    _tell(f"launch: {line}")
    return StoreWriteError.exit_code if code in (0, EXIT_FAILED_TRIAL) else code


def _interrupted(received: list[int], what: str) -> int:
    """Say which signal stopped the launch and what it left; its exit status is 128 + signal."""
    signum = received[0] if received else signal.SIGINT  # else a KeyboardInterrupt of Python's own
    _tell(f"launch: interrupted by {signal.Signals(signum).name}: {what}")
    return 128 + signum


def _stored(store: ResultStore) -> str:
    return f"{store.written} rows stored by this launch, {len(store.status)} in all in {store.path}"


def _tell(message: str) -> None:
    """The last word of a stopped launch; after SIGHUP its terminal may be gone."""
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
