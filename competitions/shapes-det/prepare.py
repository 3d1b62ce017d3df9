"""Generate shapes-det: three classes of shapes over photo crops, boxes in a CSV.

`train/<id>.jpg` with `train.csv` (`image_id,width,height,bbox,class`, one row
per box, bbox "[x, y, w, h]" as Global Wheat writes it); `test/<id>.jpg`,
`sample_submission.csv` (`image_id,PredictionString`, VinBigData's
"class conf x1 y1 x2 y2" strings) and the held-out answer key `solution.csv`.
Shapes vary in scale (6–30 % of the side) and aspect and may overlap: a box
covers the visible part of its shape. Deterministic: the same files every time.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pipelines.runs import atomic_write
from pipelines.synthetic.shapes import SHAPES, scene

SEED = 11
TRAIN, TEST, SIZE = 1600, 200, 128
SHAPE_COUNT, RADIUS = (1, 5), (0.06, 0.3)
MIN_SIDE = 4  # visible parts thinner than this are not labelled
MIN_VISIBLE = 0.6  # every shape keeps 60 % of its area in sight: "some overlapping"
FILES = ("train.csv", "sample_submission.csv", "solution.csv")


def _write(frame, path):
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def _boxes(drawn):
    sides = np.minimum(drawn.boxes[:, 2] - drawn.boxes[:, 0], drawn.boxes[:, 3] - drawn.boxes[:, 1])
    keep = sides >= MIN_SIDE
    return drawn.boxes[keep], np.asarray(drawn.classes)[keep]


def generate(data_dir, train=TRAIN, test=TEST, size=SIZE, seed=SEED):
    """Write the competition's files into `data_dir` (any sizes, for tests)."""
    data_dir = Path(data_dir)
    rng = np.random.default_rng(seed)
    for folder in ("train", "test"):
        (data_dir / folder).mkdir(parents=True, exist_ok=True)
    train_rows, solution = [], []
    for index in range(train + test):
        image_id = f"{index:05d}"
        drawn = scene(rng, size, shapes=SHAPE_COUNT, radius=RADIUS, min_visible=MIN_VISIBLE)
        split = "train" if index < train else "test"
        Image.fromarray(drawn.image).save(data_dir / split / f"{image_id}.jpg", quality=95)
        boxes, classes = _boxes(drawn)
        if split == "train":
            for (x1, y1, x2, y2), k in zip(boxes.tolist(), classes, strict=True):
                train_rows.append(
                    {
                        "image_id": image_id,
                        "width": size,
                        "height": size,
                        "bbox": f"[{x1:g}, {y1:g}, {x2 - x1:g}, {y2 - y1:g}]",
                        "class": SHAPES[k - 1],
                    }
                )
        else:
            truth = " ".join(
                f"{SHAPES[k - 1]} 1.0 {x1:g} {y1:g} {x2:g} {y2:g}"
                for (x1, y1, x2, y2), k in zip(boxes.tolist(), classes, strict=True)
            )
            solution.append({"image_id": image_id, "PredictionString": truth})
    solution = pd.DataFrame(solution)
    _write(pd.DataFrame(train_rows), data_dir / "train.csv")
    _write(solution, data_dir / "solution.csv")
    _write(solution.assign(PredictionString=""), data_dir / "sample_submission.csv")


def prepare(data_dir):
    if all((Path(data_dir) / name).is_file() for name in FILES):
        return
    generate(data_dir)
