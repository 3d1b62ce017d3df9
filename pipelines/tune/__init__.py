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

from pipelines.tune.report import Report, report
from pipelines.tune.space import nested, suggest, trial_config
from pipelines.tune.storage import HeartbeatJournalStorage, open_storage, redact
from pipelines.tune.study import Study, open_study, optimize
from pipelines.tune.workers import run_workers, tune_competition

__all__ = [
    "HeartbeatJournalStorage",
    "Report",
    "Study",
    "nested",
    "open_storage",
    "open_study",
    "optimize",
    "redact",
    "report",
    "run_workers",
    "suggest",
    "trial_config",
    "tune_competition",
]
