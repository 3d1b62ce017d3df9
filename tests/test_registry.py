"""Every registered model, the moment it is registered: shape, no NaN, a train step."""

import fnmatch

import keras
import numpy as np
import pytest

import kapps
from kapps.errors import ConfigError, UnknownModelError
from kapps.registry import register_model

# Like timm's CI: the largest variants run only with `-m slow`; their
# families are covered by the smaller rows in the default run.
HEAVY = [
    "vgg19",
    "resnet101",
    "resnet152",
    "efficientnet_b[1-7]",
    "vit_small*",
    "vit_base*",
    "vit_large*",
    "segmenter_small*",
    "segmenter_base*",
    "unet_resnet34",
    "clip_resnet50",
    "clip_vit_b*",
    # Default-run budget: a smaller row of each covers these.
    "resnet50",  # resnet18/34 (ResNet-50's parameter count is asserted in test_zoo)
    "vit_tiny32",  # vit_tiny16
    "segmenter_tiny16",  # segmenter_tiny8
    "unet_efficientnet_b0",  # unet_mobilenet
    "yolo_[sm]",  # yolo_n
    "detr_resnet50",  # detr_tiny
]


def registered(names):
    """The names outside the generation family (tests/test_generation_models.py has
    theirs: they train on images alone and sample), heavy ones marked slow."""
    names = [n for n in names if kapps.get_entry(n).task != "generation"]
    return [
        pytest.param(n, marks=pytest.mark.slow)
        if any(fnmatch.fnmatch(n, pattern) for pattern in HEAVY)
        else n
        for n in names
    ]


def example_inputs(entry, model, count, seed=0):
    """Random raw images, token ids for language models (16 tokens), source and
    target ids for encoder–decoders, or both (with a padding mask) for dual encoders."""
    rng = np.random.default_rng(seed)
    if entry.task == "text":
        return rng.integers(0, entry.test_kwargs["vocab_size"], (count, 16)).astype("int32")
    if entry.task == "seq2seq":  # sources of 12 ids, some padded; 16 target ids
        sources = rng.integers(1, entry.test_kwargs["vocab_size"], (count, 12)).astype("int32")
        return {
            "encoder_token_ids": sources * (np.arange(12) < rng.integers(3, 13, (count, 1))),
            "decoder_token_ids": rng.integers(1, entry.test_kwargs["vocab_size"], (count, 16)),
        }
    if entry.task == "retrieval":
        tokens = rng.integers(1, entry.test_kwargs["vocab_size"], (count, 12)).astype("int32")
        mask = (np.arange(12) < rng.integers(3, 13, (count, 1))).astype("int32")
        shape = entry.test_kwargs["image_shape"]
        return {
            "images": rng.uniform(0, 255, (count, *shape)).astype("float32"),
            "token_ids": tokens * mask,
            "padding_mask": mask,
        }
    return rng.uniform(0, 255, (count, *model.input_shape[1:])).astype("float32")


@pytest.mark.parametrize("name", registered(kapps.list_models()))
def test_every_model_builds_predicts_and_trains(name):
    entry = kapps.get_entry(name)
    model = kapps.create_model(name, **entry.test_kwargs)
    images = example_inputs(entry, model, 4)
    pixels = images["images"] if entry.task == "retrieval" else images
    shape = getattr(pixels, "shape", (None,))[1:]
    outputs = model.predict(images, verbose=0)
    classes = entry.test_kwargs.get("num_classes") or entry.test_kwargs["vocab_size"]
    if entry.task == "detection":  # final boxes, padded: check and train on a box each
        assert outputs["boxes"].shape == (4, model.max_detections, 4)
        assert outputs["labels"].shape == outputs["scores"].shape == (4, model.max_detections)
        outputs = model(images, training=False).numpy()  # raw: per anchor, cell or query
        assert outputs.shape == (4, *model.output_shape[1:])
    # Classifiers give one logit vector per image, segmenters one per pixel,
    # language models and encoder–decoders one per (target) token, dual encoders
    # one per image–text pair.
    per_pixel = entry.task == "segmentation"
    expected = {
        "segmentation": (4, *shape[:2], classes),
        "text": (4, 16, classes),
        "seq2seq": (4, 16, classes),
        "retrieval": (4, 4),
    }
    if entry.task != "detection":
        assert outputs.shape == expected.get(entry.task, (4, classes))
    assert np.isfinite(outputs).all()
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = [w.copy() for w in model.get_weights()]
    targets = np.arange(4) % classes
    if per_pixel:
        targets = np.random.default_rng(0).integers(0, classes, (4, *shape[:2]))
    if entry.task == "text":
        targets = np.roll(images, -1, axis=1)
    if entry.task == "seq2seq":
        targets = np.roll(images["decoder_token_ids"], -1, axis=1)
    if entry.task == "detection":
        targets = {
            "boxes": np.tile(np.array([[[4, 4, 30, 40]]], "float32"), (4, 1, 1)),
            "labels": (np.arange(4) % classes)[:, None].astype("int32"),
        }
    loss = model.train_on_batch(images, targets)
    assert np.isfinite(loss)
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True))


@pytest.mark.parametrize("name", registered(kapps.list_models()))
def test_every_model_round_trips_through_keras_file(name, tmp_path):
    entry = kapps.get_entry(name)
    model = kapps.create_model(name, **entry.test_kwargs)
    images = example_inputs(entry, model, 2, seed=1)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    if entry.task == "detection":  # compare the raw head outputs; predict gives boxes
        raw, raw_loaded = (m(images, training=False).numpy() for m in (model, loaded))
        np.testing.assert_allclose(raw, raw_loaded, rtol=1e-5, atol=1e-5)
        return
    np.testing.assert_allclose(
        model.predict(images, verbose=0), loaded.predict(images, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_list_models_filters_by_task():
    assert "lenet5" in kapps.list_models(task="classification")
    assert "unet" in kapps.list_models(task="segmentation")
    assert "unet" not in kapps.list_models(task="classification")
    assert "yolo_n" in kapps.list_models(task="detection")
    assert "yolo_n" not in kapps.list_models(task="segmentation")


def test_unknown_model_names_the_closest():
    with pytest.raises(UnknownModelError, match="did you mean 'lenet5'"):
        kapps.create_model("lenet")


def test_unexpected_builder_argument_is_a_config_error():
    with pytest.raises(ConfigError, match="lenet5.*widht"):
        kapps.create_model("lenet5", widht=3)


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):

        @register_model("classification")
        def lenet5():  # noqa: F811  (the duplicate is the point)
            return None


def test_unknown_task_raises():
    with pytest.raises(ValueError, match="task must be one of"):
        register_model("clustering")
