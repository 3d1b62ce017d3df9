"""Every user-caused failure: one clear line, exit status 2, nothing half-written."""

import pandas as pd
import pytest

from tests import replicas
from tests.conftest import FAST, assert_one_line_error


def test_mistyped_config_key(competition, cli):
    comp = competition("digits")
    assert_one_line_error(cli("train", comp, "train.epoch=3"), "did you mean 'train.epochs'")


def test_mistyped_key_in_yaml(competition, cli):
    comp = competition("digits")
    text = (comp / "competition.yaml").read_text().replace("batch_size:", "batchsize:")
    (comp / "competition.yaml").write_text(text)
    assert_one_line_error(
        cli("run", comp), "unknown config key 'train.batchsize'", "train.batch_size"
    )


def test_unknown_model(competition, cli):
    comp = competition("digits")
    cli("prepare", comp)
    assert_one_line_error(cli("train", comp, "model.name=lenet6"), "unknown model 'lenet6'")


def test_missing_data_file(competition, cli, workdir):
    comp = competition("digits")
    assert_one_line_error(cli("train", comp), "train file not found", "kapps prepare")


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("tune", "kapps tune runs one process per trial"),
        ("train", "several processes need the JAX backend"),  # these tests run TensorFlow
    ],
)
def test_several_processes_where_they_cannot_work(competition, cli, workdir, command, message):
    comp = competition("digits")
    args = [
        "train.distribution=data_parallel",
        "train.distribution_processes=2",
        "train.distribution_coordinator=127.0.0.1:1234",
    ]
    assert_one_line_error(cli(command, comp, *args), message)
    assert not (workdir / "runs").exists()


def test_missing_competition_folder(cli, workdir):
    assert_one_line_error(cli("run", workdir / "competitions" / "nope"), "no competition folder")


def test_kaggle_download_without_kaggle_cli(competition, cli, monkeypatch, workdir):
    monkeypatch.setenv("PATH", str(workdir))  # no `kaggle` executable anywhere
    comp = competition("digit-recognizer")
    assert_one_line_error(
        cli("prepare", comp), "Kaggle CLI", "kaggle.com/competitions/digit-recognizer"
    )


def test_kaggle_cli_failure_is_reported(competition, cli, monkeypatch, workdir):
    fake = workdir / "bin"
    fake.mkdir()
    (fake / "kaggle").write_text("#!/bin/sh\necho '403 - Forbidden' >&2\nexit 1\n")
    (fake / "kaggle").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    comp = competition("dogs-vs-cats")
    assert_one_line_error(cli("prepare", comp), "403 - Forbidden", "accepted the rules")


def test_dogs_vs_cats_prepare_without_images(competition, cli):
    comp = competition("dogs-vs-cats")
    data = replicas.dogs_vs_cats(comp / "data", n_train=2, n_test=2)
    for image in (data / "train").glob("*.jpg"):
        image.unlink()
    assert_one_line_error(cli("prepare", comp), "no train/*.jpg")


def test_invalid_submission_file(digits_run, cli, tmp_path):
    run_dir, _ = digits_run
    good = pd.read_csv(run_dir / "submission.csv")
    cases = {
        "header": (good.rename(columns={"Label": "label"}), "header"),
        "missing": (good.iloc[:-1], "359 rows"),
        "extra": (good.assign(ImageId=good["ImageId"] + 1), "missing ids"),
        "nan": (good.assign(Label=good["Label"].where(good.index != 5)), "missing values"),
        "class": (
            good.assign(Label=good["Label"].where(good.index != 7, 12)),
            "row 9 has Label 12",
        ),
    }
    for name, (frame, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        frame.to_csv(path, index=False)
        assert_one_line_error(cli("submit", run_dir, "--file", path), message)


def test_sample_mismatch_writes_no_submission(digits_run, cli, tmp_path):
    """predict validates before writing: an invalid submission never reaches disk."""
    run_dir, _ = digits_run
    sample_path = tmp_path / "sample.csv"
    sample = pd.read_csv(
        run_dir.parent.parent.parent / "competitions/digits/data/sample_submission.csv"
    )
    sample.iloc[:-1].to_csv(sample_path, index=False)
    config = (run_dir / "config.yaml").read_text()
    broken = run_dir.parent / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text(
        config.replace(
            "sample_submission: sample_submission.csv", f"sample_submission: {sample_path}"
        )
    )
    (broken / "best.keras").write_bytes((run_dir / "best.keras").read_bytes())
    assert_one_line_error(cli("predict", broken), "360 rows, the sample has 359")
    assert not (broken / "submission.csv").exists()
    written = [p.name for p in broken.iterdir() if not p.is_dir() and p.name != ".lock"]
    assert sorted(written) == [
        "best.keras",
        "config.yaml",
    ]


def test_divergence_stops_with_advice(competition, cli):
    comp = competition("digits")
    cli("prepare", comp)
    result = cli("train", comp, *FAST, "train.optimizer=sgd", "train.lr=1e12")
    assert_one_line_error(result, "diverged", "train.lr")


@pytest.mark.parametrize("command", ["predict", "submit"])
def test_not_a_run_folder(cli, workdir, command):
    assert_one_line_error(cli(command, workdir), "is not a run folder")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.name=resnet50", "model.weights=imagenet"], "expect RGB images"),
        (["model.name=alexnet", "model.weights=imagenet"], "torchvision's AlexNet"),
        (["model.name=mobilenet_025", "model.weights=nowhere.h5"], "weights not found"),
    ],
)
def test_pretrained_weights_a_run_cannot_use(
    competition, cli, workdir, monkeypatch, overrides, message
):
    monkeypatch.setenv("KERAS_HOME", str(workdir / "keras"))  # nothing cached, no download
    comp = competition("digits")
    cli("prepare", comp)
    assert_one_line_error(cli("train", comp, *FAST, *overrides), message)
