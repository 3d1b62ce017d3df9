"""Generate shapes-captions: captioned pictures of coloured shapes, in the Flickr8k layout.

`Images/<image>.png` and `captions.txt` (`image,caption,label`, five captions
per training picture; `label` names the shape of one-shape pictures, for
zero-shot classification). The test split: `gallery.csv` lists the test
pictures, `test_captions.csv` holds one query caption per test picture
(`id,caption`), `solution.csv` the picture each query describes, and
`sample_submission.csv` the `id,matches` format. Every test picture holds a
colour–shape pair that no training picture has. Deterministic.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pipelines.runs import write_text
from pipelines.synthetic.captioned_shapes import caption, draw, label, scene

SEED = 11
TRAIN, TEST, SIZE, CAPTIONS = 3000, 300, 64, 5
FILES = ("captions.txt", "gallery.csv", "test_captions.csv", "solution.csv")
FILES += ("sample_submission.csv",)


def _write(frame, path):
    write_text(path, frame.to_csv(index=False))


def generate(data_dir, train=TRAIN, test=TEST, size=SIZE, seed=SEED):
    """Write the competition's files into `data_dir` (any sizes, for tests)."""
    data_dir = Path(data_dir)
    (data_dir / "Images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    captions, queries, gallery = [], [], []
    for index in range(train + test):
        image = f"{index:05d}.png"
        held_out = index >= train
        things = scene(rng, held_out=held_out)
        Image.fromarray(draw(things, rng, size)).save(data_dir / "Images" / image)
        if held_out:
            gallery.append(image)
            queries.append({"id": f"q{len(queries):04d}", "caption": caption(things, rng)})
        else:
            for _ in range(CAPTIONS):
                text = caption(things, rng)
                captions.append({"image": image, "caption": text, "label": label(things)})
    queries = pd.DataFrame(queries)
    solution = queries[["id"]].assign(matches=gallery)
    _write(pd.DataFrame(captions), data_dir / "captions.txt")
    _write(pd.DataFrame({"image": gallery}), data_dir / "gallery.csv")
    _write(queries, data_dir / "test_captions.csv")
    _write(solution, data_dir / "solution.csv")
    _write(solution.assign(matches=" ".join(gallery[:5])), data_dir / "sample_submission.csv")


def prepare(data_dir):
    if all((Path(data_dir) / name).is_file() for name in FILES):
        return
    generate(data_dir)
