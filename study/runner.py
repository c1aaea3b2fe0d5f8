"""Ray Tune wiring: one function trainable around run_trial; a driver callback stores the rows.

Tune overwrites reserved keys of a reported result (trial_id, date, timestamp, done, hostname, pid,
config, ...), so the row travels under ROW_KEY and the callback takes it out again before Tune keeps
the result: Tune's own state stays small and never holds a second copy of the data. Each epoch's
loss is reported too, without ROW_KEY, for Tune's progress and TensorBoard logs.
"""

import contextlib
import dataclasses
import datetime
import functools
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import ray
from ray import tune
from ray.tune.logger import TBXLoggerCallback
from ray.tune.search.optuna import OptunaSearch

from study import deaths, layout
from study.resources import gpu_fraction, longest_first
from study.status import format_duration
from study.store import FINISHED, ResultStore
from study.watchdog import WATCH_TAG
from trainables import checkpoints, curves, data
from trainables.config import TrialConfig, make_config
from trainables.errors import BadInput, StoreWriteError, UnstorableRow
from trainables.schema import Status
from trainables.trial import new_row, run_trial, traceback_summary

ROW_KEY = "dae_study_row"
# What --search optimises; NaN in each epoch's report and for a trial that did not end ok: Tune
# wants the search's metric in every result, and Optuna's searcher takes only floats there (None
# raised inside Tune's loop); it refuses a NaN result (with a warning), so it never learns from it.
SCORE_KEY = "score"
# Each epoch's report (its training loss) for Tune's progress and TensorBoard logs.
EPOCH_KEY = "epoch"
LOSS_KEY = "train_loss"
QUIET_LOGGERS = (
    # "A new study created in memory", once per searched curve
    "optuna",
    # "token auth is enabled" (it stays enabled)
    "ray._private.authentication.authentication_token_setup",
    # "no result.json": we turned Tune's result files off on purpose
    "ray.tune.analysis.experiment_analysis",
)


def _quiet() -> None:
    for noise in QUIET_LOGGERS:
        logging.getLogger(noise).setLevel(logging.ERROR)


class Abort(BaseException):
    """Carries an error out of Ray Tune's loop as it is: Tune wraps an Exception that a callback
    raises into a TuneError and logs its traceback, but lets a BaseException (as KeyboardInterrupt)
    through."""

    def __init__(self, error: Exception):
        super().__init__(error)
        self.error = error


@contextlib.contextmanager
def ray_session(address: str | None):
    """Join a cluster, or start a quiet local one with every core here; disconnect at the end.

    A local cluster is stopped however the launch ends: by ray.shutdown() on the way out of the
    block (an exception or a signal included), and by study/watchdog.py if the launcher is killed.
    """
    # no CSV/JSON/TensorBoard copies of each row
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # a lost worker: our progress line says it, and _tune/ keeps the text
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    # Ctrl-C is the launcher's (study/launch.py): it stops everything, not just one Tune run
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    local = {} if address else {"num_cpus": os.cpu_count()}
    _quiet()
    with contextlib.ExitStack() as stack:
        if not address:
            stack.enter_context(_watchdog())
        stack.callback(ray.shutdown)
        try:
            with _sigterm_kept():
                ray.init(
                    address=address or "local",
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                    **local,
                )
        except (ConnectionError, ValueError) as exc:  # ValueError: a ray:// address, no ray[client]
            if not address:
                raise
            raise BadInput(f"cannot join the Ray cluster at {address}: {exc}") from None
        _quiet()  # again: ray.init's logging config resets the levels of loggers below "ray"
        yield


@contextlib.contextmanager
def _sigterm_kept():
    """The launcher's SIGTERM handler (study/launch.py: it stops a launch cleanly in any phase)
    after ray.init, which installs its own for good as it starts, sys.exit(15): no word, no row
    count. The launcher's goes back as the block ends, and a SIGTERM that ray.init's took meanwhile
    (the SystemExit(15) it raised) is handed to it."""
    launchers = signal.getsignal(signal.SIGTERM)
    try:
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, launchers)
    except SystemExit as stop:
        if stop.code == signal.SIGTERM and callable(launchers):
            launchers(signal.SIGTERM, None)
        raise


@contextlib.contextmanager
def _watchdog():
    """study/watchdog.py for the block: it ends what Ray left running once this process is gone."""
    script = Path(__file__).with_name("watchdog.py")
    # Ray's processes inherit the tag (the watchdog too: it reads it from there)
    os.environ[WATCH_TAG] = f"{os.getpid()}-{time.time_ns()}"
    watchdog = subprocess.Popen(
        [sys.executable, str(script), str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    watchdog.stdout.read()  # its stdout ends once it watches: before Ray starts anything
    try:
        yield
    finally:
        watchdog.stdin.close()  # the watchdog's cue; a killed launcher's pipe closes just the same
        watchdog.wait()
        del os.environ[WATCH_TAG]  # what this process starts after the block is no Ray process


def gpu_request(gpus_per_trial: str | float) -> str | float:
    """--gpus-per-trial auto -> the per-model table when the cluster has GPUs now, else CPU only."""
    if gpus_per_trial != "auto":
        return gpus_per_trial
    return "table" if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def trial_overrides(config: dict) -> dict:
    """A Tune trial's config -> run_trial overrides (a search adds the suggested latent)."""
    return {**config["trial"], **({"latent": config["latent"]} if "latent" in config else {})}


def config_of(config: dict) -> TrialConfig:
    """A Tune trial's config as the TrialConfig it runs, made once per trial in this process
    (Tune asks for its resources, and the callback for its label and row, several times)."""
    return _make_config(json.dumps(trial_overrides(config), sort_keys=True))


@functools.cache
def _make_config(overrides: str) -> TrialConfig:
    return make_config(json.loads(overrides))


def on_given_gpu(overrides: dict, gpu_ids: list) -> dict:
    """A trial that Ray gave a GPU (`gpu_ids`, Ray's for this worker) runs on it or fails: with
    device `auto` it would train on the CPU, without a word, on a node whose CUDA does not work."""
    if gpu_ids and overrides.get("device", "auto") == "auto":
        return {**overrides, "device": "cuda"}
    return overrides


def _gpus_given() -> list:
    """Ray's GPUs for this worker; none outside Ray, where ray.get_gpu_ids would start a cluster."""
    return ray.get_gpu_ids() if ray.is_initialized() else []


def train_one(
    config: dict,
    cpus: int,
    metric: str,
    measured: dict[int, float],
    datasets: dict[tuple, ray.ObjectRef] | None = None,
) -> None:
    """Runs on a Ray worker. A latent the store already holds is answered from it, not retrained.

    datasets: data.source(cfg) -> the (train, test) uint8 arrays in Ray's object store, for the
    trials whose data the launcher loaded (share_datasets); the others read their data root.

    Nothing raised here reaches Tune: run_trial turns a trial's own errors into rows, and an error
    around it (a worker whose code or packages differ from the driver's) becomes a failed row too,
    because Tune retries every exception and a deterministic error would only fail again. Tune's
    retries are thus left to what they are for: a worker process or node that died. Tune retries
    without limit; a retry after the death that fails the trial (study/deaths.py) writes its failed
    row instead of training.
    """
    overrides = trial_overrides(config)
    if overrides["latent"] in measured:
        tune.report({SCORE_KEY: measured[overrides["latent"]], ROW_KEY: None})
        return
    try:
        row = _deaths_row(config.get(deaths.DEATHS_KEY)) or _trained_row(
            overrides, cpus, datasets or {}
        )
    except Exception as exc:  # the driver completes this row from the config (StoreCallback._write)
        row = {
            "status": Status.FAILED,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback_summary(exc),
        }
    ok = row["status"] == Status.OK and row[metric] is not None and math.isfinite(row[metric])
    tune.report({SCORE_KEY: row[metric] if ok else math.nan, ROW_KEY: row})


def _trained_row(overrides: dict, cpus: int, datasets: dict[tuple, ray.ObjectRef]) -> dict:
    import torch

    torch.set_num_threads(cpus)
    cfg = make_config(on_given_gpu(overrides, _gpus_given()))
    row = run_trial(cfg, _shared_images(cfg, datasets), _report_epoch)
    if row["status"] == Status.FAILED and torch.cuda.is_available():
        # after an OOM, hand the card back to the trials packed beside this worker
        torch.cuda.empty_cache()
    return row


def _deaths_row(tally: dict | None) -> dict | None:
    """The failed row of a trial whose worker deaths fail it (study/deaths.py), else None; the
    pending deaths that could are settled here, on the worker, never in the driver's loop."""
    if not tally:
        return None
    if deaths.may_fail(tally):
        time.sleep(max(0.0, deaths.wait_s(tally, time.time())))
        tally = deaths.settle(tally, set(_alive_nodes()), math.inf)
    failed = deaths.failure(tally)
    if failed is None:
        return None
    error, history = failed
    return {"status": Status.FAILED, "error": error, "traceback": history}


def _alive_nodes() -> dict[str, str]:
    """Node id -> ip of every node GCS holds alive."""
    return {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}


def _report_epoch(epochs_done: int, loss: float) -> None:
    tune.report({EPOCH_KEY: epochs_done, LOSS_KEY: loss, SCORE_KEY: math.nan})


def share_datasets(loaded: dict[tuple, data.Dataset]) -> dict[tuple, ray.ObjectRef]:
    """Each dataset into Ray's object store once, as uint8 arrays: every trial that needs it gets
    it from there, on whichever node it runs, and no node needs a dataset folder."""
    return {key: ray.put((d.train.numpy(), d.test.numpy())) for key, d in loaded.items()}


def _shared_images(cfg: TrialConfig, datasets: dict[tuple, ray.ObjectRef]) -> data.Dataset | None:
    ref = datasets.get(data.source(cfg))
    return None if ref is None else data.from_arrays(cfg.dataset, *ray.get(ref))


def _last_failure(errors: str | None) -> str:
    """The text of a trial's last failure: Tune's error file holds a "Failure # N (occurred at
    ...)" block per failure."""
    blocks = (errors or "").strip().split("Failure # ")
    return "\n".join(blocks[-1].splitlines()[1:])


def _failed_row(cfg: TrialConfig, error: str) -> dict:
    """The row of a trial that made none itself (its worker died, or it raised): config and why."""
    return {**new_row(cfg), "status": Status.FAILED, "error": error}


def _remove_checkpoint(cfg: TrialConfig) -> None:
    """Once the row is in the store; a checkpoint that cannot be removed costs space, no row."""
    try:
        checkpoint = checkpoints.for_config(cfg)
        if checkpoint is not None:
            checkpoint.remove()
    except (OSError, ValueError) as exc:
        print(f"warning: could not remove the checkpoint of {cfg.trial_id()}: {exc}", flush=True)


class StoreCallback(tune.Callback):
    """Writes each row to the store on the driver; prints a progress line per finished trial."""

    def __init__(self, store: ResultStore, total: int, grid: str, search: str):
        self.store = store
        self.total = total
        self.tags = {"grid": grid, "search": search}
        self.start = time.monotonic()
        self.ok = 0
        self.diverged = 0
        self.failed = 0
        self.written: set[str] = set()  # Tune trial ids whose row is in the store
        self.nodes_at_start: dict[str, dict[str, str]] = {}  # Tune trial id -> its attempt's

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if ROW_KEY not in result:  # an epoch's loss (_report_epoch)
            return
        row = result.pop(ROW_KEY)
        if row is not None:
            self._write(trials, trial, row)
            return
        self.ok += 1
        latent = trial_overrides(trial.config)["latent"]
        self._progress(
            trials,
            trial,
            f"latent {latent} is already in the store (score {result[SCORE_KEY]:.2f})",
        )

    def on_trial_start(self, iteration, trials, trial, **info):
        self.nodes_at_start[trial.trial_id] = _alive_nodes()

    def on_trial_recover(self, iteration, trials, trial, **info):
        """Tally the death (study/deaths.py) into the config its retry gets."""
        # the trial's own error file, which Tune has just written: get_error() reads the copy in
        # Tune's storage, which lags a failure behind
        errors = Path(trial.error_file).read_text() if trial.error_file else trial.get_error()
        text = _last_failure(errors)
        suspected = deaths.suspects(self.nodes_at_start.get(trial.trial_id, {}), text)
        grace = deaths.grace_s(suspected, ray.get_runtime_context().get_node_id())
        alive = set(_alive_nodes())
        tally, lost = deaths.record(
            trial.config.get(deaths.DEATHS_KEY), text, suspected, alive, time.time(), grace
        )
        trial.config[deaths.DEATHS_KEY] = tally
        cfg = config_of(trial.config)
        if lost:
            why = "its node is gone, which never counts"
        else:
            died = len(tally["counted"]) + len(tally["pending"])
            why = f"its node is up: death {died} of the {deaths.RETRIED + 1} that fail a trial"
            why += f", unless the node goes within {grace:.0f} s" if grace else ""
        label = curves.label(cfg.science())
        print(f"worker lost running {label} latent {cfg.latent}: {why}; retrying", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        if trial.trial_id in self.written:  # the row arrived; whatever failed came after it
            return
        last = _last_failure(trial.get_error()).splitlines()[:1] or ["no error text"]
        cfg = config_of(trial.config)
        row = _failed_row(cfg, f"worker lost {trial.num_failures} times; last: {last[0]}")
        row["traceback"] = (trial.get_error() or "").strip()
        self._write(trials, trial, row)

    def _write(self, trials, trial, row: dict) -> None:
        cfg = config_of(trial.config)
        if row.get("trial_id") is None:  # an error outside run_trial: status, error, traceback
            row = {**_failed_row(cfg, row["error"]), **row}
        row = self._store(cfg, {**row, **self.tags, "replicate": row["seed"]})
        self.written.add(trial.trial_id)
        if row["status"] in FINISHED:  # kept for a failed row: its rerun resumes from it
            _remove_checkpoint(cfg)
        if row["status"] == Status.OK:
            self.ok += 1
            gmm = "n/a" if row["fd_gmm"] is None else f"{row['fd_gmm']:.2f}"
            outcome = f"MVG {row['fd_mvg']:.2f}  GMM {gmm} ({row['wall_s']:.0f} s)"
        else:
            self.diverged += row["status"] == Status.DIVERGED
            self.failed += row["status"] != Status.DIVERGED
            outcome = (row["error"] or "").splitlines()[0][:120]
        label = curves.label(cfg.science())
        self._progress(trials, trial, f"{row['status']} {label} latent {row['latent']}: {outcome}")

    def _store(self, cfg: TrialConfig, row: dict) -> dict:
        """Write the row, or if a value fits no column, the trial's failed row saying which (its
        config always fits); returns what was stored. A store that refuses a write stops the launch:
        every later row would be lost too."""
        try:
            try:
                self.store.write(row)
                return row
            except UnstorableRow as exc:
                error = f"the row could not be stored: {exc}"
                row = {**_failed_row(cfg, error), **self.tags, "replicate": cfg.seed}
                self.store.write(row)
                return row
        except StoreWriteError as exc:
            raise Abort(exc) from None

    def _progress(self, trials, trial, what: str) -> None:
        finished = self.ok + self.diverged + self.failed
        running = sum(t.status == "RUNNING" and t is not trial for t in trials)
        eta = format_duration((time.monotonic() - self.start) / finished * (self.total - finished))
        counts = (
            f"done {self.ok}, diverged {self.diverged}, failed {self.failed}, running {running}"
        )
        counts += f", remaining {self.total - finished - running}"
        print(f"[{finished}/{self.total}] {what} | {counts}, ETA {eta}", flush=True)


@dataclass(frozen=True)
class Extras:
    """What a launch hands its trials besides configs and resources, and what it logs of them."""

    datasets: dict = dataclasses.field(default_factory=dict)  # share_datasets
    tensorboard: bool = False  # Tune's TensorBoard logs: each trial's loss per epoch


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: int
    # "table": study.resources.gpu_fraction per model; a number: that share for all
    gpus_per_trial: str | float
    max_concurrent: int | None


def trial_resources(resources: Resources):
    """Ray resources of one trial from its config (a GPU share by model size if GPUs are used)."""

    def request(config: dict) -> tune.PlacementGroupFactory:
        gpus = resources.gpus_per_trial
        if gpus == "table":
            gpus = gpu_fraction(config_of(config))
        bundle = {"CPU": resources.cpus_per_trial, **({"GPU": gpus} if gpus else {})}
        return tune.PlacementGroupFactory([bundle])

    return request


def _tune_trial_name(trial) -> str:
    return trial.trial_id


def run_grid(
    store: ResultStore,
    grid: str,
    configs: list[TrialConfig],
    resources: Resources,
    extras: Extras | None = None,
) -> StoreCallback:
    """Every config once, as a Tune grid, the longest trials first (Tune starts them in the grid's
    order); returns the callback, which counts what finished."""
    callback = StoreCallback(store, len(configs), grid, "grid")
    ordered = longest_first(configs)
    param_space = {"trial": tune.grid_search([dataclasses.asdict(cfg) for cfg in ordered])}
    _fit(store, callback, resources, param_space, extras=extras)
    return callback


def _measured_scores(store: ResultStore, cfg: TrialConfig, metric: str) -> dict[int, float]:
    """latent -> score of every ok row in the store on cfg's curve and seed."""
    rows = store.read()
    rows = rows[(rows["status"] == Status.OK) & (rows["seed"] == cfg.seed)]
    key = curves.key(cfg.science())
    return {
        int(row["latent"]): float(row[metric])
        for row in rows.to_dict("records")
        if curves.key(row) == key and math.isfinite(row[metric])
    }


def _run_search(
    store: ResultStore,
    grid: str,
    curve: list[TrialConfig],
    resources: Resources,
    trials: int,
    metric: str,
    extras: Extras | None,
) -> StoreCallback:
    """Optuna (TPE) over log(latent) in the curve's grid range, told every latent already stored."""
    latents = [cfg.latent for cfg in curve]
    measured = {
        k: v
        for k, v in _measured_scores(store, curve[0], metric).items()
        if min(latents) <= k <= max(latents)
    }
    searcher = OptunaSearch(
        space={
            "latent": optuna.distributions.IntDistribution(min(latents), max(latents), log=True)
        },
        metric=SCORE_KEY,
        mode="min",
        points_to_evaluate=[{"latent": latent} for latent in measured] or None,
        evaluated_rewards=list(measured.values()) or None,
        seed=curve[0].seed,
    )
    callback = StoreCallback(store, trials, grid, "optuna")
    known = (
        ", ".join(f"{latent}: {score:.2f}" for latent, score in sorted(measured.items())) or "none"
    )
    print(
        f"searching {curves.label(curve[0].science())} seed {curve[0].seed} "
        f"over latent {min(latents)}..{max(latents)}: "
        f"{trials} trials; already measured ({metric}) {known}",
        flush=True,
    )
    param_space = {"trial": dataclasses.asdict(curve[0])}
    _fit(
        store,
        callback,
        resources,
        param_space,
        extras=extras,
        metric=metric,
        measured=measured,
        search_alg=searcher,
        samples=trials,
    )
    return callback


def run_searches(
    store: ResultStore,
    grid: str,
    configs: list[TrialConfig],
    resources: Resources,
    trials: int,
    metric: str,
    extras: Extras | None = None,
) -> list[StoreCallback]:
    """One search per curve and seed, one after the other; a curve with a single latent has nothing
    to search."""
    callbacks = []
    for curve in curves.group(configs).values():
        for seed in sorted({cfg.seed for cfg in curve}):
            replicate = [cfg for cfg in curve if cfg.seed == seed]
            if len({cfg.latent for cfg in replicate}) < 2:
                label = curves.label(replicate[0].science())
                print(f"not searching {label} seed {seed}: one latent size, no range")
                continue
            callbacks.append(_run_search(store, grid, replicate, resources, trials, metric, extras))
    return callbacks


def _fit(
    store,
    callback,
    resources,
    param_space,
    extras=None,
    metric="fd_mvg",
    measured=None,
    search_alg=None,
    samples=1,
) -> None:
    extras = extras or Extras()
    trainable = tune.with_parameters(
        train_one,
        cpus=resources.cpus_per_trial,
        metric=metric,
        measured=measured or {},
        datasets=extras.datasets,
    )
    loggers = [TBXLoggerCallback()] if extras.tensorboard else []  # after ours, which pops the row
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, trial_resources(resources)),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=search_alg,
                num_samples=samples,
                max_concurrent_trials=resources.max_concurrent,
                # a worker keeps torch, the dataset and the scoring network loaded between trials
                reuse_actors=True,
                trial_name_creator=_tune_trial_name,
                trial_dirname_creator=_tune_trial_name,
            ),
            run_config=tune.RunConfig(
                name=f"{callback.tags['grid']}-{callback.tags['search']}-{datetime.datetime.now():%Y%m%d-%H%M%S}",
                # Tune's own state, inside the store: readers skip "_" folders, the store (not
                # Tune) is what a relaunch resumes from, and a lost worker's error.txt stays
                # beside the row that reports it
                storage_path=str(store.path / layout.TUNE),
                # every lost worker is retried: study/deaths.py decides which fail the trial
                failure_config=tune.FailureConfig(max_failures=-1),
                callbacks=[callback, *loggers],
                verbose=0,
            ),
        )
        tuner.fit()
    except Exception as exc:
        cause = _store_failure(exc, store)
        if cause is None:
            raise
        message = f"cannot write to the results store {store.path} ({layout.TUNE}/): {cause}"
        raise StoreWriteError(message) from None


def _store_failure(exc: BaseException | None, store: ResultStore) -> OSError | None:
    """The OSError behind `exc` if it was about a file in the store: Ray Tune writes its own state
    to _tune/ there, and a full or read-only disk may trip it before the next row."""
    while exc is not None:
        if isinstance(exc, OSError) and str(store.path) in f"{exc} {exc.filename}":
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
