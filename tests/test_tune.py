"""`kapps tune`: search space, trials that fail, workers sharing a study, dead workers."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from pipelines.config import load_config
from pipelines.tune import (
    nested,
    open_storage,
    open_study,
    optimize,
    redact,
    suggest,
)
from pipelines.tune.study import _oom

# Two short epochs of LeNet-5 per trial; workers are separate processes.
TINY = [
    "tune.epochs=2",
    "train.patience=0",
    "train.warmup_epochs=0",
    "tune.startup_trials=1",
    "tune.metric=null",  # the task's own: val_accuracy, maximised
]
SPACE = (
    "tune.space={train.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}, "
    "train.batch_size: {type: categorical, choices: [32, 64]}}"
)
POSTGRES = os.environ.get(
    "KAPPS_TEST_POSTGRES", "postgresql://kapps:kapps@127.0.0.1:5432/kapps_test"
)


def _digits(competition, workdir, *extra):
    from pipelines.prepare import prepare

    comp = competition("digits")
    cfg = load_config(comp, [*TINY, SPACE, f"run.dir={workdir / 'runs'}", *extra])
    prepare(cfg, log=lambda _: None)
    return comp, cfg


def _states(study):
    states = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state] = states.get(t.state, 0) + 1
    return states


# Search space ----------------------------------------------------------------------


def test_conditional_entries_are_sampled_only_where_they_hold(competition, workdir):
    cfg = load_config(
        competition("digits"),
        [
            "tune.space={train.optimizer: {type: categorical, choices: [adamw, sgd]}, "
            "train.momentum: {type: float, low: 0.8, high: 0.99, when: {train.optimizer: sgd}}, "
            "model.args.style: {type: categorical, choices: [paper], when: {model.name: [vgg16]}}}"
        ],
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(12):
        trial = study.ask()
        params = suggest(trial, cfg.tune.space, cfg.model_dump(mode="json"))
        seen.append(params)
        study.tell(trial, 0.0)
        assert ("train.momentum" in params) == (params["train.optimizer"] == "sgd")
        assert "model.args.style" not in params  # model.name is lenet5, not vgg16
    assert {p["train.optimizer"] for p in seen} == {"adamw", "sgd"}
    assert nested({"train.lr": 0.1, "model.args.alpha": 0.5}) == {
        "train": {"lr": 0.1},
        "model": {"args": {"alpha": 0.5}},
    }


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("{train.lrr: {type: float, low: 1, high: 2}}", "did you mean 'train.lr'"),
        ("{train.lr: {type: float, low: 0, high: 1, log: true}}", "log-scale entry needs low > 0"),
        ("{train.lr: {type: categorical, choices: []}}", "non-empty `choices`"),
        ("{run.name: {type: categorical, choices: [a]}}", "cannot be tuned"),
        ("{train.lr: {type: float, low: 1, high: 2, when: {train.nope: 1}}}", "train.nope"),
    ],
)
def test_bad_search_spaces_are_one_line_errors(competition, cli, space, message):
    result = cli("tune", competition("digits"), f"tune.space={space}")
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_worker_retries_while_another_creates_the_tables(competition, monkeypatch):
    import pipelines.tune.storage as tune_module
    from kapps.errors import ConfigError

    race = 'duplicate key value violates unique constraint "pg_type_typname_nsp_index"'
    errors, calls, pauses = [race, race], [], []

    def storage(url, **kwargs):
        calls.append(url)
        if errors:
            raise RuntimeError(errors.pop(0))
        return "storage"

    monkeypatch.setattr(tune_module, "RDBStorage", storage)
    monkeypatch.setattr(tune_module.time, "sleep", pauses.append)
    tune = _tune(competition("digits"))
    assert open_storage("postgresql://u@h/db", tune) == "storage"
    assert len(calls) == 3 and pauses == [0.5, 1.0]
    errors[:] = ["password authentication failed for user"]  # not a race: no retry
    with pytest.raises(ConfigError, match="password authentication failed"):
        open_storage("postgresql://u@h/db", tune)
    assert len(calls) == 4
    errors[:] = [race] * tune_module.SCHEMA_ATTEMPTS  # a race that never ends: one error
    with pytest.raises(ConfigError, match="duplicate key"):
        open_storage("postgresql://u@h/db", tune)
    assert len(calls) == 4 + tune_module.SCHEMA_ATTEMPTS


def test_storage_errors_and_helpers(competition, cli, workdir):
    comp = competition("digits")
    bad = cli("tune", comp, SPACE, "--storage", "nosuchdb://x")
    assert bad.exit_code == 2 and "cannot open the study storage" in bad.output
    empty = cli("tune", comp, "tune.space={}", "--trials", "1")
    assert empty.exit_code == 2 and "tune.space is empty" in empty.output
    assert redact("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert redact("sqlite:///a.db") == "sqlite:///a.db"
    assert _oom(MemoryError()) and _oom(RuntimeError("RESOURCE_EXHAUSTED: OOM when allocating"))
    assert not _oom(ValueError("bad shape"))


# One process -----------------------------------------------------------------------


def test_tiny_study_writes_a_best_trial_that_retrains(competition, cli, workdir):
    comp = competition("digits")
    storage = f"sqlite:///{workdir / 'tune.db'}"
    args = ["tune", comp, *TINY, SPACE, "--trials", "2", "--storage", storage]
    result = cli(*args, "--study-name", "digits-v1")
    assert result.exit_code == 0, result.output
    out = workdir / "runs" / "digits" / "tune"
    for name in ("best.yaml", "trials.csv", "history.png", "parallel.png"):
        assert (out / name).is_file(), name
    study = optuna.load_study(study_name="digits-v1", storage=storage)
    states = _states(study)  # the median pruner may stop one after its first epoch
    assert states.get(TrialState.COMPLETE, 0) + states.get(TrialState.PRUNED, 0) == 2
    assert all(t.intermediate_values for t in study.trials)  # reported every epoch
    best = study.best_trial
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert best.value == max(t.value for t in complete)
    assert best.value == max(best.intermediate_values.values())
    assert (out / "trials" / f"digits-v1-{best.number:04d}" / "best.keras").is_file()
    assert "val_accuracy" in result.output and f"digits-v1-{best.number:04d}" in result.output

    # best.yaml is an override file holding exactly the best trial's values.
    tuned = yaml.safe_load((out / "best.yaml").read_text())
    assert tuned == {
        "train": {"lr": best.params["train.lr"], "batch_size": best.params["train.batch_size"]}
    }
    retrained = cli("train", comp, "train.epochs=1", "--override", out / "best.yaml")
    assert retrained.exit_code == 0, retrained.output
    run_cfg = next((workdir / "runs" / "digits").glob("lenet5-*/config.yaml"))
    saved = yaml.safe_load(run_cfg.read_text())
    assert saved["train"]["lr"] == best.params["train.lr"]

    # The same command again resumes: the study already holds its 3 trials.
    again = cli(*args, "--study-name", "digits-v1")
    assert again.exit_code == 0
    assert len(optuna.load_study(study_name="digits-v1", storage=storage).trials) == 2

    # Optuna's own command line reads the study.
    optuna_cli = Path(sys.executable).with_name("optuna")
    shown = subprocess.run(
        [optuna_cli, "best-trial", "--study-name", "digits-v1", "--storage", storage, "-f", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["number"] == best.number


@pytest.mark.slow  # default-run budget: the journal test runs two workers
def test_failing_trials_are_recorded_and_the_study_goes_on(competition, workdir):
    _, cfg = _digits(
        competition,
        workdir,
        "tune.space={train.lr: {type: float, low: 1.0e-4, high: 1.0e+15, log: true}, "
        "train.batch_size: {type: int, low: 0, high: 64}}",
        "tune.trials=3",
        "tune.pruner=none",
        "tune.epochs=1",
    )
    session = open_study(cfg, storage=f"sqlite:///{workdir / 'fail.db'}")
    study = session.study
    study.enqueue_trial({"train.lr": 1.0e15, "train.batch_size": 32})  # diverges: NaN
    study.enqueue_trial({"train.lr": 3.0e-3, "train.batch_size": 0})  # not a valid config
    study.enqueue_trial({"train.lr": 3.0e-3, "train.batch_size": 64})
    lines = []
    optimize(session, log=lines.append)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert "diverged" in trials[0].user_attrs["error"]
    assert "train.batch_size" in trials[1].user_attrs["error"]
    assert any("failed" in line for line in lines) and "val_accuracy" in lines[-1]


# Several processes ------------------------------------------------------------------


def _worker(comp, storage, name, index, *extra):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "tune",
            str(comp),
            *TINY,
            SPACE,
            *extra,
            "--storage",
            storage,
            "--study-name",
            name,
            "--worker-index",
            str(index),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _assert_every_trial_finished_once(comp, storage, name, wanted):
    study = optuna.load_study(study_name=name, storage=open_storage(storage, _tune(comp)))
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    surplus = [t for t in trials if t.system_attrs.get("kapps:surplus")]
    assert len(finished) == wanted
    assert len(trials) == wanted + len(surplus)  # nothing lost, nothing run twice
    assert len({t.user_attrs["run_dir"] for t in finished}) == wanted
    return finished


def _tune(comp):
    return load_config(comp, [SPACE]).tune


@pytest.mark.slow  # the PostgreSQL test runs the same two workers in the default run
def test_two_workers_share_a_journal_study(competition, cli, workdir, capfd):
    comp, _ = _digits(competition, workdir)
    storage = f"journal:{workdir / 'study.log'}"
    result = cli(
        "tune", comp, *TINY, SPACE, "--trials", "4", "--workers", "2", "--storage", storage
    )
    assert result.exit_code == 0, result.output
    assert "started 2 workers" in result.output and "study 'digits'" in result.output
    worker_output = capfd.readouterr()
    assert "lock" not in (worker_output.out + worker_output.err).lower()
    finished = _assert_every_trial_finished_once(comp, storage, "digits", 4)
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # both workers ran trials
    assert (workdir / "runs" / "digits" / "tune" / "best.yaml").is_file()


@pytest.mark.slow  # default-run budget: the journal test runs two workers
def test_killed_worker_trial_is_failed_and_retried_by_the_survivor(competition, workdir):
    comp, _ = _digits(competition, workdir)
    storage = f"journal:{workdir / 'study.log'}"
    extra = ["tune.trials=2", "tune.epochs=4", "tune.pruner=none", "tune.heartbeat=1"]
    victim = _worker(comp, storage, "kill", 0, *extra)
    survivor = _worker(comp, storage, "kill", 1, *extra)
    tune = _tune(comp)
    deadline = time.monotonic() + 300
    victim_trial = None
    while victim_trial is None and time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="kill", storage=open_storage(storage, tune))
        except KeyError:
            continue  # not created yet
        for t in study.get_trials(deepcopy=False):
            worker = t.user_attrs.get("worker", "")
            mine = t.state == TrialState.RUNNING and worker.endswith(f":{victim.pid}")
            if mine and t.intermediate_values:  # mid-trial: at least one epoch done
                victim_trial = t.number
    assert victim_trial is not None, "the victim never got a trial going"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    output = survivor.communicate(timeout=600)[0]
    assert survivor.returncode == 0, output
    study = optuna.load_study(study_name="kill", storage=open_storage(storage, tune))
    trials = {t.number: t for t in study.get_trials()}
    assert trials[victim_trial].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == victim_trial]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == trials[victim_trial].params
    assert retry.user_attrs["worker"].endswith(f":{survivor.pid}")
    # The retry resumed the dead trial's run folder and finished all its epochs.
    assert retry.user_attrs["run_dir"] == trials[victim_trial].user_attrs["run_dir"]
    finished = [t for t in trials.values() if t.state == TrialState.COMPLETE]
    assert len(finished) == 2


def _postgres_or_skip():
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(
            POSTGRES.replace("postgresql://", "postgresql+psycopg://"),
            connect_args={"connect_timeout": 3},
        )
        with engine.connect():
            pass
    except Exception as err:  # driver missing, server down, bad credentials
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        pytest.skip(f"no PostgreSQL server at {redact(POSTGRES)} (.ci/run starts one): {reason}")


def test_two_workers_share_a_postgresql_study(competition, workdir):
    _postgres_or_skip()
    comp, _ = _digits(competition, workdir)
    name = f"kapps-test-{uuid.uuid4().hex[:8]}"
    try:
        # The same command on every machine: here two processes.
        workers = [_worker(comp, POSTGRES, name, i, "tune.trials=4") for i in range(2)]
        for worker in workers:
            output = worker.communicate(timeout=600)[0]
            assert worker.returncode == 0, output
            assert "lock" not in output.lower(), output
        _assert_every_trial_finished_once(comp, POSTGRES, name, 4)
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(POSTGRES, _tune(comp)))


def test_a_trial_with_folds_scores_the_cv_mean(competition, workdir):
    import pandas as pd

    _, cfg = _digits(competition, workdir, "cv.folds=2", "tune.trials=1", "tune.epochs=1")
    session = open_study(cfg, storage=f"sqlite:///{workdir / 'cv.db'}")
    optimize(session, log=lambda _: None)
    (trial,) = session.study.get_trials()
    assert trial.state == TrialState.COMPLETE
    run_dir = Path(trial.user_attrs["run_dir"])
    fold_values = [
        pd.read_csv(run_dir / f"fold-{k}" / "history.csv")["val_accuracy"].max() for k in (0, 1)
    ]
    assert trial.value == pytest.approx(sum(fold_values) / 2)
    assert list(trial.intermediate_values) == [0]  # the pruner watches the first fold
    assert (run_dir / "oof.csv").is_file()
