"""The generation family end to end: digits-gen, the Monet layout, images.zip, generate."""

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from pipelines.errors import SubmissionError
from pipelines.submit.images import read_image_zip, validate_image_zip, write_image_zip
from tests import replicas
from tests.conftest import shared_run

# A DDPM small enough for seconds on a CPU, and just enough images.
TINY = [
    "train.epochs=1",
    "model.args.channels=8",
    "model.args.channel_mult=[1,2]",
    "model.args.attention_resolutions=[4]",
    "model.args.groups=4",
    "generation.images=30",
    "generation.min_images=1",
    "generation.eval_images=20",
    "generation.epoch_images=10",
    "generation.steps=3",
    "generation.epoch_steps=2",
    "generation.extractor_epochs=2",
]


@pytest.fixture(scope="module")
def digits_gen(tmp_path_factory):
    """One tiny `kapps run competitions/digits-gen`, shared by the tests that read it."""
    root = tmp_path_factory.mktemp("digits-gen")
    _, run_dir, output = shared_run(root, "digits-gen", *TINY)
    return root, run_dir, output


def test_digits_gen_runs_end_to_end(digits_gen):
    root, run, output = digits_gen
    metrics = json.loads((run / "metrics.json").read_text())
    validation, test = metrics["validation"], metrics["test"]
    assert validation["features"] == test["features"] == "domain"
    for scores in (validation, test):
        assert scores["fid"] > 0 and np.isfinite(scores["kid"])
        assert 0 <= scores["conditional_accuracy"] <= 1
        assert "mifid" not in scores  # Kaggle's threshold is Inception's
    assert test["images"] == 30 and validation["images"] == 20
    assert metrics["monitor"] == "val_fid"
    for picture in ("curves", "samples", "nearest_training", "denoising"):
        assert (run / f"{picture}.png").is_file(), picture
    assert (run / "samples" / "epoch-001.png").is_file()
    names, images = read_image_zip(run / "images.zip")
    assert names[:3] == ["00000_0.png", "00001_1.png", "00002_2.png"]
    assert images.shape == (30, 8, 8, 1) and images.dtype == np.uint8
    assert "images.zip" in output


def test_kapps_submit_checks_the_image_zip(digits_gen, cli, tmp_path):
    root, run, _ = digits_gen
    result = cli("submit", run)
    assert result.exit_code == 0 and "30 images" in result.output
    bad = tmp_path / "images.zip"
    with zipfile.ZipFile(run / "images.zip") as source, zipfile.ZipFile(bad, "w") as target:
        for name in source.namelist()[:-1]:
            target.writestr(name, source.read(name))
        big = Image.fromarray(np.zeros((20, 16), "uint8"), "L")
        big.save(tmp_path / "odd.png")
        target.write(tmp_path / "odd.png", "00029_9.png")
    result = cli("submit", run, "--file", bad)
    assert result.exit_code == 2
    assert "00029_9.png is 16×20 pixels, the competition wants 8×8" in result.output
    (tmp_path / "junk.zip").write_text("not a zip")
    result = cli("submit", run, "--file", tmp_path / "junk.zip")
    assert result.exit_code == 2 and "not a zip file" in result.output


def test_kapps_generate_writes_images_of_a_class(digits_gen, cli, tmp_path):
    _, run, _ = digits_gen
    out = tmp_path / "threes"
    result = cli("generate", run, "--num", 5, "--out", out, "--class", "3", "--steps", 2)
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"{i:05d}_3.png" for i in range(5)]
    assert Image.open(out / files[0]).size == (8, 8)
    again = cli("generate", run, "--num", 2, "--out", out)
    assert again.exit_code == 2 and "not an empty folder" in again.output
    assert sorted(p.name for p in out.iterdir()) == files  # nothing overwritten
    wrong = cli("generate", run, "--num", 2, "--out", tmp_path / "x", "--class", "12")
    assert wrong.exit_code == 2 and "not one of the classes" in wrong.output
    assert cli("generate", run, "--num", 2).exit_code == 2  # no --out


def test_the_zip_writer_refuses_before_writing(tmp_path):
    images = np.zeros((3, 8, 8, 3), "float32")
    path = tmp_path / "images.zip"
    with pytest.raises(SubmissionError, match="3 images; the competition takes 7000–10000"):
        write_image_zip(path, [images], ["a.jpg", "b.jpg", "c.jpg"], (8, 8), 3, "jpg", 7000, 10000)
    with pytest.raises(
        SubmissionError, match=r"a.jpg is \(8, 8, 3\), the competition wants \(8, 6, 3\)"
    ):
        write_image_zip(path, [images], ["a.jpg", "b.jpg", "c.jpg"], (8, 6), 3, "jpg", 1, 10)
    assert not path.exists() and not list(tmp_path.iterdir())  # no half-written file
    write_image_zip(
        path, [images[:2], images[2:]], ["a.jpg", "b.jpg", "c.jpg"], (8, 8), 3, "jpg", 1, 10
    )
    assert validate_image_zip(path, (8, 8), 3, 1, 10) == 3
    with pytest.raises(SubmissionError, match="has mode RGB, the competition wants L"):
        validate_image_zip(path, (8, 8), 1, 1, 10)
    with pytest.raises(SubmissionError, match="3 images; the competition takes 5–10"):
        validate_image_zip(path, (8, 8), 3, 5, 10)


def test_monet_layout_with_domain_features(competition, cli, workdir):
    target = competition("gan-getting-started")
    replicas.gan_getting_started(target / "data", n_monet=12, n_photo=12, size=64)
    args = [
        "train.epochs=1",
        "data.image_size=[16,16]",
        "model.args.width=8",
        "generation.images=12",
        "generation.min_images=1",
        "generation.image_size=[32,32]",
        "generation.eval_images=12",
        "generation.epoch_images=6",
        "generation.extractor_epochs=1",
        "train.batch_size=4",
    ]
    result = cli("run", target, *args)
    assert result.exit_code == 0, result.output
    (run,) = (workdir / "runs" / "gan-getting-started").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["validation"]["features"] == "domain"  # no Inception file here
    assert "conditional_accuracy" not in metrics["validation"]
    names, images = read_image_zip(run / "images.zip")
    assert len(names) == 12 and names[0] == "00000.jpg" and images.shape[1:] == (32, 32, 3)


def test_inception_features_and_mifid(competition, cli, workdir):
    import keras

    target = competition("gan-getting-started")
    replicas.gan_getting_started(target / "data", n_monet=10, n_photo=4, size=64)
    inception = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg")
    replicas.keras_applications_file(inception, target / "inception.h5")
    args = [
        "train.epochs=1",
        "data.image_size=[8,8]",
        "model.args.width=4",
        "generation.images=8",
        "generation.min_images=1",
        "generation.image_size=[8,8]",
        "generation.eval_images=8",
        "generation.epoch_images=2",
        "generation.fid_every=1",
        "generation.inception_weights=inception.h5",
        "train.batch_size=4",
    ]
    result = cli("train", target, *args)
    assert result.exit_code == 0, result.output
    (run,) = (workdir / "runs" / "gan-getting-started").iterdir()
    validation = json.loads((run / "metrics.json").read_text())["validation"]
    assert validation["features"] == "inception"
    assert validation["mifid"] >= validation["fid"] > 0
    assert 0 <= validation["memorisation_distance"] <= 1


def test_user_errors_are_one_line(competition, cli, workdir):
    target = competition("gan-getting-started")
    replicas.gan_getting_started(target / "data", n_monet=4, n_photo=0, size=32)
    (target / "data" / "photo_jpg").rmdir()
    base = ["train.epochs=1", "data.image_size=[8,8]", "generation.inception_weights=null"]
    result = cli("train", target, *base)  # one class of images: no domain classifier
    assert result.exit_code == 2 and "at least two classes" in result.output
    result = cli("train", target, *base, "generation.features=inception")
    assert result.exit_code == 2 and "needs generation.inception_weights" in result.output
    result = cli("train", target, *base, "generation.images=5", "generation.max_images=4")
    assert result.exit_code == 2 and "outside" in result.output
    result = cli("train", target, *base, "submission.kind=label")
    assert (
        result.exit_code == 2 and "image_zip goes with competition.task generation" in result.output
    )


def test_a_pixel_csv_needs_no_label_column_for_generation(tmp_path):
    import pandas as pd

    from pipelines.config import load_config
    from pipelines.data.sources import read_train_source, train_labels

    data = replicas.digit_recognizer(tmp_path / "data", n_train=20, n_test=2)
    (tmp_path / "competition.yaml").write_text(
        "competition: {name: mnist-gen, task: generation}\n"
        "data: {format: pixel_csv, pixel_shape: [28, 28, 1], channels: 1}\n"
        "submission: {kind: image_zip}\n"
    )
    cfg = load_config(tmp_path)
    labelled = read_train_source(cfg)
    assert labelled.labels is not None and len(labelled) == 20
    pd.read_csv(data / "train.csv").drop(columns="label").to_csv(data / "train.csv", index=False)
    unlabelled = read_train_source(cfg)
    assert unlabelled.labels is None and unlabelled.pixels.shape == (20, 28, 28, 1)
    assert train_labels(cfg) is None
