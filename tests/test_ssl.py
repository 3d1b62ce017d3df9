"""Self-supervised pretraining: exact pretext labels, losses that learn, the backbone's
transfer into an ordinary run, the label-fraction grid, and one-line errors."""

import itertools
import json
import math

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import kapps
from pipelines.config import load_config
from pipelines.config.schema import SSLConfig
from pipelines.data.splits import labelled_rows
from pipelines.ssl import lab
from pipelines.ssl.models import NTXent, contrastive_accuracy, pretext_model
from pipelines.ssl.pretext import (
    jigsaw_tiles,
    min_hamming,
    permutation_set,
    pretext_dataset,
    rotations,
)
from tests.conftest import FAST, assert_one_line_error

TINY = [*FAST, "train.epochs=1", "ssl.epochs=1"]


# Pretext labels ---------------------------------------------------------------------
def test_a_rotated_images_label_is_its_rotation():
    image = np.arange(5 * 5 * 2, dtype=np.float32).reshape(5, 5, 2)
    copies, labels = rotations(tf.constant(image))
    assert labels.numpy().tolist() == [0, 1, 2, 3]
    for k in range(4):
        np.testing.assert_array_equal(copies[k].numpy(), np.rot90(image, k))


def test_the_permutation_set_is_spread_by_hamming_distance():
    every_2x2 = permutation_set(4, 24)
    assert sorted(map(tuple, every_2x2)) == list(itertools.permutations(range(4)))
    chosen = permutation_set(9, 100, seed=0)
    assert len({tuple(p) for p in chosen}) == 100
    assert all(sorted(p) == list(range(9)) for p in chosen)
    assert min_hamming(chosen) == 6  # the greedy maximal-distance set's guarantee here
    rng = np.random.default_rng(0)
    drawn = np.array([rng.permutation(9) for _ in range(100)])
    assert min_hamming(drawn) < min_hamming(chosen)  # a random set is not spread as far
    with pytest.raises(ValueError, match="24 permutations"):
        permutation_set(4, 25)


def test_jigsaw_tiles_are_the_cells_in_the_permuted_order():
    grid, cell = 3, 4
    image = np.zeros((grid * cell, grid * cell, 1), np.float32)
    for index, (r, c) in enumerate(itertools.product(range(grid), range(grid))):
        image[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = index
    permutations = permutation_set(9, 10, seed=1)
    for _ in range(5):
        tiles, label = jigsaw_tiles(tf.constant(image), permutations, grid, 0.0, (cell, cell))
        shown = tiles.numpy()[:, 0, 0, 0].astype(int)
        np.testing.assert_array_equal(shown, permutations[int(label)])
    tiles, _ = jigsaw_tiles(tf.constant(image), permutations, grid, 0.5, (8, 8))
    assert tiles.shape == (9, 8, 8, 1)  # jittered crops, resized to the model's input


def test_lab_matches_the_standard_values_and_round_trips():
    lab_values = lab.rgb_to_lab(np.array([[255.0, 255, 255], [255, 0, 0], [0, 0, 0]])).numpy()
    np.testing.assert_allclose(lab_values[0], [100, 0, 0], atol=0.01)
    np.testing.assert_allclose(lab_values[1], [53.24, 80.09, 67.20], atol=0.02)  # sRGB red
    np.testing.assert_allclose(lab_values[2], [0, 0, 0], atol=0.01)
    rgb = np.random.default_rng(0).integers(0, 256, (500, 3)).astype(np.float32)
    back = lab.lab_to_rgb(lab.rgb_to_lab(rgb)).numpy()
    assert np.abs(back - rgb).max() < 0.01
    gray = lab.grayscale(rgb).numpy()
    assert np.abs(gray - gray[:, :1]).max() < 0.5  # R = G = B: no colour left


def test_ab_bins_and_soft_encoding():
    bins = lab.ab_bins()
    assert len(bins) == 261 and np.all(bins % 10 == 0)
    ab = np.array([bins[7], bins[7] + [3.0, -2.0]], np.float32)
    encoded = lab.soft_encode(ab, bins).numpy()
    np.testing.assert_allclose(encoded.sum(-1), 1.0, rtol=1e-5)
    assert (encoded > 0).sum(-1).tolist() == [5, 5]  # the five nearest bins
    assert encoded[0].argmax() == 7
    assert lab.nearest_bin(ab, bins).numpy().tolist() == [7, 7]
    from pipelines.ssl.pretext import bin_counts

    images = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 3)).astype(np.uint8)
    counts = bin_counts(images, bins, (4, 4), chunk=3)
    np.testing.assert_array_equal(counts, bin_counts(images, bins, (4, 4), chunk=64))
    assert counts.sum() == 10 * 4 * 4  # every pixel of the output grid, once
    probabilities = np.zeros((1, len(bins)), np.float32)
    probabilities[0, 7] = 1.0
    np.testing.assert_allclose(lab.annealed_mean(probabilities, bins).numpy()[0], bins[7])


def test_class_rebalancing_weights():
    bins = lab.ab_bins()
    counts = np.random.default_rng(0).integers(1, 1000, len(bins))
    counts[0] = 100_000  # a common colour (grays, in photographs)
    weights = lab.rebalancing_weights(counts, bins, lam=0.5)
    p = counts / counts.sum()
    smoothed = np.exp(-((bins[:, None] - bins[None]) ** 2).sum(-1) / 50) @ p
    smoothed /= smoothed.sum()
    np.testing.assert_allclose((smoothed * weights).sum(), 1.0, rtol=1e-5)  # E_p̃[w] = 1
    assert weights[0] == weights.min()  # the common colour counts least
    np.testing.assert_allclose(lab.rebalancing_weights(counts, bins, lam=1.0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        lab.rebalancing_weights(counts, bins, lam=0.0), 1 / (len(bins) * smoothed), rtol=1e-4
    )


def test_nt_xent_matches_its_definition():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 2, 8)).astype(np.float32)
    loss = NTXent(temperature=0.5)(np.zeros(4), z).numpy()
    unit = np.concatenate([z[:, 0], z[:, 1]])
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    sims = unit @ unit.T / 0.5
    expected = []
    for i in range(8):
        positive = (i + 4) % 8
        others = np.delete(sims[i], i)
        expected.append(-sims[i, positive] + np.log(np.exp(others).sum()))
    assert loss == pytest.approx(np.mean(expected), rel=1e-5)
    same = np.repeat(rng.normal(size=(4, 1, 8)), 2, axis=1).astype(np.float32)
    assert np.all(contrastive_accuracy(None, same).numpy() == 1.0)


# Losses learn ---------------------------------------------------------------------------
def _digits(n=64):
    from sklearn.datasets import load_digits

    images = load_digits().images[:n] * 16  # 0–255
    images = tf.image.resize(images[..., None], (32, 32)).numpy()
    return images.astype(np.uint8)


def _context(task, images, backbone):
    from pipelines.ssl.models import trunk
    from pipelines.ssl.pretext import bin_counts

    if task == "rotation":
        return {"classes": 4}
    if task == "jigsaw":
        perms = permutation_set(4, 24)
        return {
            "classes": 24,
            "grid": 2,
            "permutations": perms,
            "tiles": 4,
            "input_size": images.shape[1:3],
        }
    if task == "simclr":
        return {}
    size = tuple(trunk(backbone, "spatial").output.shape[1:3])
    bins = lab.ab_bins()
    weights = lab.rebalancing_weights(bin_counts(images, bins, size), bins)
    return {"classes": len(bins), "bins": bins, "weights": weights, "output_size": size}


@pytest.mark.parametrize("task", ["rotation", "jigsaw", "simclr", "colorization"])
def test_a_few_steps_lower_each_pretext_loss(task):
    from pipelines.ssl.task import pretext_compile_args

    keras.utils.set_random_seed(0)
    if task == "colorization":
        images = (np.random.default_rng(0).random((16, 32, 32, 3)) * 255).astype(np.uint8)
        images[:, :16] = [200, 40, 40]  # red tops: a colour to learn
        backbone = kapps.create_model(
            "unet", input_shape=(32, 32, 3), num_classes=2, filters=8, depth=2
        )
    else:
        images = _digits(16)
        backbone = kapps.create_model("lenet5", input_shape=(32, 32, 1), num_classes=10)
    ssl = SSLConfig(task=task)
    context = _context(task, images, backbone)
    batch = next(
        iter(pretext_dataset(images, ssl, batch_size=16, training=False, seed=0, context=context))
    )
    model = pretext_model(
        backbone, ssl, classes=context.get("classes"), input_shape=context.get("tiles")
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), **pretext_compile_args(ssl))
    before = model.evaluate(*batch, verbose=0, return_dict=True)["loss"]
    for _ in range(15):
        model.train_on_batch(*batch)
    after = model.evaluate(*batch, verbose=0, return_dict=True)["loss"]
    assert after < before


# Labels kept --------------------------------------------------------------------------
def test_label_fraction_is_stratified_and_seeded(competition):
    cfg = load_config(competition("digits"), ["data.label_fraction=0.1"])
    rows = np.arange(1000)
    labels = np.repeat(np.arange(10), 100)
    kept = labelled_rows(cfg, rows, labels)
    assert len(kept) == 100 and np.bincount(labels[kept]).tolist() == [10] * 10
    np.testing.assert_array_equal(kept, labelled_rows(cfg, rows, labels))
    cfg.train.seed += 1
    assert set(labelled_rows(cfg, rows, labels)) != set(kept)
    cfg.data.label_fraction = 0.005  # 5 rows for 10 classes
    with pytest.raises(kapps.ConfigError, match="one would have none"):
        labelled_rows(cfg, rows, labels)


# End to end ---------------------------------------------------------------------------
class FirstWeights(keras.callbacks.Callback):
    """The model's weights as training starts."""

    def on_train_begin(self, logs=None):
        if not hasattr(self, "weights"):
            self.weights = {x.name: x.get_weights() for x in self.model.layers if x.weights}


def test_pretrain_writes_a_backbone_that_a_fresh_run_starts_from(competition, cli, workdir):
    from pipelines.train import train

    folder = competition("digits")
    result = cli("pretrain", folder, "ssl.task=rotation", *TINY)
    assert result.exit_code == 0, result.output
    (run,) = (workdir / "runs" / "digits").glob("lenet5-rotation-*")
    assert (run / "pretext_rotation.png").is_file() and (run / "curves.png").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["validation"]["pretext_accuracy"] <= 1
    saved = keras.saving.load_model(run / "backbone.keras", compile=False)
    cfg = load_config(folder, [*FAST, "train.epochs=1", f"model.weights={run / 'backbone.keras'}"])
    first = FirstWeights()
    train(cfg, log=lambda _: None, callbacks=[first], verbose=0)
    for name in ("c1_conv", "c3_conv", "c5_conv"):  # the feature maps: carried over
        for got, want in zip(first.weights[name], saved.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)
    held = [layer.name for layer in saved.layers if layer.weights]
    assert held == ["c1_conv", "c3_conv", "c5_conv"]  # ssl.transfer maps: F6 starts afresh
    from pipelines.tasks import get_task

    model = kapps.create_model("lenet5", input_shape=(32, 32, 1), num_classes=10)
    assert [layer.name for layer in get_task(cfg).pretrained_layers(model)] == held
    fresh = kapps.create_model("lenet5", input_shape=(32, 32, 1), num_classes=10)
    assert not np.array_equal(
        first.weights["c1_conv"][0], fresh.get_layer("c1_conv").get_weights()[0]
    )


def test_the_label_fraction_grid_runs_every_cell(competition, cli, workdir):
    folder = competition("digits")
    result = cli(
        "pretrain",
        folder,
        "ssl.task=jigsaw",
        "ssl.evaluate=true",
        "ssl.fractions=[0.1]",
        "ssl.seeds=[0]",
        *TINY,
    )
    assert result.exit_code == 0, result.output
    (run,) = (workdir / "runs" / "digits").glob("lenet5-jigsaw-*")
    grid = pd.read_csv(run / "grid.csv")
    assert sorted(grid["method"]) == ["finetune", "linear_probe", "scratch"]
    assert set(grid["fraction"]) == {0.1} and set(grid["metric"]) == {"accuracy"}
    assert grid["score"].between(0, 1).all()
    assert grid.loc[grid["method"] == "scratch", "labels"].item() == math.floor(0.1 * 1293 + 0.5)
    assert (run / "grid.png").is_file() and (run / "pretext_jigsaw.png").is_file()
    assert "test score by share of labels" in result.output
    summary = json.loads((run / "metrics.json").read_text())["grid"]
    assert set(summary) == {"finetune", "linear_probe", "scratch"}


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["ssl.task=inpainting"], ["ssl.task"]),
        ([], ["needs a pretext task"]),
        (["ssl.task=colorization"], ["colorization does not apply", "grayscale"]),
        (["ssl.task=colorization", "data.channels=3"], ["every pixel has R = G = B"]),
        (["ssl.task=jigsaw", "ssl.grid=2", "ssl.permutations=30"], ["has only 24"]),
    ],
)
def test_bad_pretraining_input_is_one_line(competition, cli, args, fragments):
    result = cli("pretrain", competition("digits"), *args, *TINY)
    assert_one_line_error(result, *fragments)


def test_a_label_fraction_that_empties_a_class_is_one_line(competition, cli):
    result = cli("run", competition("digits"), "data.label_fraction=0.002", *FAST)
    assert_one_line_error(result, "data.label_fraction 0.002", "one would have none")


def test_a_unet_pretrained_by_colorization_fine_tunes_on_a_share_of_the_masks(
    competition, cli, workdir
):
    from tests.test_segmentation_pipeline import generate_shapes

    folder = competition("shapes-seg")
    generate_shapes(folder / "data", train=40, test=6, size=32)
    small = ["data.image_size=[32,32]", "model.args.filters=8", "train.jit_compile=false"]
    result = cli("pretrain", folder, "ssl.task=colorization", *small, *TINY)
    assert result.exit_code == 0, result.output
    (run,) = (workdir / "runs" / "shapes-seg").glob("unet-colorization-*")
    assert (run / "pretext_colorization.png").is_file()
    saved = keras.saving.load_model(run / "backbone.keras", compile=False)
    assert "logits" not in [layer.name for layer in saved.layers]  # the head starts afresh
    weights = f"model.weights={run / 'backbone.keras'}"
    result = cli("run", folder, weights, "data.label_fraction=0.5", *small, *TINY)
    assert result.exit_code == 0, result.output
    (tuned,) = (p for p in (workdir / "runs" / "shapes-seg").glob("unet-*") if p != run)
    metrics = json.loads((tuned / "metrics.json").read_text())
    assert metrics["train_images"] == 18  # half of the 36 training images keep their masks
    assert 0 <= metrics["test"]["dice"] <= 1


def test_simclr_pretrains_and_draws_its_positive_pairs(competition, cli, workdir):
    result = cli("pretrain", competition("digits"), "ssl.task=simclr", "ssl.batch_size=64", *TINY)
    assert result.exit_code == 0, result.output
    (run,) = (workdir / "runs" / "digits").glob("lenet5-simclr-*")
    assert (run / "pretext_simclr.png").is_file() and (run / "backbone.keras").is_file()
    history = pd.read_csv(run / "history.csv")
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.columns)


def test_pretraining_runs_are_named_by_what_they_train(competition):
    folder = competition("digits")
    plain = load_config(folder, [])
    assert load_config(folder, ["ssl.epochs=3"]).run_name() == plain.run_name()
    rotation = load_config(folder, ["ssl.task=rotation"])
    assert rotation.run_name() == plain.run_name()  # an ordinary run, whatever ssl holds
    name = rotation.run_name(pretext=True)
    assert name.startswith("lenet5-rotation-")
    evaluated = ["ssl.task=rotation", "ssl.evaluate=true", "ssl.seeds=[5]"]
    assert load_config(folder, evaluated).run_name(pretext=True) == name  # evaluates that run
    longer = load_config(folder, ["ssl.task=rotation", "ssl.epochs=3"])
    assert longer.run_name(pretext=True) != name


def test_the_backbone_carries_what_ssl_transfer_asks_and_the_pretext_task_trained():
    from pipelines.ssl.models import export_backbone

    def carried(task, transfer, name="lenet5", channels=3, classes=4):
        build = lambda: kapps.create_model(  # noqa: E731
            name, input_shape=(32, 32, channels), num_classes=10
        )
        model = pretext_model(build(), SSLConfig(task=task), classes=classes)
        exported = export_backbone(model, build(), transfer)
        return [layer.name for layer in exported.layers if layer.weights]

    assert carried("rotation", "maps") == ["c1_conv", "c3_conv", "c5_conv"]
    assert carried("rotation", "all") == ["c1_conv", "c3_conv", "c5_conv", "f6_dense"]
    assert carried("colorization", "all", classes=261) == ["c1_conv", "c3_conv", "c5_conv"]
    assert carried("rotation", "maps", name="vit_tiny16")[-1] == "encoder_norm"  # tokens
    with pytest.raises(kapps.ConfigError, match="ends in a sequence of tokens"):
        carried("colorization", "maps", name="vit_tiny16", classes=261)
