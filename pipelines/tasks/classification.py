"""Image classification: labels or class probabilities per image."""

import hashlib
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, log_loss

from kapps.errors import ConfigError, DataError, SubmissionError
from pipelines.cam import write_cam_grid
from pipelines.cv import duplicates_across_folds, split_rows
from pipelines.data import batched, decoded_images, read_test_source, read_train_source
from pipelines.data.augment import build_augmenter, tta_views
from pipelines.data.images import require_decoded
from pipelines.plots import plot_confusion_matrix, plot_image_grid
from pipelines.submit import label_frame, probability_frame
from pipelines.tasks.base import Task, TrainingData

MAX_GRID_IMAGES = 32
CAM_IMAGES = 16


def _softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class ClassificationTask(Task):
    name = "classification"
    cross_validation = True
    blending = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self._val_images = None
        self._val_labels = None

    # Data ------------------------------------------------------------------
    def _class_indices(self, labels, train_path):
        data = self.cfg.data
        if data.classes is None:
            data.classes = sorted(np.unique(labels).tolist())
        lookup = {str(c): i for i, c in enumerate(data.classes)}
        indices = np.array([lookup.get(str(label), -1) for label in labels])
        if (indices < 0).any():
            row = int(np.argmax(indices < 0))
            raise DataError(
                f"{train_path}: row {row + 2} has label {labels[row]!r}, not one of "
                f"data.classes {data.classes}"
            )
        return indices

    def _split(self, labels):
        return split_rows(self.cfg, len(labels), labels, self.fold_groups())

    def _images(self, source, run_dir, split):
        data = self.cfg.data
        return decoded_images(
            source,
            data.image_size,
            data.channels,
            cache=data.cache,
            cache_path=run_dir / "cache" / split,
        )

    def training_data(self, run_dir):
        cfg = self.cfg
        note = self.fit_image_size()
        source = read_train_source(cfg)
        labels = self._class_indices(source.labels, cfg.data_path(cfg.data.train))
        onehot = keras.utils.to_categorical(labels, len(cfg.data.classes)).astype("float32")
        train_rows, val_rows = self._split(labels)
        train_set = self._images(source.subset(train_rows), run_dir, "train")
        val_set = self._images(source.subset(val_rows), run_dir, "val")
        if len(train_set) == 0:
            raise DataError(
                f"no training image could be decoded from {cfg.data_path(cfg.data.train)}"
            )
        self._val_images, self._val_labels = val_set, labels[val_rows]
        self._val_rows = val_rows
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
            skipped=train_set.skipped + val_set.skipped,
            notes=[note] if note else [],
        )

    def test_data(self, run_dir):
        source = read_test_source(self.cfg)
        images = require_decoded(self._images(source, run_dir, "test"))
        return batched(images, batch_size=self.cfg.train.batch_size), source.ids

    # Model -----------------------------------------------------------------
    def model_kwargs(self):
        data = self.cfg.data
        return {
            "input_shape": (*data.image_size, data.channels),
            "num_classes": len(data.classes),
        }

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
    def predict(self, model, dataset, tta=None):
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

    def evaluate(self, model, data, run_dir):
        classes = self.cfg.data.classes
        probs = self._val_probs = self.predict(model, data.val)
        predicted, truth = probs.argmax(axis=1), self._val_labels[self._val_images.rows]
        matrix = confusion_matrix(truth, predicted, labels=np.arange(len(classes)))
        plot_confusion_matrix(matrix, classes, run_dir / "confusion_matrix.png")
        self._plot_mistakes(probs, truth, run_dir / "hardest.png")
        self._plot_cams(model, probs, truth, run_dir / "cam.png")
        per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
        scores = {}
        if self.cfg.submission.tta:  # the effect of test-time augmentation, measured
            plain = self.predict(model, data.val, tta=False)
            scores["without_tta"] = {
                "accuracy": float((plain.argmax(axis=1) == truth).mean()),
                "log_loss": float(log_loss(truth, plain, labels=np.arange(len(classes)))),
            }
        return {
            **scores,
            "accuracy": float((predicted == truth).mean()),
            "log_loss": float(log_loss(truth, probs, labels=np.arange(len(classes)))),
            "per_class_accuracy": {
                str(c): float(a) for c, a in zip(classes, per_class, strict=True)
            },
        }

    def _plot_mistakes(self, probs, truth, path):
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
            for position, (image, _) in enumerate(self._val_images.dataset.as_numpy_iterator())
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

    def _plot_cams(self, model, probs, truth, path):
        """Grad-CAM overlays for the first validation images of each class."""
        classes = self.cfg.data.classes
        images = np.stack([image for image, _ in self._val_images.dataset.take(CAM_IMAGES)])
        shown = len(images)
        predicted = probs[:shown].argmax(axis=1)
        captions = [f"true {classes[truth[i]]}, pred {classes[predicted[i]]}" for i in range(shown)]
        write_cam_grid(model, images, captions, path)

    # Cross-validation --------------------------------------------------------
    def oof_frame(self):
        classes = self.cfg.data.classes
        probs = self._val_probs  # from evaluate
        rows = self._val_rows[self._val_images.rows]
        truth = self._val_labels[self._val_images.rows]
        frame = pd.DataFrame({"row": rows, "label": np.asarray(classes, dtype=object)[truth]})
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
        labels = self._class_indices(source.labels, self.cfg.data_path(self.cfg.data.train))
        return duplicates_across_folds(self.cfg, hashes, labels, self.fold_groups())

    def submission_frame(self, ids, predictions, sample):
        cfg = self.cfg
        if cfg.submission.kind == "label":
            labels = np.asarray(cfg.data.classes, dtype=object)[predictions.argmax(axis=1)]
            return label_frame(ids, labels, sample)
        return probability_frame(
            ids,
            predictions,
            cfg.data.classes,
            sample,
            positive_class=cfg.submission.positive_class,
            clip=cfg.submission.clip,
        )

    def score(self, frame, answers):
        id_col, *targets = answers.columns
        if list(frame.columns) != list(answers.columns):
            raise SubmissionError(
                f"answer key header {list(answers.columns)} differs from the submission's"
            )
        merged = answers.astype({id_col: str}).merge(
            frame.astype({id_col: str}), on=id_col, suffixes=("_true", "_pred")
        )
        if len(merged) != len(answers):
            raise SubmissionError("the answer key and the submission hold different ids")
        metric = self.metric()
        if metric == "accuracy":
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
