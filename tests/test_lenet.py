"""LeNet-5 follows the paper's table and adapts to the input size."""

import keras
import pytest

import kapps

PAPER_LAYERS = {  # name: output shape (without batch) at the paper's 32×32 input
    "c1_conv": (28, 28, 6),
    "s2_pool": (14, 14, 6),
    "c3_conv": (10, 10, 16),
    "s4_pool": (5, 5, 16),
    "c5_conv": (1, 1, 120),
    "f6_dense": (84,),
    "predictions": (10,),
}


@pytest.mark.parametrize("name", ["lenet5", "lenet5_paper"])
def test_layers_follow_the_paper_table(name):
    model = kapps.create_model(name, input_shape=(32, 32, 1), num_classes=10)
    for layer, shape in PAPER_LAYERS.items():
        assert model.get_layer(layer).output.shape[1:] == shape, layer
    assert model.count_params() == 61_706


def test_paper_style_uses_tanh_and_average_pooling():
    paper = kapps.create_model("lenet5_paper")
    modern = kapps.create_model("lenet5")
    assert isinstance(paper.get_layer("s2_pool"), keras.layers.AveragePooling2D)
    assert isinstance(modern.get_layer("s2_pool"), keras.layers.MaxPooling2D)
    assert paper.get_layer("c1_conv").activation.__name__ == "tanh"
    assert modern.get_layer("c1_conv").activation.__name__ == "relu"


def test_mnist_size_is_padded_to_the_paper_field():
    model = kapps.create_model("lenet5", input_shape=(28, 28, 1), num_classes=10)
    assert model.get_layer("c1_conv").output.shape[1:] == (28, 28, 6)
    assert model.count_params() == 61_706


def test_larger_input_grows_c5_map():
    model = kapps.create_model("lenet5", input_shape=(64, 64, 3), num_classes=2)
    assert model.get_layer("c5_conv").output.shape[1:] == (9, 9, 120)
    assert model.output_shape == (None, 2)


@pytest.mark.parametrize(("pooling", "shape"), [(None, (None, 1, 1, 120)), ("avg", (None, 120))])
def test_headless_backbone(pooling, shape):
    model = kapps.create_model("lenet5", include_top=False, pooling=pooling)
    assert model.output_shape == shape


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="style"):
        kapps.create_model("lenet5", style="fancy")
    with pytest.raises(ValueError, match="pooling"):
        kapps.create_model("lenet5", include_top=False, pooling="mean")
