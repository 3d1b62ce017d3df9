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
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold, train_test_split

from kapps.errors import ConfigError, DataError
from pipelines.runs import read_json, write_json, write_text

OOF_FILE = "oof.csv"  # the same name as pipelines.train's, which imports this module lazily
METRICS_FILE = "metrics.json"


def fold_dir(run_dir, fold):
    return run_dir / f"fold-{fold}"


def fold_rows(cfg, n, labels=None, groups=None):
    """`[(train_rows, val_rows)]` for each of `cv.folds` folds, seeded by `train.seed`."""
    cv, seed = cfg.cv, cfg.train.seed
    rows = np.arange(n)
    if cv.folds > n:
        raise DataError(f"cv.folds {cv.folds} is more than the {n} training rows")
    if cv.strategy == "group":
        if groups is None:
            raise ConfigError("cv.strategy group: this data layout has no group column")
        if len(np.unique(groups)) < cv.folds:
            raise ConfigError(
                f"cv.group_column {cv.group_column!r} has {len(np.unique(groups))} groups, "
                f"fewer than cv.folds {cv.folds}"
            )
        splitter = GroupKFold(n_splits=cv.folds, shuffle=True, random_state=seed)
        return list(splitter.split(rows, groups=groups))
    if cv.strategy == "stratified" and labels is not None:
        _, counts = np.unique(labels, return_counts=True)
        if counts.min() >= cv.folds:
            splitter = StratifiedKFold(n_splits=cv.folds, shuffle=True, random_state=seed)
            return list(splitter.split(rows, labels))
    return list(KFold(n_splits=cv.folds, shuffle=True, random_state=seed).split(rows))


def split_rows(cfg, n, labels=None, groups=None):
    """`(train_rows, val_rows)` of this run: its fold under CV, else a `val_fraction` split."""
    if cfg.cv.folds > 1 and cfg.cv.fold is not None:
        return fold_rows(cfg, n, labels, groups)[cfg.cv.fold]
    rows = np.arange(n)
    stratify = None
    if labels is not None:
        _, counts = np.unique(labels, return_counts=True)
        stratify = labels if counts.min() >= 2 else None
    return train_test_split(
        rows, test_size=cfg.data.val_fraction, stratify=stratify, random_state=cfg.train.seed
    )


def duplicates_across_folds(cfg, hashes, labels=None, groups=None):
    """Pairs of identical training rows that land in different folds (a leak)."""
    fold_of = np.empty(len(hashes), int)
    for fold, (_, val) in enumerate(fold_rows(cfg, len(hashes), labels, groups)):
        fold_of[val] = fold
    first = {}
    pairs = []
    for row, digest in enumerate(hashes):
        if digest in first and fold_of[first[digest]] != fold_of[row]:
            pairs.append((first[digest], row))
        first.setdefault(digest, row)
    return pairs


def train_cv(cfg, log=print, run_dir=None, callbacks=(), verbose=2):
    """Train every fold of `cfg` into `<run>/fold-k`, then gather the out-of-fold results.

    `callbacks` (a tuning trial's pruner) watch the first fold only: its
    per-epoch metric is what a pruner compares across trials.
    """
    from pathlib import Path

    from pipelines.config import load_config
    from pipelines.tasks import get_task
    from pipelines.train import train

    run_dir = Path(run_dir) if run_dir else cfg.run_dir()
    cfg.run.name = run_dir.name
    run_dir.mkdir(parents=True, exist_ok=True)
    task = get_task(cfg)
    if not task.cross_validation:
        raise ConfigError(f"cv.folds: cross-validation is not available for {task.name} yet")
    write_text(run_dir / "config.yaml", cfg.to_yaml())
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
            train(fold_cfg, log, run_dir=fold_dir(run_dir, fold), callbacks=extra, verbose=verbose)
        )
    # The folds resolved what the config left open (class names, upscaled image size).
    resolved = load_config(fold_dir(run_dir, 0) / "config.yaml")
    resolved.cv.fold = None
    resolved.run.name = run_dir.name
    write_text(run_dir / "config.yaml", resolved.to_yaml())
    oof = pd.concat(
        [pd.read_csv(fold_dir(run_dir, k) / OOF_FILE) for k in range(cfg.cv.folds)]
    ).sort_values("row")
    write_text(run_dir / OOF_FILE, oof.to_csv(index=False))
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
    metrics = {
        **read_json(run_dir / METRICS_FILE, {}),
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
    write_json(run_dir / METRICS_FILE, metrics)
    for key, stats in summary.items():
        log(f"CV {key}: {stats['mean']:.4f} ± {stats['std']:.4f}")
    return {**metrics, "run_dir": str(run_dir)}
