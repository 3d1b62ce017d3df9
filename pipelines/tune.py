"""`kapps tune`: Optuna studies over a competition's `tune.space`.

Each trial is an ordinary run (its own run folder, recorded in the trial's user
attributes) of the competition's config with the sampled values set, trained
for `tune.epochs` and scored by the best per-epoch value of the task's metric
(`val_accuracy` for an accuracy-scored competition, …), which is also what the
pruner sees after every epoch through `optuna_integration.KerasPruningCallback`.

Storage is any Optuna URL: `sqlite:///file.db` for one process, `journal:FILE`
for several processes on one machine (`--workers K` starts them), and
`postgresql://…` or `mysql://…` for many machines running the same command.
Running trials send heartbeats; a trial whose worker died is failed and
re-queued once its heartbeat is older than twice `tune.heartbeat` (Optuna's
`RetryHeartbeatStaleTrialCallback`), and the retry resumes the dead trial's run folder
from its last finished epoch. Optuna's journal storage has no heartbeat, so
`HeartbeatJournalStorage` adds one (the only part written by hand here).

With `cv.folds` > 1 a trial trains every fold and scores the mean of the
folds' best values; the pruner watches the first fold's epochs.

The study holds `tune.trials` trials whatever the number of workers: a worker
starts a trial only while fewer are finished or running, waits while the last
ones run elsewhere (so it can take over a dead worker's trial), and a trial
that two workers started for the last place at once is dropped before it
samples anything (failed, marked `kapps:surplus`).
"""

import contextlib
import gc
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import optuna
import pandas as pd
import yaml
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from optuna_integration import KerasPruningCallback

from kapps.errors import ConfigError, KappsError
from pipelines.config import validate_config
from pipelines.cv import fold_dir
from pipelines.runs import atomic_write, write_text
from pipelines.tasks import get_task
from pipelines.train import HISTORY_FILE, TrainingDiverged, train

BEST_FILE = "best.yaml"
TRIALS_FILE = "trials.csv"
HEARTBEAT_ATTR = "kapps:heartbeat"
SURPLUS_ATTR = "kapps:surplus"
POLL_SECONDS = 1.0
PLOTS = {
    "history.png": "plot_optimization_history",
    "importances.png": "plot_param_importances",
    "parallel.png": "plot_parallel_coordinate",
}


class TrialFailed(Exception):
    """A trial that cannot finish (bad values, NaN, out of memory); the study goes on."""


# Storage ---------------------------------------------------------------------


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage with the heartbeat its RDB storage has.

    A running trial records the time in a system attribute every
    `heartbeat_interval` seconds; a running trial whose last beat (or start)
    is older than `grace_period` is stale, and Optuna fails it and calls
    `heartbeat_stale_trial_callback` (a retry) as it does for RDB storages.
    """

    def __init__(self, backend, heartbeat_interval, grace_period=None, stale_callback=None):
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period or 2 * heartbeat_interval
        self.stale_callback = stale_callback

    def record_heartbeat(self, trial_id):
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id):
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            # A retried trial carries its predecessor's last beat: its start counts too.
            last = max(
                trial.system_attrs.get(HEARTBEAT_ATTR, 0.0), trial.datetime_start.timestamp()
            )
            if now - last > self.grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self):
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self.stale_callback


def redact(url):
    """The storage URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
    return url


# Two workers opening an empty database at once both create Optuna's tables;
# the slower one fails on a name the other has just taken (optuna#1092). Its
# next attempt finds the tables made.
SCHEMA_RACE = ("already exists", "duplicate key value")
SCHEMA_ATTEMPTS = 5


def _rdb_storage(url, tune, retry):
    """`RDBStorage(url)`, tried again while its schema creation races another worker's."""
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    heartbeat_interval=tune.heartbeat,
                    heartbeat_stale_trial_callback=retry,
                    engine_kwargs=_engine_kwargs(url),
                )
        except Exception as err:
            if attempt == SCHEMA_ATTEMPTS or not any(m in str(err) for m in SCHEMA_RACE):
                raise
            time.sleep(0.5 * attempt)


def open_storage(url, tune):
    """An Optuna storage for `url` with heartbeats and retries of dead workers' trials.

    `journal:PATH` is a journal file (several local processes); anything else
    is an SQLAlchemy URL (sqlite, postgresql, mysql). A URL that cannot be
    opened raises `ConfigError`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(
            max_retry=tune.max_retry, inherit_intermediate_values=True
        )
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return HeartbeatJournalStorage(
            JournalFileBackend(str(path)), tune.heartbeat, stale_callback=retry
        )
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg"):
        # psycopg 3 (the postgres extra), whichever default driver SQLAlchemy has.
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        return _rdb_storage(url, tune, retry)
    except ImportError as err:
        raise ConfigError(
            f"storage {redact(url)} needs a database driver that is not installed ({err.name}); "
            "pip install 'kapps[postgres]' (psycopg) for PostgreSQL, PyMySQL for MySQL"
        ) from None
    except Exception as err:  # SQLAlchemy's errors: bad URL, server down, bad password
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot open the study storage {redact(url)}: {reason}") from None


def _engine_kwargs(url):
    if url.startswith(("postgresql", "mysql")):
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    return {}


# Search space ------------------------------------------------------------------


def _lookup(data, key):
    node = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(data, key, value):
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _holds(condition, params, base):
    for key, wanted in condition.items():
        value = params[key] if key in params else _lookup(base, key)
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if value not in allowed:
            return False
    return True


def suggest(trial, space, base):
    """Sample `space` for `trial` in its order; an entry with `when` only where it holds."""
    params = {}
    for key, entry in space.items():
        if entry.when and not _holds(entry.when, params, base):
            continue
        if entry.type == "categorical":
            params[key] = trial.suggest_categorical(key, entry.choices)
        elif entry.type == "int":
            params[key] = trial.suggest_int(
                key, int(entry.low), int(entry.high), step=int(entry.step or 1), log=entry.log
            )
        else:
            params[key] = trial.suggest_float(
                key, entry.low, entry.high, step=entry.step, log=entry.log
            )
    return params


def nested(params):
    """`{"train.lr": 0.01}` → `{"train": {"lr": 0.01}}`, the shape of an override file."""
    data = {}
    for key, value in params.items():
        _set(data, key, value)
    return data


# The study -----------------------------------------------------------------------


@dataclass
class Study:
    """What a tuning session works on: the study, its settings and where it writes."""

    study: optuna.Study
    cfg: object  # the competition's Config (trials start from it)
    metric: str
    direction: str
    out_dir: Path
    storage_url: str
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


def default_out_dir(cfg):
    return Path(cfg.run.dir) / cfg.competition.name / "tune"


def default_storage(out_dir):
    return f"journal:{Path(out_dir) / 'study.log'}"


def _sampler(tune, seed, workers):
    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if tune.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=tune.startup_trials, warn_independent_sampling=False
        )
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=tune.startup_trials,
        multivariate=True,
        group=True,  # conditional entries (`when`) form their own groups
        constant_liar=workers > 1,
    )


def _pruner(tune, epochs):
    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=tune.startup_trials, n_warmup_steps=tune.warmup_epochs
        )
    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def open_study(cfg, study_name=None, storage=None, out_dir=None, worker_index=0, workers=1):
    """Create the study (or load it to resume) for `cfg`; user errors raise `ConfigError`."""
    tune = cfg.tune
    if not tune.space:
        raise ConfigError(
            "tune.space is empty: list the keys to search in competition.yaml, e.g. "
            "tune: {space: {train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}}"
        )
    task_metric, task_direction = get_task(cfg).objective()
    metric = tune.metric or task_metric
    if tune.direction:
        direction = tune.direction
    elif tune.metric:
        direction = "minimize" if metric.endswith("loss") else "maximize"
    else:
        direction = task_direction
    out_dir = Path(out_dir) if out_dir else default_out_dir(cfg)
    storage_url = storage or default_storage(out_dir)
    seed = cfg.train.seed if tune.seed is None else tune.seed
    if storage_url.startswith(("postgresql", "mysql")) and workers == 1:
        # The same command runs on every machine: one seed each, or they would
        # all sample the same values.
        seed = hash((socket.gethostname(), os.getpid(), seed)) % 2**31
    else:
        seed += worker_index
    epochs = tune.epochs or cfg.train.epochs
    name = study_name or cfg.competition.name
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes, one per model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            study = optuna.create_study(
                study_name=name,
                storage=open_storage(storage_url, tune),
                sampler=_sampler(tune, seed, workers),
                pruner=_pruner(tune, epochs),
                direction=direction,
                load_if_exists=True,
            )
        except ValueError as err:  # e.g. an existing study with the other direction
            raise ConfigError(f"study {name!r} in {redact(storage_url)}: {err}") from None
    recorded = study.user_attrs.get("metric")
    if recorded and recorded != metric:
        raise ConfigError(
            f"study {name!r} optimises {recorded}, not {metric}: use another --study-name"
        )
    if not recorded:
        study.set_user_attr("metric", metric)
        study.set_user_attr("competition", cfg.competition.name)
    return Study(study, cfg, metric, direction, out_dir, storage_url)


def _retried(trials):
    """Numbers of failed trials that a later trial retries."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def _places(trials):
    """The trials that count towards `tune.trials`, in order: every trial except a
    failed one that was retried, dropped as surplus, or interrupted."""
    retried = _retried(trials)
    return [
        t
        for t in trials
        if not (
            t.state == TrialState.FAIL
            and (
                t.number in retried
                or t.system_attrs.get(SURPLUS_ATTR)
                or t.user_attrs.get("interrupted")
            )
        )
    ]


class _Pruning(KerasPruningCallback):
    """Report the metric every epoch; a metric the model does not log is a config error."""

    def on_epoch_end(self, epoch, logs=None):
        if self._monitor not in (logs or {}):
            names = ", ".join(sorted(k for k in logs or {} if k.startswith("val_")))
            raise ConfigError(
                f"tune.metric {self._monitor!r} is not logged by this model; "
                f"one of: {names or 'no validation metric'}"
            )
        super().on_epoch_end(epoch, logs)


def _oom(err):
    text = f"{type(err).__name__} {err}"
    return isinstance(err, MemoryError) or any(
        s in text for s in ("ResourceExhausted", "RESOURCE_EXHAUSTED", "out of memory")
    )


def _run_dir(session, trial):
    """A new trial's run folder; a retry resumes its dead predecessor's where it can."""
    previous = trial.user_attrs.get("run_dir")
    if (
        previous
        and trial.user_attrs.get("host") == socket.gethostname()
        and Path(previous).is_dir()
    ):
        return Path(previous)
    name = f"{session.study.study_name}-{trial.number:04d}"
    return session.out_dir / "trials" / name


def trial_config(cfg, params, metric):
    """The config of one trial: `cfg` with `params` set, `tune.epochs` and the metric
    as the checkpoint monitor. Invalid values raise `ConfigError`."""
    data = cfg.model_dump(mode="json")
    for key, value in params.items():
        _set(data, key, value)
    if cfg.tune.epochs:
        data["train"]["epochs"] = cfg.tune.epochs
    if not cfg.train.monitor:
        data["train"]["monitor"] = metric
    return validate_config(data, source="trial")


def make_objective(session, log):
    def objective(trial):
        study = session.study
        trials = study.get_trials(deepcopy=False)
        ahead = [t for t in _places(trials) if t.number < trial.number]
        if len(ahead) >= session.cfg.tune.trials:
            # Started at the same moment as another worker for the last place.
            study._storage.set_trial_system_attr(trial._trial_id, SURPLUS_ATTR, True)
            raise TrialFailed("surplus: the study already has its trials")
        keras.backend.clear_session(free_memory=True)
        base = session.cfg.model_dump(mode="json")
        params = suggest(trial, session.cfg.tune.space, base)
        run_dir = _run_dir(session, trial)
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("worker", session.worker)
        try:
            cfg = trial_config(session.cfg, params, session.metric)
            train(
                cfg,
                log=lambda _message: None,
                run_dir=run_dir,
                callbacks=[_Pruning(trial, session.metric)],
                verbose=0,
            )
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        except ConfigError as err:
            if "tune.metric" in str(err):
                raise
            trial.set_user_attr("error", str(err))
            raise TrialFailed(str(err)) from None
        except (TrainingDiverged, TypeError, ValueError) as err:
            trial.set_user_attr("error", f"{type(err).__name__}: {err}")
            raise TrialFailed(str(err)) from None
        except Exception as err:
            if not _oom(err):
                raise
            trial.set_user_attr("error", "out of memory")
            raise TrialFailed("out of memory") from None
        finally:
            keras.backend.clear_session(free_memory=True)
            gc.collect()
        if cfg.cv.folds > 1:  # the CV mean of each fold's best epoch
            folds = [fold_dir(run_dir, k) for k in range(cfg.cv.folds)]
            return float(np.mean([_best_value(session, f) for f in folds]))
        return _best_value(session, run_dir)

    return objective


def _best_value(session, run_dir):
    values = pd.read_csv(run_dir / HISTORY_FILE)[session.metric].dropna()
    if values.empty:
        raise TrialFailed(f"no finite {session.metric} was logged")
    return float(values.max() if session.direction == "maximize" else values.min())


def _describe_trial(session, trial):
    params = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    seconds = (
        f" in {(trial.datetime_complete - trial.datetime_start).total_seconds():.0f} s"
        if trial.datetime_complete and trial.datetime_start
        else ""
    )
    if trial.state == TrialState.COMPLETE:
        outcome = f"{session.metric} {trial.value:.4f}"
    elif trial.state == TrialState.PRUNED:
        outcome = f"[yellow]pruned after {len(trial.intermediate_values)} epochs[/]"
    elif trial.system_attrs.get(SURPLUS_ATTR):
        return None
    else:
        outcome = f"[red]failed: {trial.user_attrs.get('error', 'see the log above')}[/]"
    return f"trial {trial.number} ({params}): {outcome}{seconds}"


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def optimize(session, timeout=None, log=print):
    """Run trials in this process until the study holds `tune.trials` of them.

    Waits while the last trials run in other workers, so that a dead worker's
    trial, failed by its stale heartbeat and re-queued, is taken over here.
    """
    study, wanted = session.study, session.cfg.tune.trials
    deadline = time.monotonic() + timeout if timeout else None
    objective = make_objective(session, log)

    def announce(_study, trial):
        line = _describe_trial(session, trial)
        if line:
            log(line)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        while deadline is None or time.monotonic() < deadline:
            optuna.storages.fail_stale_trials(study)
            places = _places(study.get_trials(deepcopy=False))
            if sum(t.state.is_finished() for t in places) >= wanted:
                return
            waiting = any(t.state == TrialState.WAITING for t in places)
            if len(places) >= wanted and not waiting:
                time.sleep(POLL_SECONDS)
                continue
            study.optimize(
                objective,
                n_trials=1,
                catch=(TrialFailed,),
                callbacks=[announce],
                gc_after_trial=True,
            )


def run_workers(count, child_args, log=print):
    """Start `count` worker processes of `kapps tune` on one storage and wait for them."""
    procs = []
    for index in range(count):
        argv = [sys.executable, "-m", "pipelines.cli", "tune", *child_args]
        argv += ["--worker-index", str(index)]
        procs.append(subprocess.Popen(argv))
    log(f"started {count} workers: {', '.join(str(p.pid) for p in procs)}")
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    failed = [(i, c) for i, c in enumerate(codes) if c != 0]
    if failed:
        detail = ", ".join(f"worker {i} exited with status {c}" for i, c in failed)
        raise KappsError(f"{detail}; the study keeps every finished trial (re-run to resume)")


# Report ----------------------------------------------------------------------------


@dataclass
class Report:
    best: object  # the best FrozenTrial, or None
    top: list  # best finished trials, best first
    counts: dict  # state name → trials
    files: list  # what was written


def report(session, top=5):
    """best.yaml, trials.csv and the study plots in the tune folder."""
    study, out = session.study, session.out_dir
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    counts = {}
    for t in _places(trials):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return Report(None, [], counts, [])
    reverse = session.direction == "maximize"
    ranked = sorted(complete, key=lambda t: t.value, reverse=reverse)
    best = ranked[0]
    header = (
        f"# Best trial {best.number} of study {study.study_name!r}: "
        f"{session.metric} {best.value:.6g}\n"
        f"# run folder: {best.user_attrs.get('run_dir')}\n"
        f"# kapps train {session.cfg.competition.dir} --override {out / BEST_FILE}\n"
    )
    body = yaml.safe_dump(nested(best.params), sort_keys=False)
    write_text(out / BEST_FILE, header + body)
    files = [out / BEST_FILE]
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs"))
    write_text(out / TRIALS_FILE, frame.to_csv(index=False))
    files.append(out / TRIALS_FILE)
    files += _plots(study, out)
    return Report(best, ranked[:top], counts, files)


def _plots(study, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    written = []
    for filename, name in PLOTS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                axes = getattr(optuna_plots, name)(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # too few finished trials for this plot
        figure = axes.ravel()[0].figure if hasattr(axes, "ravel") else axes.figure
        figure.set_size_inches(11, 6)
        figure.tight_layout()
        atomic_write(out / filename, lambda tmp, f=figure: f.savefig(tmp, format="png", dpi=100))
        plt.close(figure)
        written.append(out / filename)
    return written
