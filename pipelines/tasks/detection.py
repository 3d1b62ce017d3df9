"""Object detection: labelled boxes per image, submitted as a PredictionString per image."""

import numpy as np

from kapps.errors import DataError, SubmissionError
from pipelines.box_metrics import coco_evaluation, coco_map, precision_recall, wheat_score
from pipelines.cv import split_rows
from pipelines.data import batched, decoded_images
from pipelines.data.augment import build_augmenter
from pipelines.data.boxes import batched_detections, decoded_detection_set, read_box_source
from pipelines.data.images import require_decoded
from pipelines.data.masks import image_sizes
from pipelines.data.sources import read_test_images
from pipelines.hostcall import host_callback
from pipelines.plots import plot_detections, plot_precision_recall
from pipelines.submit import boxes_frame, parse_box_string
from pipelines.tasks.base import Task, TrainingData

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

    def __init__(self, cfg):
        super().__init__(cfg)
        self._test_sizes = []

    @property
    def class_names(self):
        return [str(c) for c in self.cfg.data.classes or ["object"]]

    # Data ------------------------------------------------------------------
    def training_data(self, run_dir):
        cfg = self.cfg
        notes = [self.fit_image_size()]
        source = read_box_source(cfg)
        train_rows, val_rows = split_rows(cfg, len(source))
        data, bs, seed = cfg.data, cfg.train.batch_size, cfg.train.seed
        sets = {}
        for split, rows in (("train", train_rows), ("val", val_rows)):
            sets[split] = decoded_detection_set(
                source.subset(rows),
                data.image_size,
                data.channels,
                data.cache,
                run_dir / "cache" / split,
            )
        if len(sets["train"]) == 0:
            raise DataError(f"no training image could be decoded from {cfg.data_path(data.train)}")
        self._val_set = sets["val"]
        counts = [len(b) for b in source.boxes]
        notes.append(
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
            skipped=sets["train"].skipped + sets["val"].skipped,
            notes=[n for n in notes if n],
        )

    def test_data(self, run_dir):
        cfg = self.cfg
        source = read_test_images(cfg)
        self._test_sizes = [tuple(s) for s in image_sizes(source.paths)]
        images = require_decoded(
            decoded_images(source, cfg.data.image_size, cfg.data.channels, cache="none")
        )
        return batched(images, batch_size=cfg.train.batch_size), source.ids

    # Model -----------------------------------------------------------------
    def build_model(self):
        model = super().build_model()
        if hasattr(model, "host_callback"):  # DETR: its matching runs inside the traced step
            model.host_callback = host_callback
        return model

    def model_kwargs(self):
        data = self.cfg.data
        return {
            "input_shape": (*data.image_size, data.channels),
            "num_classes": len(self.class_names),
        }

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

    def predict(self, model, dataset):
        """Per test image `(boxes xyxy, labels, scores)` in the image's own pixels."""
        size = tuple(self.cfg.data.image_size)
        found = self._detect(model, dataset)
        return [
            (_rescaled(boxes, size, original), labels, scores)
            for (boxes, labels, scores), original in zip(found, self._test_sizes, strict=True)
        ]

    def predict_folds(self, models, dataset, weights=None):
        if len(models) == 1:
            return self.predict(models[0], dataset)
        raise SubmissionError("blending detectors is not supported yet: predict with one model")

    def submission_frame(self, ids, predictions, sample):
        sub = self.cfg.submission
        names = self.class_names
        named = [
            (boxes, [names[k] for k in labels], scores) for boxes, labels, scores in predictions
        ]
        return boxes_frame(ids, named, sample, sub.box_string, sub.no_finding)

    def empty_columns(self, sample):
        return [sample.columns[-1]]  # an image without boxes has an empty PredictionString

    # Scores ------------------------------------------------------------------
    def _val_truths(self):
        boxes, labels = self._val_set.targets
        rows = self._val_set.rows
        return [(boxes[r][labels[r] >= 0], labels[r][labels[r] >= 0]) for r in rows]

    def evaluate(self, model, data, run_dir):
        truths = self._val_truths()
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
                run_dir / "precision_recall.png",
                f"Validation precision–recall at IoU 0.5 (mAP@.5 {scores['map50']:.3f})",
            )
        shown = min(SHOWN_IMAGES, len(images))
        plot_detections(
            images[:shown],
            truths[:shown],
            kept[:shown],
            [f"predicted (≥ {threshold:g})"] * shown,
            self.class_names,
            run_dir / "detections.png",
            "Validation: ground truth and predictions",
        )
        return scores

    def score(self, frame, answers):
        """mAP@[.5:.95], mAP@.5 (pycocotools) and the Global Wheat score of a submission
        against an answer key of ground-truth PredictionStrings (confidence 1)."""
        columns = list(answers.columns)
        if list(frame.columns) != columns:
            raise SubmissionError(f"answer key header {columns} differs from the submission's")
        style, names = self.cfg.submission.box_string, self.class_names
        no_finding = self.cfg.submission.no_finding
        merged = answers.astype({columns[0]: str}).merge(
            frame.astype({columns[0]: str}), on=columns[0], suffixes=("_true", "_pred")
        )
        if len(merged) != len(answers):
            raise SubmissionError("the answer key and the submission hold different images")
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
