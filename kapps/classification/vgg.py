"""VGG-16 and VGG-19 (Simonyan and Zisserman, 2015), configurations D and E.

"Very deep convolutional networks for large-scale image recognition", ICLR
2015, Table 1. Parameter counts at 224×224×3 with 1,000 classes equal
keras.applications' VGG16 (138,357,544) and VGG19 (143,667,240); the paper
reports 138 and 144 million.
"""

import keras

from kapps.layers import ImagePreprocessing
from kapps.layers.common import (
    check_common_args,
    check_input_size,
    classifier,
    pool_features,
)
from kapps.pretrained import catalog
from kapps.registry import register_model

VARIANTS = {
    "vgg16": {"depths": (2, 2, 3, 3, 3)},
    "vgg19": {"depths": (2, 2, 4, 4, 4)},
}
STAGE_FILTERS = (64, 128, 256, 512, 512)


@register_model(
    "classification",
    variants={name: {"variant": name} for name in VARIANTS},
    test_kwargs={"input_shape": (32, 32, 3), "num_classes": 5, "fc_units": 64},
    checkpoint=catalog.vgg,
)
def vgg(
    input_shape=(224, 224, 3),
    num_classes=1000,
    *,
    variant="vgg16",
    fc_units=4096,
    dropout=0.5,
    include_top=True,
    pooling=None,
    classifier_activation=None,
    name=None,
):
    """VGG: stacks of 3×3 convolutions, five max-pools, three dense layers.

    Args:
        fc_units: width of the two hidden dense layers (4,096 in the paper).
        dropout: dropout after each hidden dense layer, as in the paper.

    Feature maps by layer name: `block{1..5}_pool` (strides 2 to 32).

    Example:
    >>> vgg((224, 224, 3), 1000, variant="vgg16").count_params()
    138357544
    """
    check_common_args(include_top, pooling, num_classes)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    check_input_size(input_shape, 32, variant)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = ImagePreprocessing("caffe", name="preprocess")(inputs)  # as its weights were trained
    depths = VARIANTS[variant]["depths"]
    for stage, (filters, depth) in enumerate(zip(STAGE_FILTERS, depths, strict=True), start=1):
        for index in range(1, depth + 1):
            x = keras.layers.Conv2D(
                filters, 3, padding="same", activation="relu", name=f"block{stage}_conv{index}"
            )(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{stage}_pool")(x)
    if include_top:
        x = keras.layers.Flatten(name="flatten")(x)
        for index in (1, 2):
            x = keras.layers.Dense(fc_units, activation="relu", name=f"fc{index}")(x)
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"fc{index}_dropout")(x)
        x = classifier(x, num_classes, classifier_activation)
    else:
        x = pool_features(x, pooling)
    return keras.Model(inputs, x, name=name or variant)
