"""Image classification: labels or class probabilities per image."""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, log_loss

from kapps.errors import ConfigError
from pipelines.cam import write_cam_grid
from pipelines.data import batched, decoded_images, read_test_source, read_train_source
from pipelines.data.augment import build_augmenter, tta_views
from pipelines.data.images import require_decoded, stacked
from pipelines.data.sources import train_labels
from pipelines.data.splits import duplicates_across_folds, labelled_rows, split_rows
from pipelines.errors import DataError
from pipelines.plots import plot_confusion_matrix, plot_image_grid
from pipelines.submit import label_frame, probability_frame
from pipelines.tasks.base import (
    Evaluation,
    Task,
    TestSet,
    TrainingData,
    aligned_answers,
    image_model_args,
)

MAX_GRID_IMAGES = 32
CAM_IMAGES = 16


def _softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class Validation:
    """The validation split as `evaluate` sees it: decoded images, their classes, rows."""

    images: Any  # ImageSet; `images.rows` are the decoded ones among `labels`
    labels: np.ndarray  # class index of each validation row
    rows: np.ndarray  # training-CSV row of each validation row

    @property
    def truth(self):
        return self.labels[self.images.rows]


class ClassificationTask(Task):
    name = "classification"
    supports = frozenset({"cv", "blend_oof", "tta", "label_fraction"})

    # Config and data ----------------------------------------------------------
    def resolve(self):
        cfg = super().resolve()
        if cfg.data.classes is None:
            cfg.data.classes = sorted(np.unique(train_labels(cfg)).tolist())
        return cfg

    def _class_indices(self, labels):
        classes = self.cfg.data.classes
        lookup = {str(c): i for i, c in enumerate(classes)}
        indices = np.array([lookup.get(str(label), -1) for label in labels])
        if (indices < 0).any():
            row = int(np.argmax(indices < 0))
            raise DataError(
                f"{self.cfg.data_path(self.cfg.data.train)}: row {row + 2} has label "
                f"{labels[row]!r}, not one of data.classes {classes}"
            )
        return indices

    def _images(self, source, cache_path):
        data = self.cfg.data
        return decoded_images(
            source, data.image_size, data.channels, cache=data.cache, cache_path=cache_path
        )

    def _split(self):
        """`(train source, class index of each row, train rows, validation rows)`."""
        source = read_train_source(self.cfg)
        labels = self._class_indices(source.labels)
        train_rows, val_rows = split_rows(self.cfg, len(labels), labels, self.fold_groups())
        train_rows = labelled_rows(self.cfg, train_rows, labels[train_rows])
        return source, labels, train_rows, val_rows

    def training_rows(self):
        """`(training-CSV rows of the training split, their class indices)`, nothing decoded:
        for paradigms that deal rows out (federated learning)."""
        _, labels, train_rows, _ = self._split()
        return train_rows, labels[train_rows]

    def _splits(self, run, rows=None):
        """`(labels, train rows, val rows, train ImageSet, val ImageSet)` of the split;
        `rows`: keep only these training-CSV rows of the training split."""
        cfg = self.cfg
        source, labels, train_rows, val_rows = self._split()
        cache = "train"
        if rows is not None:
            train_rows = train_rows[np.isin(train_rows, rows)]
            cache = f"train-{hashlib.sha1(np.asarray(train_rows).tobytes()).hexdigest()[:8]}"
        train_set = self._images(source.subset(train_rows), run.cache(cache))
        val_set = self._images(source.subset(val_rows), run.cache("val"))
        if len(train_set) == 0:
            raise DataError(
                f"no training image could be decoded from {cfg.data_path(cfg.data.train)}"
            )
        return labels, train_rows, val_rows, train_set, val_set

    def training_data(self, run, rows=None):
        cfg = self.cfg
        labels, train_rows, val_rows, train_set, val_set = self._splits(run, rows)
        onehot = keras.utils.to_categorical(labels, len(cfg.data.classes)).astype("float32")
        bs, seed = cfg.train.batch_size, cfg.train.seed
        return TrainingData(
            train=batched(
                train_set,
                onehot[train_rows],
                batch_size=bs,
                shuffle=True,
                augment=build_augmenter(cfg.augment, seed),
                seed=seed,
            ),
            val=batched(val_set, onehot[val_rows], batch_size=bs),
            train_size=len(train_set),
            val_size=len(val_set),
            model_args=image_model_args(cfg, len(cfg.data.classes)),
            validation=Validation(val_set, labels[val_rows], val_rows),
            skipped=train_set.skipped + val_set.skipped,
        )

    def labelled_arrays(self, run):
        """The split in memory, for paradigms that deal out rows themselves (continual):
        `(train images, train labels, validation images, validation labels)`, raw pixels
        as float32 and class indices; no augmentation."""
        labels, train_rows, val_rows, train_set, val_set = self._splits(run)
        return (
            stacked(train_set),
            labels[train_rows][train_set.rows],
            stacked(val_set),
            labels[val_rows][val_set.rows],
        )

    def test_data(self, run):
        source = read_test_source(self.cfg)
        images = require_decoded(self._images(source, run.cache("test")))
        return TestSet(batched(images, batch_size=self.cfg.train.batch_size), source.ids)

    # Model -----------------------------------------------------------------
    def compile_args(self):
        if self.cfg.train.loss not in (None, "ce"):
            raise ConfigError(
                f"train.loss {self.cfg.train.loss!r} is a segmentation loss; "
                "classification trains with cross-entropy (ce)"
            )
        return {
            "loss": keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=self.cfg.train.label_smoothing
            ),
            "metrics": [keras.metrics.CategoricalAccuracy(name="accuracy")],
        }

    def objective(self):
        if self.metric() == "accuracy":
            return "val_accuracy", "maximize"
        return "val_loss", "minimize"

    def metric(self):
        sub = self.cfg.submission
        return sub.metric or ("log_loss" if sub.kind == "probability" else "accuracy")

    # After training ----------------------------------------------------------
    def probabilities(self, model, dataset, tta=None):
        """Class probabilities; with `submission.tta`, averaged over the flipped views."""
        if not (self.cfg.submission.tta if tta is None else tta):
            return _softmax(np.asarray(model.predict(dataset, verbose=0), dtype=np.float64))
        batches = []
        for batch in dataset:
            images = batch[0] if isinstance(batch, tuple) else batch
            views = tta_views(images, self.cfg.submission.tta_flips)
            probs = [
                _softmax(np.asarray(model(view, training=False), np.float64)) for view, _ in views
            ]
            batches.append(np.mean(probs, axis=0))
        return np.concatenate(batches)

    def predict_folds(self, models, test, weights=None):
        weights = weights or [1 / len(models)] * len(models)
        return sum(
            w * self.probabilities(m, test.inputs) for m, w in zip(models, weights, strict=True)
        )

    def evaluate(self, model, data, run):
        classes, val = self.cfg.data.classes, data.validation
        probs = self.probabilities(model, data.val)
        predicted, truth = probs.argmax(axis=1), val.truth
        matrix = confusion_matrix(truth, predicted, labels=np.arange(len(classes)))
        plot_confusion_matrix(matrix, classes, run.plot("confusion_matrix"))
        self._plot_mistakes(val.images, probs, truth, run.plot("hardest"))
        self._plot_cams(model, val.images, probs, truth, run.plot("cam"))
        per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
        scores = {}
        if self.cfg.submission.tta:  # the effect of test-time augmentation, measured
            plain = self.probabilities(model, data.val, tta=False)
            scores["without_tta"] = {
                "accuracy": float((plain.argmax(axis=1) == truth).mean()),
                "log_loss": float(log_loss(truth, plain, labels=np.arange(len(classes)))),
            }
        metrics = {
            **scores,
            "accuracy": float((predicted == truth).mean()),
            "log_loss": float(log_loss(truth, probs, labels=np.arange(len(classes)))),
            "per_class_accuracy": {
                str(c): float(a) for c, a in zip(classes, per_class, strict=True)
            },
        }
        return Evaluation(metrics, self._oof_frame(val, probs))

    def _plot_mistakes(self, images, probs, truth, path):
        """The validation images the model finds hardest, mistakes first.

        Sorted by the probability given to the true class, so the grid shows
        the mistakes and then the near misses even when nothing is wrong.
        """
        classes = self.cfg.data.classes
        predicted = probs.argmax(axis=1)
        true_prob = probs[np.arange(len(truth)), truth]
        hardest = np.argsort(true_prob, kind="stable")[:MAX_GRID_IMAGES]
        wanted = set(hardest.tolist())
        images = {
            position: image
            for position, (image, _) in enumerate(images.dataset.as_numpy_iterator())
            if position in wanted
        }
        captions = [
            f"{'✗' if predicted[i] != truth[i] else '✓'} true {classes[truth[i]]}\n"
            f"pred {classes[predicted[i]]} ({probs[i, predicted[i]]:.2f})"
            for i in hardest
        ]
        wrong = int((predicted != truth).sum())
        title = f"Hardest validation images ({wrong} of {len(truth)} misclassified)"
        plot_image_grid([images[i] for i in hardest], captions, path, title)

    def _plot_cams(self, model, val_images, probs, truth, path):
        """Grad-CAM overlays for the first validation images of each class."""
        classes = self.cfg.data.classes
        images = np.stack([image for image, _ in val_images.dataset.take(CAM_IMAGES)])
        shown = len(images)
        predicted = probs[:shown].argmax(axis=1)
        captions = [f"true {classes[truth[i]]}, pred {classes[predicted[i]]}" for i in range(shown)]
        write_cam_grid(model, images, captions, path)

    # Cross-validation --------------------------------------------------------
    def _oof_frame(self, val, probs):
        classes = self.cfg.data.classes
        frame = pd.DataFrame(
            {
                "row": val.rows[val.images.rows],
                "label": np.asarray(classes, dtype=object)[val.truth],
            }
        )
        for k, name in enumerate(classes):
            frame[f"p_{name}"] = probs[:, k]
        return frame

    def score_oof(self, frame):
        probs = self.oof_predictions(frame)
        return {
            "accuracy": float((probs.argmax(axis=1) == self._oof_truth(frame)).mean()),
            "log_loss": self.oof_loss(frame, probs),
        }

    def _oof_truth(self, frame):
        lookup = {str(c): k for k, c in enumerate(self.cfg.data.classes)}
        return frame["label"].astype(str).map(lookup).to_numpy()

    def _probability_columns(self):
        return [f"p_{c}" for c in self.cfg.data.classes]

    def oof_predictions(self, frame):
        return frame[self._probability_columns()].to_numpy(dtype=np.float64)

    def with_oof_predictions(self, frame, predictions):
        frame = frame.copy()
        frame[self._probability_columns()] = predictions
        return frame

    def oof_loss(self, frame, predictions):
        labels = np.arange(len(self.cfg.data.classes))
        return float(log_loss(self._oof_truth(frame), predictions, labels=labels))

    def duplicates_across_folds(self):
        source = read_train_source(self.cfg)
        if source.pixels is not None:
            hashes = [hashlib.sha1(row.tobytes()).hexdigest() for row in source.pixels]
        else:
            hashes = [hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in source.paths]
        labels = self._class_indices(source.labels)
        return duplicates_across_folds(self.cfg, hashes, labels, self.fold_groups())

    def submission_frame(self, test, predictions, sample):
        cfg = self.cfg
        if cfg.submission.kind == "label":
            labels = np.asarray(cfg.data.classes, dtype=object)[predictions.argmax(axis=1)]
            return label_frame(test.ids, labels, sample)
        return probability_frame(
            test.ids,
            predictions,
            cfg.data.classes,
            sample,
            positive_class=cfg.submission.positive_class,
            clip=cfg.submission.clip,
        )

    def valid_values(self, sample):
        if self.cfg.submission.kind != "label":
            return {}
        classes = [str(c) for c in self.cfg.data.classes]
        return {column: classes for column in sample.columns[1:]}

    def score(self, frame, answers, test):
        id_col, *targets = answers.columns
        merged = aligned_answers(frame, answers, [id_col])
        if self.metric() == "accuracy":
            hits = [
                merged[f"{t}_true"].astype(str) == merged[f"{t}_pred"].astype(str) for t in targets
            ]
            return {"accuracy": float(np.mean(hits))}
        truth = np.stack([merged[f"{t}_true"] for t in targets], axis=1).astype(float)
        probs = np.stack([merged[f"{t}_pred"] for t in targets], axis=1).astype(float)
        if len(targets) == 1:
            truth, probs = np.hstack([1 - truth, truth]), np.hstack([1 - probs, probs])
        return {
            "log_loss": float(
                log_loss(truth.argmax(axis=1), probs, labels=np.arange(truth.shape[1]))
            )
        }


__all__ = ["ClassificationTask"]
