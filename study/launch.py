"""python study/launch.py [--grid NAME]: run a named grid (default: digits), or an Optuna search
over its curves, into the store.

Every input is checked before Ray starts (grid, config keys and values, datasets, scoring weights,
the results path, another launcher); a bad one ends the launch with one message on stderr and exit
status 2. Trials already `ok` or `diverged` in the store are skipped (a divergence is a result;
--rerun-diverged runs them again), so the same command resumes a killed launch and reruns only the
trials that `failed`. Every trial ends as a row, whatever happens to it; the launch exits 1 when
some of them failed, else 0.

Custom grids without editing code:
  --set KEY=VALUE   override one config field in every trial of the grid (repeatable); VALUE is
                    read as JSON where it parses (2, 1e-4, true, [3,3,2,1]) and as a string
                    otherwise, e.g. --grid digits --set epochs=2 --set batch_size=64
  --grid-file PATH  a JSON (.json) or YAML list of override mappings, one trial each, instead of
                    --grid, e.g. [{"dataset": "digits", "latent": 8},
                                  {"dataset": "digits", "latent": 16, "model": "vae"}];
                    rows are tagged with the file's stem as their grid name
"""

import argparse
import json
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the stages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from analysis.results import usable
from study import grids
from study.store import FINISHED, ResultStore, scan
from trainables import data, features
from trainables.config import TrialConfig
from trainables.schema import SAMPLERS

# The samplers the paper draws from, for the summary and --search-metric (N(0,I) is in the store).
REPORTED_SAMPLERS = ("mvg", "gmm")


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
        "--data-root", help="datasets folder (default $DAE_DATA_ROOT or ~/.cache/dae-study/data)"
    )
    parser.add_argument(
        "--cache-dir", help="reference statistics, digits-cnn (default $DAE_CACHE_DIR)"
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
        choices=[f"fd_{name}" for name in REPORTED_SAMPLERS],
        default="fd_mvg",
        help="what the search minimises",
    )
    args = parser.parse_args(argv)
    for name in ("seeds", "limit", "cpus_per_trial", "max_concurrent", "search_trials"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _plan(args: argparse.Namespace) -> list[TrialConfig]:
    """The grid's trials, validated, with the runtime paths (not part of a trial's identity)."""
    if (
        args.gpus_per_trial not in ("auto", 0)
        and not args.address
        and not torch.cuda.is_available()
    ):
        raise ValueError(
            f"--gpus-per-trial {args.gpus_per_trial} asks for GPUs, but this machine has none"
        )
    runtime = {
        key: value
        for key, value in (("data_root", args.data_root), ("cache_dir", args.cache_dir))
        if value
    }
    grid = grids.from_file(args.grid_file) if args.grid_file else grids.named_grid(args.grid)
    args.grid = grid.name  # the tag every row carries
    return grids.expand(grid, args.seeds, runtime, dict(args.overrides))[: args.limit]


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
        except FileNotFoundError as exc:  # DatasetMissing, WeightsMissing
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
    grouped = grids.curves(trials)
    todo = sum(cfg.trial_id() not in done for cfg in trials)
    print(
        f"grid {args.grid}: {len(grouped)} curves, {len(trials)} trials ({args.seeds} seed(s) each)"
    )
    for curve in grouped.values():
        latents = sorted({cfg.latent for cfg in curve})
        label = grids.curve_label(curve[0])
        print(f"  {label:48s} {len(latents):3d} latents: {' '.join(map(str, latents))}")
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

    labels = {grids.curve_key(cfg.science()): grids.curve_label(cfg) for cfg in trials}
    ok = usable(store.read())
    ok_rows = Counter(grids.curve_key(row) for row in ok.to_dict("records"))
    optima = {
        (grids.curve_key(best), best["sampler"]): best
        for best in find_optima(latent_stats(ok)).to_dict("records")
    }
    width = max(len(label) for label in labels.values())
    print(f"\n{'curve':{width}s}  sampler  best latent  score     metric           ok rows")
    for key, label in labels.items():
        for sampler in REPORTED_SAMPLERS:
            name = SAMPLERS[sampler]
            best = optima.get((key, sampler))
            if best is None:
                print(f"{label:{width}s}  {name:7s}  (no ok rows yet)")
                continue
            print(
                f"{label:{width}s}  {name:7s}  {int(best['latent']):11d}  {best['mean']:8.2f}  "
                f"{best['metric']:15s}  {ok_rows[key]}"
            )
    rows = len(store.status)
    print(f"\nresults: {store.path} ({rows} rows; pandas.read_parquet reads it as one table)")


def _run(args: argparse.Namespace, trials: list[TrialConfig], store: ResultStore) -> int:
    for part in store.corrupt:
        print(
            f"warning: unreadable part file moved to {part}; its trial will run again",
            file=sys.stderr,
        )
    done = store.done(_finished(args))
    todo = [cfg for cfg in trials if cfg.trial_id() not in done]
    if not args.search and not todo:
        print(f"all {len(trials)} trials already done in {store.path}; nothing to run")
        _summary(store, trials)
        return 0
    from study import runner  # imports Ray: only when there is something to run

    start = time.monotonic()
    with runner.ray_session(args.address):
        resources = runner.Resources(
            args.cpus_per_trial, runner.gpu_request(args.gpus_per_trial), args.max_concurrent
        )
        if args.search:
            callbacks = runner.run_searches(
                store, args.grid, trials, resources, args.search_trials, args.search_metric
            )
        else:
            print(
                f"grid {args.grid}: {len(trials)} trials, {len(trials) - len(todo)} already done, "
                f"{len(todo)} to run"
            )
            callbacks = [runner.run_grid(store, args.grid, todo, resources)]
    _summary(store, trials)
    print(f"finished in {runner.format_duration(time.monotonic() - start)}")
    return 1 if any(callback.failed for callback in callbacks) else 0


def _finished(args: argparse.Namespace) -> frozenset[str]:
    """The statuses a relaunch keeps instead of running the trial again."""
    return frozenset({"ok"}) if args.rerun_diverged else FINISHED


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        trials = _plan(args)
        if args.download:
            _download_inputs(trials)
        if args.dry_run:
            statuses = scan(Path(args.results))[0]
            done = {trial_id for trial_id, status in statuses.items() if status in _finished(args)}
            _print_plan(args, trials, done)
            return 0
        missing = _missing_inputs(trials)
        if missing:
            raise FileNotFoundError("\n".join(missing))
        store = ResultStore(args.results)
    except (ValueError, OSError, RuntimeError) as exc:  # bad input, missing files, unusable store
        print(f"launch: error: {exc}", file=sys.stderr)
        return 2
    with store:
        return _run(args, trials, store)


if __name__ == "__main__":
    sys.exit(main())
