"""`kapps run competitions/digits` end to end, at a few epochs."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

import kapps
from pipelines.predict import check_submission
from tests.conftest import FAST

RUN_FILES = [
    "config.yaml",
    "history.csv",
    "best.keras",
    "metrics.json",
    "curves.png",
    "confusion_matrix.png",
    "hardest.png",
    "cam.png",
    "submission.csv",
]


def test_run_writes_a_valid_submission_and_a_tidy_folder(competition, cli, workdir):
    comp = competition("digits")
    result = cli("run", comp, *FAST)
    assert result.exit_code == 0, result.output
    run_dir = next((workdir / "runs" / "digits").iterdir())
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert "test accuracy" in result.output  # the results table

    data = comp / "data"
    submission = pd.read_csv(run_dir / "submission.csv")
    sample = pd.read_csv(data / "sample_submission.csv")
    assert list(submission.columns) == ["ImageId", "Label"]
    assert submission["ImageId"].tolist() == sample["ImageId"].tolist()
    assert check_submission(run_dir) == 360

    solution = pd.read_csv(data / "solution.csv")
    accuracy = (submission["Label"] == solution["Label"]).mean()
    assert accuracy > 0.6  # chance is 0.1; three epochs already reach ~0.9
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == accuracy
    assert metrics["epochs_run"] == 3
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 3
    assert saved["data"]["classes"] == list(range(10))
    assert saved["run"]["name"] == run_dir.name

    again = cli("run", comp, *FAST)
    assert again.exit_code == 0, again.output
    assert "already finished training" in again.output
    assert len(list((workdir / "runs" / "digits").iterdir())) == 1


def test_prepare_makes_kaggle_layout_with_answer_key(competition, cli):
    comp = competition("digits")
    assert cli("prepare", comp).exit_code == 0
    train = pd.read_csv(comp / "data" / "train.csv")
    test = pd.read_csv(comp / "data" / "test.csv")
    assert list(train.columns) == ["label"] + [f"pixel{i}" for i in range(64)]
    assert (len(train), len(test)) == (1437, 360)
    assert train["pixel36"].max() == 255
    # Stratified: every digit keeps its share in the test split.
    solution = pd.read_csv(comp / "data" / "solution.csv")
    assert solution["Label"].value_counts().min() >= 34


def test_predict_and_submit_verbs(digits_run, cli, tmp_path):
    run_dir, metrics = digits_run
    out = tmp_path / "again.csv"
    result = cli("predict", run_dir, "--out", out)
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out).equals(pd.read_csv(run_dir / "submission.csv"))
    assert cli("submit", run_dir).exit_code == 0


def test_models_verb_lists_the_registry(cli):
    result = cli("models", "--task", "classification")
    assert result.exit_code == 0
    assert "lenet5_paper" in result.output


def test_confusion_matrix_counts_the_validation_set(digits_run):
    _, metrics = digits_run
    per_class = metrics["validation"]["per_class_accuracy"]
    assert sorted(per_class) == [str(i) for i in range(10)]
    assert metrics["val_images"] == 144 and metrics["train_images"] == 1293


def test_ema_and_mixed_precision_train(competition, workdir):
    import keras

    from pipelines.config import load_config
    from pipelines.prepare import prepare
    from pipelines.train import train

    comp = competition("digits")
    options = ["train.epochs=2", "train.ema=true", "train.mixed_precision=bfloat16"]
    cfg = load_config(comp, [*FAST, *options])
    prepare(cfg, log=lambda _: None)
    metrics = train(cfg, log=lambda _: None)
    assert metrics["validation"]["accuracy"] > 0.3
    assert keras.config.dtype_policy().name == "float32"  # policy restored after the run


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_clipnorm_clips_the_global_gradient_norm(competition, optimizer):
    import keras
    import numpy as np

    from pipelines.config import load_config
    from pipelines.train import build_optimizer

    comp = competition("digits")
    options = [f"train.optimizer={optimizer}", "train.warmup_epochs=0", "train.lr=1"]
    assert build_optimizer(load_config(comp, options).train, 10).global_clipnorm is None
    train = load_config(comp, [*options, "train.clipnorm=0.1", "train.momentum=0"]).train
    clipped = build_optimizer(train, 10)
    assert clipped.global_clipnorm == 0.1
    if optimizer == "sgd":  # one plain step of rate 1 moves the weights by the clipped gradient
        weights = [keras.Variable(np.zeros(3, "float32")) for _ in range(2)]
        gradients = [np.full(3, 4.0, "float32")] * 2
        clipped.apply_gradients(zip(gradients, weights, strict=True))
        moved = np.sqrt(sum(float(np.sum(np.square(w.numpy()))) for w in weights))
        assert moved == pytest.approx(0.1, rel=1e-4)


FAMILY_ROWS = {
    "efficientnet_b0",
    "googlenet",
    "lenet5_paper",
    "mobilenet",
    "resnet18",
    "vgg16",
    "vit_tiny16",
}
OTHER_MODELS = [
    pytest.param("alexnet", marks=pytest.mark.slow),  # the only one upscaled (to 67×67)
    pytest.param("keras.applications/MobileNetV2", marks=pytest.mark.slow),
    # One row per family: the registry test covers every variant's build and
    # train step; a digits epoch of the largest ones would take hours on a CPU.
    *[
        pytest.param(n, marks=pytest.mark.slow)
        for n in kapps.list_models("classification")
        if n in FAMILY_ROWS
    ],
]


@pytest.mark.parametrize("model", OTHER_MODELS)
def test_digits_with_other_models(competition, workdir, model):
    """Any classification model runs on 8×8 digits: the pipeline upscales as needed."""
    import keras

    from kapps.registry import min_input_size
    from pipelines.config import load_config
    from pipelines.prepare import prepare
    from pipelines.train import train

    comp = competition("digits")
    options = ["train.epochs=1", f"model.name={model}", "train.batch_size=64"]
    if model == "alexnet":
        options.append("model.args.fc_units=256")  # the paper's 4,096 only slows the test
    cfg = load_config(comp, [*FAST, *options])
    prepare(cfg, log=lambda _: None)
    notes = []
    metrics = train(cfg, log=notes.append)
    side = max(32, min_input_size(model))
    best = keras.saving.load_model(f"{metrics['run_dir']}/best.keras")
    assert best.input_shape == (None, side, side, 1)
    assert best.output_shape == (None, 10)
    history = pd.read_csv(f"{metrics['run_dir']}/history.csv")
    assert np.isfinite(history["loss"]).all()
    assert (side > 32) == any(f"upscaled from (32, 32) to ({side}, {side})" in n for n in notes)
