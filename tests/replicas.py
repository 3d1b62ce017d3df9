"""Tiny replicas of real competition file layouts, generated on the spot."""

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from sklearn.datasets import load_digits


def digit_recognizer(data_dir, n_train=300, n_test=40):
    """Kaggle Digit Recognizer: 28×28 pixel CSVs, test.csv without ids, 1-based ImageId."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    # 8×8 → 24×24 by pixel repetition, centred in a 28×28 field like MNIST.
    big = np.kron(digits.images, np.ones((3, 3)))
    images = np.zeros((len(big), 28, 28))
    images[:, 2:26, 2:26] = big * 255 / 16
    pixels = np.rint(images).astype(int).reshape(len(big), -1)
    columns = [f"pixel{i}" for i in range(784)]
    train = pd.DataFrame(pixels[:n_train], columns=columns)
    train.insert(0, "label", digits.target[:n_train])
    train.to_csv(data_dir / "train.csv", index=False)
    test = pixels[n_train : n_train + n_test]
    pd.DataFrame(test, columns=columns).to_csv(data_dir / "test.csv", index=False)
    ids = np.arange(1, n_test + 1)
    pd.DataFrame({"ImageId": ids, "Label": 0}).to_csv(
        data_dir / "sample_submission.csv", index=False
    )
    return data_dir


def _animal(kind, seed):
    """A photo stand-in of varied size: warm horizontal stripes for cats, cool vertical for dogs."""
    rng = np.random.default_rng(seed)
    height, width = rng.integers(40, 90, size=2)
    y, x = np.mgrid[0:height, 0:width]
    wave = np.sin((y if kind == "cat" else x) / rng.uniform(2, 4)) * 60
    base = np.array([190, 110, 60]) if kind == "cat" else np.array([60, 110, 190])
    image = base + wave[..., None] + rng.normal(0, 20, (height, width, 3))
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def dogs_vs_cats(data_dir, n_train=24, n_test=6):
    """Dogs vs. Cats Redux: train/{cat,dog}.N.jpg, test/N.jpg, sample_submission id,label."""
    data_dir = Path(data_dir)
    (data_dir / "train").mkdir(parents=True, exist_ok=True)
    (data_dir / "test").mkdir(parents=True, exist_ok=True)
    for i in range(n_train // 2):
        for kind in ("cat", "dog"):
            _animal(kind, hash((kind, i)) % 2**32).save(data_dir / "train" / f"{kind}.{i}.jpg")
    for i in range(1, n_test + 1):
        _animal("cat" if i % 2 else "dog", 10_000 + i).save(data_dir / "test" / f"{i}.jpg")
    ids = np.arange(1, n_test + 1)
    pd.DataFrame({"id": ids, "label": 0.5}).to_csv(data_dir / "sample_submission.csv", index=False)
    return data_dir


def _painting(seed, size):
    """A Monet stand-in: soft blobs of a pastel palette."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.zeros((size, size, 3)) + rng.uniform(120, 200, 3)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, 1, 3)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (0.02 + 0.05 * r))
        image += blob[..., None] * rng.uniform(-60, 60, 3)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def gan_getting_started(data_dir, n_monet=16, n_photo=16, size=256):
    """I'm Something of a Painter Myself: monet_jpg/, photo_jpg/ (256×256 JPEGs), and the
    TFRecord folders beside them (empty here)."""
    data_dir = Path(data_dir)
    for folder in ("monet_jpg", "photo_jpg", "monet_tfrec", "photo_tfrec"):
        (data_dir / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n_monet):
        _painting(i, size).save(data_dir / "monet_jpg" / f"{i:010x}.jpg")
    for i in range(n_photo):
        _animal("dog" if i % 2 else "cat", 500 + i).resize((size, size)).save(
            data_dir / "photo_jpg" / f"{i:010x}.jpg"
        )
    return data_dir


def text_normalization(data_dir, n_train=200, n_test=20, seed=0):
    """Kaggle's Text Normalization Challenge (English): every field quoted but the ids,
    `en_test_2.csv` without classes or answers, `"<sentence>_<token>"` submission ids."""
    import csv

    from pipelines.synthetic.textnorm import token_rows

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    quoted = {"index": False, "quoting": csv.QUOTE_NONNUMERIC}
    train = token_rows(n_train, seed)
    train.to_csv(data_dir / "en_train.csv", **quoted)
    test = token_rows(n_test, seed + 1)
    test[["sentence_id", "token_id", "before"]].to_csv(data_dir / "en_test_2.csv", **quoted)
    ids = test["sentence_id"].astype(str) + "_" + test["token_id"].astype(str)
    sample = pd.DataFrame({"id": ids, "after": test["before"]})
    sample.to_csv(data_dir / "en_sample_submission_2.csv", **quoted)
    return data_dir


def corrupt(path):
    """Cut an image file short, as an interrupted download leaves it."""
    path = Path(path)
    path.write_bytes(path.read_bytes()[:64])


def _car(rng, size):
    """A photo stand-in for Carvana: a grey studio with a coloured rounded car body."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width]
    cy, cx = rng.uniform(0.4, 0.6) * height, rng.uniform(0.4, 0.6) * width
    ry, rx = rng.uniform(0.2, 0.35) * height, rng.uniform(0.25, 0.4) * width
    mask = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 4 <= 1
    image = np.full((height, width, 3), 200.0) + rng.normal(0, 6, (height, width, 3))
    image[mask] = rng.uniform(20, 160, 3)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)), mask


def carvana(data_dir, n_train=16, n_test=4, size=(40, 56)):
    """Carvana: train/<car>_<angle>.jpg, train_masks/<…>_mask.gif, row-major RLE CSVs."""
    from kapps.segmentation import rle

    data_dir = Path(data_dir)
    for folder in ("train", "train_masks", "test"):
        (data_dir / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    rows = []
    for i in range(n_train):
        name = f"{i // 4:04x}c0ffee_{i % 4 + 1:02d}"
        image, mask = _car(rng, size)
        image.save(data_dir / "train" / f"{name}.jpg", quality=95)
        Image.fromarray(mask.astype(np.uint8)).convert("P").save(
            data_dir / "train_masks" / f"{name}_mask.gif"
        )
        rows.append({"img": f"{name}.jpg", "rle_mask": rle.encode(mask, order="C")})
    pd.DataFrame(rows).to_csv(data_dir / "train_masks.csv", index=False)
    test_ids = [f"{i:04x}beef00_{i % 16 + 1:02d}.jpg" for i in range(n_test)]
    for image_id in test_ids:
        _car(rng, size)[0].save(data_dir / "test" / image_id, quality=95)
    # Kaggle's sample fills every row with the same placeholder mask.
    pd.DataFrame({"img": test_ids, "rle_mask": "1 1"}).to_csv(
        data_dir / "sample_submission.csv", index=False
    )
    return data_dir


def global_wheat(data_dir, n_train=24, n_test=4, size=128, seed=0):
    """Global Wheat Detection: train.csv one row per box (image_id,width,height,bbox,source),
    bbox "[x, y, w, h]"; training images without heads have no row; sample_submission
    image_id,PredictionString ("1.0 0 0 50 50", as Kaggle shipped it)."""
    from pipelines.synthetic.shapes import background

    data_dir = Path(data_dir)
    rng = np.random.default_rng(seed)
    rows = []
    for split, count in (("train", n_train), ("test", n_test)):
        (data_dir / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image_id = f"{split[:2]}{index:04d}abc"
            picture = background(rng, size)
            draw = ImageDraw.Draw(picture)
            heads = 0 if split == "train" and index < 2 else int(rng.integers(1, 5))
            for _ in range(heads):
                w, h = rng.integers(10, 30, size=2)
                x, y = rng.integers(0, size - w), rng.integers(0, size - h)
                draw.ellipse([x, y, x + w, y + h], fill=(200, 180, 60))
                if split == "train":
                    rows.append(
                        {
                            "image_id": image_id,
                            "width": size,
                            "height": size,
                            "bbox": f"[{x}.0, {y}.0, {w}.0, {h}.0]",
                            "source": "usask_1",
                        }
                    )
            picture.save(data_dir / split / f"{image_id}.jpg", quality=95)
    pd.DataFrame(rows).to_csv(data_dir / "train.csv", index=False)
    ids = [f"te{i:04d}abc" for i in range(n_test)]
    pd.DataFrame({"image_id": ids, "PredictionString": "1.0 0 0 50 50"}).to_csv(
        data_dir / "sample_submission.csv", index=False
    )
    return data_dir


def randomise_statistics(model, seed=0):
    """Batch-norm statistics that are not the identity, so a misplaced tensor shows."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "moving_variance" in weight.path:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))
        if "moving_mean" in weight.path:
            weight.assign(rng.normal(0.0, 0.1, weight.shape).astype("float32"))


def keras_applications_file(model, path):
    """A model's weights in the HDF5 layout keras.applications publishes its files in."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format  # Keras 2's layout, as published

    randomise_statistics(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def imagenet_cache(monkeypatch, keras_home, model, file, hashes, key):
    """A Keras cache already holding `file` (random weights of `model`), as after a download.

    `hashes[key]`, the published (top, notop) MD5 pair, is patched to this file's.
    """
    import hashlib

    from kapps.pretrained import loading

    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    path = keras_applications_file(model, loading.cache_folder() / file.name)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    top, notop = hashes[key]
    monkeypatch.setitem(hashes, key, (md5, notop) if file.md5 == top else (top, md5))
    return path
