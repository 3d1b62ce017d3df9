"""Image generation: learn the training images' distribution, submit new images.

The model trains on the images alone (and their classes, for a class-conditional
model: `generation.conditional` with labelled data and a model that takes
`num_classes`). After the first epoch, every `generation.fid_every` epochs and
after the last it samples `generation.epoch_images` images, and their FID
against the real training images is logged as `val_fid`, which picks the best
epoch; a grid of samples goes to `samples/epoch-XXX.png` each epoch. The best
epoch then samples `generation.eval_images` images for `metrics.json` (FID, KID,
conditional accuracy when conditioned; MiFID and the memorisation distance with
Inception features) and the run's pictures. The submission is
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
from PIL import Image

from kapps.errors import ConfigError
from kapps.registry import get_entry
from pipelines.data import decoded_images, read_train_source
from pipelines.data.augment import build_augmenter
from pipelines.data.images import stacked
from pipelines.data.sources import ImageSource, class_folder_images, folder_images, train_labels
from pipelines.data.splits import split_rows
from pipelines.errors import DataError
from pipelines.generation.callbacks import EpochSamples
from pipelines.generation.features import domain_extractor, inception_extractor
from pipelines.generation.plots import write_pictures
from pipelines.generation.score import requested_labels, sample, score
from pipelines.submit.images import read_image_zip, validate_image_zip, write_image_zip
from pipelines.tasks.base import Evaluation, Task, TestSet, TrainingData


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
        classes = self.cfg.data.classes or []
        lookup = {str(c): i for i, c in enumerate(classes)}
        indices = np.array([lookup.get(str(label), -1) for label in labels])
        if (indices < 0).any():
            label = labels[int(np.argmax(indices < 0))]
            raise DataError(f"training label {label!r} is not one of data.classes {classes}")
        return indices

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
        pixels = stacked(images)  # the decoded images: row images.rows[i] of the source
        train_idx = np.flatnonzero(np.isin(images.rows, train_rows))
        val_idx = np.flatnonzero(np.isin(images.rows, val_rows))
        row_labels = None if labels is None else labels[images.rows]
        reference = self._reference(pixels, row_labels)
        conditional = self.num_classes is not None
        bs, seed = cfg.train.batch_size, cfg.train.seed
        augment = build_augmenter(cfg.augment, seed)
        return TrainingData(
            train=_dataset(
                pixels[train_idx], row_labels, train_idx, conditional, bs, seed, augment
            ),
            val=_dataset(pixels[val_idx], row_labels, val_idx, conditional, bs),
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
        return [EpochSamples(self.cfg.generation, self.num_classes, data.validation, run)]

    # After training ----------------------------------------------------------
    def evaluate(self, model, data, run):
        generation, reference = self.cfg.generation, data.validation
        count = generation.eval_images
        requested = requested_labels(count, self.num_classes)
        images = sample(model, count, generation, requested, seed=self.cfg.train.seed)
        metrics = score(reference.extractor, images, reference.features, requested=requested)
        write_pictures(model, images, reference.images, run, generation, self.num_classes)
        return Evaluation(metrics)

    # Submission -------------------------------------------------------------
    def test_data(self, run):
        generation = self.cfg.generation
        labels = requested_labels(generation.images, self.num_classes)
        stems = [f"{i:05d}" for i in range(generation.images)]
        if labels is not None:  # the class asked for, in the name: 00042_2.png
            stems = [f"{s}_{self.cfg.data.classes[c]}" for s, c in zip(stems, labels, strict=True)]
        return TestSet(labels, np.asarray([f"{s}.{generation.image_format}" for s in stems]))

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

    def write_images(self, model, out, num, label=None, seed=0):
        """`num` images as PNG files in the folder `out` (made here); `label`: the class
        asked of every one (a conditional model without it asks 0, 1, 2, … in turn)."""
        classes = self.cfg.data.classes or []
        if label is not None and not self.num_classes:
            raise ConfigError(f"--class: {self.cfg.model.name} here is not class-conditional")
        if label is not None and str(label) not in map(str, classes):
            raise ConfigError(f"--class {label!r} is not one of the classes {classes}")
        labels = requested_labels(num, self.num_classes)
        if label is not None:
            labels = np.full(num, list(map(str, classes)).index(str(label)))
        images = sample(model, num, self.cfg.generation, labels, seed=seed)
        out.mkdir(parents=True, exist_ok=True)
        files = []
        for i, image in enumerate(np.clip(np.rint(images), 0, 255).astype("uint8")):
            name = f"{i:05d}.png" if labels is None else f"{i:05d}_{classes[labels[i]]}.png"
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(out / name)
            files.append(out / name)
        return files

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
        if not answers.is_dir():
            raise DataError(f"data.answers {answers} is not a folder of held-out images")
        if any(p.is_dir() for p in answers.iterdir()):
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


def _dataset(pixels, labels, rows, conditional, batch_size, seed=None, augment=None):
    """Batches of images (and their labels: `{"images", "labels"}`); shuffled and
    augmented when `seed` is given (training)."""
    features = {"images": pixels}
    if conditional:
        features["labels"] = labels[rows].astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices(features)
    training = seed is not None
    if training:
        dataset = dataset.shuffle(len(pixels), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=training and len(pixels) >= batch_size)
    if training and augment is not None:
        dataset = dataset.map(
            lambda batch: {**batch, "images": augment(batch["images"])},
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if not conditional:
        dataset = dataset.map(lambda batch: batch["images"])
    return dataset.prefetch(tf.data.AUTOTUNE)
