"""Object detection: labelled boxes per image, submitted as a PredictionString per image."""

import numpy as np

from pipelines.box_metrics import coco_evaluation, coco_map, precision_recall, wheat_score
from pipelines.data.augment import build_augmenter
from pipelines.data.box_batches import batched_detections, decoded_detection_set
from pipelines.data.boxes import read_box_source
from pipelines.data.splits import split_rows
from pipelines.errors import DataError, SubmissionError
from pipelines.hostcall import host_callback
from pipelines.plots import plot_detections, plot_precision_recall
from pipelines.submit import boxes_frame, parse_box_string
from pipelines.tasks.base import (
    Evaluation,
    Task,
    TrainingData,
    aligned_answers,
    full_size_test_set,
    image_model_args,
)

SHOWN_IMAGES = 8
EVAL_SCORE_THRESHOLD = 0.001  # COCO evaluates the whole ranked list of candidates


def detections_of(model, dataset, *, score_threshold, iou_threshold, max_detections):
    """Per image `(boxes xyxy, labels, scores)` at the model's input size, best first."""
    changed = (
        model.score_threshold != score_threshold
        or model.iou_threshold != iou_threshold
        or model.max_detections != max_detections
    )
    if changed:
        model.score_threshold = score_threshold
        model.iou_threshold = iou_threshold
        model.max_detections = max_detections
        model.predict_function = None  # traced with the old thresholds
    found = model.predict(dataset, verbose=0)
    results = []
    for boxes, labels, scores in zip(found["boxes"], found["labels"], found["scores"], strict=True):
        keep = labels >= 0
        results.append((boxes[keep], labels[keep].astype(np.int64), scores[keep]))
    return results


def _rescaled(boxes, from_size, to_size):
    """xyxy boxes from an image of `from_size` (height, width) to one of `to_size`."""
    (h0, w0), (h1, w1) = from_size, to_size
    return np.asarray(boxes, np.float64) * np.array([w1 / w0, h1 / h0, w1 / w0, h1 / h0])


class DetectionTask(Task):
    name = "detection"

    @property
    def class_names(self):
        return [str(c) for c in self.cfg.data.classes]

    # Config and data ----------------------------------------------------------
    def resolve(self):
        cfg = super().resolve()
        if cfg.data.classes is None:
            cfg.data.classes = read_box_source(cfg).classes
        return cfg

    def training_data(self, run):
        cfg = self.cfg
        source = read_box_source(cfg)
        train_rows, val_rows = split_rows(cfg, len(source))
        data, bs, seed = cfg.data, cfg.train.batch_size, cfg.train.seed
        sets = {
            split: decoded_detection_set(
                source.subset(rows), data.image_size, data.channels, data.cache, run.cache(split)
            )
            for split, rows in (("train", train_rows), ("val", val_rows))
        }
        if len(sets["train"]) == 0:
            raise DataError(f"no training image could be decoded from {cfg.data_path(data.train)}")
        counts = [len(b) for b in source.boxes]
        note = (
            f"{sum(counts)} boxes in {len(counts)} images ({sum(c == 0 for c in counts)} "
            f"without any, at most {max(counts)} in one)"
        )
        return TrainingData(
            train=batched_detections(
                sets["train"],
                batch_size=bs,
                shuffle=True,
                augment=build_augmenter(cfg.augment, seed, bounding_box_format="xyxy"),
                mosaic=cfg.augment.mosaic,
                seed=seed,
            ),
            val=batched_detections(sets["val"], batch_size=bs),
            train_size=len(sets["train"]),
            val_size=len(sets["val"]),
            model_args=image_model_args(cfg, len(self.class_names)),
            validation=sets["val"],
            skipped=sets["train"].skipped + sets["val"].skipped,
            notes=[note],
        )

    def test_data(self, run):
        return full_size_test_set(self.cfg)

    # Model -----------------------------------------------------------------
    def build_model(self, model_args):
        model = super().build_model(model_args)
        if hasattr(model, "host_callback"):  # DETR: its matching runs inside the traced step
            model.host_callback = host_callback
        return model

    def compile_args(self):
        return {}  # the detector computes its own loss (`compute_loss`)

    # Prediction --------------------------------------------------------------
    def _detect(self, model, dataset, score_threshold=None):
        sub = self.cfg.submission
        return detections_of(
            model,
            dataset,
            score_threshold=sub.score_threshold if score_threshold is None else score_threshold,
            iou_threshold=sub.iou_threshold,
            max_detections=sub.max_detections,
        )

    def predict_folds(self, models, test, weights=None):
        """Per test image `(boxes xyxy, labels, scores)` in the image's own pixels."""
        if len(models) > 1:
            raise SubmissionError("blending detectors is not supported yet: predict with one model")
        size = tuple(self.cfg.data.image_size)
        return [
            (_rescaled(boxes, size, original), labels, scores)
            for (boxes, labels, scores), original in zip(
                self._detect(models[0], test.inputs), test.sizes, strict=True
            )
        ]

    def submission_frame(self, test, predictions, sample):
        sub = self.cfg.submission
        names = self.class_names
        named = [
            (boxes, [names[k] for k in labels], scores) for boxes, labels, scores in predictions
        ]
        return boxes_frame(test.ids, named, sample, sub.box_string, sub.no_finding)

    def empty_columns(self, sample):
        return [sample.columns[-1]]  # an image without boxes has an empty PredictionString

    # Scores ------------------------------------------------------------------
    def evaluate(self, model, data, run):
        boxes, labels = data.validation.targets
        truths = [
            (boxes[r][labels[r] >= 0], labels[r][labels[r] >= 0]) for r in data.validation.rows
        ]
        images = []  # only the few that are drawn: a whole validation set may not fit
        for batch, _ in data.val:
            images.extend(batch.numpy().astype(np.uint8)[: SHOWN_IMAGES - len(images)])
            if len(images) >= SHOWN_IMAGES:
                break
        found = self._detect(model, data.val, score_threshold=EVAL_SCORE_THRESHOLD)
        scores = coco_map(truths, found, len(self.class_names))
        threshold = self.cfg.submission.score_threshold
        kept = [(b[s >= threshold], lab[s >= threshold], s[s >= threshold]) for b, lab, s in found]
        scores["wheat"] = wheat_score(truths, kept)
        scores["boxes_per_image"] = float(np.mean([len(k[0]) for k in kept]))
        evaluation = coco_evaluation(truths, found, len(self.class_names))
        if evaluation is not None:
            recall, precision = precision_recall(evaluation)
            plot_precision_recall(
                recall,
                precision,
                self.class_names,
                run.plot("precision_recall"),
                f"Validation precision–recall at IoU 0.5 (mAP@.5 {scores['map50']:.3f})",
            )
        shown = min(SHOWN_IMAGES, len(images))
        plot_detections(
            images[:shown],
            truths[:shown],
            kept[:shown],
            [f"predicted (≥ {threshold:g})"] * shown,
            self.class_names,
            run.plot("detections"),
            "Validation: ground truth and predictions",
        )
        return Evaluation(scores)

    def score(self, frame, answers, test):
        """mAP@[.5:.95], mAP@.5 (pycocotools) and the Global Wheat score of a submission
        against an answer key of ground-truth PredictionStrings (confidence 1)."""
        columns = list(answers.columns)
        style, names = self.cfg.submission.box_string, self.class_names
        no_finding = self.cfg.submission.no_finding
        merged = aligned_answers(frame, answers, columns[:1])
        truths, found = [], []
        for _, row in merged.iterrows():
            parsed = []
            for side in ("true", "pred"):
                text = row[f"{columns[1]}_{side}"]
                if no_finding and str(text).strip() == no_finding:
                    text = ""
                boxes, labels, confidences = parse_box_string(text, style)
                if style == "class_conf_xyxy":
                    labels = np.asarray([names.index(str(k)) for k in labels], np.int64)
                parsed.append((boxes, labels, confidences))
            truths.append(parsed[0][:2])
            found.append(parsed[1])
        return {**coco_map(truths, found, len(names)), "wheat": wheat_score(truths, found)}


__all__ = ["DetectionTask", "detections_of"]
