"""The shipped real-competition configs, on tiny generated replicas of their layouts."""

import json

import pandas as pd

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


def test_dogs_vs_cats_replica_skips_a_corrupt_training_image(competition, cli, workdir):
    comp = competition("dogs-vs-cats")
    data = replicas.dogs_vs_cats(comp / "data")
    replicas.corrupt(data / "train" / "cat.3.jpg")
    result = cli("run", comp, *FAST, "data.image_size=[32, 32]", "train.batch_size=8")
    assert result.exit_code == 0, result.output
    assert "cat.3.jpg" in result.output
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
