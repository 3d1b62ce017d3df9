"""Input pipeline: our tf.data reader ÷ a PIL + keras.utils.PyDataset loader; pipeline ÷ model.

The JPEG files are written once into a temporary folder: crops of
scikit-learn's sample photographs at 375×500 (the size of a typical Dogs vs.
Cats picture), decoded and resized to the competition's input (128×128 for
`dogs-vs-cats`).

Figure 1, reader speed. Both loaders feed `model.fit` of the same trivial model
(mean pixel → dense), so each is consumed the way training consumes it, with
its own parallelism:
- ours: `pipelines.data.images` (`decoded_images` decodes in a parallel tf.data
  map and caches, `batched` batches);
- the reference: a `keras.utils.PyDataset` whose `__getitem__` opens each file
  with PIL, converts to RGB and resizes (PIL's bilinear filter, antialiased
  like ours), run with 1 and with 2 worker threads; the faster counts.
Ours is timed on the first epoch (the decode, as every epoch of the reference
decodes) and again on a later one (read from its cache). Goal: first epoch
≥ 2 × the reference.

Figure 2, does the model wait? Our training pipeline for the competition (from
the cache, shuffled, its augmentation layers in the tf.data map) iterated
alone, in images/s, ÷ the competition model's training step on an in-memory
batch, in images/s. Goal ≥ 1.2.

Every timing is the median of alternating repeats.

    python benchmarks/input_pipeline.py [--images 1024] [--repeats 7] [--competition dogs-vs-cats]
"""

import argparse
import math
import tempfile
from pathlib import Path

import keras
import numpy as np
from PIL import Image

import kapps
from benchmarks.common import Figure, add_figures_argument, alternate, write_figures
from pipelines.config import load_config
from pipelines.data.augment import build_augmenter
from pipelines.data.images import batched, decoded_images
from pipelines.data.sources import ImageSource
from pipelines.synthetic.shapes import photos

REPO = Path(__file__).resolve().parents[1]
PHOTO_SIZE = (375, 500)  # height, width


def write_jpegs(root, count, size=PHOTO_SIZE, seed=0):
    """`count` JPEG crops of the sample photographs; returns their paths."""
    rng = np.random.default_rng(seed)
    sources = photos()
    paths = []
    for i in range(count):
        photo = sources[i % len(sources)]
        top = rng.integers(0, photo.shape[0] - size[0] + 1)
        left = rng.integers(0, photo.shape[1] - size[1] + 1)
        crop = photo[top : top + size[0], left : left + size[1]]
        path = Path(root) / f"{i:05d}.jpg"
        Image.fromarray(crop).save(path, quality=90)
        paths.append(str(path))
    return paths


class PilLoader(keras.utils.PyDataset):
    """The straightforward loader: PIL per file, NumPy per batch."""

    def __init__(self, paths, labels, image_size, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.paths, self.labels = paths, labels
        self.image_size, self.batch_size = image_size, batch_size

    def __len__(self):
        return math.ceil(len(self.paths) / self.batch_size)

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        size = (self.image_size[1], self.image_size[0])  # PIL wants (width, height)
        images = [
            np.asarray(Image.open(path).convert("RGB").resize(size, Image.BILINEAR), "float32")
            for path in self.paths[rows]
        ]
        return np.stack(images), self.labels[rows]


def _trivial_model(image_size):
    inputs = keras.Input((*image_size, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def reader_speeds(paths, image_size, batch_size, repeats):
    """Images/s of each loader feeding one epoch of `fit`."""
    labels = np.arange(len(paths)) % 2
    source = ImageSource(ids=np.arange(len(paths)), labels=labels, paths=paths)
    model = _trivial_model(image_size)
    cached = {}

    def ours_first_epoch():
        image_set = decoded_images(source, image_size, 3, cache="memory")
        cached["set"] = image_set
        model.fit(batched(image_set, labels, batch_size=batch_size), epochs=1, verbose=0)

    def ours_cached_epoch():  # after a first epoch (the warm-up below runs that one first)
        model.fit(batched(cached["set"], labels, batch_size=batch_size), epochs=1, verbose=0)

    def pil(workers):
        loader = PilLoader(paths, labels, image_size, batch_size, workers=workers)
        return lambda: model.fit(loader, epochs=1, verbose=0)

    contenders = {
        "kapps tf.data, first epoch (decode + cache)": ours_first_epoch,
        "kapps tf.data, later epoch (from the cache)": ours_cached_epoch,
        "PIL + PyDataset, 1 worker": pil(1),
        "PIL + PyDataset, 2 worker threads": pil(2),
    }
    for run in contenders.values():  # trace fit's step function, warm the file cache
        run()
    seconds = alternate(contenders, repeats)
    return {name: len(paths) / s for name, s in seconds.items()}


def model_wait(cfg, count, repeats):
    """(pipeline images/s, model training images/s) for the competition `cfg`."""
    size, batch = tuple(cfg.data.image_size), cfg.train.batch_size
    channels = cfg.data.channels
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (count, *size, channels), dtype=np.uint8)
    labels = np.arange(count) % 2
    source = ImageSource(ids=np.arange(count), labels=labels, pixels=pixels)
    image_set = decoded_images(source, size, channels, cache="memory")
    augment = build_augmenter(cfg.augment, cfg.train.seed)
    dataset = batched(image_set, labels, batch_size=batch, shuffle=True, augment=augment)

    model = kapps.create_model(cfg.model.name, input_shape=(*size, channels), num_classes=2)
    model.compile(
        keras.optimizers.AdamW(cfg.train.lr),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    images, targets = next(iter(dataset))
    steps = math.ceil(count / batch)

    def pipeline():
        for _ in dataset:
            pass

    def train():
        for _ in range(steps):
            model.train_on_batch(images, targets)

    pipeline(), train()  # trace and compile
    seconds = alternate({"pipeline": pipeline, "model": train}, repeats)
    return count / seconds["pipeline"], steps * batch / seconds["model"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024, help="JPEG files to write")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--competition", default="dogs-vs-cats")
    add_figures_argument(parser)
    args = parser.parse_args(argv)
    cfg = load_config(REPO / "competitions" / args.competition)
    image_size, batch = tuple(cfg.data.image_size), cfg.train.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(tmp, args.images)
        speeds = reader_speeds(paths, image_size, batch, args.repeats)
    pipeline, model = model_wait(cfg, args.images, args.repeats)

    first = speeds["kapps tf.data, first epoch (decode + cache)"]
    later = speeds["kapps tf.data, later epoch (from the cache)"]
    reference = max(v for k, v in speeds.items() if k.startswith("PIL"))
    rows = ["| loader | images/s | ÷ the faster PIL loader |", "|---|---|---|"]
    rows += [f"| {k} | {v:,.0f} | {v / reference:.2f} |" for k, v in speeds.items()]
    rows += [
        "",
        "| training side | images/s |",
        "|---|---|",
        f"| our {args.competition} pipeline (cache, shuffle, augmentation) | {pipeline:,.0f} |",
        f"| {cfg.model.name} training step alone | {model:,.0f} |",
    ]
    print(
        f"{args.images} JPEGs of {PHOTO_SIZE[0]}×{PHOTO_SIZE[1]} → "
        f"{image_size[0]}×{image_size[1]}, "
        f"batch {batch}; {keras.backend.backend()} backend; median of {args.repeats} "
        "alternating repeats"
    )
    print("\n".join(rows))
    figures = [
        Figure(
            "input pipeline: our tf.data reader ÷ PIL + PyDataset, images/s (first epoch)",
            f"{first / reference:.2f} ({first:,.0f} vs {reference:,.0f}; from the cache: "
            f"{later / reference:.1f})",
            "≥ 2",
            first / reference >= 2,
        ),
        Figure(
            f"input pipeline ÷ {cfg.model.name} training, images/s ({args.competition})",
            f"{pipeline / model:.2f} ({pipeline:,.0f} vs {model:,.0f})",
            "≥ 1.2",
            pipeline / model >= 1.2,
        ),
    ]
    write_figures(args.figures, figures)
    return rows, figures


if __name__ == "__main__":
    main()
