"""YOLO v1 (Redmon, Divvala, Girshick and Farhadi, 2016), the readable original.

"You Only Look Once: Unified, Real-Time Object Detection", CVPR 2016. The
image is divided into an S × S grid; each cell predicts B boxes (x, y within
the cell, w, h relative to the image, and a confidence that the box holds an
object, trained towards its IoU with the truth) and one set of C class
probabilities. Figure 3's network: 24 convolutional layers (1×1 reductions
followed by 3×3 convolutions, leaky ReLU 0.1) and two fully connected layers
(4,096 units with dropout 0.5, then S·S·(5B + C) linear outputs). `yolov1_tiny`
is the paper's Fast YOLO: 9 convolutional layers with fewer filters.

The loss is equation 3: squared errors, λcoord = 5 on the coordinates of the
predictor "responsible" for an object (the one of its cell with the highest
IoU), λnoobj = 0.5 on the confidence of predictors with no object, and
class errors only in cells holding an object. One deliberate difference:
the network outputs √w and √h directly (the paper regresses w, h and takes
square roots in the loss, which is undefined for a negative prediction);
the loss is the same. `predict` scores each box by confidence × class
probability and applies class-wise non-max suppression, as section 2.2 does.
"""

import keras
from keras import ops

from kapps.detection.base import Detector
from kapps.detection.boxes import pairwise_iou
from kapps.layers.common import raw_pixel_input
from kapps.registry import model_arguments, register_model

# (kernel, filters, stride) per convolution; "M" a 2×2 max pool (Figure 3).
DARKNET = [
    (7, 64, 2), "M",
    (3, 192, 1), "M",
    (1, 128, 1), (3, 256, 1), (1, 256, 1), (3, 512, 1), "M",
    *[(1, 256, 1), (3, 512, 1)] * 4, (1, 512, 1), (3, 1024, 1), "M",
    *[(1, 512, 1), (3, 1024, 1)] * 2, (3, 1024, 1), (3, 1024, 2),
    (3, 1024, 1), (3, 1024, 1),
]  # fmt: skip
FAST = [
    (3, 16, 1), "M", (3, 32, 1), "M", (3, 64, 1), "M", (3, 128, 1), "M",
    (3, 256, 1), "M", (3, 512, 1), "M", (3, 1024, 1), (3, 256, 1),
]  # fmt: skip
VARIANTS = {"yolov1": {"layers": "darknet"}, "yolov1_tiny": {"layers": "fast", "dense_units": 0}}
LAYERS = {"darknet": DARKNET, "fast": FAST}


@keras.saving.register_keras_serializable(package="kapps")
class YOLOv1(Detector):
    """The S × S grid detector; `fit` on `(images, {"boxes", "labels"})`, `predict` gives boxes.

    Args:
        input_shape: (height, width, channels) of raw 0–255 images.
        num_classes: object classes (C).
        grid: cells per side (S).
        boxes_per_cell: predictors per cell (B).
        layers: "darknet" (24 convolutions) or "fast" (9).
        width: multiplier of every convolution's filters (1.0: the paper's).
        dense_units: the hidden fully connected layer (0: none, as Fast YOLO).
        dropout: after the hidden fully connected layer.
        coord_weight, noobj_weight: λcoord and λnoobj.
        score_threshold, iou_threshold, max_detections: what `predict` keeps.
    """

    config_keys = (
        "grid",
        "boxes_per_cell",
        "layers",
        "width",
        "dense_units",
        "dropout",
        "coord_weight",
        "noobj_weight",
    )
    config_attributes = {"layers": "layers_kind"}

    def __init__(
        self,
        input_shape,
        num_classes,
        grid=7,
        boxes_per_cell=2,
        layers="darknet",
        width=1.0,
        dense_units=4096,
        dropout=0.5,
        coord_weight=5.0,
        noobj_weight=0.5,
        score_threshold=0.2,
        iou_threshold=0.5,
        max_detections=100,
        **kwargs,
    ):
        if layers not in LAYERS:
            raise ValueError(f"layers must be one of {sorted(LAYERS)}, got {layers!r}")
        inputs, x = raw_pixel_input(input_shape, scale=1 / 255, offset=0.0)
        index = 0
        for spec in LAYERS[layers]:
            if spec == "M":
                x = keras.layers.MaxPooling2D(2, name=f"pool{index}")(x)
                continue
            kernel, filters, stride = spec
            index += 1
            x = keras.layers.Conv2D(
                max(8, int(filters * width)), kernel, stride, padding="same", name=f"conv{index}"
            )(x)
            x = keras.layers.LeakyReLU(0.1, name=f"conv{index}_leaky")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        if dense_units:
            x = keras.layers.Dense(dense_units, name="fc1")(x)
            x = keras.layers.LeakyReLU(0.1, name="fc1_leaky")(x)
            x = keras.layers.Dropout(dropout, name="fc1_dropout")(x)
        x = keras.layers.Dense(grid * grid * (5 * boxes_per_cell + num_classes), name="fc2")(x)
        outputs = keras.layers.Reshape(
            (grid, grid, 5 * boxes_per_cell + num_classes), dtype="float32", name="predictions"
        )(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.image_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.grid = grid
        self.boxes_per_cell = boxes_per_cell
        self.layers_kind = layers
        self.width = width
        self.dense_units = dense_units
        self.dropout = dropout
        self.coord_weight = coord_weight
        self.noobj_weight = noobj_weight
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections

    def _cells(self):
        """Each cell's (column, row) offsets, (S·S, 1, 2), row-major."""
        rows, cols = ops.meshgrid(ops.arange(self.grid), ops.arange(self.grid), indexing="ij")
        return ops.cast(ops.stack([ops.ravel(cols), ops.ravel(rows)], -1), "float32")[:, None]

    def decode(self, raw):
        """`(boxes (B, S·S, b, 4) xyxy pixels, confidence (B, S·S, b), classes (B, S·S, C),
        raw box values (B, S·S, b, 5))`."""
        raw = ops.reshape(raw, (-1, self.grid * self.grid, raw.shape[-1]))
        values = ops.reshape(
            raw[..., : 5 * self.boxes_per_cell], (-1, self.grid**2, self.boxes_per_cell, 5)
        )
        height, width = self.image_shape[:2]
        size = ops.convert_to_tensor([width, height], "float32")
        centre = (self._cells() + values[..., :2]) / self.grid * size
        extent = ops.square(values[..., 2:4]) * size
        boxes = ops.concatenate([centre - extent / 2, centre + extent / 2], axis=-1)
        return boxes, values[..., 4], raw[..., 5 * self.boxes_per_cell :], values

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Equation 3 of the paper, summed over cells, averaged over images."""
        boxes, confidence, classes, values = self.decode(ops.cast(y_pred, "float32"))
        gt_boxes = ops.cast(y["boxes"], "float32")
        gt_labels = ops.cast(y["labels"], "int32")
        height, width = self.image_shape[:2]
        size = ops.convert_to_tensor([width, height], "float32")
        centres = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2 / size * self.grid  # in cells
        cell_xy = ops.clip(ops.floor(centres), 0, self.grid - 1)
        cell = ops.cast(cell_xy[..., 1] * self.grid + cell_xy[..., 0], "int32")
        present = ops.logical_and(gt_labels >= 0, gt_boxes[..., 2] > gt_boxes[..., 0])
        # (B, N, S·S): which cell each object's centre falls in; one object per cell.
        in_cell = ops.one_hot(cell, self.grid**2) * ops.cast(present, "float32")[..., None]
        owner = ops.argmax(in_cell, axis=1)  # (B, S·S)
        has_object = ops.cast(ops.max(in_cell, axis=1) > 0, "float32")
        target_box = ops.take_along_axis(gt_boxes, owner[..., None], axis=1)  # (B, S·S, 4)
        target_centre = ops.take_along_axis(centres, owner[..., None], axis=1)
        target_class = ops.take_along_axis(ops.maximum(gt_labels, 0), owner, axis=1)

        cells = self.grid**2
        overlaps = pairwise_iou(  # (B·S·S, 1, b): each cell's truth against its predictors
            ops.reshape(target_box, (-1, 1, 4)), ops.reshape(boxes, (-1, self.boxes_per_cell, 4))
        )
        overlaps = ops.reshape(overlaps, (-1, cells, self.boxes_per_cell))
        overlaps = ops.stop_gradient(ops.maximum(overlaps, 0.0))
        responsible = ops.one_hot(ops.argmax(overlaps, axis=-1), self.boxes_per_cell)
        responsible = responsible * has_object[..., None]  # 1obj_ij
        in_cell_xy = target_centre - ops.floor(target_centre)
        root_wh = ops.sqrt((target_box[..., 2:] - target_box[..., :2]) / size)
        coords = ops.sum(ops.square(values[..., :2] - in_cell_xy[:, :, None]), -1)
        coords += ops.sum(ops.square(values[..., 2:4] - root_wh[:, :, None]), -1)
        object_conf = ops.square(confidence - overlaps)
        empty_conf = ops.square(confidence)
        class_error = ops.sum(ops.square(classes - ops.one_hot(target_class, self.num_classes)), -1)
        loss = (
            self.coord_weight * ops.sum(responsible * coords)
            + ops.sum(responsible * object_conf)
            + self.noobj_weight * ops.sum((1 - responsible) * empty_conf)
            + ops.sum(has_object * class_error)
        ) / ops.cast(ops.shape(gt_boxes)[0], "float32")
        for extra in self.losses:
            loss = loss + ops.cast(ops.sum(extra), loss.dtype)
        return loss

    def boxes_and_scores(self, raw):
        """Section 2.2: each box's class scores are its confidence × the cell's class
        probabilities."""
        boxes, confidence, classes, _ = self.decode(raw)
        scores = confidence[..., None] * classes[:, :, None, :]  # (B, S·S, b, C)
        count = self.grid**2 * self.boxes_per_cell
        return ops.reshape(boxes, (-1, count, 4)), ops.reshape(
            scores, (-1, count, self.num_classes)
        )


@register_model(
    "detection",
    variants=VARIANTS,
    test_kwargs={"input_shape": (64, 64, 3), "num_classes": 3, "width": 0.125, "dense_units": 32},
    min_input_size=64,
)
def yolov1(input_shape=(448, 448, 3), num_classes=20, *, name=None, **overrides):
    """Build YOLO v1 (the paper: 448×448, S = 7, B = 2, C = 20 for VOC).

    Args:
        input_shape: (height, width, channels).
        num_classes: C.
        name: model name; None: "yolov1" or "yolov1_tiny".
        **overrides: any `YOLOv1` argument: `layers` ("darknet", Figure 3's 24
            convolutions, or "fast", Fast YOLO's 9), `grid` and
            `boxes_per_cell` (S and B), `width` (filter multiplier),
            `dense_units` (hidden fully connected units, 0: none), `dropout`,
            `score_threshold`, `iou_threshold`, `max_detections`.

    Example:
    >>> model = yolov1((64, 64, 3), 3, layers="fast", width=0.125, dense_units=0)
    >>> model.output_shape
    (None, 7, 7, 13)
    """
    args = model_arguments(overrides, YOLOv1)
    default = "yolov1" if args.get("layers", "darknet") == "darknet" else "yolov1_tiny"
    return YOLOv1(input_shape, num_classes, **args, name=name or default)
