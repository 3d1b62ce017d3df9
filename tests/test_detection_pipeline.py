"""Detection pipeline: readers, checks, augmentation, scores, writers, end to end."""

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from pipelines.box_metrics import coco_map, wheat_image_score, wheat_score
from pipelines.config import load_config
from pipelines.data.box_batches import batched_detections, decoded_detection_set
from pipelines.data.boxes import read_box_source
from pipelines.errors import DataError
from pipelines.submit.writers import box_string, boxes_frame, parse_box_string
from tests import replicas
from tests.conftest import REPO, assert_one_line_error, prepare_module

TINY_MODEL = ["model.args={width_multiple: 0.0625}", "data.image_size=[64, 64]"]
WHEAT = REPO / "competitions" / "global-wheat"
QUICK = [
    "train.epochs=1",
    "train.patience=0",
    "train.warmup_epochs=0",
    "train.batch_size=8",
    "train.jit_compile=false",  # XLA compiles a YOLO for over a minute on 2 cores
]

DETR_SETTINGS = [  # the CPU-sized DETR: 13–20 s per shapes-det epoch on 2 cores, ~1 h
    "model.name=detr_tiny",
    "model.args={backbone: mobilenet_050, feature_stride: 16, dropout: 0.0}",  # see README
    "train.epochs=200",  # mAP@.5: 0.05 after 30 epochs, 0.17 after 90, 0.30 after 200
    "train.lr=0.0003",
    "train.batch_size=16",
    "train.warmup_epochs=1",
    "train.clipnorm=0.1",  # the paper's gradient clipping
    "train.patience=0",
    "augment.mosaic=0",
    "submission.score_threshold=0.05",
]


# Scores ----------------------------------------------------------------------


def test_pycocotools_map_on_a_hand_made_case():
    # Two true boxes; a perfect detection (0.9) and a false one (0.8): recall 0.5 at
    # precision 1. COCO interpolates precision at 101 recall points: 51 of them
    # (0, 0.01, …, 0.5) have precision 1, the rest 0 → AP = 51 / 101.
    truths = [(np.array([[10, 10, 50, 50], [60, 60, 90, 90]]), np.array([0, 0]))]
    found = [
        (np.array([[10, 10, 50, 50], [0, 60, 20, 90]]), np.array([0, 0]), np.array([0.9, 0.8]))
    ]
    scores = coco_map(truths, found, num_classes=1)
    assert scores["map50"] == pytest.approx(51 / 101)
    assert scores["map"] == pytest.approx(51 / 101)  # exact box: a hit at every IoU
    nothing = coco_map(truths, [(np.zeros((0, 4)), np.zeros(0), np.zeros(0))], 1)
    assert nothing == {"map": 0.0, "map50": 0.0, "map75": 0.0}


def test_wheat_metric_on_a_hand_made_case():
    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    # One exact hit, one box at IoU 0.6 with the second truth, one false positive.
    shifted = np.array([[20, 20, 30, 32.5]])  # IoU 100 / 125 = 0.8
    boxes = np.concatenate([truth[:1], shifted, [[50, 50, 60, 60]]])
    scores = np.array([0.9, 0.8, 0.7])
    # thresholds .5 .55 .6 .65 .7 .75: the shifted box hits at all (IoU 0.8):
    # TP 2, FP 1, FN 0 → 2/3 at every threshold.
    assert wheat_image_score(truth, boxes, scores) == pytest.approx(2 / 3)
    assert wheat_image_score(np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0)) == 1.0
    assert wheat_image_score(truth, np.zeros((0, 4)), np.zeros(0)) == 0.0
    truths = [(truth, None), (truth, None)]
    found = [(boxes, None, scores), (np.zeros((0, 4)), None, np.zeros(0))]
    assert wheat_score(truths, found) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        # IoU exactly 0.5 is not above 0.5: a miss at every threshold.
        ([0, 0, 10, 5], 0.0),
        # IoU exactly 0.6: a hit at 0.5 and 0.55 only (above), a miss from 0.6 on.
        ([0, 0, 10, 6], 2 / 6),
        ([0, 0, 10, 7], 4 / 6),  # IoU 0.7: hits at .5 .55 .6 .65
    ],
)
def test_wheat_metric_counts_a_hit_only_above_each_threshold(box, expected):
    truth = np.array([[0, 0, 10, 10]], float)
    assert wheat_image_score(truth, np.array([box], float), [0.9]) == pytest.approx(expected)


# Writers -----------------------------------------------------------------------


def test_prediction_strings_in_both_styles_round_trip():
    boxes = np.array([[10.2, 20.0, 30.0, 60.0], [0, 0, 5, 5]])
    scores = np.array([0.5, 0.9])
    wheat = box_string(boxes, ["a", "b"], scores, "conf_xywh")
    assert wheat == "0.9000 0 0 5 5 0.5000 10 20 20 40"
    vin = box_string(boxes, ["3", "7"], scores, "class_conf_xyxy")
    assert vin == "7 0.9000 0 0 5 5 3 0.5000 10 20 30 60"
    assert box_string(np.zeros((0, 4)), [], [], "class_conf_xyxy", "14 1 0 0 1 1") == "14 1 0 0 1 1"
    back, _, conf = parse_box_string(wheat, "conf_xywh")
    np.testing.assert_allclose(back, [[0, 0, 5, 5], [10, 20, 30, 60]])
    np.testing.assert_allclose(conf, [0.9, 0.5])
    sample = pd.DataFrame({"image_id": ["b", "a"], "PredictionString": ""})
    frame = boxes_frame(["a", "b"], [(boxes, ["3", "7"], scores)] * 2, sample, "conf_xywh")
    assert frame["image_id"].tolist() == ["b", "a"]


# Readers -------------------------------------------------------------------------


@pytest.fixture
def shapes_det(tmp_path):
    """A tiny shapes-det competition folder (copied config, 40 + 8 generated pictures)."""
    import shutil

    comp = tmp_path / "competitions" / "shapes-det"
    shutil.copytree(
        REPO / "competitions" / "shapes-det", comp, ignore=shutil.ignore_patterns("data")
    )
    prepare_module("shapes-det").generate(comp / "data", train=40, test=8, size=64)
    return comp


def _as_coco_and_yolo(comp, source, classes):
    """Write the same boxes as a COCO JSON and as YOLO label files."""
    data = comp / "data"
    images, annotations = [], []
    (data / "labels").mkdir()
    for index, (image_id, boxes, labels, (h, w)) in enumerate(
        zip(source.ids, source.boxes, source.labels, source.sizes, strict=True)
    ):
        images.append(
            {"id": index + 1, "file_name": f"{image_id}.jpg", "height": int(h), "width": int(w)}
        )
        lines = []
        for box, label in zip(boxes, labels, strict=True):
            x1, y1, x2, y2 = box.tolist()
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": int(label) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                }
            )
            lines.append(
                f"{label} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}"
            )
        if lines:
            (data / "labels" / f"{image_id}.txt").write_text("\n".join(lines))
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(classes)]
    (data / "coco.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )


def test_csv_coco_and_yolo_readers_agree(shapes_det):
    cfg = load_config(shapes_det)
    source = read_box_source(cfg)
    assert len(source) == 40 and sum(len(b) for b in source.boxes) > 40
    _as_coco_and_yolo(shapes_det, source, cfg.data.classes)
    coco = read_box_source(
        load_config(
            shapes_det, ["data.format=coco", "data.train=coco.json", "data.train_images=train/{id}"]
        )
    )
    yolo = read_box_source(
        load_config(
            shapes_det,
            ["data.format=yolo_txt", "data.train=train", "data.labels=labels/{stem}.txt"],
        )
    )
    for other in (coco, yolo):
        assert other.ids.tolist() == source.ids.tolist()
        for a, b in zip(source.boxes, other.boxes, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-3)
        for a, b in zip(source.labels, other.labels, strict=True):
            np.testing.assert_array_equal(a, b)


def test_images_without_boxes_are_kept(tmp_path):
    data = replicas.global_wheat(tmp_path / "data", n_train=6, n_test=1)
    cfg = load_config(WHEAT, [f"data.dir={data}"])
    source = read_box_source(cfg)
    assert len(source) == 6
    assert [len(b) for b in source.boxes][:2] == [0, 0]


@pytest.mark.parametrize(
    ("bbox", "fragment"),
    [
        ("[10.0, 10.0, -5.0, 8.0]", "no positive width and height"),
        ("[120.0, 10.0, 30.0, 8.0]", "outside its image"),
        ("[10.0, 10.0, 8.0]", "not four numbers"),
    ],
)
def test_bad_boxes_name_their_row(tmp_path, bbox, fragment):
    data = replicas.global_wheat(tmp_path / "data", n_train=6, n_test=1)
    frame = pd.read_csv(data / "train.csv")
    frame.loc[1, "bbox"] = bbox
    frame.to_csv(data / "train.csv", index=False)
    with pytest.raises(DataError, match=f"train.csv row 3: box .*{fragment}"):
        read_box_source(load_config(WHEAT, [f"data.dir={data}"]))


def test_unknown_image_id_and_class_name_their_row(shapes_det):
    path = shapes_det / "data" / "train.csv"
    frame = pd.read_csv(path, dtype={"image_id": str})
    frame.loc[2, "image_id"] = "nope"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="train.csv row 4: unknown image id 'nope'"):
        read_box_source(load_config(shapes_det))
    frame = pd.read_csv(path, dtype={"image_id": str}).drop(index=2)
    frame.loc[3, "class"] = "hexagon"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="unknown class 'hexagon'"):
        read_box_source(load_config(shapes_det))


# Augmentation ---------------------------------------------------------------------


def test_mosaic_and_flips_keep_boxes_on_their_objects(tmp_path):
    """White squares on black: every box after augmentation must still frame white."""
    from pipelines.data.augment import build_augmenter
    from pipelines.data.boxes import BoxSource

    rng = np.random.default_rng(0)
    paths, boxes = [], []
    for i in range(12):
        image = np.zeros((64, 64, 3), np.uint8)
        x, y = rng.integers(0, 40, 2)
        side = int(rng.integers(12, 24))
        image[y : y + side, x : x + side] = 255
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
        boxes.append(np.array([[x, y, x + side, y + side]], np.float32))
    source = BoxSource(
        ids=np.arange(12).astype(str),
        paths=paths,
        sizes=np.full((12, 2), 64),
        boxes=boxes,
        labels=[np.array([i % 3], np.int32) for i in range(12)],
        classes=["a", "b", "c"],
    )
    image_set = decoded_detection_set(source, (64, 64), 3)
    flips = load_config(WHEAT).augment  # horizontal and vertical flips
    augment = build_augmenter(flips, 0, bounding_box_format="xyxy")
    dataset = batched_detections(image_set, batch_size=4, shuffle=True, augment=augment, mosaic=1.0)
    seen = 0
    for _ in range(3):
        for images, targets in dataset:
            found, labels = targets["boxes"].numpy(), targets["labels"].numpy()
            assert labels.dtype == np.int32 and found.shape[1] == 4  # 4 images × 1 box
            assert (found[labels < 0] == -1).all()
            for image, image_boxes, image_labels in zip(images.numpy(), found, labels, strict=True):
                for (x1, y1, x2, y2), label in zip(image_boxes, image_labels, strict=True):
                    if label < 0:
                        continue
                    assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64
                    inner = image[int(y1) + 1 : int(y2) - 1, int(x1) + 1 : int(x2) - 1]
                    if inner.size:
                        assert inner.mean() > 200, (x1, y1, x2, y2)
                    seen += 1
    assert seen > 12


# End to end --------------------------------------------------------------------------


def test_shapes_det_runs_end_to_end_and_scores(shapes_det, cli, workdir):
    result = cli("run", shapes_det, *QUICK, *TINY_MODEL)
    assert result.exit_code == 0, result.output
    run_dir = next((workdir / "runs" / "shapes-det").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"map", "map50", "wheat"} <= set(metrics["validation"])
    assert {"map", "map50", "wheat"} <= set(metrics["test"])
    for plot in ("detections.png", "precision_recall.png", "curves.png"):
        assert (run_dir / plot).is_file()
    submission = pd.read_csv(run_dir / "submission.csv", dtype=str, keep_default_na=False)
    assert list(submission.columns) == ["image_id", "PredictionString"]
    for text in submission["PredictionString"]:
        parse_box_string(text, "class_conf_xyxy")

    # A detector that finds nothing still writes a valid submission, every row empty.
    cfg_path = run_dir / "config.yaml"
    cfg_text = cfg_path.read_text().replace("score_threshold: 0.05", "score_threshold: 0.99")
    cfg_path.write_text(cfg_text)
    result = cli("predict", run_dir)
    assert result.exit_code == 0, result.output
    submission = pd.read_csv(run_dir / "submission.csv", dtype=str, keep_default_na=False)
    assert (submission["PredictionString"] == "").all()

    # A corrupt test image stops prediction in one line and keeps the submission.
    before = (run_dir / "submission.csv").read_text()
    test_image = sorted((shapes_det / "data" / "test").glob("*.jpg"))[1]
    replicas.corrupt(test_image)
    result = cli("predict", run_dir)
    assert_one_line_error(result, test_image.name, "prediction stopped")
    assert (run_dir / "submission.csv").read_text() == before


def test_a_tiny_detr_trains_and_predicts_through_the_pipeline(shapes_det, cli, workdir):
    """The pipeline traces DETR's step around its host-side matching (batch size unknown)."""
    model = "model.args={backbone: lenet5, hidden_dim: 32, encoder_layers: 1, ffn_dim: 64}"
    result = cli("run", shapes_det, *QUICK, "model.name=detr_tiny", model, "train.clipnorm=0.1")
    assert result.exit_code == 0, result.output
    run_dir = next((workdir / "runs" / "shapes-det").iterdir())
    history = pd.read_csv(run_dir / "history.csv")
    assert np.isfinite(history["loss"]).all() and len(history) == 1
    assert (run_dir / "submission.csv").is_file()


def test_bad_box_is_one_line_from_the_cli(shapes_det, cli, workdir):
    path = shapes_det / "data" / "train.csv"
    frame = pd.read_csv(path, dtype={"image_id": str})
    frame.loc[4, "bbox"] = "[60.0, 60.0, 20.0, 20.0]"
    frame.to_csv(path, index=False)
    result = cli("train", shapes_det, *QUICK, *TINY_MODEL)
    assert_one_line_error(result, "train.csv row 6", "outside its image")


def test_global_wheat_replica_runs(competition, cli, workdir):
    comp = competition("global-wheat")
    replicas.global_wheat(comp / "data")
    # YOLO v1 here (Fast YOLO, narrow): the layout is under test, and it builds in seconds.
    result = cli(
        "run",
        comp,
        *QUICK,
        "data.image_size=[64, 64]",
        "data.cache=memory",
        "model.name=yolov1_tiny",
        "model.args={width: 0.125, dense_units: 0}",
        "submission.score_threshold=0.01",
    )
    assert result.exit_code == 0, result.output
    run_dir = next((workdir / "runs" / "global-wheat").iterdir())
    submission = pd.read_csv(run_dir / "submission.csv", dtype=str, keep_default_na=False)
    assert submission["image_id"].tolist() == [f"te{i:04d}abc" for i in range(4)]
    for text in submission["PredictionString"]:
        boxes, _, scores = parse_box_string(text, "conf_xywh")
        assert (scores >= 0.01).all()
        assert (boxes >= 0).all() and (boxes <= 128).all()  # the original image's pixels


def test_test_images_are_listed_once_with_their_paths(shapes_det):
    from pipelines.data.sources import read_test_images

    source = read_test_images(load_config(shapes_det))
    assert list(source.ids) == [f"{i:05d}" for i in range(40, 48)]
    assert all(p.endswith(f"test/{i}.jpg") for p, i in zip(source.paths, source.ids, strict=True))
    with pytest.raises(DataError, match="no id column 'nope'"):
        read_test_images(load_config(shapes_det, ["data.id_column=nope"]))


def test_decoded_images_keep_box_scale(shapes_det):
    cfg = load_config(shapes_det)
    source = read_box_source(cfg)
    image_set = decoded_detection_set(source.subset([0, 1]), (32, 32), 3)
    boxes, labels = image_set.targets
    np.testing.assert_allclose(boxes[0][labels[0] >= 0], source.boxes[0] / 2, atol=1e-4)
    image = next(iter(image_set.dataset))[0]
    assert isinstance(image, tf.Tensor) and image.shape == (32, 32, 3)
    assert Image.open(source.paths[0]).size == (64, 64)


@pytest.mark.slow
def test_detr_learns_shapes_det(competition, cli, workdir):
    """DETR on the full shapes-det: its loss falls and validation mAP@.5 passes 0.3."""
    comp = competition("shapes-det")
    assert cli("prepare", comp).exit_code == 0
    result = cli("train", comp, *DETR_SETTINGS)
    assert result.exit_code == 0, result.output
    run_dir = next((workdir / "runs" / "shapes-det").iterdir())
    history = pd.read_csv(run_dir / "history.csv")
    assert history["loss"].iloc[-1] < 0.6 * history["loss"].iloc[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation"]["map50"] > 0.3, metrics["validation"]
