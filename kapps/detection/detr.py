"""DETR: end-to-end detection with transformers (Carion et al., 2020).

"End-to-End Object Detection with Transformers", ECCV 2020. A CNN backbone's
stride-32 map, projected to `hidden_dim` by a 1×1 convolution, flattened and
given fixed 2-D sine position encodings, goes through a transformer encoder;
a decoder turns `num_queries` learnt object queries into as many predictions,
each a class (with a "no object" class) and a box (centre x, y, width,
height relative to the image, from a 3-layer MLP with a sigmoid). Layers are
post-norm with the position encodings added to queries and keys at every
layer, as the paper's section A.3 describes.

Training matches predictions to ground truth one-to-one with the Hungarian
algorithm (scipy's `linear_sum_assignment`) on the cost
1 × (−class probability) + 5 × L1 + 2 × (−generalised IoU), then minimises
cross-entropy (the "no object" class weighted 0.1) + 5 × L1 + 2 × GIoU loss on
the matched pairs, after each decoder layer (auxiliary losses). The matching
runs on the host (scipy): by itself a DETR trains eagerly; given a
`host_callback` (the pipelines set one: `tf.numpy_function`,
`jax.pure_callback`) its train step is traced, though not XLA-compiled under
TensorFlow.
"""

import keras
import numpy as np
from keras import ops
from scipy.optimize import linear_sum_assignment

from kapps.detection.base import Detector
from kapps.detection.boxes import EPSILON
from kapps.detection.detr_layers import (
    Constant,
    DetrDecoderLayer,
    DetrEncoderLayer,
    sine_position_encoding,
)
from kapps.features import feature_layers
from kapps.registry import create_model, register_model, variant_arguments

VARIANTS = {
    "detr_resnet50": {  # the paper's
        "backbone": "resnet50",
        "hidden_dim": 256,
        "encoder_layers": 6,
        "decoder_layers": 6,
        "heads": 8,
        "ffn_dim": 2048,
        "num_queries": 100,
    },
    "detr_tiny": {  # CPU-sized
        "backbone": "resnet18",
        "hidden_dim": 128,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "heads": 4,
        "ffn_dim": 512,
        "num_queries": 20,
    },
}
COST = {"class": 1.0, "l1": 5.0, "giou": 2.0}
NO_OBJECT_WEIGHT = 0.1


def _cxcywh_to_xyxy(boxes):
    centre, size = boxes[..., :2], boxes[..., 2:]
    return ops.concatenate([centre - size / 2, centre + size / 2], axis=-1)


def generalized_iou(boxes1, boxes2):
    """GIoU of every box of (…, M, 4) with every box of (…, N, 4), xyxy → (…, M, N)."""
    a, b = boxes1[..., :, None, :], boxes2[..., None, :, :]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    inner = ops.maximum(
        ops.minimum(a[..., 2:], b[..., 2:]) - ops.maximum(a[..., :2], b[..., :2]), 0
    )
    intersection = inner[..., 0] * inner[..., 1]
    union = area_a + area_b - intersection
    iou = intersection / (union + EPSILON)
    outer = ops.maximum(a[..., 2:], b[..., 2:]) - ops.minimum(a[..., :2], b[..., :2])
    hull = outer[..., 0] * outer[..., 1]
    return iou - (hull - union) / (hull + EPSILON)


def hungarian_match(cost, valid):
    """Per image, the truth each query is matched to, minimising the summed cost.

    Args:
        cost: (B, Q, N) numpy costs.
        valid: (B, N) which truths are real (not padding).

    Returns:
        (B, Q) int32: the matched truth's index, or -1 for a query left unmatched.
    """
    cost, valid = np.asarray(cost, np.float64), np.asarray(valid, bool)
    assignment = np.full(cost.shape[:2], -1, np.int32)
    for image, (image_cost, image_valid) in enumerate(zip(cost, valid, strict=True)):
        columns = np.flatnonzero(image_valid)
        rows, picked = linear_sum_assignment(image_cost[:, columns])
        assignment[image, rows] = columns[picked]
    return assignment


@keras.saving.register_keras_serializable(package="kapps")
class DETR(Detector):
    """DETR; `fit` on `(images, {"boxes", "labels"})`, `predict` gives boxes.

    Args:
        input_shape: raw 0–255 images, sides divisible by 32.
        num_classes: object classes; one more "no object" class is added.
        backbone: a registered classification model name, built headless.
        hidden_dim, encoder_layers, decoder_layers, heads, ffn_dim, num_queries,
        dropout: the transformer's sizes.
        feature_stride: the backbone map the transformer reads: 32 (the paper),
            or 16 for small objects (its DC5 variant's resolution).
        score_threshold, iou_threshold, max_detections: what `predict` keeps
            (DETR needs no suppression; a loose IoU threshold of 0.9 only
            removes exact duplicates).
        encoder_weights: the backbone's `weights` (`"imagenet"`, a path or a
            keras-hub preset); not saved in the config (a saved model holds
            its own weights).
    """

    config_keys = (
        "backbone",
        "hidden_dim",
        "encoder_layers",
        "decoder_layers",
        "heads",
        "ffn_dim",
        "num_queries",
        "dropout",
        "feature_stride",
    )

    def __init__(
        self,
        input_shape,
        num_classes,
        backbone="resnet50",
        hidden_dim=256,
        encoder_layers=6,
        decoder_layers=6,
        heads=8,
        ffn_dim=2048,
        num_queries=100,
        dropout=0.1,
        feature_stride=32,
        score_threshold=0.3,
        iou_threshold=0.9,
        max_detections=100,
        encoder_weights=None,
        **kwargs,
    ):
        input_shape = tuple(input_shape)
        if input_shape[0] % 32 or input_shape[1] % 32:
            raise ValueError(f"input sides must be multiples of 32, got {input_shape[:2]}")
        body = create_model(
            backbone,
            input_shape=input_shape,
            include_top=False,
            name="backbone",
            weights=encoder_weights,
        )
        if feature_stride != 32:  # an earlier map, as the paper's DC5 variant (stride 16)
            by_stride = feature_layers(body)
            if feature_stride not in by_stride:
                raise ValueError(f"backbone {backbone!r} has no map at stride {feature_stride}")
            body = keras.Model(
                body.inputs, body.get_layer(by_stride[feature_stride]).output, name="backbone"
            )
        images = keras.Input(input_shape, name="image")
        features = body(images)
        height, width = features.shape[1:3]
        x = keras.layers.Conv2D(hidden_dim, 1, name="input_projection")(features)
        memory = keras.layers.Reshape((height * width, hidden_dim), name="flatten")(x)
        position = Constant(
            height * width,
            hidden_dim,
            sine_position_encoding(height, width, hidden_dim),
            name="position_encoding",
        )(memory)
        for i in range(encoder_layers):
            memory = DetrEncoderLayer(heads, ffn_dim, dropout, name=f"encoder_{i}")(
                memory, position
            )
        queries = Constant(num_queries, hidden_dim, name="object_queries")(memory)
        target = queries
        norm = keras.layers.LayerNormalization(epsilon=1e-5, name="decoder_norm")
        class_head = keras.layers.Dense(num_classes + 1, name="class_head")
        box_mlp = [
            keras.layers.Dense(hidden_dim, activation="relu", name="box_mlp1"),
            keras.layers.Dense(hidden_dim, activation="relu", name="box_mlp2"),
            keras.layers.Dense(4, activation="sigmoid", name="box_mlp3"),
        ]
        per_layer = []
        for i in range(decoder_layers):
            target = DetrDecoderLayer(heads, ffn_dim, dropout, first=i == 0, name=f"decoder_{i}")(
                target, memory, queries, position
            )
            decoded = norm(target)
            boxes = decoded
            for layer in box_mlp:
                boxes = layer(boxes)
            per_layer.append(
                keras.layers.Concatenate(name=f"outputs_{i}")([class_head(decoded), boxes])
            )
        stacked = keras.layers.Concatenate(axis=1, dtype="float32", name="predictions")(per_layer)
        super().__init__(inputs=images, outputs=stacked, **kwargs)
        self.image_shape = input_shape
        self.num_classes = num_classes
        self.backbone = backbone
        self.hidden_dim = hidden_dim
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.heads = heads
        self.ffn_dim = ffn_dim
        self.num_queries = num_queries
        self.dropout = dropout
        self.feature_stride = feature_stride
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections

    # The Hungarian matching is NumPy code on the host. By itself a DETR therefore trains
    # eagerly; an engine that can run host code inside a traced step sets
    # `host_callback(fn, *args, shape=, dtype=)` (pipelines.hostcall does, per backend),
    # and the step is traced — but not XLA-compiled under TensorFlow.
    host_callback = None

    @property
    def run_eagerly(self):
        return self.host_callback is None or bool(getattr(self, "_eager_asked", False))

    @run_eagerly.setter
    def run_eagerly(self, value):
        self._eager_asked = value

    @property
    def jit_compile(self):
        return keras.backend.backend() != "tensorflow" and bool(super().jit_compile)

    @jit_compile.setter
    def jit_compile(self, value):
        keras.Model.jit_compile.fset(self, value)

    def _layers_of(self, outputs):
        """(B, L·Q, C + 5) → per decoder layer `(class logits (B, Q, C+1), boxes (B, Q, 4))`."""
        outputs = ops.reshape(
            outputs, (-1, self.decoder_layers, self.num_queries, self.num_classes + 5)
        )
        return [(outputs[:, i, :, :-4], outputs[:, i, :, -4:]) for i in range(self.decoder_layers)]

    def _match(self, cost, valid):
        if self.host_callback is None:  # eager: plain NumPy
            found = hungarian_match(ops.convert_to_numpy(cost), ops.convert_to_numpy(valid))
            return ops.convert_to_tensor(found)
        shape = (ops.shape(cost)[0], self.num_queries)
        return self.host_callback(hungarian_match, cost, valid, shape=shape, dtype="int32")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        height, width = self.image_shape[:2]
        scale = ops.convert_to_tensor([width, height, width, height], "float32")
        gt_boxes = ops.cast(y["boxes"], "float32") / scale  # relative xyxy
        gt_labels = ops.cast(y["labels"], "int32")
        valid = ops.logical_and(gt_labels >= 0, gt_boxes[..., 2] > gt_boxes[..., 0])
        count = ops.maximum(ops.sum(ops.cast(valid, "float32")), 1.0)
        total = 0.0
        for logits, boxes in self._layers_of(ops.cast(y_pred, "float32")):
            boxes = _cxcywh_to_xyxy(boxes)
            probs = ops.softmax(logits, axis=-1)
            truth_classes = ops.broadcast_to(
                ops.maximum(gt_labels, 0)[:, None, :],
                (ops.shape(probs)[0], self.num_queries, ops.shape(gt_labels)[1]),
            )
            cost = (
                -COST["class"] * ops.take_along_axis(probs, truth_classes, axis=-1)
                + COST["l1"] * ops.sum(ops.abs(boxes[:, :, None] - gt_boxes[:, None]), axis=-1)
                - COST["giou"] * generalized_iou(boxes, gt_boxes)
            )
            assignment = self._match(ops.stop_gradient(cost), valid)  # (B, Q), -1: none
            matched = assignment >= 0
            truth_index = ops.maximum(assignment, 0)
            targets = ops.where(
                matched,
                ops.take_along_axis(gt_labels, truth_index, axis=1),
                self.num_classes,  # "no object"
            )
            per_query = keras.losses.sparse_categorical_crossentropy(
                targets, logits, from_logits=True
            )
            weights = ops.where(matched, 1.0, NO_OBJECT_WEIGHT)
            class_loss = ops.sum(per_query * weights) / ops.sum(weights)
            truth = ops.take_along_axis(gt_boxes, truth_index[..., None], axis=1)  # (B, Q, 4)
            # Unmatched queries get a harmless stand-in box, masked out below.
            truth = ops.where(matched[..., None], truth, ops.convert_to_tensor([0, 0, 1, 1.0]))
            mask = ops.cast(matched, "float32")
            l1 = ops.sum(ops.sum(ops.abs(boxes - truth), axis=-1) * mask) / count
            paired = generalized_iou(boxes[..., None, :], truth[..., None, :])[..., 0, 0]
            giou = ops.sum((1 - paired) * mask) / count
            total = total + class_loss + COST["l1"] * l1 + COST["giou"] * giou
        for extra in self.losses:
            total = total + ops.cast(ops.sum(extra), "float32")
        return total

    def boxes_and_scores(self, raw):
        """The last decoder layer's boxes and class probabilities (without "no object")."""
        logits, boxes = self._layers_of(raw)[-1]
        height, width = self.image_shape[:2]
        scale = ops.convert_to_tensor([width, height, width, height], "float32")
        return _cxcywh_to_xyxy(boxes) * scale, ops.softmax(logits, axis=-1)[..., :-1]


@register_model(
    "detection",
    variants={name: {"variant": name} for name in VARIANTS},
    test_kwargs={
        "input_shape": (64, 64, 3),
        "num_classes": 3,
        "backbone": "lenet5",
        "hidden_dim": 16,
        "encoder_layers": 1,
        "decoder_layers": 2,
        "heads": 2,
        "ffn_dim": 32,
        "num_queries": 5,
    },
    min_input_size=64,
)
def detr(
    input_shape=(800, 800, 3), num_classes=91, *, variant="detr_resnet50", name=None, **overrides
):
    """Build DETR: a row of `VARIANTS` with any `DETR` argument overriding it.

    Args:
        input_shape: (height, width, channels), sides divisible by 32.
        num_classes: object classes (the paper's COCO head: 91 ids).
        variant: `detr_resnet50` (the paper's) or `detr_tiny` (CPU-sized).
        name: model name; None: the variant.
        **overrides: `backbone` (a classification model name), `hidden_dim`,
            `encoder_layers`, `decoder_layers`, `heads`, `ffn_dim`,
            `num_queries` (the variant's), `dropout` (0.1), `feature_stride`
            (32, or 16 for small objects), `score_threshold`, `iou_threshold`,
            `max_detections` (what `predict` keeps).

    Example:
    >>> model = detr((64, 64, 3), 3, backbone="lenet5", hidden_dim=16, encoder_layers=1,
    ...              decoder_layers=1, heads=2, ffn_dim=32, num_queries=5)
    >>> model.output_shape  # queries × (classes + "no object" + box) per decoder layer
    (None, 5, 8)
    """
    args = variant_arguments(VARIANTS, variant, overrides, DETR)
    return DETR(input_shape, num_classes, **args, name=name or variant)
