"""The study loop: open or resume a study, run trials as ordinary runs, share the budget."""

import gc
import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState
from optuna_integration import KerasPruningCallback

from kapps.errors import ConfigError
from pipelines.cv import train_folds_or_one
from pipelines.runs import RunFolder, TuneFolder
from pipelines.tasks import get_task
from pipelines.train import TrainingDiverged
from pipelines.tune.space import suggest, trial_config
from pipelines.tune.storage import open_storage, redact

SURPLUS_ATTR = "kapps:surplus"
POLL_SECONDS = 1.0


class TrialFailed(Exception):
    """A trial that cannot finish (bad values, NaN, out of memory); the study goes on."""


@dataclass
class Study:
    """What a tuning session works on: the study, its settings and where it writes."""

    study: optuna.Study
    cfg: object  # the competition's Config (trials start from it)
    metric: str
    direction: str
    folder: TuneFolder
    storage_url: str
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


def default_folder(cfg):
    return TuneFolder(Path(cfg.run.dir) / cfg.competition.name / "tune")


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
    folder = TuneFolder(out_dir) if out_dir else default_folder(cfg)
    storage_url = storage or f"journal:{folder.journal}"
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
    return Study(study, cfg, metric, direction, folder, storage_url)


def _retried(trials):
    """Numbers of failed trials that a later trial retries."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def counted_trials(trials):
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
                or t.user_attrs.get(SURPLUS_ATTR)
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


def _trial_run(session, trial):
    """A new trial's run folder; a retry resumes its dead predecessor's where it can."""
    previous = trial.user_attrs.get("run_dir")
    if (
        previous
        and trial.user_attrs.get("host") == socket.gethostname()
        and Path(previous).is_dir()
    ):
        return RunFolder(previous)
    return session.folder.trial(f"{session.study.study_name}-{trial.number:04d}")


def make_objective(session, log):
    def objective(trial):
        study = session.study
        trials = study.get_trials(deepcopy=False)
        ahead = [t for t in counted_trials(trials) if t.number < trial.number]
        if len(ahead) >= session.cfg.tune.trials:
            # Started at the same moment as another worker for the last place.
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise TrialFailed("surplus: the study already has its trials")
        keras.backend.clear_session(free_memory=True)
        base = session.cfg.model_dump(mode="json")
        params = suggest(trial, session.cfg.tune.space, base)
        run = _trial_run(session, trial)
        trial.set_user_attr("run_dir", str(run.path.resolve()))
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("worker", session.worker)
        try:
            cfg = trial_config(session.cfg, params, session.metric)
            train_folds_or_one(
                cfg,
                log=lambda _message: None,
                run_dir=run.path,
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
            folds = [run.fold(k) for k in range(cfg.cv.folds)]
            return float(np.mean([_best_value(session, f) for f in folds]))
        return _best_value(session, run)

    return objective


def _best_value(session, run):
    values = pd.read_csv(run.history)[session.metric].dropna()
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
    elif trial.user_attrs.get(SURPLUS_ATTR):
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
            places = counted_trials(study.get_trials(deepcopy=False))
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
