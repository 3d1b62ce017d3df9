"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012).

"ImageNet classification with deep convolutional neural networks", NeurIPS
2012, section 3 and Fig. 2: five convolutions (96 11×11/4, 256 5×5, 384 3×3,
384 3×3, 256 3×3), local response normalisation after the first two,
overlapping 3×3/2 max pooling, two dense layers of 4,096 with dropout 0.5.

The paper splits the network over two GPUs; this is the single-device form
with every connection kept (as in Caffe's "one weird trick" model without
groups). At the paper's 227×227×3 input (the 224 of the text plus the padding
its arithmetic needs) and 1,000 classes it has 62,378,344 parameters; the
paper reports 60 million for its split version.
"""

import keras

from kapps.layers import LocalResponseNormalization
from kapps.layers.common import (
    check_common_args,
    check_input_size,
    classifier,
    pool_features,
    raw_pixel_input,
)
from kapps.registry import register_model

# (filters, kernel, stride, padding, LRN after, max-pool after)
CONVS = (
    (96, 11, 4, "valid", True, True),
    (256, 5, 1, "same", True, True),
    (384, 3, 1, "same", False, False),
    (384, 3, 1, "same", False, False),
    (256, 3, 1, "same", False, True),
)


@register_model(
    "classification",
    variants={"alexnet": {}},
    test_kwargs={"input_shape": (67, 67, 3), "num_classes": 5, "fc_units": 64},
    no_checkpoint=(
        "torchvision's AlexNet is the one-GPU variant of Krizhevsky's 2014 paper (64, 192, "
        "384, 256, 256 filters, no local response normalisation), not the 2012 paper's layers"
    ),
    min_input_size=67,
)
def alexnet(
    input_shape=(227, 227, 3),
    num_classes=1000,
    *,
    fc_units=4096,
    dropout=0.5,
    include_top=True,
    pooling=None,
    classifier_activation=None,
    name=None,
):
    """AlexNet; inputs of at least 67×67 (the three pools need a 1×1 map).

    Feature maps by layer name: `conv{1..5}_relu`, `pool{1,2,5}`.

    Example:
    >>> alexnet().count_params()
    62378344
    """
    check_common_args(include_top, pooling, num_classes)
    check_input_size(input_shape, 67, "alexnet")
    inputs, x = raw_pixel_input(input_shape)
    for index, (filters, kernel, stride, padding, lrn, pool) in enumerate(CONVS, start=1):
        x = keras.layers.Conv2D(
            filters, kernel, strides=stride, padding=padding, name=f"conv{index}"
        )(x)
        x = keras.layers.ReLU(name=f"conv{index}_relu")(x)
        if lrn:
            x = LocalResponseNormalization(name=f"conv{index}_lrn")(x)
        if pool:
            x = keras.layers.MaxPooling2D(3, strides=2, name=f"pool{index}")(x)
    if include_top:
        x = keras.layers.Flatten(name="flatten")(x)
        for index in (6, 7):
            x = keras.layers.Dense(fc_units, activation="relu", name=f"fc{index}")(x)
            x = keras.layers.Dropout(dropout, name=f"fc{index}_dropout")(x)
        x = classifier(x, num_classes, classifier_activation)
    else:
        x = pool_features(x, pooling)
    return keras.Model(inputs, x, name=name or "alexnet")
