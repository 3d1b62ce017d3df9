"""Box operations in `keras.ops`: anchor points, distances, IoU, non-max suppression.

Boxes are `xyxy` in pixels, as Keras core's preprocessing layers use them; the
IoU and CIoU themselves are Keras core's (`keras.utils.bounding_boxes`).
Everything runs on every backend and inside a compiled predict step, so a
saved detector returns final boxes.
"""

import keras
import numpy as np
from keras import ops

EPSILON = 1e-9


def anchor_points(image_size, strides):
    """Centres (A, 2) in pixels and strides (A,) of every cell of every level.

    Levels are concatenated finest first, each row-major, the order the heads'
    outputs are flattened in.
    """
    height, width = image_size
    points, cell_strides = [], []
    for stride in strides:
        ys, xs = np.meshgrid(np.arange(height // stride), np.arange(width // stride), indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], axis=-1).astype("float32")
        points.append((centres + 0.5) * stride)
        cell_strides.append(np.full(len(centres), stride, "float32"))
    return np.concatenate(points), np.concatenate(cell_strides)


def distances_to_boxes(distances, points):
    """(…, 4) left/top/right/bottom distances from (A, 2) points → xyxy boxes."""
    left_top, right_bottom = distances[..., :2], distances[..., 2:]
    return ops.concatenate([points - left_top, points + right_bottom], axis=-1)


def boxes_to_distances(boxes, points):
    """xyxy boxes → left/top/right/bottom distances from `points`."""
    return ops.concatenate([points - boxes[..., :2], boxes[..., 2:] - points], axis=-1)


def pairwise_iou(boxes1, boxes2):
    """IoU of every box of `boxes1` (…, M, 4) with every box of `boxes2` (…, N, 4)."""
    return keras.utils.bounding_boxes.compute_iou(boxes1, boxes2, "xyxy")


def ciou(boxes1, boxes2):
    """Complete IoU of matching boxes (…, 4) → (…): IoU less centre-distance and aspect terms."""
    return keras.utils.bounding_boxes.compute_ciou(boxes1, boxes2, "xyxy")


def valid_boxes(boxes, labels):
    """Which padded entries hold a real box: a label ≥ 0 and a positive area."""
    width = boxes[..., 2] - boxes[..., 0]
    height = boxes[..., 3] - boxes[..., 1]
    return ops.logical_and(labels >= 0, ops.logical_and(width > 0, height > 0))


def non_max_suppression(
    boxes, scores, labels, *, iou_threshold, score_threshold, max_detections, pre_nms=1000
):
    """Class-wise greedy non-max suppression of a batch, in `keras.ops`.

    Args:
        boxes: (B, A, 4) xyxy candidate boxes.
        scores: (B, A) confidence of each candidate's best class.
        labels: (B, A) that class.
        iou_threshold: a box is dropped when it overlaps a higher-scoring box
            of its class by more than this.
        score_threshold: candidates under this score are dropped first.
        max_detections: boxes kept per image.
        pre_nms: only the highest-scoring candidates enter the suppression.

    Returns:
        `{"boxes": (B, D, 4), "labels": (B, D), "scores": (B, D)}` with
        D = max_detections, best first, padded with -1 (labels, boxes) and 0 (scores).
    """
    count = min(pre_nms, boxes.shape[1])
    scores, order = ops.top_k(scores, count)
    boxes = ops.take_along_axis(boxes, order[..., None], axis=1)
    labels = ops.take_along_axis(labels, order, axis=1)
    # Shifting class k by k × (the coordinates' whole range + 1) puts every class
    # in a region no other class reaches, so one IoU matrix is class-wise.
    span = ops.max(boxes) - ops.min(boxes) + 1.0
    shifted = boxes + ops.cast(labels, boxes.dtype)[..., None] * span
    overlaps = pairwise_iou(shifted, shifted) > iou_threshold  # (B, K, K)
    later = ops.arange(count)[None, :] > ops.arange(count)[:, None]  # j after i
    suppresses = ops.logical_and(overlaps, later[None])
    keep = scores > score_threshold

    def visit(i, keep):
        # Box i, if still kept, removes every later box it overlaps.
        row = ops.take(suppresses, i, axis=1)  # (B, K)
        kept_i = ops.take(keep, i, axis=1)[:, None]
        return ops.logical_and(keep, ops.logical_not(ops.logical_and(row, kept_i)))

    keep = ops.fori_loop(0, count, visit, keep)
    kept_scores = ops.where(keep, scores, -1.0)
    detections = min(max_detections, count)
    top_scores, top = ops.top_k(kept_scores, detections)
    found = top_scores > 0
    boxes = ops.take_along_axis(boxes, top[..., None], axis=1)
    labels = ops.take_along_axis(labels, top, axis=1)
    result = {
        "boxes": ops.where(found[..., None], boxes, -1.0),
        "labels": ops.where(found, labels, -1),
        "scores": ops.where(found, top_scores, 0.0),
    }
    if detections < max_detections:  # fewer candidates than detections asked for
        pad = max_detections - detections
        result = {
            "boxes": ops.pad(result["boxes"], [[0, 0], [0, pad], [0, 0]], constant_values=-1),
            "labels": ops.pad(result["labels"], [[0, 0], [0, pad]], constant_values=-1),
            "scores": ops.pad(result["scores"], [[0, 0], [0, pad]]),
        }
    return result
