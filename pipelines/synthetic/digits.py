"""scikit-learn's digits laid out like Kaggle's Digit Recognizer, plus an answer key.

1,797 real 8×8 handwritten digits ship inside scikit-learn, so this needs no
download. Pixels are rescaled from 0–16 to 0–255 as in the Kaggle files; a
stratified 80/20 split with a fixed seed gives train.csv and test.csv. The
digits and seq-digits competitions' `prepare.py` call `prepare`; digits-gen's
calls `prepare_images`, the same split as 8×8 PNGs in class folders.
"""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 2024
TEST_FRACTION = 0.2
FILES = ("train.csv", "test.csv", "sample_submission.csv", "solution.csv")


def _write(frame, path):
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


def prepare(data_dir):
    data_dir = Path(data_dir)
    if all((data_dir / name).is_file() for name in FILES):
        return
    digits = load_digits()
    pixels = np.rint(digits.data * 255.0 / 16.0).astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        pixels, digits.target, test_size=TEST_FRACTION, stratify=digits.target, random_state=SEED
    )
    columns = [f"pixel{i}" for i in range(pixels.shape[1])]
    train = pd.DataFrame(train_x, columns=columns)
    train.insert(0, "label", train_y)
    image_ids = np.arange(1, len(test_x) + 1)
    _write(train, data_dir / "train.csv")
    _write(pd.DataFrame(test_x, columns=columns), data_dir / "test.csv")
    _write(pd.DataFrame({"ImageId": image_ids, "Label": 0}), data_dir / "sample_submission.csv")
    _write(pd.DataFrame({"ImageId": image_ids, "Label": test_y}), data_dir / "solution.csv")


def prepare_images(data_dir):
    """The same split as PNG files: `train/<digit>/<n>.png` to learn from and
    `answers/<digit>/<n>.png`, the held-out real digits generated ones are scored against."""
    from PIL import Image

    data_dir = Path(data_dir)
    if (data_dir / "train").is_dir() and (data_dir / "answers").is_dir():
        return
    digits = load_digits()
    pixels = np.rint(digits.images * 255.0 / 16.0).astype(np.uint8)
    rows = np.arange(len(pixels))
    train_rows, test_rows = train_test_split(
        rows, test_size=TEST_FRACTION, stratify=digits.target, random_state=SEED
    )
    for split, chosen in (("train", train_rows), ("answers", test_rows)):
        tmp = data_dir / f".{split}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for row in chosen:
            folder = tmp / str(digits.target[row])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[row], "L").save(folder / f"{row:04d}.png")
        tmp.replace(data_dir / split)
