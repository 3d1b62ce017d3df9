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
Strided convolutions and the stem's max-pool pad symmetrically (explicit
zero padding, then "valid"), as the Caffe and PyTorch originals do, and the
input is normalised as each checkpoint expects: Caffe's BGR mean for 50, 101
and 152 (keras.applications' weights), ImageNet mean and std for 18 and 34
(timm's, through keras-hub).
"""

import keras

from kapps.layers import ImagePreprocessing
from kapps.layers.common import (
    check_common_args,
    check_input_size,
    head,
    imagenet_input,
)
from kapps.pretrained import catalog
from kapps.registry import register_model

# Basic blocks: torchvision's layers (no convolution biases, BN epsilon 1e-5);
# bottlenecks: keras.applications' (biases, epsilon 1.001e-5).
VARIANTS = {
    "resnet18": {"block": "basic", "depths": (2, 2, 2, 2), "conv_bias": False, "eps": 1e-5},
    "resnet34": {"block": "basic", "depths": (3, 4, 6, 3), "conv_bias": False, "eps": 1e-5},
    "resnet50": {"block": "bottleneck", "depths": (3, 4, 6, 3), "conv_bias": True},
    "resnet101": {"block": "bottleneck", "depths": (3, 4, 23, 3), "conv_bias": True},
    "resnet152": {"block": "bottleneck", "depths": (3, 8, 36, 3), "conv_bias": True},
}
STAGE_FILTERS = (64, 128, 256, 512)
BN_EPSILON = 1.001e-5


def _conv_bn(x, filters, kernel, stride, bias, name, relu=True, eps=BN_EPSILON):
    if stride > 1 and kernel > 1:  # symmetric padding, as the originals pad
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="valid" if stride > 1 else "same",
        use_bias=bias,
        name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(epsilon=eps, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def basic_block(x, filters, stride, bias, name, eps=BN_EPSILON):
    """Two 3×3 convolutions and an identity (or 1×1 projection) shortcut."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, stride, bias, f"{name}_0", relu=False, eps=eps)
    x = _conv_bn(x, filters, 3, stride, bias, f"{name}_1", eps=eps)
    x = _conv_bn(x, filters, 3, 1, bias, f"{name}_2", relu=False, eps=eps)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def bottleneck_block(x, filters, stride, bias, name, eps=BN_EPSILON):
    """1×1 reduce, 3×3, 1×1 expand (4×), and an identity or projection shortcut."""
    shortcut = x
    if stride != 1 or x.shape[-1] != 4 * filters:
        shortcut = _conv_bn(x, 4 * filters, 1, stride, bias, f"{name}_0", relu=False, eps=eps)
    x = _conv_bn(x, filters, 1, stride, bias, f"{name}_1", eps=eps)
    x = _conv_bn(x, filters, 3, 1, bias, f"{name}_2", eps=eps)
    x = _conv_bn(x, 4 * filters, 1, 1, bias, f"{name}_3", relu=False, eps=eps)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


@register_model(
    "classification",
    variants={name: {"variant": name} for name in VARIANTS},
    test_kwargs={"input_shape": (32, 32, 3), "num_classes": 5},
    checkpoint=catalog.resnet,
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
    block, bias, eps = BLOCKS[spec["block"]], spec["conv_bias"], spec.get("eps", BN_EPSILON)

    if spec["block"] == "basic":
        inputs, x = imagenet_input(input_shape)
    else:
        inputs = keras.Input(shape=tuple(input_shape), name="image")
        x = ImagePreprocessing("caffe", name="preprocess")(inputs)
    x = _conv_bn(x, 64, 7, 2, bias, "conv1", eps=eps)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (filters, depth) in enumerate(zip(STAGE_FILTERS, spec["depths"], strict=True)):
        for index in range(depth):
            stride = 2 if index == 0 and stage > 0 else 1
            x = block(x, filters, stride, bias, f"conv{stage + 2}_block{index + 1}", eps)
    x = head(
        x,
        include_top=include_top,
        pooling=pooling,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
    )
    return keras.Model(inputs, x, name=name or variant)
