"""Task-aligned label assignment (TOOD, Feng et al. 2021), as the YOLOv8 family uses it.

Each ground-truth box takes as positives the `top_k` anchor points inside it
that best align classification and localisation: score^alpha × IoU^beta,
where score is the predicted probability of the box's class and IoU that of
the predicted box. An anchor claimed by several boxes goes to the one it
overlaps most. The soft class target of a positive is its alignment,
rescaled so that each box's best anchor gets that box's best IoU.
"""

from keras import ops

from kapps.detection.boxes import EPSILON, pairwise_iou, valid_boxes


def task_aligned_targets(
    scores, pred_boxes, points, gt_boxes, gt_labels, num_classes, top_k=10, alpha=0.5, beta=6.0
):
    """Targets of every anchor point.

    Args:
        scores: (B, A, C) predicted class probabilities.
        pred_boxes: (B, A, 4) predicted xyxy boxes (no gradient needed).
        points: (A, 2) anchor centres.
        gt_boxes: (B, N, 4) xyxy ground truth, padded.
        gt_labels: (B, N) classes, -1 for padding.

    Returns:
        `(target_boxes (B, A, 4), target_scores (B, A, C), foreground (B, A))`.
    """
    gt_labels = ops.cast(gt_labels, "int32")
    present = valid_boxes(gt_boxes, gt_labels)  # (B, N)
    # Anchor points strictly inside each box.
    x = points[None, None, :, 0]
    y = points[None, None, :, 1]
    inside = ops.minimum(
        ops.minimum(x - gt_boxes[..., 0:1], y - gt_boxes[..., 1:2]),
        ops.minimum(gt_boxes[..., 2:3] - x, gt_boxes[..., 3:4] - y),
    )
    candidates = ops.logical_and(inside > EPSILON, present[..., None])  # (B, N, A)
    candidate_weight = ops.cast(candidates, scores.dtype)

    overlaps = ops.maximum(pairwise_iou(gt_boxes, pred_boxes), 0.0) * candidate_weight
    safe_labels = ops.maximum(gt_labels, 0)
    class_scores = ops.take_along_axis(
        ops.transpose(scores, (0, 2, 1)), safe_labels[..., None], axis=1
    )  # (B, N, A): each anchor's probability of the box's class
    alignment = ops.power(class_scores, alpha) * ops.power(overlaps, beta) * candidate_weight

    count = min(top_k, points.shape[0])
    _, best = ops.top_k(alignment, count)  # (B, N, k)
    chosen = ops.sum(ops.one_hot(best, points.shape[0], dtype=scores.dtype), axis=2)
    positive = chosen * candidate_weight * ops.cast(alignment > 0, scores.dtype)  # (B, N, A)

    # An anchor claimed by several boxes keeps the one it overlaps most.
    claims = ops.sum(positive, axis=1, keepdims=True)  # (B, 1, A)
    most = ops.one_hot(ops.argmax(overlaps, axis=1), gt_boxes.shape[1], axis=1)
    positive = ops.where(claims > 1, ops.cast(most, scores.dtype), positive)
    foreground = ops.sum(positive, axis=1) > 0  # (B, A)
    owner = ops.argmax(positive, axis=1)  # (B, A)

    target_boxes = ops.take_along_axis(gt_boxes, owner[..., None], axis=1)
    target_labels = ops.take_along_axis(safe_labels, owner, axis=1)

    alignment = alignment * positive
    best_alignment = ops.max(alignment, axis=2, keepdims=True)  # (B, N, 1)
    best_overlap = ops.max(overlaps * positive, axis=2, keepdims=True)
    normalised = ops.max(alignment * best_overlap / (best_alignment + EPSILON), axis=1)  # (B, A)
    normalised = normalised * ops.cast(foreground, scores.dtype)
    target_scores = ops.one_hot(target_labels, num_classes, dtype=scores.dtype)
    target_scores = target_scores * normalised[..., None]
    return target_boxes, target_scores, foreground
