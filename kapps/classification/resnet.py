"""ResNet-18/34/50/101/152 (He, Zhang, Ren and Sun, 2016).

"Deep residual learning for image recognition", CVPR 2016, Table 1. Basic
blocks (two 3×3 convolutions) for 18 and 34 layers, bottleneck blocks
(1×1, 3×3, 1×1 with 4× expansion) for 50 and more; the stride sits on the
first convolution of a stage, as in the paper's v1.

Parameter counts at 224×224×3 with 1,000 classes (`count_params`, which
includes batch-norm moving statistics; trainable ones for 18 and 34 layers,
since torchvision counts its statistics as buffers):

| variant   | here        | reference                                        |
|-----------|-------------|--------------------------------------------------|
| resnet18  | 11,689,512 trainable | torchvision resnet18 (no convolution biases) |
| resnet34  | 21,797,672 trainable | torchvision resnet34                    |
| resnet50  | 25,636,712  | keras.applications.ResNet50 (convolution biases) |
| resnet101 | 44,707,176  | keras.applications.ResNet101                     |
| resnet152 | 60,419,944  | keras.applications.ResNet152                     |

The bottleneck variants keep the convolution biases of the Keras release so
that the same weights fit; the basic-block variants follow torchvision's.
"""

import keras

from kapps.layers.common import (
    check_common_args,
    check_input_size,
    head,
    imagenet_input,
)
from kapps.registry import register_model

VARIANTS = {
    "resnet18": {"block": "basic", "depths": (2, 2, 2, 2), "conv_bias": False},
    "resnet34": {"block": "basic", "depths": (3, 4, 6, 3), "conv_bias": False},
    "resnet50": {"block": "bottleneck", "depths": (3, 4, 6, 3), "conv_bias": True},
    "resnet101": {"block": "bottleneck", "depths": (3, 4, 23, 3), "conv_bias": True},
    "resnet152": {"block": "bottleneck", "depths": (3, 8, 36, 3), "conv_bias": True},
}
STAGE_FILTERS = (64, 128, 256, 512)
BN_EPSILON = 1.001e-5


def _conv_bn(x, filters, kernel, stride, bias, name, relu=True):
    x = keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=bias, name=f"{name}_conv"
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def basic_block(x, filters, stride, bias, name):
    """Two 3×3 convolutions and an identity (or 1×1 projection) shortcut."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, stride, bias, f"{name}_0", relu=False)
    x = _conv_bn(x, filters, 3, stride, bias, f"{name}_1")
    x = _conv_bn(x, filters, 3, 1, bias, f"{name}_2", relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def bottleneck_block(x, filters, stride, bias, name):
    """1×1 reduce, 3×3, 1×1 expand (4×), and an identity or projection shortcut."""
    shortcut = x
    if stride != 1 or x.shape[-1] != 4 * filters:
        shortcut = _conv_bn(x, 4 * filters, 1, stride, bias, f"{name}_0", relu=False)
    x = _conv_bn(x, filters, 1, stride, bias, f"{name}_1")
    x = _conv_bn(x, filters, 3, 1, bias, f"{name}_2")
    x = _conv_bn(x, 4 * filters, 1, 1, bias, f"{name}_3", relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


@register_model(
    "classification",
    variants={name: {"variant": name} for name in VARIANTS},
    test_kwargs={"input_shape": (32, 32, 3), "num_classes": 5},
)
def resnet(
    input_shape=(224, 224, 3),
    num_classes=1000,
    *,
    variant="resnet50",
    include_top=True,
    pooling=None,
    classifier_activation=None,
    name=None,
):
    """A ResNet from the paper's Table 1.

    Feature maps for other tasks, by layer name: `conv1_relu` (stride 2),
    `conv2_block{n}_out` (stride 4), `conv3_…_out` (8), `conv4_…_out` (16),
    `conv5_…_out` (32), with n the last block of the stage
    (see `kapps.feature_layers`).

    Example:
    >>> model = resnet((224, 224, 3), 1000, variant="resnet50")
    >>> model.count_params()
    25636712
    """
    check_common_args(include_top, pooling, num_classes)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    check_input_size(input_shape, 32, variant)
    spec = VARIANTS[variant]
    block, bias = BLOCKS[spec["block"]], spec["conv_bias"]

    inputs, x = imagenet_input(input_shape)
    x = _conv_bn(x, 64, 7, 2, bias, "conv1")
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_pool")(x)
    for stage, (filters, depth) in enumerate(zip(STAGE_FILTERS, spec["depths"], strict=True)):
        for index in range(depth):
            stride = 2 if index == 0 and stage > 0 else 1
            x = block(x, filters, stride, bias, f"conv{stage + 2}_block{index + 1}")
    x = head(
        x,
        include_top=include_top,
        pooling=pooling,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
    )
    return keras.Model(inputs, x, name=name or variant)
