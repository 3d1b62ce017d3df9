"""A single-stage, anchor-free detector in the style of the modern YOLO family.

The layout is YOLOv8's (Ultralytics, 2023; no paper — the reference is its
model file): a CSP-Darknet backbone of C2f blocks and an SPPF block, a PAN
neck (top-down then bottom-up fusion of strides 8/16/32), and a decoupled
head per stride, one branch for the box (a distribution over `reg_max`
distance bins per side, "distribution focal loss", Li et al. 2020) and one for
the classes. Labels are assigned task-aligned (`kapps.detection.assign`); the
loss is 7.5 × CIoU + 0.5 × BCE + 1.5 × DFL, as YOLOv8 weighs them. Sizes n/s/m
are rows of width and depth multipliers: at 640×640 with 80 classes yolo_n has
YOLOv8n's 3,157,200 parameters (its 3,157,184 trainable ones, tested; the
remaining 16 are the fixed bin values of its DFL layer, a constant here).

Any registered classification model can replace the backbone
(`backbone="resnet50"`): its last feature maps at strides 8, 16 and 32 feed
the neck.

`predict` returns final detections — `{"boxes", "labels", "scores"}`, boxes
`xyxy` in input pixels, padded with -1 — decoded and passed through
class-wise non-max suppression inside the model's predict step, so a saved
`.keras` file predicts boxes directly.
"""

import math

import keras
from keras import ops

from kapps.detection.assign import task_aligned_targets
from kapps.detection.base import Detector
from kapps.detection.boxes import (
    anchor_points,
    boxes_to_distances,
    ciou,
    distances_to_boxes,
)
from kapps.features import feature_layers
from kapps.layers.common import raw_pixel_input
from kapps.registry import create_model, register_model, variant_arguments

VARIANTS = {  # YOLOv8's n/s/m rows: depth and width multiples, widest layer
    "yolo_n": {"depth_multiple": 0.33, "width_multiple": 0.25, "max_channels": 1024},
    "yolo_s": {"depth_multiple": 0.33, "width_multiple": 0.50, "max_channels": 1024},
    "yolo_m": {"depth_multiple": 0.67, "width_multiple": 0.75, "max_channels": 768},
}
STRIDES = (8, 16, 32)
BACKBONE = ((64, 0), (128, 3), (256, 6), (512, 6), (1024, 3))  # (width, C2f blocks) per stride
LOSS_WEIGHTS = {"box": 7.5, "cls": 0.5, "dfl": 1.5}


def _width(channels, width_multiple, max_channels):
    """YOLOv8's channel rule: scale, cap, and round up to a multiple of 8."""
    return int(math.ceil(min(channels, max_channels) * width_multiple / 8) * 8)


def _repeats(count, depth_multiple):
    return max(round(count * depth_multiple), 1) if count else 0


def conv(x, filters, kernel, stride=1, *, name):
    """Convolution, batch norm, SiLU: YOLO's `Conv`."""
    x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.97, name=f"{name}_bn")(x)
    return keras.layers.Activation("silu", name=f"{name}_silu")(x)


def c2f(x, filters, blocks, shortcut, *, name):
    """CSP bottleneck with two convolutions, every block's output kept ("C2f").

    The 1×1 input convolution's two halves are two convolutions here (the same
    weights and function, without a split layer).
    """
    hidden = filters // 2
    parts = [conv(x, hidden, 1, name=f"{name}_cv1a"), conv(x, hidden, 1, name=f"{name}_cv1b")]
    for i in range(blocks):
        y = conv(parts[-1], hidden, 3, name=f"{name}_m{i}_cv1")
        y = conv(y, hidden, 3, name=f"{name}_m{i}_cv2")
        if shortcut:
            y = keras.layers.Add(name=f"{name}_m{i}_add")([parts[-1], y])
        parts.append(y)
    x = keras.layers.Concatenate(name=f"{name}_concat")(parts)
    return conv(x, filters, 1, name=f"{name}_cv2")


def sppf(x, filters, *, name):
    """Spatial pyramid pooling, fast: three chained 5×5 max pools, concatenated."""
    x = conv(x, x.shape[-1] // 2, 1, name=f"{name}_cv1")
    pooled = [x]
    for i in range(3):
        pooled.append(
            keras.layers.MaxPooling2D(5, 1, padding="same", name=f"{name}_pool{i}")(pooled[-1])
        )
    x = keras.layers.Concatenate(name=f"{name}_concat")(pooled)
    return conv(x, filters, 1, name=f"{name}_cv2")


def csp_darknet(x, depth_multiple, width_multiple, max_channels):
    """YOLOv8's backbone: the feature maps at strides 8, 16 and 32."""
    features = []
    for level, (channels, blocks) in enumerate(BACKBONE, start=1):
        filters = _width(channels, width_multiple, max_channels)
        x = conv(x, filters, 3, 2, name=f"stem{level}" if level < 3 else f"down{level}")
        if blocks:
            x = c2f(x, filters, _repeats(blocks, depth_multiple), True, name=f"stage{level}")
        if level == 5:
            x = sppf(x, filters, name="sppf")
        if level >= 3:
            features.append(x)
    return features


def pan_neck(features, depth_multiple, width_multiple, max_channels):
    """Top-down then bottom-up fusion (FPN + PAN) of the stride 8/16/32 maps."""
    p3, p4, p5 = features
    blocks = _repeats(3, depth_multiple)
    widths = [_width(c, width_multiple, max_channels) for c in (256, 512, 1024)]
    up = keras.layers.UpSampling2D(2, name="neck_up1")(p5)
    t4 = c2f(
        keras.layers.Concatenate(name="neck_cat1")([up, p4]),
        widths[1],
        blocks,
        False,
        name="neck_td4",
    )
    up = keras.layers.UpSampling2D(2, name="neck_up2")(t4)
    n3 = c2f(
        keras.layers.Concatenate(name="neck_cat2")([up, p3]),
        widths[0],
        blocks,
        False,
        name="neck_out3",
    )
    down = conv(n3, widths[0], 3, 2, name="neck_down3")
    n4 = c2f(
        keras.layers.Concatenate(name="neck_cat3")([down, t4]),
        widths[1],
        blocks,
        False,
        name="neck_out4",
    )
    down = conv(n4, widths[1], 3, 2, name="neck_down4")
    n5 = c2f(
        keras.layers.Concatenate(name="neck_cat4")([down, p5]),
        widths[2],
        blocks,
        False,
        name="neck_out5",
    )
    return [n3, n4, n5]


def detect_head(features, num_classes, reg_max, image_side):
    """Decoupled box and class branches per level → (B, anchors, 4·reg_max + classes)."""
    box_width = max(16, features[0].shape[-1] // 4, reg_max * 4)
    cls_width = max(features[0].shape[-1], min(num_classes, 100))
    outputs = []
    for x, stride in zip(features, STRIDES, strict=True):
        level = f"head_p{stride.bit_length() - 1}"
        box = conv(x, box_width, 3, name=f"{level}_box1")
        box = conv(box, box_width, 3, name=f"{level}_box2")
        box = keras.layers.Conv2D(4 * reg_max, 1, bias_initializer="ones", name=f"{level}_box_out")(
            box
        )
        cls = conv(x, cls_width, 3, name=f"{level}_cls1")
        cls = conv(cls, cls_width, 3, name=f"{level}_cls2")
        # Start near 5 objects per image, so early class losses do not swamp the box loss.
        prior = math.log(5 / num_classes / (image_side / stride) ** 2)
        cls = keras.layers.Conv2D(
            num_classes,
            1,
            bias_initializer=keras.initializers.Constant(prior),
            name=f"{level}_cls_out",
        )(cls)
        both = keras.layers.Concatenate(name=f"{level}_concat")([box, cls])
        outputs.append(
            keras.layers.Reshape((-1, 4 * reg_max + num_classes), name=f"{level}_flat")(both)
        )
    return keras.layers.Concatenate(axis=1, dtype="float32", name="predictions")(outputs)


@keras.saving.register_keras_serializable(package="kapps")
class YOLO(Detector):
    """The detector; `fit` on `(images, {"boxes", "labels"})`, `predict` gives boxes.

    Args:
        input_shape: (height, width, channels) of raw 0–255 images; sides
            divisible by 32.
        num_classes: object classes (no background class).
        backbone: "csp" (YOLOv8's CSP-Darknet) or a registered classification
            model name, built headless.
        depth_multiple, width_multiple, max_channels: the size row.
        reg_max: distance bins per box side (distribution focal loss).
        score_threshold, iou_threshold, max_detections: what `predict` keeps.
        top_k: positives per ground-truth box in the label assignment.
        loss_weights: `{"box", "cls", "dfl"}` weights of the three losses.
        encoder_weights: the named backbone's `weights` (`"imagenet"`, a path
            or a keras-hub preset); not saved in the config (a saved model
            holds its own weights).
    """

    config_keys = (
        "backbone",
        "depth_multiple",
        "width_multiple",
        "max_channels",
        "reg_max",
        "top_k",
        "loss_weights",
    )

    def __init__(
        self,
        input_shape,
        num_classes,
        backbone="csp",
        depth_multiple=0.33,
        width_multiple=0.25,
        max_channels=1024,
        reg_max=16,
        score_threshold=0.25,
        iou_threshold=0.7,
        max_detections=100,
        top_k=10,
        loss_weights=None,
        encoder_weights=None,
        **kwargs,
    ):
        input_shape = tuple(input_shape)
        if input_shape[0] % 32 or input_shape[1] % 32:
            raise ValueError(f"input sides must be multiples of 32, got {input_shape[:2]}")
        if reg_max < 2:
            raise ValueError(f"reg_max must be at least 2, got {reg_max}")
        if backbone == "csp":
            if encoder_weights is not None:
                raise ValueError(
                    "encoder_weights needs a registered classification backbone: YOLOv8's "
                    "CSP-Darknet has no public Keras checkpoint"
                )
            inputs, x = raw_pixel_input(input_shape, scale=1 / 255, offset=0.0)
            features = csp_darknet(x, depth_multiple, width_multiple, max_channels)
        else:
            body = create_model(
                backbone, input_shape=input_shape, include_top=False, weights=encoder_weights
            )
            by_stride = feature_layers(body)
            missing = [s for s in STRIDES if s not in by_stride]
            if missing:
                raise ValueError(f"backbone {backbone!r} has no feature map at strides {missing}")
            inputs = body.inputs[0]
            features = [body.get_layer(by_stride[s]).output for s in STRIDES]
        features = pan_neck(features, depth_multiple, width_multiple, max_channels)
        outputs = detect_head(features, num_classes, reg_max, max(input_shape[:2]))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.image_shape = input_shape
        self.num_classes = num_classes
        self.backbone = backbone
        self.depth_multiple = depth_multiple
        self.width_multiple = width_multiple
        self.max_channels = max_channels
        self.reg_max = reg_max
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.top_k = top_k
        self.loss_weights = {**LOSS_WEIGHTS, **(loss_weights or {})}
        points, strides = anchor_points(input_shape[:2], STRIDES)
        self._points, self._strides = points, strides[:, None]

    # Decoding ------------------------------------------------------------------
    def _anchors(self):
        """The anchor points and their strides as tensors (a NumPy array on the left of
        a torch tensor would turn the tensor into NumPy)."""
        return ops.convert_to_tensor(self._points, "float32"), ops.convert_to_tensor(
            self._strides, "float32"
        )

    def decode(self, raw):
        """Raw head outputs → `(boxes (B, A, 4) xyxy pixels, class logits (B, A, C),
        bin logits (B, A, 4, reg_max))`."""
        points, strides = self._anchors()
        bins = ops.reshape(raw[..., : 4 * self.reg_max], (-1, len(self._points), 4, self.reg_max))
        values = ops.arange(self.reg_max, dtype=raw.dtype)
        distances = ops.sum(ops.softmax(bins, axis=-1) * values, axis=-1) * strides
        boxes = distances_to_boxes(distances, points)
        return boxes, raw[..., 4 * self.reg_max :], bins

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """7.5 × CIoU + 0.5 × BCE + 1.5 × DFL over task-aligned targets.

        `y` is `{"boxes": (B, N, 4) xyxy pixels, "labels": (B, N)}` padded with -1.
        """
        boxes, logits, bins = self.decode(ops.cast(y_pred, "float32"))
        points, strides = self._anchors()
        targets, target_scores, foreground = task_aligned_targets(
            ops.stop_gradient(ops.sigmoid(logits)),
            ops.stop_gradient(boxes),
            points,
            ops.cast(y["boxes"], "float32"),
            y["labels"],
            self.num_classes,
            top_k=self.top_k,
        )
        total = ops.maximum(ops.sum(target_scores), 1.0)
        cls_loss = (
            ops.sum(
                keras.losses.binary_crossentropy(
                    target_scores[..., None], logits[..., None], from_logits=True
                )
            )
            / total
        )
        weight = ops.sum(target_scores, axis=-1) * ops.cast(foreground, "float32")
        box_loss = ops.sum((1.0 - ciou(boxes, targets)) * weight) / total
        target_bins = ops.clip(
            boxes_to_distances(targets, points) / strides, 0.0, self.reg_max - 1.01
        )
        left = ops.floor(target_bins)
        log_probs = ops.log_softmax(bins, axis=-1)
        left_index = ops.cast(left, "int32")[..., None]
        dfl = -(
            ops.take_along_axis(log_probs, left_index, axis=-1)[..., 0] * (left + 1 - target_bins)
            + ops.take_along_axis(log_probs, left_index + 1, axis=-1)[..., 0] * (target_bins - left)
        )
        dfl_loss = ops.sum(ops.mean(dfl, axis=-1) * weight) / total
        w = self.loss_weights
        loss = w["box"] * box_loss + w["cls"] * cls_loss + w["dfl"] * dfl_loss
        for extra in self.losses:
            loss = loss + ops.cast(ops.sum(extra), loss.dtype)
        return loss

    def boxes_and_scores(self, raw):
        boxes, logits, _ = self.decode(raw)
        return boxes, ops.sigmoid(logits)


@register_model(
    "detection",
    variants={name: {"variant": name} for name in VARIANTS},
    test_kwargs={"input_shape": (64, 64, 3), "num_classes": 3, "width_multiple": 0.0625},
    min_input_size=64,
)
def yolo(input_shape=(640, 640, 3), num_classes=80, *, variant="yolo_n", name=None, **overrides):
    """Build a YOLO detector: a row of `VARIANTS` with any `YOLO` argument overriding it.

    Args:
        input_shape: (height, width, channels), sides divisible by 32.
        num_classes: object classes.
        variant: `yolo_n`, `yolo_s` or `yolo_m`.
        name: model name; None: the variant.
        **overrides: `depth_multiple`, `width_multiple`, `max_channels` (the
            variant's), `backbone` ("csp", or a registered classification
            model), `reg_max` (distance bins per box side), `score_threshold`,
            `iou_threshold`, `max_detections` (non-max suppression), `top_k`
            (positives per box in the assignment), `loss_weights` (overrides of
            `{"box": 7.5, "cls": 0.5, "dfl": 1.5}`).

    Example:
    >>> model = yolo((64, 64, 3), num_classes=2, width_multiple=0.0625)
    >>> model.output_shape  # 8² + 4² + 2² anchor points, 4 × 16 bins + 2 classes
    (None, 84, 66)
    """
    args = variant_arguments(VARIANTS, variant, overrides, YOLO)
    return YOLO(input_shape, num_classes, **args, name=name or variant)
