"""k-fold cross-validation: one run per fold, out-of-fold predictions, CV mean ± std.

`cv.folds: 5` makes `kapps train` (and `run`) train five ordinary runs,
`<run>/fold-0` … `fold-4`, each validating on its own fold (`cv.fold`), so
every training row is predicted once by a model that never saw it. The run
folder gets `oof.csv` (those predictions, one row per training row), the
per-fold scores and their mean ± std in `metrics.json`, and `kapps predict`
averages the fold models' test predictions. Re-running resumes fold by fold.
"""

import numpy as np
import pandas as pd

from kapps.errors import ConfigError
from pipelines.continual.run import train_continual
from pipelines.runs import read_json, write_json, write_text
from pipelines.train import resolve_run, train


def train_folds_or_one(cfg, log=print, *, run_dir=None, callbacks=(), verbose=2):
    """`train_cv` when the config asks for folds, a continual sequence when it asks for
    one (`continual.scenario`), else `train`: what the CLI and tune call."""
    if cfg.continual.scenario is not None:
        if callbacks:
            raise ConfigError("a continual run cannot be tuned trial by trial (no epoch metric)")
        return train_continual(cfg, log, run_dir=run_dir, verbose=verbose)
    fit = train_cv if cfg.cv.folds > 1 and cfg.cv.fold is None else train
    return fit(cfg, log, run_dir=run_dir, callbacks=callbacks, verbose=verbose)


def train_cv(cfg, log=print, *, run_dir=None, callbacks=(), verbose=2):
    """Train every fold of `cfg` into `<run>/fold-k`, then gather the out-of-fold results.

    `callbacks` (a tuning trial's pruner) watch the first fold only: its
    per-epoch metric is what a pruner compares across trials.
    """
    cfg, task, run, notes = resolve_run(cfg, run_dir)
    with run.lock():
        write_text(run.config, cfg.to_yaml())
        for note in notes:
            log(note)
        leaks = task.duplicates_across_folds()
        if leaks:
            a, b = leaks[0]
            log(
                f"[yellow]warning: {len(leaks)} duplicate training images fall into different "
                f"folds (e.g. rows {a} and {b}): validation scores will be optimistic; "
                "put duplicates in one group (cv.strategy=group, cv.group_column=…)[/]"
            )
        folds = []
        for fold in range(cfg.cv.folds):
            fold_cfg = cfg.model_copy(deep=True)
            fold_cfg.cv.fold = fold
            log(f"[bold]fold {fold + 1} of {cfg.cv.folds}[/]")
            extra = callbacks if fold == 0 else ()
            folds.append(
                train(fold_cfg, log, run_dir=run.fold(fold).path, callbacks=extra, verbose=verbose)
            )
        oof = pd.concat([pd.read_csv(run.fold(k).oof) for k in range(cfg.cv.folds)]).sort_values(
            "row"
        )
        write_text(run.oof, oof.to_csv(index=False))
        metrics = _cv_metrics(cfg, task, folds, oof, read_json(run.metrics, {}))
        write_json(run.metrics, metrics)
    for key, stats in metrics["cv"].items():
        if isinstance(stats, dict):
            log(f"CV {key}: {stats['mean']:.4f} ± {stats['std']:.4f}")
    return {**metrics, "run_dir": str(run.path)}


def _cv_metrics(cfg, task, folds, oof, earlier):
    """metrics.json of a cross-validated run: per-fold means ± std and pooled out-of-fold."""
    per_fold = {}
    for metrics in folds:
        for key, value in (metrics.get("validation") or {}).items():
            if isinstance(value, int | float):
                per_fold.setdefault(key, []).append(float(value))
    summary = {
        key: {"mean": float(np.mean(v)), "std": float(np.std(v)), "folds": v}
        for key, v in per_fold.items()
    }
    first = folds[0]
    return {
        **earlier,
        "model": cfg.model.name,
        "params": first.get("params"),
        "epochs_run": sum(m.get("epochs_run", 0) for m in folds),
        "best_epoch": [m.get("best_epoch") for m in folds],
        "monitor": first.get("monitor"),
        "examples": first.get("examples"),
        "train_images": len(oof),
        "val_images": len(oof),
        "skipped_files": sorted({f for m in folds for f in m.get("skipped_files", [])}),
        "validation": task.score_oof(oof),
        "cv": {"folds": cfg.cv.folds, "strategy": cfg.cv.strategy, **summary},
        "train_seconds": round(sum(m.get("train_seconds") or 0 for m in folds), 1),
    }
