"""Semantic segmentation: a class per pixel, submitted as run-length encoded masks."""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from scipy import ndimage
from scipy.special import softmax

from kapps.errors import ConfigError
from kapps.segmentation import rle
from kapps.segmentation.losses import MeanDice, SegmentationLoss
from pipelines.data.augment import build_augmenter, tta_views
from pipelines.data.masks import (
    ORDER_NAMES,
    batched_pairs,
    decoded_pairs,
    detect_order,
    read_mask_source,
)
from pipelines.data.sources import read_csv
from pipelines.data.splits import duplicates_across_folds, labelled_rows, split_rows
from pipelines.errors import DataError, SubmissionError
from pipelines.plots import plot_bars, plot_mask_overlays
from pipelines.submit import rle_frame
from pipelines.tasks.base import (
    Evaluation,
    Task,
    TrainingData,
    aligned_answers,
    full_size_test_set,
    image_model_args,
)

OVERLAY_IMAGES = 8


def dice_scores(confusion):
    """Per-class Dice 2·TP / (2·TP + FP + FN) from a confusion matrix (NaN if absent)."""
    confusion = np.asarray(confusion, np.float64)
    true_positives = np.diag(confusion)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * true_positives / denominator, np.nan)


def iou_scores(confusion):
    confusion = np.asarray(confusion, np.float64)
    true_positives = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positives
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positives / union, np.nan)


def mask_dice(truth, prediction):
    """Dice of two binary masks; 1 when both are empty (Kaggle's convention)."""
    total = truth.sum() + prediction.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(truth, prediction).sum() / total)


@dataclass
class Validation:
    """The validation split as `evaluate` sees it."""

    pairs: Any  # PairSet of the decoded validation images and masks
    ids: np.ndarray  # image id of each validation row
    rows: np.ndarray  # training row of each validation row


class SegmentationTask(Task):
    name = "segmentation"
    supports = frozenset({"cv", "blend_models", "tta", "label_fraction"})

    @property
    def class_names(self):
        return ["background", *[str(c) for c in self.cfg.data.classes]]

    @property
    def num_classes(self):
        return len(self.class_names)

    # Config and data ----------------------------------------------------------
    def resolve(self):
        cfg = super().resolve()
        if cfg.data.format == "rle_csv" and cfg.data.rle_order == "auto":
            cfg.data.rle_order, _ = detect_order(cfg, read_mask_source(cfg))
        return cfg

    def resolution_notes(self, original):
        notes = super().resolution_notes(original)
        if original.data.rle_order != self.cfg.data.rle_order:
            order = self.cfg.data.rle_order
            notes.append(
                f"RLE order: {order} ({ORDER_NAMES[order]}), found by decoding known "
                f"masks ({self.cfg.data.masks})"
            )
        return notes

    def _pairs(self, source, cache_path):
        data = self.cfg.data
        return decoded_pairs(
            source,
            data.image_size,
            data.channels,
            self.num_classes,
            order=data.rle_order if source.rles is not None else None,
            scale=data.mask_scale,
            cache=data.cache,
            cache_path=cache_path,
        )

    def training_data(self, run):
        cfg = self.cfg
        source = read_mask_source(cfg)
        train_rows, val_rows = split_rows(cfg, len(source), groups=self.fold_groups(source.ids))
        train_rows = labelled_rows(cfg, train_rows)
        train_set = self._pairs(source.subset(train_rows), run.cache("train"))
        val_set = self._pairs(source.subset(val_rows), run.cache("val"))
        if len(train_set) == 0:
            train_path = cfg.data_path(cfg.data.train)
            raise DataError(f"no training image could be decoded from {train_path}")
        bs, seed = cfg.train.batch_size, cfg.train.seed
        return TrainingData(
            train=batched_pairs(
                train_set,
                batch_size=bs,
                shuffle=True,
                augment=build_augmenter(cfg.augment, seed),
                seed=seed,
            ),
            val=batched_pairs(val_set, batch_size=bs),
            train_size=len(train_set),
            val_size=len(val_set),
            model_args=image_model_args(cfg, self.num_classes),
            validation=Validation(val_set, source.ids[val_rows], val_rows),
            skipped=train_set.skipped + val_set.skipped,
        )

    def test_data(self, run):
        return full_size_test_set(self.cfg)

    # Model -----------------------------------------------------------------
    def objective(self):
        return "val_mean_dice", "maximize"

    def compile_args(self):
        kind = self.cfg.train.loss or "dice_ce"
        return {
            "loss": SegmentationLoss(self.num_classes, kind=kind),
            "metrics": [
                MeanDice(self.num_classes),
                keras.metrics.MeanIoU(self.num_classes, sparse_y_pred=False, name="mean_iou"),
            ],
        }

    # Prediction ---------------------------------------------------------------
    def probabilities(self, model, images, tta=None):
        """Softmax class probabilities (B, h, w, K); with `submission.tta`, averaged
        over the flipped views (each flipped back)."""
        flips = (
            self.cfg.submission.tta_flips
            if (self.cfg.submission.tta if tta is None else tta)
            else []
        )
        probs = [
            undo(softmax(keras.ops.convert_to_numpy(model(view, training=False)), axis=-1))
            for view, undo in tta_views(images, flips)
        ]
        return tf.convert_to_tensor(np.mean(probs, axis=0, dtype="float32"))

    def labels(self, probs):
        """Class ids from probabilities; binary tasks use `submission.threshold`."""
        if probs.shape[-1] == 2:
            return tf.cast(probs[..., 1] > self.cfg.submission.threshold, tf.uint8)
        return tf.cast(tf.argmax(probs, axis=-1), tf.uint8)

    def remove_small_regions(self, labels, scale=1.0):
        """Set connected regions of a class under `submission.min_area` pixels to background.

        A few stray pixels of a class absent from the image cost a whole row
        of Kaggle's per-row Dice, so competitors drop them; `scale` converts
        the area to a resized mask (validation runs at the model's size).
        """
        min_area = self.cfg.submission.min_area * scale
        if not min_area:
            return labels
        labels = labels.copy()
        for k in range(1, self.num_classes):
            regions, count = ndimage.label(labels == k)
            if count:
                areas = np.bincount(regions.ravel(), minlength=count + 1)
                small = np.flatnonzero(areas < min_area)
                labels[np.isin(regions, small[small > 0])] = 0
        return labels

    def predict_folds(self, models, test, weights=None):
        """Per test image, one RLE string per foreground class at the image's own size,
        from the mask probabilities of the models averaged."""
        weights = weights or [1 / len(models)] * len(models)
        order = self._submission_order()
        encoded = []
        for images in test.inputs:
            averaged = tf.add_n(
                [w * self.probabilities(m, images) for m, w in zip(models, weights, strict=True)]
            )
            for probs in averaged:
                height, width = test.sizes[len(encoded)]
                full = tf.image.resize(probs, (height, width), method="bilinear")
                labels = self.remove_small_regions(self.labels(full[None])[0].numpy())
                encoded.append([rle.encode(labels == k, order) for k in range(1, self.num_classes)])
        return encoded

    def _submission_order(self):
        order = self.cfg.data.rle_order
        if order == "auto":
            raise ConfigError(
                "data.rle_order is still auto: train first (it is detected then) or set it"
            )
        return order

    def submission_frame(self, test, predictions, sample):
        return rle_frame(
            test.ids, predictions, self.cfg.data.classes, sample, self.cfg.data.rle_empty
        )

    def empty_columns(self, sample):
        return [sample.columns[-1]]

    # Scores ------------------------------------------------------------------
    def evaluate(self, model, data, run):
        confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        val = data.validation
        # Validation masks are at the model's size; min_area is at the images' own.
        scale = float(np.prod(self.cfg.data.image_size) / np.mean(np.prod(val.pairs.sizes, axis=1)))
        shown = []
        dice_terms = []  # per validation image, for a cross-validation's oof.csv
        tta = self.cfg.submission.tta
        plain = np.zeros_like(confusion)  # without test-time augmentation, to report its effect
        for images, masks in data.val:
            truth = masks.numpy()
            if tta:
                without = self.labels(self.probabilities(model, images, tta=False)).numpy()
                without = np.stack([self.remove_small_regions(p, scale) for p in without])
                plain += self._confusion(truth, without)
            predicted = self.labels(self.probabilities(model, images)).numpy()
            predicted = np.stack([self.remove_small_regions(p, scale) for p in predicted])
            confusion += self._confusion(truth, predicted)
            dice_terms += [self._dice_terms(t, p) for t, p in zip(truth, predicted, strict=True)]
            for image, mask, pred in zip(images.numpy(), truth, predicted, strict=True):
                if len(shown) < OVERLAY_IMAGES:
                    shown.append((image, mask, pred))
        dice, iou = dice_scores(confusion), iou_scores(confusion)
        per_class = dict(zip(self.class_names, dice.tolist(), strict=True))
        foreground = dict(list(per_class.items())[1:])
        plot_bars(
            {k: (0.0 if np.isnan(v) else v) for k, v in per_class.items()},
            run.plot("dice_per_class"),
            "Dice per class (validation)",
            "Dice",
        )
        self._plot_overlays(shown, run.plot("overlays"))
        scores = {}
        if tta:
            scores["without_tta"] = {
                "mean_dice": float(np.nanmean(dice_scores(plain)[1:])),
                "mean_iou": float(np.nanmean(iou_scores(plain))),
            }
        metrics = {
            **scores,
            "mean_dice": float(np.nanmean(list(foreground.values()))),
            "mean_iou": float(np.nanmean(iou)),
            "pixel_accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
            "dice_per_class": per_class,
        }
        return Evaluation(metrics, self._oof_frame(val, dice_terms))

    # Cross-validation --------------------------------------------------------
    def groups(self, ids=None):
        """`cv.group_column` per training image, from the train CSV's first row of each id."""
        cfg = self.cfg
        if cfg.data.format != "rle_csv":
            raise ConfigError("cv.group_column needs the RLE CSV layout (data.format rle_csv)")
        frame = read_csv(cfg.data_path(cfg.data.train), "train CSV", ids_as_text=True)
        column = cfg.cv.group_column
        if column not in frame.columns:
            raise ConfigError(f"cv.group_column {column!r} is not a column of {cfg.data.train}")
        first = frame.drop_duplicates(frame.columns[0]).set_index(frame.columns[0])[column]
        return np.asarray([str(first[i]) for i in ids])

    def _oof_frame(self, val, dice_terms):
        """Per validation image: Dice terms per class (intersection, predicted and true
        pixels at the model's size), so the pooled Dice of all folds is exact."""
        decoded = val.pairs.rows
        frame = pd.DataFrame(dice_terms)
        frame.insert(0, "id", [str(i) for i in val.ids[decoded]])
        frame.insert(0, "row", val.rows[decoded])
        return frame

    def _dice_terms(self, truth, pred):
        terms = {}
        for k, name in enumerate(self.class_names[1:], start=1):
            terms[f"inter_{name}"] = int(((truth == k) & (pred == k)).sum())
            terms[f"pred_{name}"] = int((pred == k).sum())
            terms[f"true_{name}"] = int((truth == k).sum())
        return terms

    def duplicates_across_folds(self):
        source = read_mask_source(self.cfg)
        hashes = [hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in source.paths]
        return duplicates_across_folds(self.cfg, hashes, groups=self.fold_groups(source.ids))

    def score_oof(self, frame):
        per_class = {}
        for name in self.class_names[1:]:
            total = frame[f"pred_{name}"].sum() + frame[f"true_{name}"].sum()
            per_class[name] = float(2 * frame[f"inter_{name}"].sum() / total) if total else np.nan
        return {
            "mean_dice": float(np.nanmean(list(per_class.values()))),
            "dice_per_class": per_class,
        }

    def _confusion(self, truth, predicted):
        k = self.num_classes
        return np.bincount(truth.ravel() * k + predicted.ravel(), minlength=k * k).reshape(k, k)

    def _plot_overlays(self, shown, path):
        captions = []
        for _, mask, pred in shown:
            scores = [
                mask_dice(mask == k, pred == k)
                for k in range(1, self.num_classes)
                if (mask == k).any() or (pred == k).any()
            ]
            captions.append(f"Dice {np.mean(scores):.3f}" if scores else "empty")
        plot_mask_overlays(
            [s[0] for s in shown],
            [s[1] for s in shown],
            [s[2] for s in shown],
            captions,
            self.class_names,
            path,
            "Validation: ground truth and prediction",
        )

    def score(self, frame, answers, test):
        """Mean Dice over submission rows (empty vs empty counts 1), and per class."""
        columns = list(answers.columns)
        keys = columns[:-1]
        merged = aligned_answers(frame, answers, keys)
        sizes = dict(zip([str(i) for i in test.ids], test.sizes, strict=True))
        order, empty = self._submission_order(), self.cfg.data.rle_empty
        target = columns[-1]
        names = [str(c) for c in self.cfg.data.classes]
        row_scores, pooled = [], np.zeros((len(names), 2))
        for _, row in merged.iterrows():
            size = sizes.get(str(row[keys[0]]))
            if size is None:
                raise SubmissionError(f"answer key id {row[keys[0]]!r} is not a test image")
            truth, pred = (
                rle.decode(_text(row[f"{target}_{side}"], empty), size, order) == 1
                for side in ("true", "pred")
            )
            row_scores.append(mask_dice(truth, pred))
            k = names.index(str(row[keys[1]])) if len(keys) > 1 else 0
            pooled[k] += 2 * np.logical_and(truth, pred).sum(), truth.sum() + pred.sum()
        per_class = {
            name: float(both / total) if total else None
            for name, (both, total) in zip(names, pooled, strict=True)
        }
        present = [v for v in per_class.values() if v is not None]
        return {
            "dice": float(np.mean(row_scores)),
            "mean_class_dice": float(np.mean(present)) if present else None,
            "dice_per_class": per_class,
        }


def _text(value, empty):
    """The RLE of a cell, with the competition's empty token (e.g. "-") made blank."""
    return "" if str(value).strip() == empty else value


__all__ = ["SegmentationTask"]
