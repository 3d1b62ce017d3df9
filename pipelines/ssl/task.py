"""The pretext task as a `Task`, so `pipelines.train` trains it like any run.

It reads the competition's training (and test) images through the
competition's own task, drops their labels, holds out `data.val_fraction`
of the images to validate the pretext task, and writes the trained trunk
as `backbone.keras`, the model `kapps run … model.weights=<that file>` loads.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from kapps.errors import ConfigError
from kapps.registry import create_model
from pipelines.data import decoded_images
from pipelines.data.images import stacked
from pipelines.data.masks import read_mask_source
from pipelines.data.sources import (
    ImageSource,
    read_test_images,
    read_test_source,
    read_train_source,
)
from pipelines.errors import DataError
from pipelines.plots import plot_image_grid
from pipelines.ssl import lab
from pipelines.ssl.models import (
    NTXent,
    contrastive_accuracy,
    export_backbone,
    pretext_model,
    trunk,
)
from pipelines.ssl.pretext import (
    ROTATIONS,
    bin_counts,
    default_grid,
    default_permutations,
    min_hamming,
    permutation_set,
    pretext_dataset,
)
from pipelines.tasks import TASKS, Evaluation, Task, TrainingData
from pipelines.tasks.base import image_model_args

EXAMPLES = 16  # images in each pretext plot


def check_ssl(cfg):
    """Refuse what pretraining cannot run, before any data is read or written."""
    ssl, task = cfg.ssl, cfg.competition.task
    if ssl.task is None:
        raise ConfigError(
            "kapps pretrain needs a pretext task: ssl.task=rotation|jigsaw|colorization|simclr"
        )
    if "label_fraction" not in TASKS[task].supports:
        raise ConfigError(
            f"kapps pretrain pretrains image backbones (classification, segmentation), not {task}"
        )
    if ssl.task == "colorization" and cfg.data.channels != 3:
        raise ConfigError(
            f"ssl.task colorization does not apply to {cfg.competition.name}: its images are "
            "grayscale (data.channels 1), there is no colour to predict"
        )
    if ssl.task == "rotation" and cfg.data.image_size[0] != cfg.data.image_size[1]:
        raise ConfigError(
            f"ssl.task rotation turns images by 90°: data.image_size {cfg.data.image_size} "
            "must be square"
        )


def pretext_compile_args(ssl):
    """`loss` and `metrics` of the pretext task `ssl.task`."""
    if ssl.task == "simclr":
        return {
            "loss": NTXent(ssl.temperature),
            "metrics": [keras.metrics.MeanMetricWrapper(contrastive_accuracy, name="accuracy")],
        }
    if ssl.task == "colorization":  # targets carry the rebalancing weights: see colour_target
        return {
            "loss": keras.losses.CategoricalCrossentropy(from_logits=True),
            "metrics": [keras.metrics.CategoricalAccuracy(name="accuracy")],
        }
    return {
        "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    }


class PretextTask(Task):
    name = "pretext"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.inner = TASKS[cfg.competition.task](cfg)

    # Config -----------------------------------------------------------------------
    def resolve(self):
        """The competition's own resolution, then the pretext run's settings filled in."""
        cfg = self.inner.resolve()
        ssl, train = cfg.ssl, cfg.train
        train.epochs = ssl.epochs or train.epochs
        train.lr = ssl.lr or train.lr
        train.batch_size = ssl.batch_size or train.batch_size
        ssl.epochs, ssl.lr, ssl.batch_size = train.epochs, train.lr, train.batch_size
        train.freeze_epochs = 0
        if ssl.task == "jigsaw":
            ssl.grid = ssl.grid or default_grid(cfg.data.image_size)
            tiles = ssl.grid**2
            ssl.permutations = ssl.permutations or default_permutations(ssl.grid)
            if ssl.permutations > math.factorial(tiles):
                raise ConfigError(
                    f"ssl.permutations {ssl.permutations}: a {ssl.grid}×{ssl.grid} grid has "
                    f"only {math.factorial(tiles)}"
                )
        return cfg

    def resolution_notes(self, original):
        return self.inner.resolution_notes(original)

    # Data ------------------------------------------------------------------------
    def _sources(self):
        cfg = self.cfg
        if cfg.competition.task == "segmentation":
            masks = read_mask_source(cfg)
            train = ImageSource(ids=masks.ids, paths=masks.paths)
            test = read_test_images(cfg)
        else:
            train, test = read_train_source(cfg), read_test_source(cfg)
        return [train, test] if cfg.ssl.include_test else [train]

    def unlabelled_images(self, run):
        """Every training (and test) image, decoded at the model's size: uint8 (N, H, W, C)."""
        data = self.cfg.data
        stacks, skipped = [], []
        for split, source in zip(("train", "test"), self._sources(), strict=False):
            images = decoded_images(
                source, data.image_size, data.channels, data.cache, run.cache(f"pretext-{split}")
            )
            stacks.append(stacked(images).astype(np.uint8))
            skipped += images.skipped
        images = np.concatenate(stacks)
        if not len(images):
            raise DataError(f"no image could be decoded from {self.cfg.data_dir}")
        return images, skipped

    def _backbone(self, args, weights=True):
        if weights:
            return self.inner.build_model(args)
        return create_model(self.cfg.model.name, **{**args, **self.cfg.model.args})

    def context(self, images, args):
        """What the pretext task fixes for the whole run, from the images and the backbone."""
        ssl = self.cfg.ssl
        if ssl.task == "rotation":
            return {"classes": ROTATIONS}
        if ssl.task == "jigsaw":
            permutations = permutation_set(ssl.grid**2, ssl.permutations, self.cfg.train.seed)
            return {
                "classes": len(permutations),
                "grid": ssl.grid,
                "permutations": permutations,
                "tiles": ssl.grid**2,
                "input_size": tuple(self.cfg.data.image_size),
                "min_hamming": min_hamming(permutations),
            }
        if ssl.task == "simclr":
            return {}
        if np.ptp(images.astype(np.int16)[..., :3], axis=-1).max() == 0:
            raise ConfigError(
                f"ssl.task colorization does not apply to {self.cfg.competition.name}: "
                "its images are grayscale (every pixel has R = G = B)"
            )
        size = tuple(trunk(self._backbone(args, weights=False), "spatial").output.shape[1:3])
        bins = lab.ab_bins()
        counts = bin_counts(images, bins, size)
        weights = lab.rebalancing_weights(counts, bins, ssl.rebalance)
        return {"classes": len(bins), "bins": bins, "weights": weights, "output_size": size}

    def training_data(self, run, rows=None):
        cfg = self.cfg
        images, skipped = self.unlabelled_images(run)
        rng = np.random.default_rng(cfg.train.seed)
        order = rng.permutation(len(images))
        n_val = max(1, round(cfg.data.val_fraction * len(images)))
        if len(images) - n_val < 2:
            raise DataError(f"pretraining needs more than {len(images)} images")
        train, val = images[order[n_val:]], images[order[:n_val]]
        args = image_model_args(cfg, self._downstream_classes())
        context = self.context(train, args)
        options = {"batch_size": cfg.train.batch_size, "seed": cfg.train.seed, "context": context}
        notes = [f"pretext task {cfg.ssl.task}: {len(train)} images, {n_val} to validate"]
        if "min_hamming" in context:
            notes.append(
                f"jigsaw: {context['classes']} permutations of a {cfg.ssl.grid}×{cfg.ssl.grid} "
                f"grid, minimum Hamming distance {context['min_hamming']}"
            )
        if "bins" in context:
            notes.append(
                f"colorization: {context['classes']} ab bins predicted at "
                f"{context['output_size'][0]}×{context['output_size'][1]}"
            )
        tf.random.set_seed(cfg.train.seed)
        return TrainingData(
            train=pretext_dataset(train, cfg.ssl, training=True, **options),
            val=pretext_dataset(val, cfg.ssl, training=False, **options),
            train_size=len(train),  # images: a step takes batch_size of them (× 4 rotations)
            val_size=n_val,
            model_args={"backbone": args, "context": context},
            validation={"images": val, "context": context},
            skipped=skipped,
            notes=notes,
        )

    def _downstream_classes(self):
        classes = len(self.cfg.data.classes)
        return classes + 1 if self.cfg.competition.task == "segmentation" else classes

    # Model -----------------------------------------------------------------------
    def build_model(self, model_args):
        backbone = self._backbone(model_args["backbone"])
        context = model_args["context"]
        return pretext_model(
            backbone, self.cfg.ssl, classes=context.get("classes"), input_shape=context.get("tiles")
        )

    def pretrained_layers(self, model):
        return []  # a pretext network is trained whole

    def compile_args(self):
        return pretext_compile_args(self.cfg.ssl)

    # After training -----------------------------------------------------------------
    def evaluate(self, model, data, run):
        scores = model.evaluate(data.val, verbose=0, return_dict=True)
        backbone = self._backbone(data.model_args["backbone"], weights=False)
        export_backbone(model, backbone, self.cfg.ssl.transfer).save(run.backbone)
        self._plot_examples(model, data.validation, run)
        return Evaluation(
            {"pretext_loss": float(scores["loss"]), "pretext_accuracy": float(scores["accuracy"])}
        )

    def _plot_examples(self, model, validation, run):
        images = validation["images"][:EXAMPLES].astype(np.float32)
        context, task = validation["context"], self.cfg.ssl.task
        path, title = run.plot(f"pretext_{task}"), f"pretext task: {task} (validation images)"

        def first_batch():  # the pretext inputs and labels of `images`, as the model saw them
            dataset = pretext_dataset(
                validation["images"][:EXAMPLES],
                self.cfg.ssl,
                batch_size=EXAMPLES,
                training=False,
                seed=0,
                context=context,
            )
            return [x.numpy() for x in next(iter(dataset))]

        if task == "rotation":
            k = np.arange(len(images)) % ROTATIONS
            turned = np.stack([np.rot90(x, int(r)) for x, r in zip(images, k, strict=True)])
            predicted = model.predict(turned, verbose=0).argmax(-1)
            captions = [f"{90 * r}° → {90 * p}°" for r, p in zip(k, predicted, strict=True)]
            plot_image_grid(turned.astype(np.uint8), captions, path, title + ": true → predicted")
        elif task == "jigsaw":
            tiles, labels = first_batch()
            predicted = model.predict(tiles, verbose=0).argmax(-1)
            grid = self.cfg.ssl.grid
            mosaics = [_mosaic(t, grid) for t in tiles]
            captions = [f"perm {y} → {p}" for y, p in zip(labels, predicted, strict=True)]
            plot_image_grid(mosaics, captions, path, title + ": shuffled tiles, true → predicted")
        elif task == "simclr":
            views = first_batch()[0]
            pairs = np.stack([views[:8, 0], views[:8, 1]], 1).reshape(-1, *views.shape[2:])
            captions = [f"image {i // 2}, view {i % 2 + 1}" for i in range(len(pairs))]
            plot_image_grid(pairs.astype(np.uint8), captions, path, title + ": positive pairs")
        else:
            gray = lab.grayscale(images).numpy()
            probs = keras.ops.convert_to_numpy(keras.ops.softmax(model.predict(gray, verbose=0)))
            ab = lab.annealed_mean(probs, context["bins"])
            ab = tf.image.resize(ab, images.shape[1:3], method="bilinear")
            lightness = lab.rgb_to_lab(images)[..., :1]
            coloured = lab.lab_to_rgb(tf.concat([lightness, ab], -1)).numpy()
            shown = np.stack([gray, coloured, images], 1)[:8].reshape(-1, *images.shape[1:])
            captions = ["gray in", "predicted", "original"] * 8
            plot_image_grid(shown.astype(np.uint8), captions, path, title, columns=6)


def _mosaic(tiles, grid):
    """Tiles (T, H, W, C) laid out row by row in a grid, a 2-pixel gap between them."""
    t, h, w, c = tiles.shape
    out = np.full((grid * (h + 2), grid * (w + 2), c), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, col = divmod(i, grid)
        out[r * (h + 2) : r * (h + 2) + h, col * (w + 2) : col * (w + 2) + w] = tile
    return out
