"""Detection scores: COCO mAP by pycocotools, and Global Wheat's metric.

COCO's mAP@[.5:.95] and mAP@.5 are pycocotools' own `COCOeval` on in-memory
ground truth and detections (no hand-written COCO mAP). Global Wheat scores
each image by the mean, over IoU thresholds 0.5, 0.55, …, 0.75, of
TP / (TP + FP + FN), matching the most confident predictions first, and
averages over images. As the competition defines it, a prediction is a hit
when its IoU is *greater than* the threshold (IoU exactly 0.5 misses at 0.5);
an image with neither true nor predicted boxes scores 1, one with only one
of them 0.
"""

import contextlib
import io

import numpy as np
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# Written out: np.arange(0.5, 0.76, 0.05) gives 0.6000000000000001 and its kin.
WHEAT_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75)


def _xywh(boxes):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def coco_evaluation(truths, detections, num_classes):
    """A finished `COCOeval` (or None when nothing was detected).

    Args:
        truths: per image `(boxes (n, 4) xyxy, labels (n,))`.
        detections: per image `(boxes (m, 4) xyxy, labels (m,), scores (m,))`.
        num_classes: class indices run 0 … num_classes - 1.
    """
    images, annotations = [], []
    for image_id, (boxes, labels) in enumerate(truths):
        images.append({"id": image_id})
        for box, label in zip(_xywh(boxes), np.asarray(labels), strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": box.tolist(),
                    "area": float(box[2] * box[3]),
                    "iscrowd": 0,
                }
            )
    results = [
        {"image_id": image_id, "category_id": int(label), "bbox": box.tolist(), "score": float(s)}
        for image_id, (boxes, labels, scores) in enumerate(detections)
        for box, label, s in zip(_xywh(boxes), np.asarray(labels), np.asarray(scores), strict=True)
    ]
    if not results or not annotations:
        return None
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        ground_truth = COCO()
        ground_truth.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": k} for k in range(num_classes)],
        }
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def coco_map(truths, detections, num_classes):
    """`{"map": mAP@[.5:.95], "map50": mAP@.5, "map75"}` by pycocotools (0 if nothing found)."""
    evaluation = coco_evaluation(truths, detections, num_classes)
    if evaluation is None:
        return {"map": 0.0, "map50": 0.0, "map75": 0.0}
    stats = [max(float(s), 0.0) for s in evaluation.stats[:3]]
    return dict(zip(("map", "map50", "map75"), stats, strict=True))


def precision_recall(evaluation):
    """Per class, the interpolated precision at 101 recall points at IoU 0.5 (COCOeval's)."""
    recall = np.linspace(0, 1, 101)
    precision = evaluation.eval["precision"][0, :, :, 0, -1]  # IoU .5, all areas, 100 boxes
    return recall, precision.T  # (classes, 101); -1 where a class has no ground truth


def wheat_image_score(truth_boxes, boxes, scores):
    """Global Wheat's score of one image (1 when it has no boxes and none are predicted)."""
    truth_boxes = np.asarray(truth_boxes).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores), kind="stable")
    boxes = np.asarray(boxes).reshape(-1, 4)[order]
    if len(truth_boxes) == 0 and len(boxes) == 0:
        return 1.0
    if len(truth_boxes) == 0 or len(boxes) == 0:
        return 0.0
    overlaps = coco_mask.iou(_xywh(boxes), _xywh(truth_boxes), [0] * len(truth_boxes))
    total = 0.0
    for threshold in WHEAT_THRESHOLDS:
        free = np.ones(len(truth_boxes), bool)
        hits = 0
        for row in overlaps:  # most confident prediction first
            candidates = np.where(free, row, -1.0)
            best = int(np.argmax(candidates))
            if candidates[best] > threshold:
                free[best] = False
                hits += 1
        misses = len(boxes) - hits
        total += hits / (hits + misses + free.sum())
    return total / len(WHEAT_THRESHOLDS)


def wheat_score(truths, detections):
    """Mean Global Wheat score over images; classes are ignored (one class)."""
    return float(
        np.mean(
            [
                wheat_image_score(truth[0], found[0], found[2])
                for truth, found in zip(truths, detections, strict=True)
            ]
        )
    )
