"""Segmentation losses over integer masks and per-pixel logits, and a Dice metric.

Targets are integer class masks (B, H, W) or (B, H, W, 1); predictions are
logits (B, H, W, K). Every loss returns one value per image.
"""

import keras
from keras import ops

LOSSES = ("ce", "dice", "dice_ce", "focal")


def soft_dice(onehot, probs, smooth=1.0):
    """Per-image soft Dice averaged over classes; 1 for a class absent from both."""
    axes = (1, 2)
    intersection = ops.sum(onehot * probs, axis=axes)
    total = ops.sum(onehot, axis=axes) + ops.sum(probs, axis=axes)
    return ops.mean((2.0 * intersection + smooth) / (total + smooth), axis=-1)


@keras.saving.register_keras_serializable(package="kapps")
class SegmentationLoss(keras.losses.Loss):
    """Cross-entropy, Dice, Dice + cross-entropy or focal loss for class masks.

    Args:
        num_classes: K, the logits' last dimension.
        kind: "ce", "dice" (1 − soft Dice, Milletari et al. 2016), "dice_ce"
            (their sum) or "focal" (Lin et al. 2017, γ = `gamma`).

    Example:
    >>> import numpy as np
    >>> loss = SegmentationLoss(2, kind="dice_ce")
    >>> masks = np.zeros((1, 4, 4), "int32")
    >>> float(loss(masks, np.stack([np.full((1, 4, 4), 5.0), np.zeros((1, 4, 4))], -1))) < 0.05
    True
    """

    def __init__(self, num_classes, kind="ce", gamma=2.0, name=None, **kwargs):
        if kind not in LOSSES:
            raise ValueError(f"loss kind must be one of {LOSSES}, got {kind!r}")
        super().__init__(name=name or f"{kind}_loss", **kwargs)
        self.num_classes, self.kind, self.gamma = num_classes, kind, gamma

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        if len(y_true.shape) == len(y_pred.shape):
            y_true = ops.squeeze(y_true, axis=-1)
        y_pred = ops.cast(y_pred, "float32")
        onehot = ops.one_hot(y_true, self.num_classes)
        log_probs = ops.log_softmax(y_pred, axis=-1)
        pixel_ce = -ops.sum(onehot * log_probs, axis=-1)
        if self.kind == "focal":
            true_prob = ops.exp(-pixel_ce)
            return ops.mean((1.0 - true_prob) ** self.gamma * pixel_ce, axis=(1, 2))
        ce = ops.mean(pixel_ce, axis=(1, 2))
        if self.kind == "ce":
            return ce
        dice = 1.0 - soft_dice(onehot, ops.exp(log_probs))
        return dice if self.kind == "dice" else dice + ce

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "kind": self.kind,
            "gamma": self.gamma,
        }


@keras.saving.register_keras_serializable(package="kapps")
class MeanDice(keras.metrics.MeanIoU):
    """Mean Dice (F1) over classes from argmax predictions: 2·TP / (2·TP + FP + FN).

    Counted over every pixel seen, like `keras.metrics.MeanIoU`, whose confusion
    matrix it shares; classes absent from both truth and prediction are left out.
    """

    def __init__(self, num_classes, name="mean_dice", **kwargs):
        kwargs.setdefault("sparse_y_pred", False)
        super().__init__(num_classes, name=name, **kwargs)

    def result(self):
        matrix = ops.cast(self.total_cm, "float32")
        true_positives = ops.diagonal(matrix)
        denominator = ops.sum(matrix, axis=0) + ops.sum(matrix, axis=1)
        present = ops.cast(denominator > 0, "float32")
        dice = ops.divide_no_nan(2.0 * true_positives, denominator)
        return ops.divide_no_nan(ops.sum(dice * present), ops.sum(present))
