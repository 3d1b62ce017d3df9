"""MobileNet v1 (Howard et al., 2017) with the width multiplier α.

"MobileNets: Efficient convolutional neural networks for mobile vision
applications", Table 1 (the body), Tables 6 and 7 (α and resolution). Any
input resolution works; α scales every layer's channels.

Parameter counts at 224×224×3 with 1,000 classes equal keras.applications'
MobileNet for α = 1.0 (4,253,864), 0.75 (2,601,976), 0.5 (1,342,536) and 0.25
(475,544); the paper reports 4.2, 2.6, 1.3 and 0.5 million. Multiply–adds
(`kapps.count_flops`) match the paper's 569, 325, 149 and 41 million.

Two variants the paper compares against: `depthwise=False` puts a full 3×3
convolution in place of each depthwise-separable block (Table 4's "Conv
MobileNet": 29.3 M parameters, 4,866 M multiply–adds), and `shallow=True`
removes the five separable layers at 14×14×512 (Table 5's "Shallow
MobileNet": 2.9 M, 307 M).
"""

import keras

from kapps.layers.common import (
    check_common_args,
    check_input_size,
    head,
    raw_pixel_input,
)
from kapps.pretrained import catalog
from kapps.registry import register_model

# (output channels, stride) of the 13 depthwise-separable blocks, Table 1.
BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
ALPHAS = {"mobilenet": 1.0, "mobilenet_075": 0.75, "mobilenet_050": 0.5, "mobilenet_025": 0.25}


def _conv_bn_relu(x, filters, kernel, stride, name):
    x = keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, name=name
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(x)


SHALLOW_SKIPS = range(7, 12)  # the five stride-1 blocks at 14×14×512 (Table 5)


def depthwise_separable(x, filters, stride, block_id):
    """3×3 depthwise convolution then 1×1 pointwise, each with BN and ReLU6."""
    x = keras.layers.DepthwiseConv2D(
        3, strides=stride, padding="same", use_bias=False, name=f"conv_dw_{block_id}"
    )(x)
    x = keras.layers.BatchNormalization(name=f"conv_dw_{block_id}_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"conv_dw_{block_id}_relu")(x)
    return _conv_bn_relu(x, filters, 1, 1, f"conv_pw_{block_id}")


@register_model(
    "classification",
    variants={name: {"alpha": alpha} for name, alpha in ALPHAS.items()},
    test_kwargs={"input_shape": (32, 32, 3), "num_classes": 5},
    checkpoint=catalog.mobilenet,
)
def mobilenet(
    input_shape=(224, 224, 3),
    num_classes=1000,
    *,
    alpha=1.0,
    depthwise=True,
    shallow=False,
    dropout=1e-3,
    include_top=True,
    pooling=None,
    classifier_activation=None,
    name=None,
):
    """MobileNet v1 at width multiplier `alpha` and any input resolution.

    Args:
        depthwise: False builds Table 4's "Conv MobileNet" (full 3×3 convolutions).
        shallow: True builds Table 5's "Shallow MobileNet" (blocks 7–11 removed).

    Feature maps by layer name: `conv_pw_{1,3,5,11,13}_relu` (strides 2 to 32).

    Example:
    >>> mobilenet((224, 224, 3), 1000, alpha=0.5).count_params()
    1342536
    """
    check_common_args(include_top, pooling, num_classes)
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha!r}")
    check_input_size(input_shape, 32, "mobilenet")
    inputs, x = raw_pixel_input(input_shape)
    x = _conv_bn_relu(x, int(32 * alpha), 3, 2, "conv1")
    for block_id, (filters, stride) in enumerate(BLOCKS, start=1):
        if shallow and block_id in SHALLOW_SKIPS:
            continue
        if depthwise:
            x = depthwise_separable(x, int(filters * alpha), stride, block_id)
        else:
            x = _conv_bn_relu(x, int(filters * alpha), 3, stride, f"conv_pw_{block_id}")
    x = head(
        x,
        include_top=include_top,
        pooling=pooling,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
    )
    suffix = "" if alpha == 1.0 else f"_{int(round(alpha * 100)):03d}"
    return keras.Model(inputs, x, name=name or f"mobilenet{suffix}")
