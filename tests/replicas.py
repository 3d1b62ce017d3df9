"""Tiny replicas of real competition file layouts, generated on the spot."""

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
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


def corrupt(path):
    """Cut an image file short, as an interrupted download leaves it."""
    path = Path(path)
    path.write_bytes(path.read_bytes()[:64])
