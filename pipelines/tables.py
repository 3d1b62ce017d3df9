"""The rich tables the command line prints: a run's results, a blend's, a study's."""

from pathlib import Path

from rich.table import Table


def summary_table(metrics, title):
    """The results table printed at the end of a run."""
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("value", overflow="fold")
    rows = [
        ("run folder", metrics.get("run_dir")),
        ("model", f"{metrics.get('model')} ({metrics.get('params', 0):,} parameters)"),
        (
            metrics.get("examples", "images"),
            f"{metrics.get('train_images')} train / {metrics.get('val_images')} validation",
        ),
        ("epochs", f"{metrics.get('epochs_run')} (best: {metrics.get('best_epoch')})"),
        ("train time", f"{metrics.get('train_seconds')} s"),
    ]
    if "scenario" in metrics:  # a continual run: its tasks instead of a best epoch
        tasks = len(metrics["tasks"])
        rows[3] = ("tasks", f"{tasks} ({metrics['scenario']}, {metrics['method']})")
    federated = metrics.get("federated")
    if federated:  # rounds instead of epochs
        rows[3] = (
            "rounds",
            f"{federated['rounds']} × {federated['clients']} clients ({federated['strategy']}, "
            f"{federated['partition']}; best: {metrics.get('best_round')})",
        )
    cv = metrics.get("cv")
    if cv:
        rows[2] = (
            metrics.get("examples", "images"),
            f"{metrics.get('train_images')} in {cv['folds']} folds",
        )
        rows += [
            (f"CV {k} ({cv['strategy']})", f"{v['mean']:.4f} ± {v['std']:.4f}")
            for k, v in cv.items()
            if isinstance(v, dict)
        ]
        rows += [(f"out-of-fold {k}", f"{v:.4f}") for k, v in scalars(metrics.get("validation"))]
    else:
        rows += [(f"validation {k}", f"{v:.4f}") for k, v in scalars(metrics.get("validation"))]
    without = (metrics.get("validation") or {}).get("without_tta")
    rows += [(f"validation {k} without TTA", f"{v:.4f}") for k, v in scalars(without)]
    rows += [(f"test {k}", f"{v:.4f}") for k, v in scalars(metrics.get("test"))]
    reference = metrics.get("centralised") or {}
    for split in ("validation", "test"):
        rows += [(f"centralised {split} {k}", f"{v:.4f}") for k, v in scalars(reference.get(split))]
    if metrics.get("submission"):
        rows.append(("submission", metrics["submission"]))
    if metrics.get("skipped_files"):
        rows.append(("skipped files", "\n".join(metrics["skipped_files"])))
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def scalars(section):
    """The numeric entries of a metrics section, as (name, value) pairs."""
    return [(k, v) for k, v in (section or {}).items() if isinstance(v, int | float)]


def blend_table(rows):
    """Each member's weight and out-of-fold scores, and the blend's."""
    names = [k for k in rows[0] if k not in ("run", "weight")]
    table = Table("run", "weight", *[f"out-of-fold {n}" for n in names], header_style="bold")
    for row in rows:
        values = [f"{row[n]:.4f}" for n in names]
        table.add_row(Path(row["run"]).name, f"{row['weight']:.3f}", *values)
    return table


def tune_table(session, result, seconds):
    """The best trials of a study as a rich table."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()))
    title = f"study {session.study.study_name!r}: {counts} ({seconds:.0f} s)"
    table = Table(title=title, show_header=True, header_style="bold")
    for column in ("trial", session.metric, "epochs", "parameters", "run folder"):
        table.add_column(column, overflow="fold")
    for trial in result.top:
        params = "\n".join(f"{k} = {_value(v)}" for k, v in trial.params.items())
        epochs = str(len(trial.intermediate_values))
        run_dir = Path(trial.user_attrs.get("run_dir", "")).name
        table.add_row(str(trial.number), f"{trial.value:.4f}", epochs, params, run_dir)
    return table


def _value(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def label_fraction_table(grid):
    """A pretraining run's grid: test score (mean ± std over seeds) per method and fraction."""
    fractions = sorted({f for cells in grid.values() for f in cells}, key=float)
    table = Table(title="test score by share of labels (mean ± std over seeds)")
    table.add_column("method")
    for fraction in fractions:
        table.add_column(f"{float(fraction):.0%}", justify="right")
    for method, cells in grid.items():
        row = [cells.get(f) for f in fractions]
        table.add_row(method, *(f"{c['mean']:.3f} ± {c['std']:.3f}" if c else "" for c in row))
    return table
