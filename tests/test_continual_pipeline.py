"""Continual runs end to end on seq-digits: forgetting, its remedies, joint, bad input."""

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from pipelines.config import load_config
from pipelines.continual.replay import ContinualLoss, ReplayBatches
from pipelines.continual.scenarios import make_tasks, task_rows
from pipelines.cv import train_folds_or_one
from pipelines.predict import predict
from pipelines.tasks.base import image_model_args
from pipelines.train import build_optimizer, resolve_run
from tests import replicas
from tests.conftest import assert_one_line_error, prepare_module

QUICK = ["train.epochs=2"]


@pytest.fixture
def seq_digits(competition):
    folder = competition("seq-digits")
    (folder / "data").mkdir()
    prepare_module("digits").prepare(folder / "data")
    return folder


def run(folder, *overrides):
    cfg = load_config(folder, [*QUICK, *overrides])
    metrics = train_folds_or_one(cfg, log=lambda _: None, verbose=0)
    return cfg, metrics


def test_finetune_forgets_derpp_remembers_and_task_il_is_easier(seq_digits):
    _, finetune = run(seq_digits, "continual.method=finetune")
    _, derpp = run(seq_digits, "continual.method=derpp")
    _, task_il = run(seq_digits, "continual.method=finetune", "continual.scenario=task_il")
    matrix = np.array(finetune["accuracy_matrix"])
    assert matrix.shape == (5, 5)
    assert np.diag(matrix).min() > 0.8  # each task is learned…
    assert finetune["validation"]["forgetting"] > 0.6  # …and forgotten after the next
    assert derpp["validation"]["forgetting"] < finetune["validation"]["forgetting"] / 2
    assert (
        derpp["validation"]["average_accuracy"] > finetune["validation"]["average_accuracy"] + 0.3
    )
    saved = json.loads((Path(derpp["run_dir"]) / "metrics.json").read_text())
    assert saved["accuracy_matrix"] == derpp["accuracy_matrix"]
    # told the task, the logits are masked to its two classes: forgetting hurts far less
    task_accuracy = task_il["validation"]["average_accuracy"]
    assert task_accuracy > 0.6 and task_accuracy > finetune["validation"]["average_accuracy"]


def test_a_continual_run_writes_its_plots_and_a_valid_submission(seq_digits):
    _, metrics = run(seq_digits, "continual.method=er", "continual.buffer=50")
    result = predict(metrics["run_dir"], log=lambda _: None)
    run_dir = metrics["run_dir"]
    for name in ("accuracy_matrix.png", "average_accuracy.png", "submission.csv", "best.keras"):
        assert (
            seq_digits.parent.parent / "runs" / "seq-digits" / run_dir.rsplit("/", 1)[1] / name
        ).is_file(), name
    assert 0 <= result["test"]["accuracy"] <= 1
    history = pd.read_csv(f"{run_dir}/history.csv")
    assert history["task"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_joint_is_ordinary_training_on_every_task_so_far(seq_digits):
    cfg, metrics = run(seq_digits, "continual.method=joint", "continual.tasks=2")
    joint = keras.saving.load_model(f"{metrics['run_dir']}/best.keras")
    # The same model trained directly on the two tasks' examples, the same batches
    cfg, task, run_folder, _ = resolve_run(cfg)
    train_x, train_y, val_x, _ = task.labelled_arrays(run_folder)
    tasks = make_tasks(cfg.continual, 10, train_x.shape[1:])
    rows = np.concatenate([task_rows(train_y, t) for t in tasks])
    keras.utils.set_random_seed(cfg.train.seed)
    model = task.build_model(image_model_args(cfg, 10))
    batches = ReplayBatches(
        train_x[rows], train_y[rows], num_classes=10, batch_size=10, seed=cfg.train.seed + 1
    )
    model.compile(build_optimizer(cfg.train, len(batches)), loss=ContinualLoss(10))
    model.fit(batches, epochs=cfg.train.epochs, shuffle=False, verbose=0)
    np.testing.assert_allclose(
        joint.predict(val_x, verbose=0), model.predict(val_x, verbose=0), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["continual.tasks=6"], "6 tasks of 2 classes need 12 classes"),
        (["continual.buffer=100000"], "continual.buffer 100000 is larger than the"),
        (["continual.method=replay"], "continual.method"),
        (["cv.folds=3"], "continual learning trains one sequence"),
        (["train.lr=1e12", "continual.tasks=2"], "training diverged (NaN loss) in task 1 of 2"),
    ],
    ids=["tasks", "buffer", "method", "folds", "diverged"],
)
def test_bad_continual_settings_are_one_line(seq_digits, cli, overrides, message):
    assert_one_line_error(cli("train", seq_digits, *overrides), message)


def test_continual_needs_a_classification_competition(competition, cli):
    folder = competition("shapes-seg")
    assert_one_line_error(
        cli("train", folder, "continual.scenario=class_il"), "over a classification competition"
    )


def test_seq_mnist_runs_on_a_replica_of_the_digit_recognizer_files(competition, cli, workdir):
    folder = competition("seq-mnist")
    replicas.digit_recognizer(folder / "data")
    result = cli("run", folder, "train.epochs=1", "continual.buffer=20")
    assert result.exit_code == 0, result.output
    run_dir = next((workdir / "runs" / "seq-mnist").iterdir())
    assert len(json.loads((run_dir / "metrics.json").read_text())["accuracy_matrix"]) == 5
    submission = pd.read_csv(run_dir / "submission.csv")
    assert submission["ImageId"].tolist() == list(range(1, 41))
