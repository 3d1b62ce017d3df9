"""Cross-validation: folds, out-of-fold predictions, fold-averaged test predictions, leaks."""

import numpy as np
import pandas as pd
import pytest

from pipelines.config import load_config
from pipelines.data.splits import duplicates_across_folds, fold_rows, split_rows
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
    assert bad.exit_code == 2 and "text runs are not cross-validated" in bad.output
    bad = cli("train", digits, "cv.folds=3", "cv.strategy=group")
    assert bad.exit_code == 2 and "cv.group_column" in bad.output


def test_duplicates_in_different_folds_are_found(competition):
    cfg = _cfg(competition, "cv.folds=5", "cv.strategy=kfold")
    hashes = [f"h{i}" for i in range(50)]
    hashes[40] = hashes[3]  # the same image twice
    pairs = duplicates_across_folds(cfg, hashes)
    folds = fold_rows(cfg, 50)
    assert not any(3 in v and 40 in v for _, v in folds)  # seed 42 parts them
    assert pairs == [(3, 40)]
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

    # A second cross-validated run, and the blend of the two.
    other = cli("train", comp, *FAST, "train.epochs=1", "cv.folds=2", "model.name=lenet5_paper")
    assert other.exit_code == 0, other.output
    second = next((workdir / "runs" / "digits").glob("lenet5_paper-*"))
    blend = cli("ensemble", run_dir, second, "--weights", "auto", "--out", workdir / "blend")
    assert blend.exit_code == 0, blend.output
    assert "out-of-fold log_loss" in blend.output and "blend test accuracy" in blend.output
    result = pd.read_json(workdir / "blend" / "metrics.json", typ="series")
    assert np.isclose(sum(result["weights"]), 1) and min(result["weights"]) >= 0
    *members, mixed = result["out_of_fold"]
    assert mixed["run"] == "blend"
    # Log loss is convex in the weights and a single run is a feasible blend.
    assert mixed["log_loss"] <= min(m["log_loss"] for m in members) + 1e-3
    assert cli("submit", workdir / "blend").exit_code == 0
    assert len(pd.read_csv(workdir / "blend" / "oof.csv")) == train_rows


def test_ensemble_errors(digits_run, cli, tmp_path):
    from pipelines.ensemble import parse_weights

    assert parse_weights("3,1", 2) == [0.75, 0.25]
    for bad in ("1,x", "1", "-1,2", "0,0"):
        with pytest.raises(Exception, match="--weights"):
            parse_weights(bad, 2)
    run_dir = digits_run[0]
    result = cli("ensemble", run_dir, run_dir, "--weights", "auto", "--out", tmp_path / "b")
    assert result.exit_code == 2 and "cv.folds" in result.output
    result = cli("ensemble", run_dir)
    assert result.exit_code == 2 and "at least two runs" in result.output
    # Equal weights need no out-of-fold predictions.
    result = cli("ensemble", run_dir, run_dir, "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "submission.csv").is_file()


def test_tta_views_undo_their_flips():
    from pipelines.data.augment import tta_views

    images = np.random.default_rng(0).random((2, 5, 7, 3)).astype("float32")
    views = list(tta_views(images, ["horizontal", "vertical"]))
    assert len(views) == 3
    assert np.allclose(np.asarray(views[1][0]), images[:, :, ::-1])
    assert np.allclose(np.asarray(views[2][0]), images[:, ::-1])
    for view, undo in views:
        assert np.allclose(np.asarray(undo(view)), images)


def test_classification_tta_reports_its_effect_on_validation(competition, cli, workdir):
    comp = competition("digits")
    result = cli("run", comp, *FAST, "train.epochs=1", "submission.tta=true")
    assert result.exit_code == 0, result.output
    assert "without TTA" in result.output
    (run_dir,) = (workdir / "runs" / "digits").iterdir()
    validation = pd.read_json(run_dir / "metrics.json", typ="series")["validation"]
    assert set(validation["without_tta"]) == {"accuracy", "log_loss"}
    assert validation["accuracy"] != validation["without_tta"]["accuracy"] or (
        validation["log_loss"] != validation["without_tta"]["log_loss"]
    )
