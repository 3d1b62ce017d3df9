"""EfficientNet-B0…B7 (Tan and Le, 2019) by compound scaling of the B0 table.

"EfficientNet: Rethinking model scaling for convolutional neural networks",
ICML 2019, Table 1 (the B0 stages) and section 3.3 (compound scaling): each
variant multiplies B0's widths and depths and takes a larger resolution.
Parameter counts equal keras.applications' EfficientNetB0…B7 (B0: 5,330,571,
of which 7 are the input normalisation's statistics; the paper reports 5.3 M).
"""

import math

import keras

from kapps.layers.common import (
    check_common_args,
    check_input_size,
    head,
    imagenet_statistics,
)
from kapps.pretrained import catalog
from kapps.registry import register_model

# B0, Table 1: (kernel, repeats, in, out, expand ratio, stride) per stage;
# every block has squeeze-and-excitation with ratio 0.25.
B0_STAGES = (
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
)
SE_RATIO = 0.25
VARIANTS = {  # the paper's compound scaling, B0–B7
    "efficientnet_b0": {"width": 1.0, "depth": 1.0, "resolution": 224, "dropout": 0.2},
    "efficientnet_b1": {"width": 1.0, "depth": 1.1, "resolution": 240, "dropout": 0.2},
    "efficientnet_b2": {"width": 1.1, "depth": 1.2, "resolution": 260, "dropout": 0.3},
    "efficientnet_b3": {"width": 1.2, "depth": 1.4, "resolution": 300, "dropout": 0.3},
    "efficientnet_b4": {"width": 1.4, "depth": 1.8, "resolution": 380, "dropout": 0.4},
    "efficientnet_b5": {"width": 1.6, "depth": 2.2, "resolution": 456, "dropout": 0.4},
    "efficientnet_b6": {"width": 1.8, "depth": 2.6, "resolution": 528, "dropout": 0.5},
    "efficientnet_b7": {"width": 2.0, "depth": 3.1, "resolution": 600, "dropout": 0.5},
}
DROP_CONNECT_RATE = 0.2
CONV_INIT = keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal")


def round_filters(filters, width, divisor=8):
    """Scale channels by `width`, to a multiple of 8, never 10 % below the target."""
    filters *= width
    rounded = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * filters else rounded)


def round_repeats(repeats, depth):
    return int(math.ceil(depth * repeats))


def _conv(filters, kernel, name, stride=1, activation=None, bias=False):
    return keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same",
        use_bias=bias,
        activation=activation,
        kernel_initializer=CONV_INIT,
        name=name,
    )


def mbconv(x, kernel, filters_in, filters_out, expand, stride, drop_rate, name):
    """Inverted residual: 1×1 expand, depthwise, squeeze-excite, 1×1 project."""
    inputs, filters = x, filters_in * expand
    if expand != 1:
        x = _conv(filters, 1, f"{name}expand_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{name}expand_bn")(x)
        x = keras.layers.Activation("swish", name=f"{name}expand_activation")(x)
    x = keras.layers.DepthwiseConv2D(
        kernel,
        strides=stride,
        padding="same",
        use_bias=False,
        depthwise_initializer=CONV_INIT,
        name=f"{name}dwconv",
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}bn")(x)
    x = keras.layers.Activation("swish", name=f"{name}activation")(x)
    squeeze = max(1, int(filters_in * SE_RATIO))
    se = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}se_squeeze")(x)
    se = _conv(squeeze, 1, f"{name}se_reduce", activation="swish", bias=True)(se)
    se = _conv(filters, 1, f"{name}se_expand", activation="sigmoid", bias=True)(se)
    x = keras.layers.Multiply(name=f"{name}se_excite")([x, se])
    x = _conv(filters_out, 1, f"{name}project_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}project_bn")(x)
    if stride == 1 and filters_in == filters_out:
        if drop_rate > 0:  # stochastic depth: drop the whole residual branch
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = keras.layers.Add(name=f"{name}add")([x, inputs])
    return x


@register_model(
    "classification",
    variants={name: {"variant": name} for name in VARIANTS},
    test_kwargs={"input_shape": (32, 32, 3), "num_classes": 5},
    checkpoint=catalog.efficientnet,
)
def efficientnet(
    input_shape=None,
    num_classes=1000,
    *,
    variant="efficientnet_b0",
    include_top=True,
    pooling=None,
    classifier_activation=None,
    name=None,
):
    """EfficientNet-B0…B7; `input_shape` defaults to the variant's resolution.

    Feature maps by layer name: the last layer at each stride, e.g.
    `block4a_expand_activation` (stride 8) and `top_activation` (stride 32);
    `kapps.feature_layers(model)` lists them.

    Example:
    >>> efficientnet(variant="efficientnet_b0").count_params()
    5330571
    """
    check_common_args(include_top, pooling, num_classes)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    row = VARIANTS[variant]
    width, depth, resolution, dropout = (
        row[k] for k in ("width", "depth", "resolution", "dropout")
    )
    input_shape = tuple(input_shape or (resolution, resolution, 3))
    check_input_size(input_shape, 32, variant)

    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    normalize = keras.layers.Normalization(axis=-1, name="normalize")
    x = normalize(x)
    mean, variance = imagenet_statistics(input_shape[-1])
    normalize.adapt_mean.assign(mean)
    normalize.adapt_variance.assign(variance)
    normalize.finalize_state()
    x = _conv(round_filters(32, width), 3, "stem_conv", stride=2)(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("swish", name="stem_activation")(x)

    total = sum(round_repeats(stage[1], depth) for stage in B0_STAGES)
    index = 0
    for stage_id, (kernel, repeats, f_in, f_out, expand, stride) in enumerate(B0_STAGES, 1):
        f_in, f_out = round_filters(f_in, width), round_filters(f_out, width)
        for j in range(round_repeats(repeats, depth)):
            x = mbconv(
                x,
                kernel,
                f_in if j == 0 else f_out,
                f_out,
                expand,
                stride if j == 0 else 1,
                DROP_CONNECT_RATE * index / total,
                name=f"block{stage_id}{chr(j + 97)}_",
            )
            index += 1
    x = _conv(round_filters(1280, width), 1, "top_conv")(x)
    x = keras.layers.BatchNormalization(name="top_bn")(x)
    x = keras.layers.Activation("swish", name="top_activation")(x)
    x = head(
        x,
        include_top=include_top,
        pooling=pooling,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
    )
    return keras.Model(inputs, x, name=name or variant)
