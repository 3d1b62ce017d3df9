"""The shipped real-competition configs, on tiny generated replicas of their layouts."""

import json
import shutil

import keras
import pandas as pd
import pytest

from kapps.pretrained import catalog
from tests import replicas
from tests.conftest import FAST


def test_digit_recognizer_replica(competition, cli, workdir):
    comp = competition("digit-recognizer")
    replicas.digit_recognizer(comp / "data")
    result = cli("run", comp, *FAST, "train.batch_size=32")
    assert result.exit_code == 0, result.output
    run_dir = next((workdir / "runs" / "digit-recognizer").iterdir())
    submission = pd.read_csv(run_dir / "submission.csv")
    assert submission["ImageId"].tolist() == list(range(1, 41))
    assert submission["Label"].between(0, 9).all()


@pytest.mark.slow  # 80 s; fine-tuning and the corrupt-image skip have default-run tests too
def test_dogs_vs_cats_replica_fine_tunes_imagenet_weights_and_skips_a_corrupt_image(
    competition, cli, workdir, monkeypatch
):
    """The shipped config as is: EfficientNet-B0's ImageNet file (random weights here,
    already in the Keras cache as after the first download), a frozen-backbone epoch."""
    source = keras.applications.EfficientNetB0(
        weights=None, include_top=False, input_shape=(32, 32, 3)
    )
    notop = catalog.efficientnet({"variant": "efficientnet_b0"}).notop
    replicas.imagenet_cache(
        monkeypatch, workdir / "keras", source, notop, catalog.EFFICIENTNET_HASHES, "b0"
    )
    comp = competition("dogs-vs-cats")
    data = replicas.dogs_vs_cats(comp / "data")
    replicas.corrupt(data / "train" / "cat.3.jpg")
    overrides = ["data.image_size=[32, 32]", "train.batch_size=8", "train.freeze_epochs=1"]
    result = cli("run", comp, *FAST, *overrides)
    assert result.exit_code == 0, result.output
    assert "cat.3.jpg" in result.output
    assert "pretrained layers frozen" in result.output
    run_dir = next((workdir / "runs" / "dogs-vs-cats").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [p.rsplit("/", 1)[-1] for p in metrics["skipped_files"]] == ["cat.3.jpg"]
    assert metrics["train_images"] + metrics["val_images"] == 23
    submission = pd.read_csv(run_dir / "submission.csv")
    assert list(submission.columns) == ["id", "label"]
    assert submission["label"].between(0.005, 0.995).all()
    assert "log_loss" in metrics["validation"]

    # A corrupt test image stops prediction, names the file, keeps the old submission.
    before = (run_dir / "submission.csv").read_text()
    replicas.corrupt(data / "test" / "4.jpg")
    result = cli("predict", run_dir)
    assert result.exit_code == 2
    assert "4.jpg" in result.stderr and "prediction stopped" in result.stderr
    assert (run_dir / "submission.csv").read_text() == before


def test_prepare_downloads_with_the_kaggle_cli(competition, cli, monkeypatch, workdir):
    """A stand-in `kaggle` records its arguments and drops Kaggle's nested zips."""
    staging = replicas.dogs_vs_cats(workdir / "staging", n_train=4, n_test=2)
    inner = workdir / "inner"
    inner.mkdir()
    for folder in ("train", "test"):
        shutil.make_archive(str(inner / folder), "zip", staging, folder)
    shutil.copy(staging / "sample_submission.csv", inner)
    outer = shutil.make_archive(str(workdir / "dogs"), "zip", inner)
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    script = f'#!/bin/sh\necho "$@" > {workdir}/kaggle-args\ncp {outer} "$6/bundle.zip"\n'
    (bin_dir / "kaggle").write_text(script)
    (bin_dir / "kaggle").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret")

    comp = competition("dogs-vs-cats")
    result = cli("prepare", comp)
    assert result.exit_code == 0, result.output
    args = (workdir / "kaggle-args").read_text().split()
    assert args[:4] == ["competitions", "download", "-c", "dogs-vs-cats-redux-kernels-edition"]
    data = comp / "data"
    assert sorted(p.name for p in (data / "train").iterdir())[:2] == ["cat.0.jpg", "cat.1.jpg"]
    assert not list(data.rglob("*.zip"))
    labels = pd.read_csv(data / "train.csv")
    assert labels["label"].value_counts().to_dict() == {"cat": 2, "dog": 2}
