"""tf.data readers for the three classification layouts, and corrupt-file handling."""

import numpy as np
import pandas as pd
import pytest

from pipelines.config import load_config
from pipelines.data import batched, decoded_images, read_test_source, read_train_source
from pipelines.data.augment import build_augmenter
from pipelines.data.sources import train_labels
from pipelines.errors import DataError
from tests import replicas


def _config(tmp_path, yaml_text, *overrides):
    (tmp_path / "competition.yaml").write_text(yaml_text)
    return load_config(tmp_path, overrides)


PIXEL = (
    "competition: {name: t}\ndata: {pixel_shape: [28, 28, 1], channels: 1, image_size: [28, 28]}\n"
)
FOLDERS = (
    "competition: {name: t}\ndata: {format: class_folders, train: train, "
    "test: sample_submission.csv, test_images: 'test/{id}.jpg', image_size: [32, 32]}\n"
)
CSV_PATHS = (
    "competition: {name: t}\ndata: {format: csv_paths, train: train.csv, "
    "train_images: 'train/{id}.jpg', test: sample_submission.csv, "
    "test_images: 'test/{id}.jpg', id_column: id, image_size: [32, 32]}\n"
)


def test_pixel_csv_train_and_test(tmp_path):
    replicas.digit_recognizer(tmp_path / "data", n_train=50, n_test=7)
    cfg = _config(tmp_path, PIXEL)
    train, test = read_train_source(cfg), read_test_source(cfg)
    assert train.pixels.shape == (50, 28, 28, 1) and train.pixels.dtype == np.uint8
    assert test.ids.tolist() == list(range(1, 8))
    images = decoded_images(train, (32, 32), 3)
    batch, labels = next(iter(batched(images, np.eye(10)[train.labels], batch_size=8)))
    assert batch.shape == (8, 32, 32, 3) and labels.shape == (8, 10)
    assert float(batch.numpy().max()) > 200  # raw 0–255 pixels reach the model


def test_labels_alone_match_the_source_and_a_missing_one_is_named(tmp_path):
    data = replicas.digit_recognizer(tmp_path / "data", n_train=20, n_test=3)
    cfg = _config(tmp_path, PIXEL)
    assert train_labels(cfg).tolist() == read_train_source(cfg).labels.tolist()
    frame = pd.read_csv(data / "train.csv")
    frame.loc[6, "label"] = None
    frame.to_csv(data / "train.csv", index=False)
    for read in (train_labels, read_train_source):
        with pytest.raises(DataError, match="row 8 has no label"):
            read(cfg)


def test_pixel_csv_bad_value_names_row_and_column(tmp_path):
    data = replicas.digit_recognizer(tmp_path / "data", n_train=20, n_test=3)
    frame = pd.read_csv(data / "train.csv").astype(object)
    frame.loc[4, "pixel10"] = "x"
    frame.to_csv(data / "train.csv", index=False)
    with pytest.raises(DataError, match=r"row 6, column 'pixel10'"):
        read_train_source(_config(tmp_path, PIXEL))


def test_pixel_csv_wrong_shape(tmp_path):
    replicas.digit_recognizer(tmp_path / "data", n_train=20, n_test=3)
    with pytest.raises(DataError, match="784 pixel columns"):
        read_train_source(_config(tmp_path, PIXEL, "data.pixel_shape=[8, 8, 1]"))


def test_class_folders(tmp_path):
    data = replicas.dogs_vs_cats(tmp_path / "data", n_train=8, n_test=2)
    for kind in ("cat", "dog"):
        (data / "train" / kind).mkdir()
        for file in (data / "train").glob(f"{kind}.*.jpg"):
            file.rename(data / "train" / kind / file.name)
    cfg = _config(tmp_path, FOLDERS, "data.id_column=id")
    source = read_train_source(cfg)
    assert sorted(set(source.labels)) == ["cat", "dog"] and len(source) == 8
    assert len(read_test_source(cfg)) == 2


def test_csv_paths_and_corrupt_training_image_is_skipped(tmp_path):
    data = replicas.dogs_vs_cats(tmp_path / "data", n_train=8, n_test=2)
    names = sorted(p.stem for p in (data / "train").glob("*.jpg"))
    pd.DataFrame({"id": names, "label": [n.split(".")[0] for n in names]}).to_csv(
        data / "train.csv", index=False
    )
    replicas.corrupt(data / "train" / "dog.1.jpg")
    source = read_train_source(_config(tmp_path, CSV_PATHS))
    images = decoded_images(source, (32, 32), 3)
    assert images.skipped == [str(data / "train" / "dog.1.jpg")]
    assert len(images) == 7
    assert sum(1 for _ in images.dataset) == 7


def test_file_decoder_is_traced_once_per_size(tmp_path):
    """Each split, fold and prediction reuses the traced decode; sizes stay apart."""
    from pipelines.data.images import _file_decoder
    from pipelines.data.sources import ImageSource

    data = replicas.dogs_vs_cats(tmp_path / "data", n_train=6, n_test=2)
    paths = sorted(str(p) for p in (data / "train").glob("*.jpg"))
    source = ImageSource(ids=np.arange(6), labels=np.arange(6) % 2, paths=paths)
    shapes = {}
    for size in [(24, 20), (16, 16), (24, 20)]:
        images = decoded_images(source, size, 3, cache="none")
        shapes[size] = {tuple(image.shape) for image, _ in images.dataset}
    assert shapes == {(24, 20): {(24, 20, 3)}, (16, 16): {(16, 16, 3)}}
    assert _file_decoder((24, 20), 3).experimental_get_tracing_count() == 1


def test_missing_image_and_missing_file(tmp_path):
    data = replicas.dogs_vs_cats(tmp_path / "data", n_train=4, n_test=2)
    (data / "test" / "2.jpg").unlink()
    cfg = _config(tmp_path, CSV_PATHS)
    with pytest.raises(DataError, match=r"test image not found: .*2\.jpg"):
        read_test_source(cfg)
    with pytest.raises(DataError, match=r"train file not found: .*train\.csv"):
        read_train_source(cfg)


def test_augmenter_keeps_shape_and_changes_pixels(tmp_path):
    cfg = _config(tmp_path, PIXEL, "augment.rotation=0.1", "augment.flip=horizontal")
    augment = build_augmenter(cfg.augment, seed=1)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 1)).astype("float32")
    out = np.asarray(augment(images))
    assert out.shape == images.shape and not np.allclose(out, images)
    assert build_augmenter(_config(tmp_path, PIXEL).augment, seed=1) is None
