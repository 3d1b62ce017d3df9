"""The YOLO detector: its size, label assignment, loss and non-max suppression."""

import inspect

import numpy as np
import pytest
from keras import ops

import kapps
from kapps.detection.assign import task_aligned_targets
from kapps.detection.boxes import anchor_points, non_max_suppression

TINY = {"input_shape": (64, 64, 3), "num_classes": 2, "width_multiple": 0.0625}


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_yolo_n_has_yolov8n_parameter_count():
    # Ultralytics: "YOLOv8n summary: 225 layers, 3157200 parameters, 3157184 gradients"
    # (the 16 without gradient are DFL's fixed bin values, a constant here).
    model = kapps.create_model("yolo_n", input_shape=(640, 640, 3), num_classes=80)
    assert trainable(model) == 3_157_184


@pytest.mark.slow
@pytest.mark.parametrize(("name", "count"), [("yolo_s", 11_166_544), ("yolo_m", 25_902_624)])
def test_larger_yolos_have_yolov8_parameter_counts(name, count):
    model = kapps.create_model(name, input_shape=(640, 640, 3), num_classes=80)
    assert trainable(model) == count


def test_output_is_one_row_per_anchor_point():
    model = kapps.create_model("yolo_n", **TINY)
    assert model.output_shape == (None, 8 * 8 + 4 * 4 + 2 * 2, 4 * 16 + 2)


def test_any_classifier_can_be_the_backbone():
    model = kapps.create_model(
        "yolo_n",
        input_shape=(64, 64, 3),
        num_classes=2,
        backbone="mobilenet",
        width_multiple=0.0625,
    )
    assert model.output_shape == (None, 84, 66)
    with pytest.raises(kapps.ConfigError, match="multiples of 32"):
        kapps.create_model("yolo_n", input_shape=(70, 70, 3), num_classes=2)


def _greedy_nms(boxes, scores, labels, iou_threshold, score_threshold):
    """The textbook loop, per class."""
    order = np.argsort(-scores, kind="stable")
    kept = []
    for i in order:
        if scores[i] <= score_threshold:
            continue
        ok = True
        for j in kept:
            if labels[j] != labels[i]:
                continue
            x1, y1 = np.maximum(boxes[i, :2], boxes[j, :2])
            x2, y2 = np.minimum(boxes[i, 2:], boxes[j, 2:])
            inter = max(x2 - x1, 0) * max(y2 - y1, 0)
            area = np.prod(boxes[i, 2:] - boxes[i, :2]) + np.prod(boxes[j, 2:] - boxes[j, :2])
            if inter / (area - inter) > iou_threshold:
                ok = False
                break
        if ok:
            kept.append(i)
    return kept


def test_non_max_suppression_matches_the_greedy_loop():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 50, (1, 60, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 30, (1, 60, 2))], -1)
    scores = rng.uniform(0, 1, (1, 60)).astype("float32")
    labels = rng.integers(0, 3, (1, 60)).astype("int32")
    out = non_max_suppression(
        boxes.astype("float32"),
        scores,
        labels,
        iou_threshold=0.4,
        score_threshold=0.2,
        max_detections=60,
    )
    expected = _greedy_nms(boxes[0], scores[0], labels[0], 0.4, 0.2)
    found = ops.convert_to_numpy(out["scores"])[0]
    count = int((found > 0).sum())
    assert count == len(expected)
    np.testing.assert_allclose(found[:count], scores[0][expected], rtol=1e-6)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(out["labels"])[0, :count], labels[0][expected]
    )
    assert (ops.convert_to_numpy(out["labels"])[0, count:] == -1).all()


def test_non_max_suppression_is_class_wise_and_pads():
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 10.5], [0, 0, 10, 10]]], "float32")
    scores = np.array([[0.9, 0.8, 0.7]], "float32")
    labels = np.array([[0, 0, 1]], "int32")
    out = non_max_suppression(
        boxes, scores, labels, iou_threshold=0.5, score_threshold=0.1, max_detections=5
    )
    np.testing.assert_array_equal(ops.convert_to_numpy(out["labels"]), [[0, 1, -1, -1, -1]])
    np.testing.assert_allclose(ops.convert_to_numpy(out["scores"])[0, :2], [0.9, 0.7])


def test_non_max_suppression_keeps_classes_apart_with_negative_coordinates():
    # Shifted by max|coordinate| + 1, the class-1 box [-10, -10, 0, 0] would land
    # on [1, 1, 11, 11] and be suppressed by the class-0 box (IoU 0.68).
    boxes = np.array([[[0, 0, 10, 10], [-10, -10, 0, 0]]], "float32")
    out = non_max_suppression(
        boxes,
        np.array([[0.9, 0.8]], "float32"),
        np.array([[0, 1]], "int32"),
        iou_threshold=0.5,
        score_threshold=0.1,
        max_detections=2,
    )
    np.testing.assert_array_equal(ops.convert_to_numpy(out["labels"]), [[0, 1]])


def test_task_aligned_assignment_picks_anchors_inside_the_box():
    points, _ = anchor_points((64, 64), (8, 16, 32))
    count = len(points)
    gt_boxes = np.array([[[8, 8, 40, 40], [-1, -1, -1, -1]]], "float32")
    gt_labels = np.array([[1, -1]], "int32")
    scores = np.full((1, count, 2), 0.5, "float32")
    # Predicted boxes: a 32-pixel box centred on each anchor point.
    pred = np.concatenate([points - 16, points + 16], -1)[None].astype("float32")
    boxes, target_scores, foreground = (
        ops.convert_to_numpy(t)
        for t in task_aligned_targets(
            scores, pred, points, gt_boxes, gt_labels, num_classes=2, top_k=5
        )
    )
    chosen = np.flatnonzero(foreground[0])
    assert 1 <= len(chosen) <= 5
    inside = (points[chosen] > 8).all(1) & (points[chosen] < 40).all(1)
    assert inside.all()
    np.testing.assert_array_equal(boxes[0, chosen], np.repeat(gt_boxes[0, :1], len(chosen), 0))
    assert (target_scores[0, chosen, 0] == 0).all() and (target_scores[0, chosen, 1] > 0).all()
    assert target_scores[0, ~foreground[0]].max() == 0
    assert target_scores.max() <= 1.0 + 1e-6


@pytest.mark.slow  # default-run budget: shapes-det end to end trains and predicts
def test_detector_learns_a_tiny_set_and_predicts_its_boxes(tmp_path):
    import keras

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 60, (8, 64, 64, 3)).astype("float32")
    boxes = np.full((8, 2, 4), -1, "float32")
    labels = np.full((8, 2), -1, "int32")
    for i in range(8):  # one bright square per image, class by colour channel
        x, y = rng.integers(4, 36, 2)
        k = i % 2
        images[i, y : y + 24, x : x + 24, k] = 250
        boxes[i, 0], labels[i, 0] = [x, y, x + 24, y + 24], k
    model = kapps.create_model("yolo_n", **TINY, score_threshold=0.3)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(images, {"boxes": boxes, "labels": labels}, epochs=60, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.4 * losses[0]

    path = tmp_path / "yolo.keras"
    model.save(path)
    found = keras.saving.load_model(path).predict(images, verbose=0)
    assert set(found) == {"boxes", "labels", "scores"}
    best = found["boxes"][:, 0]
    x1 = np.maximum(best[:, :2], boxes[:, 0, :2])
    x2 = np.minimum(best[:, 2:], boxes[:, 0, 2:])
    overlap = np.prod(np.clip(x2 - x1, 0, None), axis=1) / (
        2 * 24 * 24 - np.prod(np.clip(x2 - x1, 0, None), axis=1)
    )
    assert np.median(overlap) > 0.5  # the classes take longer (shapes-det tests them)


# YOLO v1 -------------------------------------------------------------------------


def test_yolov1_has_the_papers_layers_and_parameter_count():
    # Figure 3: (kernel, in, out) of the 24 convolutions, then 7·7·1024 → 4096 → 7·7·30.
    convs = [(7, 3, 64), (3, 64, 192), (1, 192, 128), (3, 128, 256), (1, 256, 256), (3, 256, 512)]
    convs += [(1, 512, 256), (3, 256, 512)] * 4 + [(1, 512, 512), (3, 512, 1024)]
    convs += [(1, 1024, 512), (3, 512, 1024)] * 2 + [(3, 1024, 1024)] * 4
    expected = sum(k * k * i * o + o for k, i, o in convs)
    expected += 7 * 7 * 1024 * 4096 + 4096 + 4096 * 7 * 7 * 30 + 7 * 7 * 30
    model = kapps.create_model("yolov1", input_shape=(448, 448, 3), num_classes=20)
    assert (
        len([w for w in model.layers if w.name.startswith("conv") and "leaky" not in w.name]) == 24
    )
    assert model.count_params() == expected
    assert model.output_shape == (None, 7, 7, 30)


def _squares(count=8, seed=0):
    """A bright 24-pixel square per 64×64 image, its class the colour channel."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 60, (count, 64, 64, 3)).astype("float32")
    boxes = np.full((count, 2, 4), -1, "float32")
    labels = np.full((count, 2), -1, "int32")
    for i in range(count):
        x, y = rng.integers(4, 36, 2)
        images[i, y : y + 24, x : x + 24, i % 2] = 250
        boxes[i, 0], labels[i, 0] = [x, y, x + 24, y + 24], i % 2
    return images, {"boxes": boxes, "labels": labels}


@pytest.mark.parametrize("name", ["yolov1_tiny", pytest.param("detr_tiny", marks=pytest.mark.slow)])
def test_teaching_detectors_learn_a_tiny_set(name):
    import keras

    images, targets = _squares()
    args = {"input_shape": (64, 64, 3), "num_classes": 2}
    if name == "yolov1_tiny":
        args["width"] = 0.25
    else:
        args.update(
            backbone="lenet5", hidden_dim=32, encoder_layers=1, decoder_layers=2, ffn_dim=64
        )
    model = kapps.create_model(name, **args)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    losses = model.fit(images, targets, epochs=40, verbose=0).history["loss"]
    assert losses[-1] < 0.7 * losses[0]
    found = model.predict(images, verbose=0)
    assert found["boxes"].shape == (8, model.max_detections, 4)


# DETR -------------------------------------------------------------------------------


def test_detr_loss_is_the_same_traced_and_eager():
    """Alone a DETR trains eagerly; given the pipelines' host callback, it is traced."""
    import keras
    import tensorflow as tf

    from pipelines.hostcall import host_callback

    images, targets = _squares()
    targets["boxes"][:, 1], targets["labels"][:, 1] = [2, 2, 20, 30], 1  # two truths per image
    targets["boxes"][0, 1], targets["labels"][0, 1] = -1, -1  # and one padding row
    model = kapps.create_model(
        "detr_tiny", input_shape=(64, 64, 3), num_classes=2, backbone="lenet5",
        hidden_dim=32, encoder_layers=1, decoder_layers=2, ffn_dim=64,
    )  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert model.run_eagerly  # kapps imports no TensorFlow: the matching is plain NumPy
    eager = model.compute_loss(images, targets, model(images), training=False)
    model.host_callback = host_callback
    traced = tf.function(lambda: model.compute_loss(images, targets, model(images)))()
    assert float(traced) == pytest.approx(float(eager), rel=1e-5)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    assert not model.run_eagerly and not model.jit_compile  # no XLA for a host callback
    # `fit` itself: the slow test_teaching_detectors_learn_a_tiny_set[detr_tiny].


def test_host_callback_takes_a_batch_size_known_only_at_run_time():
    """In `fit` the batch dimension is a tensor; the callback's shape must accept it."""
    import tensorflow as tf

    from pipelines.hostcall import host_callback

    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32)])
    def doubled(x):
        shape = (tf.shape(x)[0], 3)
        return host_callback(lambda a: (2 * a).astype("float32"), x, shape=shape, dtype="float32")

    assert doubled.get_concrete_function().output_shapes.as_list() == [None, 3]
    np.testing.assert_array_equal(doubled(np.ones((4, 3), "float32")), np.full((4, 3), 2.0))


def test_the_detection_pipeline_gives_detr_its_host_callback():
    from pipelines.config import load_config
    from pipelines.hostcall import host_callback
    from pipelines.tasks import get_task
    from tests.conftest import REPO

    args = "model.args={backbone: lenet5, hidden_dim: 32, encoder_layers: 1, ffn_dim: 64}"
    cfg = load_config(REPO / "competitions" / "shapes-det", ["model.name=detr_tiny", args])
    model_args = {"input_shape": (64, 64, 3), "num_classes": 3}
    assert get_task(cfg).build_model(model_args).host_callback is host_callback


def test_detr_object_queries_start_apart():
    """N(0, 1) query embeddings, as DETR's nn.Embedding: σ = 0.05 made them one query."""
    model = kapps.create_model("detr_tiny", input_shape=(64, 64, 3), num_classes=2,
                               backbone="lenet5", hidden_dim=32, encoder_layers=1,
                               decoder_layers=1, ffn_dim=64)  # fmt: skip
    table = np.asarray(model.get_layer("object_queries").table)
    assert 0.8 < table.std() < 1.2


def test_hungarian_matching_is_the_cheapest_one_to_one_assignment():
    from itertools import permutations

    from kapps.detection.detr import hungarian_match

    rng = np.random.default_rng(1)
    cost = rng.uniform(0, 1, (1, 5, 3))
    valid = np.array([[True, False, True]])
    (assignment,) = hungarian_match(cost, valid)  # per query: its truth, or -1
    rows = np.flatnonzero(assignment >= 0)
    cols = assignment[rows]
    assert sorted(cols.tolist()) == [0, 2]
    best = min(cost[0, a, 0] + cost[0, b, 2] for a, b in permutations(range(5), 2))
    assert cost[0, rows, cols].sum() == pytest.approx(best)


def test_generalized_iou_on_known_boxes():
    from kapps.detection.detr import generalized_iou

    a = np.array([[0, 0, 2, 2]], "float32")
    b = np.array([[0, 0, 2, 2], [1, 1, 3, 3], [3, 0, 4, 1]], "float32")
    # identical: 1; overlap 1 of union 7 in a 3×3 hull: 1/7 - 2/9; apart: 0 - (4·2 - 5)/8.
    expected = [1.0, 1 / 7 - 2 / 9, -3 / 8]
    np.testing.assert_allclose(ops.convert_to_numpy(generalized_iou(a, b))[0], expected, rtol=1e-5)


def test_detr_resnet50_has_the_papers_size():
    # Table 1: DETR with ResNet-50, 41 M parameters.
    model = kapps.create_model("detr_resnet50", input_shape=(800, 800, 3), num_classes=91)
    assert 41.0e6 < trainable(model) < 42.0e6


@pytest.mark.parametrize("name", ["yolo_n", "yolov1_tiny", "detr_tiny"])
def test_detector_config_records_every_constructor_argument(name):
    """A saved detector comes back with its settings, not the defaults."""
    entry = kapps.get_entry(name)
    model = kapps.create_model(
        name, **entry.test_kwargs, score_threshold=0.123, iou_threshold=0.456, max_detections=7
    )
    config = model.get_config()
    # encoder_weights is a loading instruction, not a setting: a saved model holds its weights
    ignored = {"self", "kwargs", "encoder_weights"}
    arguments = set(inspect.signature(type(model).__init__).parameters) - ignored
    assert arguments <= set(config)
    clone = type(model).from_config(config)
    assert clone.get_config() == config
    assert (clone.score_threshold, clone.iou_threshold, clone.max_detections) == (0.123, 0.456, 7)
