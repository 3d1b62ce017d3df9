"""The end of a study: best.yaml, trials.csv and Optuna's plots in the tune folder."""

import warnings
from dataclasses import dataclass

import yaml
from optuna.trial import TrialState

from pipelines.runs import atomic_write, write_text
from pipelines.tune.space import nested
from pipelines.tune.study import counted_trials

PLOTS = {
    "history": "plot_optimization_history",
    "importances": "plot_param_importances",
    "parallel": "plot_parallel_coordinate",
}


@dataclass
class Report:
    best: object  # the best FrozenTrial, or None
    top: list  # best finished trials, best first
    counts: dict  # state name → trials
    files: list  # what was written


def report(session, top=5):
    """best.yaml, trials.csv and the study plots in the tune folder."""
    study, folder = session.study, session.folder
    folder.path.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    counts = {}
    for t in counted_trials(trials):
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
        f"# kapps train {session.cfg.competition.dir} --override {folder.best}\n"
    )
    body = yaml.safe_dump(nested(best.params), sort_keys=False)
    write_text(folder.best, header + body)
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs"))
    write_text(folder.trials_table, frame.to_csv(index=False))
    files = [folder.best, folder.trials_table, *_plots(study, folder)]
    return Report(best, ranked[:top], counts, files)


def _plots(study, folder):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    written = []
    for plot, name in PLOTS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                axes = getattr(optuna_plots, name)(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # too few finished trials for this plot
        figure = axes.ravel()[0].figure if hasattr(axes, "ravel") else axes.figure
        figure.set_size_inches(11, 6)
        figure.tight_layout()
        path = folder.plot(plot)
        atomic_write(path, lambda tmp, f=figure: f.savefig(tmp, format="png", dpi=100))
        plt.close(figure)
        written.append(path)
    return written
