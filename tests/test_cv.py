"""Cross-validation: folds, out-of-fold predictions, fold-averaged test predictions, leaks."""

import numpy as np
import pandas as pd
import pytest

from pipelines.config import load_config
from pipelines.cv import duplicates_across_folds, fold_rows, split_rows
from tests.conftest import FAST


def _cfg(competition, *overrides):
    return load_config(competition("digits"), list(overrides))


@pytest.mark.parametrize("strategy", ["kfold", "stratified", "group"])
def test_folds_partition_the_rows(competition, strategy):
    cfg = _cfg(competition, "cv.folds=4", f"cv.strategy={strategy}", "cv.group_column=g")
    labels = np.repeat(np.arange(5), 20)
    groups = np.arange(100) // 5  # 20 groups of 5 rows
    folds = fold_rows(cfg, 100, labels, groups)
    assert len(folds) == 4
    val = np.concatenate([v for _, v in folds])
    assert sorted(val.tolist()) == list(range(100))  # every row validated exactly once
    for train, v in folds:
        assert not set(train) & set(v) and len(train) + len(v) == 100
        if strategy == "group":
            assert not set(groups[train]) & set(groups[v])  # a group never straddles
        if strategy == "stratified":
            assert np.bincount(labels[v], minlength=5).tolist() == [5] * 5
    # Seeded: the same folds again; fold k of a run is its split.
    again = fold_rows(cfg, 100, labels, groups)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again, strict=True))
    cfg.cv.fold = 2
    assert (split_rows(cfg, 100, labels, groups)[1] == folds[2][1]).all()


def test_fold_errors(competition, cli):
    digits = competition("digits")
    cfg = load_config(digits, ["cv.folds=4", "cv.strategy=group", "cv.group_column=g"])
    with pytest.raises(Exception, match="3 groups, fewer than cv.folds 4"):
        fold_rows(cfg, 9, None, np.arange(9) // 3)
    bad = cli("train", competition("pydoc-text"), "cv.folds=3")
    assert bad.exit_code == 2 and "end of the corpus" in bad.output
    bad = cli("train", digits, "cv.folds=3", "cv.strategy=group")
    assert bad.exit_code == 2 and "cv.group_column" in bad.output


def test_duplicates_in_different_folds_are_found(competition):
    cfg = _cfg(competition, "cv.folds=5", "cv.strategy=kfold")
    hashes = [f"h{i}" for i in range(50)]
    hashes[40] = hashes[3]  # the same image twice
    pairs = duplicates_across_folds(cfg, hashes)
    folds = fold_rows(cfg, 50)
    same_fold = any(3 in v and 40 in v for _, v in folds)
    assert pairs == ([] if same_fold else [(3, 40)])
    # Grouping the duplicates together removes the leak.
    cfg.cv.strategy, groups = "group", np.array([i if i != 40 else 3 for i in range(50)])
    assert duplicates_across_folds(cfg, hashes, groups=groups) == []


def test_digits_cross_validation_end_to_end(competition, cli, workdir):
    comp = competition("digits")
    args = ["run", comp, *FAST, "train.epochs=1", "cv.folds=2"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "averaged the test predictions of 2 fold models" in result.output
    (run_dir,) = (workdir / "runs" / "digits").iterdir()
    train_rows = len(pd.read_csv(comp / "data" / "train.csv"))
    oof = pd.read_csv(run_dir / "oof.csv")
    assert oof["row"].tolist() == list(range(train_rows))  # every training row, once
    probs = oof[[f"p_{k}" for k in range(10)]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    for fold in (0, 1):
        assert (run_dir / f"fold-{fold}" / "best.keras").is_file()
    metrics = pd.read_json(run_dir / "metrics.json", typ="series")
    cv = metrics["cv"]
    assert cv["folds"] == 2 and len(cv["accuracy"]["folds"]) == 2
    assert np.isclose(cv["accuracy"]["mean"], np.mean(cv["accuracy"]["folds"]))
    oof_accuracy = (probs.argmax(axis=1) == oof["label"].to_numpy()).mean()
    assert np.isclose(metrics["validation"]["accuracy"], oof_accuracy)
    assert metrics["test"]["accuracy"] > 0.5
    assert "CV accuracy (stratified)" in result.output
    # The same command again trains nothing: every fold is finished.
    again = cli("train", comp, *FAST, "train.epochs=1", "cv.folds=2")
    assert again.exit_code == 0
    assert again.output.count("already finished training") == 2
