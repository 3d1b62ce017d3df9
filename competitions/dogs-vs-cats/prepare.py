"""List the Dogs vs. Cats training images with their labels.

Kaggle ships `train/cat.0.jpg … train/dog.12499.jpg` with the label in the file
name and no label file; this writes `train.csv` (`id,label`, e.g. `cat.0,cat`).
"""

from pathlib import Path

import pandas as pd


def prepare(data_dir):
    data_dir = Path(data_dir)
    images = sorted((data_dir / "train").glob("*.jpg"))
    if not images:
        raise FileNotFoundError(f"no train/*.jpg in {data_dir}; unzip Kaggle's train.zip there")
    frame = pd.DataFrame({"id": [p.stem for p in images]})
    frame["label"] = frame["id"].str.split(".").str[0]
    tmp = data_dir / "train.csv.tmp"
    frame.to_csv(tmp, index=False)
    tmp.replace(data_dir / "train.csv")
