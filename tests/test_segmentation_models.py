"""U-Net and Segmenter: the paper's size, shapes, encoders; losses and the Dice metric."""

import keras
import numpy as np
import pytest

import kapps
from kapps.errors import ConfigError
from kapps.segmentation import MeanDice, SegmentationLoss


def conv(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


def paper_unet_params(channels=1, classes=2, base=64, depth=4):
    """Fig. 1 of Ronneberger et al.: 3×3 conv pairs, 2×2 up-convs, a 1×1 output conv."""
    total, c_in = 0, channels
    for level in range(depth + 1):
        width = base * 2**level
        total += conv(3, c_in, width) + conv(3, width, width)
        c_in = width
    for level in reversed(range(depth)):
        width = base * 2**level
        total += conv(2, c_in, width)  # up-convolution halving the channels
        total += conv(3, 2 * width, width) + conv(3, width, width)  # after concatenation
        c_in = width
    return total + conv(1, base, classes)


def test_unet_has_the_papers_parameter_count():
    model = kapps.create_model("unet", input_shape=(512, 512, 1), num_classes=2)
    assert paper_unet_params() == 31_030_658
    assert model.count_params() == paper_unet_params()


@pytest.mark.parametrize(("depth", "filters"), [(2, 8), (3, 4), (5, 2)])
def test_unet_depth_and_width_are_configurable(depth, filters):
    model = kapps.create_model(
        "unet", input_shape=(64, 64, 3), num_classes=3, depth=depth, filters=filters
    )
    assert model.output_shape == (None, 64, 64, 3)
    assert model.count_params() == paper_unet_params(3, 3, filters, depth)
    assert model.get_layer(f"down{depth}_conv1").filters == filters * 2 ** (depth - 1)


def test_batch_norm_adds_a_normalisation_after_every_3x3_convolution():
    plain = kapps.create_model("unet", input_shape=(32, 32, 3), filters=4, depth=2)
    normed = kapps.create_model(
        "unet", input_shape=(32, 32, 3), filters=4, depth=2, batch_norm=True
    )
    bns = [layer for layer in normed.layers if isinstance(layer, keras.layers.BatchNormalization)]
    convs = [layer for layer in plain.layers if type(layer) is keras.layers.Conv2D]
    assert len(bns) == len(convs) - 1  # all but the 1×1 head


def test_unet_rejects_sides_the_pooling_cannot_halve():
    with pytest.raises(ConfigError, match="multiples of space_to_depth \\* 2\\*\\*depth = 16"):
        kapps.create_model("unet", input_shape=(40, 40, 3))
    with pytest.raises(ConfigError, match="= 32"):
        kapps.create_model("unet", input_shape=(48, 48, 3), space_to_depth=2)


def test_space_to_depth_moves_each_patch_into_channels_and_the_shuffle_puts_it_back():
    from kapps.segmentation.unet import pixel_shuffle, pixel_unshuffle

    inputs = keras.Input((6, 4, 3))
    packed = pixel_unshuffle(inputs, 2, "unshuffle")
    model = keras.Model(inputs, [packed, pixel_shuffle(packed, 2, "shuffle")])
    x = np.random.default_rng(0).normal(size=(2, 6, 4, 3)).astype("float32")
    packed, restored = (np.asarray(t) for t in model(x))
    assert packed.shape == (2, 3, 2, 12)
    for i, j, a, b in np.ndindex(3, 2, 2, 2):
        # Pixel (2i + a, 2j + b) lands at (i, j), channels of patch position (a, b).
        start = (2 * a + b) * 3
        np.testing.assert_array_equal(
            packed[:, i, j, start : start + 3], x[:, 2 * i + a, 2 * j + b]
        )
    np.testing.assert_array_equal(restored, x)


def test_unet_with_a_space_to_depth_stem_is_a_unet_on_the_packed_image():
    model = kapps.create_model(
        "unet", input_shape=(64, 64, 3), num_classes=3, filters=4, depth=3, space_to_depth=2
    )
    assert model.output_shape == (None, 64, 64, 3)
    assert model.get_layer("down1_conv1").input.shape == (None, 32, 32, 12)
    # The same layers as a U-Net on 12 channels with 4 × 3 output logits per pixel.
    assert model.count_params() == paper_unet_params(12, 12, 4, 3)
    with pytest.raises(ConfigError, match="1 with an encoder"):
        kapps.create_model("unet", input_shape=(64, 64, 3), encoder="resnet18", space_to_depth=2)


@pytest.mark.parametrize("space_to_depth", [1, 2])
def test_unet_logits_stay_float32_under_mixed_precision(space_to_depth):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = kapps.create_model(
            "unet", input_shape=(32, 32, 3), filters=4, depth=2, space_to_depth=space_to_depth
        )
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("down1_conv1").compute_dtype == "bfloat16"
    assert model.output.dtype == "float32"


@pytest.mark.parametrize("encoder", ["resnet18", "mobilenet", "keras.applications/MobileNetV2"])
def test_unet_on_an_encoder_takes_a_skip_at_each_stride(encoder):
    model = kapps.create_model(
        "unet", input_shape=(64, 64, 3), num_classes=4, encoder=encoder, decoder_filters=(8,) * 5
    )
    assert model.output_shape == (None, 64, 64, 4)
    concats = [layer for layer in model.layers if isinstance(layer, keras.layers.Concatenate)]
    assert len(concats) == 4  # strides 16, 8, 4, 2; stride 1 has no encoder map
    logits = model.predict(np.full((1, 64, 64, 3), 128.0, "float32"), verbose=0)
    assert np.isfinite(logits).all()


def test_unet_encoder_skips_can_be_named():
    encoder = kapps.create_model("resnet18", input_shape=(64, 64, 3), include_top=False)
    skips = ["conv1_relu", "conv3_block2_out", "conv5_block2_out"]
    model = kapps.create_model(
        "unet",
        input_shape=(64, 64, 3),
        encoder=encoder,
        skip_layers=skips,
        decoder_filters=(8,) * 5,
    )
    concats = [layer for layer in model.layers if isinstance(layer, keras.layers.Concatenate)]
    assert sorted(c.output.shape[1] for c in concats) == [8, 32]
    assert model.output_shape == (None, 64, 64, 2)


def test_segmenter_predicts_per_patch_masks_upsampled_to_the_input():
    model = kapps.create_model("segmenter_tiny16", input_shape=(64, 64, 3), num_classes=5)
    assert model.output_shape == (None, 64, 64, 5)
    assert model.get_layer("masks").output.shape == (None, 16, 5)  # 4×4 patches × 5 classes
    logits = model.predict(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)), verbose=0)
    # Bilinear upsampling of patch masks: neighbouring pixels inside a patch agree closely.
    assert np.abs(np.diff(logits, axis=1)).max() < np.abs(logits).max()


def test_segmenter_encoder_is_the_vit_of_its_size():
    model = kapps.create_model("segmenter_small16", input_shape=(64, 64, 3), num_classes=3)
    vit = kapps.create_model("vit_small16", input_shape=(64, 64, 3), include_top=False)
    decoder = [w for w in model.weights if w.path.startswith(("decoder", "class_emb", "proj_"))]
    mask_norm = sum(np.prod(w.shape) for w in model.get_layer("mask_norm").weights)
    decoder_params = sum(int(np.prod(w.shape)) for w in decoder) + mask_norm
    assert model.count_params() == vit.count_params() + decoder_params


@pytest.mark.parametrize("kind", ["ce", "dice", "dice_ce", "focal"])
def test_losses_reward_the_right_mask(kind):
    loss = SegmentationLoss(3, kind=kind)
    masks = np.random.default_rng(0).integers(0, 3, (2, 8, 8))
    right = np.eye(3)[masks] * 8.0
    wrong = np.eye(3)[(masks + 1) % 3] * 8.0
    assert float(loss(masks, right)) < 0.05 < float(loss(masks, wrong))
    restored = SegmentationLoss.from_config(loss.get_config())
    assert float(restored(masks, wrong)) == pytest.approx(float(loss(masks, wrong)))


def test_dice_loss_is_one_minus_soft_dice():
    masks = np.array([[[0, 1], [1, 1]]])
    probs = np.array([[[0.5, 0.5], [0.5, 0.5]]])  # P(class 1) = 0.5 everywhere
    logits = np.log(np.stack([1 - probs, probs], axis=-1))
    # class 0: 2·0.5 / (1 + 2) ; class 1: 2·1.5 / (3 + 2); smoothing 1 on both.
    expected = 1 - np.mean([(1.0 + 1) / (3.0 + 1), (3.0 + 1) / (5.0 + 1)])
    assert float(SegmentationLoss(2, kind="dice")(masks, logits)) == pytest.approx(expected)


def test_mean_dice_metric_matches_the_definition():
    truth = np.array([[[0, 1, 1], [2, 2, 2]]])
    predicted = np.array([[[0, 1, 2], [2, 2, 0]]])
    metric = MeanDice(3)
    metric.update_state(truth, np.eye(3)[predicted])
    dice = [2 * 1 / (1 + 2), 2 * 1 / (2 + 1), 2 * 2 / (3 + 3)]  # classes 0, 1, 2
    assert float(metric.result()) == pytest.approx(np.mean(dice), abs=1e-6)
