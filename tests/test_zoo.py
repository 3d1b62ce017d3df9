"""The model zoo is faithful: parameter counts, output shapes, multiply–adds."""

import keras
import numpy as np
import pytest

import kapps
from kapps.classification.googlenet import MODULES

slow = pytest.mark.slow


def _keras_app(name, **kwargs):
    return getattr(keras.applications, name)(weights=None, **kwargs)


# ours, keras.applications name, arguments for both
KERAS_TWINS = [
    ("vgg16", "VGG16", {}),
    pytest.param("vgg19", "VGG19", {}, marks=slow),
    ("resnet50", "ResNet50", {}),
    pytest.param("resnet101", "ResNet101", {}, marks=slow),
    pytest.param("resnet152", "ResNet152", {}, marks=slow),
    ("mobilenet", "MobileNet", {}),
    ("mobilenet_075", "MobileNet", {"alpha": 0.75}),
    ("mobilenet_050", "MobileNet", {"alpha": 0.5}),
    ("mobilenet_025", "MobileNet", {"alpha": 0.25}),
    ("efficientnet_b0", "EfficientNetB0", {}),
    *[pytest.param(f"efficientnet_b{i}", f"EfficientNetB{i}", {}, marks=slow) for i in range(1, 8)],
]


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), KERAS_TWINS)
def test_same_parameters_and_shapes_as_keras_applications(ours, theirs, kwargs):
    ref = _keras_app(theirs, **kwargs)
    model = kapps.create_model(ours, input_shape=ref.input_shape[1:])
    assert model.count_params() == ref.count_params()
    assert model.output_shape == ref.output_shape
    shape = ref.input_shape[1:]
    headless = kapps.create_model(ours, input_shape=shape, include_top=False, pooling="avg")
    ref_headless = _keras_app(theirs, input_shape=shape, include_top=False, pooling="avg", **kwargs)
    assert headless.output_shape == ref_headless.output_shape
    assert headless.count_params() == ref_headless.count_params()


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# Counts from the paper or its reference implementation (see each docstring).
PAPER_COUNTS = [
    ("alexnet", {}, 62_378_344, "all"),
    ("googlenet", {}, 6_998_552, "all"),
    ("resnet18", {}, 11_689_512, "trainable"),  # torchvision
    ("resnet34", {}, 21_797_672, "trainable"),  # torchvision
    ("vit_tiny16", {}, 5_717_416, "all"),  # timm
    ("vit_small16", {}, 22_050_664, "all"),
    pytest.param("vit_base16", {}, 86_567_656, "all", marks=slow),
    pytest.param("vit_base32", {}, 88_224_232, "all", marks=slow),
    pytest.param("vit_large16", {}, 304_326_632, "all", marks=slow),
    ("lenet5", {"input_shape": (32, 32, 1), "num_classes": 10}, 61_706, "all"),
]


@pytest.mark.parametrize(("name", "kwargs", "expected", "which"), PAPER_COUNTS)
def test_parameter_counts_of_the_papers(name, kwargs, expected, which):
    model = kapps.create_model(name, **kwargs)
    assert (model.count_params() if which == "all" else _trainable(model)) == expected


def test_googlenet_modules_follow_table_1():
    model = kapps.create_model("googlenet")
    table = {"3a": 159, "3b": 380, "4a": 364, "4b": 437, "4c": 463, "4d": 580, "4e": 840}
    table |= {"5a": 1072, "5b": 1388}  # Table 1's params column, thousands of 1,024
    total = 0
    for module in MODULES:
        weights = sum(
            int(np.prod(layer.kernel.shape))
            for layer in model.layers
            if layer.name.startswith(f"inception_{module}_") and hasattr(layer, "kernel")
        )
        assert abs(weights / 1024 - table[module]) / table[module] < 0.08, module
        total += weights
    stem = sum(
        int(np.prod(model.get_layer(n).kernel.shape))
        for n in ("conv1_7x7", "conv2_3x3_reduce", "conv2_3x3", "predictions")
    )
    paper_total = 2.7 + 112 + sum(table.values()) + 1000
    assert abs((total + stem) / 1024 - paper_total) / paper_total < 0.01


def test_googlenet_auxiliary_heads():
    model = kapps.create_model("googlenet", aux_heads=True, num_classes=7)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 7)] * 3
    assert model.count_params() == 13_378_280 - 3 * 1025 * 993  # 1,000 → 7 classes


@pytest.mark.parametrize(
    ("name", "shape", "paper"),
    [  # MobileNet paper, Tables 6 and 7: millions of multiply–adds
        ("mobilenet", 224, 569),
        ("mobilenet_075", 224, 325),
        ("mobilenet_050", 224, 149),
        ("mobilenet_025", 224, 41),
        ("mobilenet", 192, 418),
        ("mobilenet", 160, 290),
        ("mobilenet", 128, 186),
    ],
)
def test_count_flops_matches_mobilenet_paper(name, shape, paper):
    model = kapps.create_model(name, input_shape=(shape, shape, 3))
    assert abs(kapps.count_flops(model) / 1e6 - paper) / paper < 0.01


@pytest.mark.parametrize(
    ("variant", "params", "mult_adds"),
    [  # MobileNet paper, Table 4 ("Conv MobileNet") and Table 5 ("Shallow MobileNet")
        ({"depthwise": False}, 29.3, 4866),
        ({"shallow": True}, 2.9, 307),
    ],
)
def test_mobilenet_variants_match_the_paper_tables(variant, params, mult_adds):
    model = kapps.create_model("mobilenet", **variant)
    assert round(model.count_params() / 1e6, 1) == params
    assert abs(kapps.count_flops(model) / 1e6 - mult_adds) < 1.5  # 4,867.3 M and 307.4 M here
    assert kapps.get_entry("mobilenet").checkpoint({"alpha": 1.0, **variant}) is None


def test_count_flops_of_attention_and_resnet():
    # ViT-B/16: 17.6 GFLOPs (multiply–adds) in the DeiT/timm tables; ResNet-50: 3.8e9 in its paper.
    assert abs(kapps.count_flops(kapps.create_model("vit_base16")) / 1e9 - 17.56) < 0.05
    assert abs(kapps.count_flops(kapps.create_model("resnet50")) / 1e9 - 3.86) < 0.05


def test_count_flops_small_by_hand():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8·8·4·27 = 6912
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 8·8·4·9 = 2304
    x = keras.layers.GlobalAveragePooling2D()(x)  # 256
    x = keras.layers.Dense(5)(x)  # 20
    assert kapps.count_flops(keras.Model(inputs, x)) == 6912 + 2304 + 256 + 20


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_025", "efficientnet_b0", "vgg16"])
def test_multiscale_feature_maps_by_layer_name(name):
    model = kapps.create_model(name, input_shape=(64, 64, 3), include_top=False)
    layers = kapps.feature_layers(model)
    assert sorted(layers) == [2, 4, 8, 16, 32]
    features = kapps.feature_extractor(model).predict(np.zeros((1, 64, 64, 3)), verbose=0)
    assert [f.shape[1] for f in features] == [32, 16, 8, 4, 2]


def test_vit_backbone_gives_a_patch_map():
    model = kapps.create_model("vit_tiny16", input_shape=(64, 96, 3), include_top=False)
    assert model.output_shape == (None, 4, 6, 192)
    assert kapps.feature_layers(model) == {16: "feature_map"}


def test_same_contract_for_every_builder():
    for name in ["alexnet", "googlenet", "resnet18", "mobilenet", "vit_tiny16", "vgg16"]:
        entry = kapps.get_entry(name)
        shape = entry.test_kwargs["input_shape"]
        model = kapps.create_model(name, input_shape=shape, num_classes=3)
        assert model.output_shape == (None, 3) and model.get_layer("predictions")
        pooled = kapps.create_model(name, input_shape=shape, include_top=False, pooling="max")
        assert len(pooled.output_shape) == 2
