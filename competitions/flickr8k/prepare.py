"""Lay out Flickr8k for kapps: hold out test images, write queries, gallery and answers.

The Kaggle dataset (adityajn105/flickr8k) is `Images/` (8,091 JPEGs) and
`captions.txt` (`image,caption`, five captions per image). It has no test
split, so this holds out the last images in name order (1,000, as the usual
Flickr8k test split; a fifth of a smaller folder): `train_captions.csv` keeps
the others' captions; every caption of a held-out image becomes a text query
(`test_captions.csv`, ids `<image>#<n>`) whose answer (`solution.csv`) is that
image among the held-out images (`gallery.csv`). Nothing is changed in
`Images/` or `captions.txt`.
"""

from pathlib import Path

import pandas as pd

from pipelines.runs import write_text

TEST_IMAGES = 1000
FILES = ("train_captions.csv", "gallery.csv", "test_captions.csv", "solution.csv")


def _write(frame, path):
    write_text(path, frame.to_csv(index=False))


def prepare(data_dir):
    data_dir = Path(data_dir)
    if all((data_dir / name).is_file() for name in (*FILES, "sample_submission.csv")):
        return
    source = data_dir / "captions.txt"
    if not source.is_file():
        raise ValueError(
            f"{source} not found: download the Kaggle dataset adityajn105/flickr8k into "
            f"{data_dir} (Images/ and captions.txt)"
        )
    captions = pd.read_csv(source)
    if not {"image", "caption"} <= set(captions.columns):
        found = list(captions.columns)
        raise ValueError(f"{source}: expected columns image,caption; found {found}")
    images = sorted(captions["image"].dropna().astype(str).unique())
    held_out = images[-min(TEST_IMAGES, max(1, len(images) // 5)) :]
    test = captions[captions["image"].isin(held_out)].copy()
    test["id"] = test["image"] + "#" + test.groupby("image").cumcount().astype(str)
    solution = test[["id", "image"]].rename(columns={"image": "matches"})
    _write(captions[~captions["image"].isin(held_out)], data_dir / "train_captions.csv")
    _write(pd.DataFrame({"image": held_out}), data_dir / "gallery.csv")
    _write(test[["id", "caption"]], data_dir / "test_captions.csv")
    _write(solution, data_dir / "solution.csv")
    sample = solution.assign(matches=" ".join(held_out[:5]))
    _write(sample, data_dir / "sample_submission.csv")
