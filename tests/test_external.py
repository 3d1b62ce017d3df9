"""Other libraries' models under kapps' contract, with nothing downloaded."""

import keras
import numpy as np
import pytest

import kapps
from kapps.errors import ConfigError, UnknownModelError
from kapps.layers import ImagePreprocessing


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("ResNet50", "caffe"),
        ("MobileNetV2", "tf"),
        ("DenseNet121", "torch"),
        ("EfficientNetB0", "none"),
    ],
)
def test_keras_applications_take_raw_pixels_and_give_logits(name, mode):
    model = kapps.create_model(f"keras.applications/{name}", input_shape=(64, 64, 3), num_classes=4)
    assert model.get_layer("preprocess").mode == mode
    assert model.output_shape == (None, 4)
    assert model.get_layer("predictions").activation.__name__ == "linear"
    assert sorted(kapps.feature_layers(model)) == [2, 4, 8, 16, 32]


def test_keras_application_matches_the_library_preprocessing():
    from keras.applications import resnet50

    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    ours = np.asarray(ImagePreprocessing("caffe")(images))
    np.testing.assert_allclose(ours, resnet50.preprocess_input(images.copy()), atol=1e-4)


def test_keras_application_headless_and_weights_from_disk(tmp_path):
    name = "keras.applications/MobileNetV2"
    model = kapps.create_model(name, input_shape=(32, 32, 3), include_top=False, pooling="avg")
    assert model.output_shape == (None, 1280)
    headless = keras.Model(model.inputs, model.get_layer("out_relu").output)
    path = tmp_path / "notop.weights.h5"
    headless.save_weights(path)
    again = kapps.create_model(name, input_shape=(32, 32, 3), weights=path, num_classes=2)
    np.testing.assert_allclose(
        again.get_layer("Conv1").get_weights()[0], model.get_layer("Conv1").get_weights()[0]
    )
    with pytest.raises(ConfigError, match="weights file not found"):
        kapps.create_model(name, weights="imagenet")


def test_unknown_keras_application():
    with pytest.raises(UnknownModelError, match="did you mean keras.applications/ResNet50"):
        kapps.create_model("keras.applications/ResNet51")


def test_keras_hub_preset_from_disk(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(32, 32, 3),
    )
    preset = tmp_path / "tiny_resnet"
    backbone.save_to_preset(str(preset))
    model = kapps.create_model(f"keras_hub/{preset}", input_shape=(32, 32, 3), num_classes=3)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3))
    assert model.predict(images, verbose=0).shape == (2, 3)
    np.testing.assert_allclose(  # the preset's weights were loaded
        model.get_layer(backbone.name).get_weights()[0], backbone.get_weights()[0]
    )
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5
    )


def test_keras_hub_preset_not_on_disk_is_one_clear_error():
    with pytest.raises(ConfigError, match="not a folder on disk"):
        kapps.create_model("keras_hub/resnet_50_imagenet")
