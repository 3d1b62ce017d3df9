"""Segmentation end to end: shapes-seg and a Carvana replica, readers, TTA, bad masks."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kapps.segmentation import rle
from tests.conftest import FAST, assert_one_line_error, prepare_module
from tests.replicas import carvana, corrupt

TINY = [*FAST, "data.image_size=[32,32]", "model.args.filters=4", "model.args.depth=2"]


def generate_shapes(data_dir, train=48, test=8, size=32):
    prepare_module("shapes-seg").generate(data_dir, train=train, test=test, size=size)
    return Path(data_dir)


@pytest.fixture
def shapes(competition):
    folder = competition("shapes-seg")
    generate_shapes(folder / "data")
    return folder


def test_shapes_seg_prepare_redraws_an_older_generators_data(tmp_path, monkeypatch):
    module = prepare_module("shapes-seg")
    monkeypatch.setattr(module, "TRAIN", 5)
    monkeypatch.setattr(module, "TEST", 2)
    monkeypatch.setattr(module, "SIZE", 16)
    data = generate_shapes(tmp_path / "data", train=3, test=1, size=16)
    module.prepare(data)  # this generator's data (any size): kept
    assert len(list((data / "train").iterdir())) == 3
    (data / "generated.json").unlink()  # as the first generator left it: redrawn whole
    (data / "test" / "stale.jpg").write_bytes(b"")
    module.prepare(data)
    assert len(list((data / "train").iterdir())) == 5
    assert sorted(p.name for p in (data / "test").iterdir()) == ["00005.jpg", "00006.jpg"]
    assert json.loads((data / "generated.json").read_text())["train"] == 5
    # a stamp from another version of the generator: redrawn too
    shutil.rmtree(data)
    module.generate(data, train=3, test=1, size=16)
    stamp = json.loads((data / "generated.json").read_text())
    (data / "generated.json").write_text(json.dumps({**stamp, "version": module.VERSION - 1}))
    module.prepare(data)
    assert len(list((data / "train").iterdir())) == 5
    assert json.loads((data / "generated.json").read_text())["version"] == module.VERSION


def run_dir_of(result):
    line = next(x for x in result.output.splitlines() if "runs/" in x and "run folder" in x)
    return Path(line.split("│")[2].strip())


def test_shapes_seg_runs_end_to_end_and_scores_its_submission(shapes, cli):
    result = cli("run", shapes, *TINY)
    assert result.exit_code == 0, result.output
    assert "RLE order: F (column-major)" in result.output
    run = next((shapes.parent.parent / "runs" / "shapes-seg").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    validation, test = metrics["validation"], metrics["test"]
    assert set(validation["dice_per_class"]) == {"background", "ellipse", "polygon", "blob"}
    assert 0.0 <= validation["mean_dice"] <= 1.0 and 0.0 <= validation["mean_iou"] <= 1.0
    # shapes-seg predicts with flip TTA, and the validation says what it changed.
    assert set(validation["without_tta"]) == {"mean_dice", "mean_iou"}
    assert "mean_dice without TTA" in result.output
    assert 0.0 <= test["dice"] <= 1.0 and set(test["dice_per_class"]) == {
        "ellipse",
        "polygon",
        "blob",
    }
    submission = pd.read_csv(run / "submission.csv", keep_default_na=False, dtype=str)
    sample = pd.read_csv(shapes / "data" / "sample_submission.csv", dtype=str)
    assert list(submission.columns) == ["id", "class", "predicted"]
    assert (submission[["id", "class"]].to_numpy() == sample[["id", "class"]].to_numpy()).all()
    for text in submission["predicted"]:
        rle.parse(text, 32 * 32)  # every mask is valid at the test images' size
    for plot in ("overlays.png", "dice_per_class.png", "curves.png"):
        assert (run / plot).stat().st_size > 5_000
    assert "rle_order: F" in (run / "config.yaml").read_text()
    assert cli("submit", run).exit_code == 0

    # A corrupt test image stops prediction in one line and keeps the submission.
    before = (run / "submission.csv").read_text()
    test_image = sorted((shapes / "data" / "test").glob("*.jpg"))[0]
    corrupt(test_image)
    result = cli("predict", run)
    assert_one_line_error(result, test_image.name, "prediction stopped")
    assert (run / "submission.csv").read_text() == before


def test_perfect_submission_scores_one_and_empty_one_less(shapes, cli):
    from pipelines.config import load_config
    from pipelines.runs import RunFolder
    from pipelines.tasks import get_task

    cfg = load_config(shapes, ["data.rle_order=F"])
    task = get_task(cfg)
    test = task.test_data(RunFolder("unused"))
    answers = pd.read_csv(shapes / "data" / "solution.csv", dtype=str, keep_default_na=False)
    assert task.score(answers, answers, test)["dice"] == 1.0
    empty = task.score(answers.assign(predicted=""), answers, test)
    share_empty = (answers["predicted"] == "").mean()
    assert empty["dice"] == pytest.approx(share_empty)
    assert empty["dice_per_class"] == {"ellipse": 0.0, "polygon": 0.0, "blob": 0.0}


def test_carvana_replica_detects_row_major_and_submits_at_full_size(competition, cli):
    folder = competition("carvana")
    carvana(folder / "data")
    overrides = [*FAST, "data.image_size=[32,48]", "model.args.filters=4", "data.cache=memory"]
    result = cli("run", folder, *overrides)
    assert result.exit_code == 0, result.output
    assert "RLE order: C (row-major)" in result.output
    run = next((folder.parent.parent / "runs" / "carvana").iterdir())
    submission = pd.read_csv(run / "submission.csv", keep_default_na=False)
    assert list(submission.columns) == ["img", "rle_mask"] and len(submission) == 4
    for text in submission["rle_mask"]:
        assert rle.decode(text, (56, 40), order="C").shape == (56, 40)  # original size
    assert cli("submit", run).exit_code == 0


@pytest.fixture
def mask_folders(shapes):
    """The shapes-seg data read from its mask PNGs instead of the RLE table."""
    return shapes, [
        "data.format=mask_folders",
        "data.train=train",
        "data.masks=train_masks/{id}_mask.png",
        "data.rle_order=F",
    ]


def test_mask_folder_layout_trains(mask_folders, cli):
    folder, layout = mask_folders
    result = cli("train", folder, *TINY, *layout)
    assert result.exit_code == 0, result.output
    assert "validation mean_dice" in result.output


def one_line_error(result):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) <= 2, result.output  # rich may wrap one long line
    return " ".join(lines)


def test_mask_of_another_size_is_named(mask_folders, cli):
    folder, layout = mask_folders
    path = folder / "data" / "train_masks" / "00003_mask.png"
    Image.fromarray(np.zeros((20, 32), np.uint8)).save(path)
    message = one_line_error(cli("train", folder, *TINY, *layout))
    assert "00003_mask.png is not the size of its image" in message


def test_unknown_class_id_in_a_mask_is_named(mask_folders, cli):
    folder, layout = mask_folders
    path = folder / "data" / "train_masks" / "00005_mask.png"
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(path)
    message = one_line_error(cli("train", folder, *TINY, *layout))
    assert "00005_mask.png holds class id 7" in message and "0..3" in message


@pytest.mark.parametrize(
    ("row", "column", "value", "expected"),
    [
        (10, "predicted", "5 3 2", ["row 12", "malformed RLE", "pairs"]),
        (4, "class", "hexagon", ["row 6", "'hexagon'", "not one of data.classes"]),
        (0, "predicted", "1000 100", ["row 2", "past the mask's 1024 pixels"]),
    ],
)
def test_bad_rle_table_rows_are_named(shapes, cli, row, column, value, expected):
    table = shapes / "data" / "train_masks.csv"
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    frame.loc[row, column] = value
    frame.to_csv(table, index=False)
    message = one_line_error(cli("train", shapes, *TINY))
    for part in expected:
        assert part in message


def _task(shapes, *overrides):
    from pipelines.config import load_config
    from pipelines.tasks import get_task

    return get_task(load_config(shapes, list(overrides)))


def test_threshold_decides_binary_masks(shapes):
    import tensorflow as tf

    probs = tf.constant([[[[0.4, 0.6], [0.8, 0.2]]]])  # two pixels, P(foreground) .6 and .2
    assert _task(shapes).labels(probs).numpy().tolist() == [[[1, 0]]]
    high = _task(shapes, "submission.threshold=0.7")
    assert high.labels(probs).numpy().tolist() == [[[0, 0]]]


def test_flip_tta_averages_with_the_flipped_prediction(shapes):
    import keras

    inputs = keras.Input((1, 4, 1))
    # Logits that depend on the column: class 1 grows to the right.
    logits = keras.layers.Conv2D(2, (1, 4), padding="same", use_bias=False)(inputs)
    model = keras.Model(inputs, logits)
    ramp = np.arange(4, dtype="float32").reshape(1, 1, 4, 1)
    plain_task = _task(shapes, "submission.tta=false")
    plain = plain_task.probabilities(model, ramp).numpy()
    averaged = _task(shapes, "submission.tta=true").probabilities(model, ramp).numpy()
    flipped = plain_task.probabilities(model, ramp[:, :, ::-1]).numpy()[:, :, ::-1]
    np.testing.assert_allclose(averaged, (plain + flipped) / 2, rtol=1e-6)
    assert not np.allclose(plain, averaged)


def test_augmentation_moves_image_and_mask_together():
    import tensorflow as tf

    from pipelines.config import AugmentConfig
    from pipelines.data.augment import build_augmenter
    from pipelines.data.masks import PairSet, batched_pairs

    rng = np.random.default_rng(0)
    masks = rng.integers(0, 4, (16, 4, 4)).astype("uint8").repeat(12, 1).repeat(12, 2)
    images = np.repeat((masks * 60)[..., None], 3, -1).astype("uint8")
    pairs = PairSet(
        tf.data.Dataset.from_tensor_slices((images, masks, np.arange(16))), np.arange(16)
    )
    augment = build_augmenter(
        AugmentConfig(flip="horizontal_and_vertical", rotation=0.1, zoom=0.2), seed=3
    )
    x, y = next(iter(batched_pairs(pairs, batch_size=16, augment=augment)))
    agree = np.round(x.numpy()[..., 0] / 60) == y.numpy()
    assert agree.mean() > 0.9  # only the bilinear image edges differ from the nearest mask
    assert not np.array_equal(y.numpy(), masks)  # something moved


def test_rle_writer_and_validator_hold_both_row_layouts():
    from pipelines.errors import SubmissionError
    from pipelines.submit import rle_frame, validate_submission

    wide_sample = pd.DataFrame({"img": ["a.jpg", "b.jpg"], "rle_mask": ["1 1", "1 1"]})
    wide = rle_frame(["b.jpg", "a.jpg"], [["3 2"], [""]], ["car"], wide_sample, empty="-")
    assert wide.to_dict("list") == {"img": ["a.jpg", "b.jpg"], "rle_mask": ["-", "3 2"]}
    long_sample = pd.DataFrame(
        {"id": ["a", "a", "b", "b"], "class": ["x", "y", "x", "y"], "predicted": [np.nan] * 4}
    )
    long = rle_frame(["a", "b"], [["1 2", ""], ["", "4 1"]], ["x", "y"], long_sample)
    assert long["predicted"].tolist() == ["1 2", "", "", "4 1"]
    validate_submission(long, long_sample, allow_empty=["predicted"])
    with pytest.raises(SubmissionError, match="missing ids"):
        validate_submission(
            long.iloc[:3], long_sample.iloc[:3].assign(id="c"), allow_empty=["predicted"]
        )
    swapped = long.iloc[[1, 0, 2, 3]].reset_index(drop=True)
    with pytest.raises(SubmissionError, match="not in the sample's order"):
        validate_submission(swapped, long_sample, allow_empty=["predicted"])
    with pytest.raises(SubmissionError, match="no prediction for sample ids"):
        rle_frame(["a"], [["", ""]], ["x", "y"], long_sample)


def test_min_area_drops_stray_regions_only(shapes):
    labels = np.zeros((12, 12), np.uint8)
    labels[1:7, 1:7] = 1  # 36 pixels of class 1
    labels[9:11, 9:11] = 2  # 4 stray pixels of class 2
    labels[10, 1] = 1  # 1 stray pixel of class 1
    kept = _task(shapes, "submission.min_area=5").remove_small_regions(labels)
    assert kept.sum() == 36 and (kept[1:7, 1:7] == 1).all()
    assert _task(shapes, "submission.min_area=0").remove_small_regions(labels) is labels


# Default-run budget: the cross-validation engine runs by default on digits;
# segmentation's out-of-fold Dice terms and mask blending run with -m slow.
@pytest.mark.slow
def test_shapes_seg_cross_validation(shapes, cli):
    result = cli("run", shapes, *TINY, "train.epochs=1", "cv.folds=2")
    assert result.exit_code == 0, result.output
    assert "averaged the test predictions of 2 fold models" in result.output
    run = next((shapes.parent.parent / "runs" / "shapes-seg").iterdir())
    oof = pd.read_csv(run / "oof.csv")
    assert oof["row"].tolist() == list(range(48))  # every training image, once
    metrics = json.loads((run / "metrics.json").read_text())
    pooled = metrics["validation"]
    assert set(pooled["dice_per_class"]) == {"ellipse", "polygon", "blob"}
    assert len(metrics["cv"]["mean_dice"]["folds"]) == 2
    inter, total = oof["inter_ellipse"].sum(), oof["pred_ellipse"].sum() + oof["true_ellipse"].sum()
    assert pooled["dice_per_class"]["ellipse"] == pytest.approx(2 * inter / total)
    assert cli("submit", run).exit_code == 0

    # A plain run blended with the cross-validated one (weights given: no
    # out-of-fold probabilities for masks).
    plain = cli("train", shapes, *TINY, "train.epochs=1", "model.args.filters=8")
    assert plain.exit_code == 0, plain.output
    other = next(r for r in run.parent.iterdir() if r != run)
    auto = cli("ensemble", run, other, "--weights", "auto")
    assert auto.exit_code == 2 and "give the weights" in auto.output
    out = run.parent.parent / "blend"
    blend = cli("ensemble", run, other, "--weights", "2,1", "--out", out)
    assert blend.exit_code == 0, blend.output
    assert "blended the test predictions of 3 models from 2 runs" in blend.output
    assert cli("submit", out).exit_code == 0
    assert json.loads((out / "metrics.json").read_text())["weights"] == pytest.approx(
        [2 / 3, 1 / 3]
    )
