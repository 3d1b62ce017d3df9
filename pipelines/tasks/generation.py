"""Image generation: learn the training images' distribution, submit new images.

The model trains on the images alone (and their classes, for a class-conditional
model: `generation.conditional` with labelled data and a model that takes
`num_classes`). After every `generation.fid_every` epochs it samples
`generation.epoch_images` images and their FID against the real training images
is logged as `val_fid`, which picks the best epoch; a grid of samples goes to
`samples/epoch-XXX.png`. The best epoch then samples `generation.eval_images`
images for `metrics.json` (FID, KID, MiFID, the memorisation distance and, when
conditioned, conditional accuracy) and the run's pictures. The submission is
`images.zip` (`submission.kind: image_zip`), scored against the held-out real
images of `data.answers` (a folder, or class folders) when the competition has them.
"""

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kapps.errors import ConfigError
from kapps.generation import DDPM, Autoencoder
from kapps.generation.metrics import fid
from kapps.registry import get_entry
from pipelines.data import decoded_images, read_train_source
from pipelines.data.images import stacked
from pipelines.data.sources import ImageSource, class_folder_images, folder_images, train_labels
from pipelines.data.splits import split_rows
from pipelines.errors import DataError
from pipelines.generation.features import domain_extractor, inception_extractor
from pipelines.generation.plots import grid_labels, plot_nearest, plot_sequence, write_grid
from pipelines.generation.score import requested_labels, sample, score
from pipelines.submit.images import read_image_zip, validate_image_zip, write_image_zip
from pipelines.tasks.base import Evaluation, Task, TestSet, TrainingData

NEAREST_SHOWN = 8
SEQUENCE_SHOWN = 4


@dataclass
class Reference:
    """The real images a run is scored against, and their features."""

    extractor: Any  # pipelines.generation.features.Extractor
    images: np.ndarray  # the real training images, 0–255
    features: np.ndarray  # their features


class GenerationTask(Task):
    name = "generation"

    # Config and data ----------------------------------------------------------
    def resolve(self):
        cfg = super().resolve()
        if cfg.submission.kind != "image_zip":
            raise ConfigError("a generation competition submits images: submission.kind image_zip")
        labels = train_labels(cfg)
        if labels is not None and cfg.data.classes is None:
            cfg.data.classes = sorted(np.unique(labels).tolist())
        return cfg

    @property
    def num_classes(self):
        """Classes the model is conditioned on; None for an unconditional model."""
        cfg = self.cfg
        if not (cfg.generation.conditional and cfg.data.classes):
            return None
        builder = get_entry(cfg.model.name).builder
        return (
            len(cfg.data.classes)
            if "num_classes" in inspect.signature(builder).parameters
            else None
        )

    def _class_indices(self, labels):
        lookup = {str(c): i for i, c in enumerate(self.cfg.data.classes or [])}
        return np.array([lookup[str(label)] for label in labels])

    def _real_images(self, cache_path=None):
        """`(source, ImageSet of every training image, class index per source row or None)`."""
        cfg = self.cfg
        source = read_train_source(cfg)
        images = decoded_images(
            source,
            cfg.data.image_size,
            cfg.data.channels,
            cache=cfg.data.cache,
            cache_path=cache_path,
        )
        if len(images) == 0:
            raise DataError(
                f"no training image could be decoded from {cfg.data_path(cfg.data.train)}"
            )
        labels = None if source.labels is None else self._class_indices(source.labels)
        return source, images, labels

    def training_data(self, run, rows=None):
        cfg = self.cfg
        source, images, labels = self._real_images(run.cache("train"))
        train_rows, val_rows = split_rows(cfg, len(source), labels)
        pixels = stacked(images)  # every decoded image, in source-row order of images.rows
        position = {row: i for i, row in enumerate(images.rows)}
        keep = lambda rows: np.array([position[r] for r in rows if r in position], int)  # noqa: E731
        train_idx, val_idx = keep(train_rows), keep(val_rows)
        row_labels = None if labels is None else labels[images.rows]
        reference = self._reference(pixels, row_labels)
        conditional = self.num_classes is not None
        bs, seed = cfg.train.batch_size, cfg.train.seed
        return TrainingData(
            train=_dataset(pixels[train_idx], row_labels, train_idx, conditional, bs, True, seed),
            val=_dataset(pixels[val_idx], row_labels, val_idx, conditional, bs, False, seed),
            train_size=len(train_idx),
            val_size=len(val_idx),
            model_args=self._model_args(),
            validation=reference,
            skipped=images.skipped,
        )

    def _model_args(self):
        data = self.cfg.data
        args = {"image_shape": (*data.image_size, data.channels)}
        if self.num_classes:
            args["num_classes"] = self.num_classes
        return args

    def _reference(self, pixels, labels):
        """The extractor of `generation.features` and the real images' features."""
        cfg, generation = self.cfg, self.cfg.generation
        weights = generation.inception_weights
        weights = cfg.competition_dir / weights if weights else None
        if generation.features == "inception" and not (weights and weights.is_file()):
            raise ConfigError(
                "generation.features inception needs generation.inception_weights: the "
                "keras.applications InceptionV3 notop .h5 file (nothing is downloaded)"
            )
        shape = pixels.shape[1:]
        if generation.features != "domain" and weights and weights.is_file():
            extractor = inception_extractor(weights, shape)
        else:
            images, classes, names = self._extractor_data(pixels, labels)
            extractor = domain_extractor(
                cfg.data_dir, images, classes, names, generation.extractor_epochs, cfg.train.seed
            )
        return Reference(extractor, pixels, extractor.features(pixels))

    def _extractor_data(self, pixels, labels):
        """What the domain classifier learns: the training images and their classes, or
        the class folders of `generation.extractor_classes`."""
        cfg = self.cfg
        folder = cfg.generation.extractor_classes
        if folder is None:
            if labels is None:
                raise ConfigError(
                    "unlabelled images: domain features need generation.extractor_classes "
                    "(a folder of class folders) or generation.inception_weights"
                )
            return pixels, labels, list(cfg.data.classes)
        paths, names = class_folder_images(cfg.data_path(folder))
        classes = sorted(set(names))
        source = ImageSource(ids=np.asarray(paths), labels=names, paths=paths)
        images = decoded_images(source, cfg.data.image_size, cfg.data.channels, cache="none")
        lookup = {c: i for i, c in enumerate(classes)}
        return stacked(images), np.array([lookup[n] for n in names])[images.rows], classes

    # Model -----------------------------------------------------------------
    def compile_args(self):
        if self.cfg.train.loss is not None:
            raise ConfigError("train.loss: a generative model trains with its own objective")
        return {}

    def monitor(self):
        name = self.cfg.train.monitor
        if name:
            return name, "min" if name.endswith(("loss", "fid")) else "max"
        return "val_fid", "min"

    def objective(self):
        return "val_fid", "minimize"

    def epoch_callbacks(self, data, run):
        return [EpochSamples(self, data.validation, run)]

    # After training ----------------------------------------------------------
    def evaluate(self, model, data, run):
        generation, reference = self.cfg.generation, data.validation
        count = generation.eval_images
        requested = requested_labels(count, self.num_classes)
        images = sample(model, count, generation, requested, seed=self.cfg.train.seed)
        metrics = score(reference.extractor, images, reference.features, requested=requested)
        self._pictures(model, images, reference, run)
        return Evaluation(metrics)

    def _pictures(self, model, images, reference, run):
        shown = images[:NEAREST_SHOWN]
        nearest, distances = _nearest(shown, reference.images)
        plot_nearest(shown, reference.images, distances, nearest, run.plot("nearest_training"))
        labels = grid_labels(self.num_classes)
        grid = sample(
            model, len(labels) if labels is not None else 64, self.cfg.generation, labels, seed=1
        )
        write_grid(grid, run.plot("samples"))
        if isinstance(model, Autoencoder):  # the latent path between two training images
            codes = model.encode(reference.images[: 2 * SEQUENCE_SHOWN])
            weights = np.linspace(0, 1, 8)[None, :, None]
            paths = codes[0::2, None] * (1 - weights) + codes[1::2, None] * weights
            decoded = model.decode(paths.reshape(-1, codes.shape[1])).reshape(
                (SEQUENCE_SHOWN, 8, *images.shape[1:])
            )
            plot_sequence(
                decoded,
                run.plot("interpolation"),
                "Decoding the line between two training images' codes",
                [f"{w:.2f}" for w in weights.ravel()],
            )
        if isinstance(model, DDPM):
            gen = self.cfg.generation
            noise = np.random.default_rng(2).standard_normal((SEQUENCE_SHOWN, *images.shape[1:]))
            labels = requested_labels(SEQUENCE_SHOWN, self.num_classes)
            _, kept = model.denoise(
                noise.astype("float32"),
                labels,
                gen.sampler,
                gen.steps,
                gen.guidance_scale,
                keep=8,
                seed=2,
            )
            rows = np.clip((np.stack([x0 for _, x0 in kept], axis=1) + 1) * 127.5, 0, 255)
            plot_sequence(
                rows,
                run.plot("denoising"),
                "The predicted x₀ along the reverse process",
                [f"t={t}" for t, _ in kept],
            )

    # Submission -------------------------------------------------------------
    def test_data(self, run):
        generation = self.cfg.generation
        labels = requested_labels(generation.images, self.num_classes)
        suffix = generation.image_format
        ids = [
            f"{i:05d}.{suffix}"
            if labels is None
            else f"{i:05d}_{self.cfg.data.classes[c]}.{suffix}"
            for i, c in enumerate(labels if labels is not None else [None] * generation.images)
        ]
        return TestSet(labels, np.asarray(ids))

    def predict_folds(self, models, test, weights=None):
        """Batches of new images, made as they are written (a zip of 10,000 is not held)."""
        if len(models) != 1:
            raise ConfigError("a generation run has one model; it cannot average several")
        model, generation = models[0], self.cfg.generation
        size = self.submission_size()
        batch = 500
        for start in range(0, len(test.ids), batch):
            labels = None if test.inputs is None else test.inputs[start : start + batch]
            images = sample(
                model,
                min(batch, len(test.ids) - start),
                generation,
                labels,
                seed=self.cfg.train.seed + 1 + start,
            )
            if tuple(images.shape[1:3]) != size:
                images = keras.ops.convert_to_numpy(
                    keras.ops.image.resize(images, size, interpolation="bilinear")
                )
            yield images

    def submission_size(self):
        return tuple(self.cfg.generation.image_size or self.cfg.data.image_size)

    def write_submission(self, test, predictions, path, log=print):
        """`images.zip` of the generated images, checked as the competition would."""
        generation = self.cfg.generation
        path = write_image_zip(
            path,
            predictions,
            list(test.ids),
            self.submission_size(),
            self.cfg.data.channels,
            generation.image_format,
            generation.min_images,
            generation.max_images,
        )
        log(f"wrote {path} ({len(test.ids)} images of {self.submission_size()})")
        result = {"submission": str(path)}
        if self.cfg.data.answers:
            result["test"] = self.score_zip(path)
        return result

    def check_submission(self, path):
        generation = self.cfg.generation
        return validate_image_zip(
            path,
            self.submission_size(),
            self.cfg.data.channels,
            generation.min_images,
            generation.max_images,
        )

    def score_zip(self, path):
        """The zip's images against the held-out real images of `data.answers`."""
        cfg = self.cfg
        names, images = read_image_zip(path, self.submission_size(), cfg.data.channels)
        answers = cfg.data_path(cfg.data.answers)
        if any(p.is_dir() for p in Path(answers).iterdir()):
            paths, _ = class_folder_images(answers)
        else:
            paths = folder_images(answers)
        source = ImageSource(ids=np.asarray(paths), paths=paths)
        real = stacked(decoded_images(source, cfg.data.image_size, cfg.data.channels, cache="none"))
        if tuple(images.shape[1:3]) != tuple(cfg.data.image_size):
            images = keras.ops.convert_to_numpy(
                keras.ops.image.resize(images.astype("float32"), cfg.data.image_size)
            )
        _, train_images, labels = self._real_images()
        train = stacked(train_images)
        reference = self._reference(train, None if labels is None else labels[train_images.rows])
        requested = None
        if self.num_classes:
            lookup = {str(c): i for i, c in enumerate(cfg.data.classes)}
            requested = np.array([lookup.get(Path(n).stem.split("_", 1)[-1], -1) for n in names])
        return score(
            reference.extractor,
            images,
            reference.extractor.features(real),
            reference.features,
            requested=requested,
        )


def _dataset(pixels, labels, rows, conditional, batch_size, shuffle, seed):
    features = {"images": pixels}
    if conditional:
        features["labels"] = labels[rows].astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices(features if conditional else pixels)
    if shuffle:
        dataset = dataset.shuffle(len(pixels), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=shuffle and len(pixels) >= batch_size).prefetch(
        tf.data.AUTOTUNE
    )


def _nearest(images, train_images):
    """Index and root-mean-square pixel distance (0–255) of each image's nearest training
    image: a distance near 0 is a copy."""
    a = images.reshape(len(images), -1).astype("float64")
    b = train_images.reshape(len(train_images), -1).astype("float64")
    squared = (a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None, :]
    nearest = squared.argmin(axis=1)
    rms = np.sqrt(np.maximum(squared[np.arange(len(a)), nearest], 0) / a.shape[1])
    return nearest, rms


class EpochSamples(keras.callbacks.Callback):
    """After each epoch: `samples/epoch-XXX.png`, and `val_fid` every `fid_every` epochs
    (NaN in between), before the checkpoint reads it."""

    def __init__(self, task, reference, run):
        super().__init__()
        self.task, self.reference, self.run = task, reference, run
        self.generation = task.cfg.generation
        self.labels = grid_labels(task.num_classes)

    def on_epoch_end(self, epoch, logs=None):
        generation = self.generation
        count = len(self.labels) if self.labels is not None else 64
        grid = sample(
            self.model, count, generation, self.labels, seed=0, steps=generation.epoch_steps
        )
        write_grid(grid, self.run.epoch_samples(epoch + 1))
        value = float("nan")
        if generation.epoch_images >= 2 and (epoch + 1) % generation.fid_every == 0:
            requested = requested_labels(generation.epoch_images, self.task.num_classes)
            images = sample(
                self.model,
                generation.epoch_images,
                generation,
                requested,
                seed=0,
                steps=generation.epoch_steps,
            )
            value = fid(self.reference.extractor.features(images), self.reference.features)
        if logs is not None:
            logs["val_fid"] = value
