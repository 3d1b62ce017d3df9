"""How training rows are split: one validation split, or the folds of a cross-validation.

scikit-learn does the splitting (`train_test_split`, `KFold`, `StratifiedKFold`,
`GroupKFold`), seeded by `train.seed`, so every run and every fold of one
config sees the same rows.
"""

import numpy as np
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold, train_test_split

from kapps.errors import ConfigError
from pipelines.errors import DataError


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


def labelled_rows(cfg, rows, labels=None):
    """The `data.label_fraction` of the training rows that keep their labels.

    Stratified by class when `labels` are given, seeded by `train.seed`, so
    each seed of a label-fraction experiment sees its own subset.
    """
    fraction = cfg.data.label_fraction
    if fraction >= 1:
        return rows
    keep = max(1, round(fraction * len(rows)))
    what = f"data.label_fraction {fraction} keeps {keep} of the {len(rows)} training rows"
    if labels is None:
        rng = np.random.default_rng(cfg.train.seed)
        return np.sort(rng.choice(rows, keep, replace=False))
    classes, counts = np.unique(labels, return_counts=True)
    if keep < len(classes) or counts.min() < 2:
        raise ConfigError(f"{what}: fewer than its {len(classes)} classes, one would have none")
    kept, _ = train_test_split(rows, train_size=keep, stratify=labels, random_state=cfg.train.seed)
    return np.sort(kept)


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
