"""LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998).

"Gradient-based learning applied to document recognition", Proc. IEEE 86(11),
section II.B and Fig. 2:

| layer | paper                         | here                                |
|-------|-------------------------------|-------------------------------------|
| input | 32×32                         | any size; smaller is zero-padded to 32×32 |
| C1    | 6 @ 28×28, 5×5 conv           | `c1_conv`                           |
| S2    | 6 @ 14×14, 2×2 subsampling    | `s2_pool` (average in "paper", max in "modern") |
| C3    | 16 @ 10×10, 5×5 conv          | `c3_conv`, every S2 map connected   |
| S4    | 16 @ 5×5, 2×2 subsampling     | `s4_pool`                           |
| C5    | 120 @ 1×1, 5×5 conv           | `c5_conv`                           |
| F6    | 84 units                      | `f6_dense`                          |
| out   | 10 Euclidean RBF units        | `predictions`, a dense layer giving logits |

Smaller inputs are padded as the paper centres 28×28 MNIST in a 32×32 field.

Parameter count at 32×32×1 with 10 classes: 61,706 (the paper reports about
60,000; the difference is C3's full connectivity, 2,416 weights instead of the
paper's 1,516, and a dense output instead of fixed RBF prototypes).

Styles: "paper" uses tanh and average pooling; "modern" uses ReLU and max
pooling, which trains faster with today's optimisers.
"""

import keras

from kapps.layers.common import (
    check_common_args,
    classifier,
    pool_features,
    raw_pixel_input,
)
from kapps.registry import register_model

STYLES = {
    "paper": {"activation": "tanh", "pool": keras.layers.AveragePooling2D},
    "modern": {"activation": "relu", "pool": keras.layers.MaxPooling2D},
}
PAPER_INPUT = 32


def _pad_to_paper_size(x, height, width):
    pad_h, pad_w = max(0, PAPER_INPUT - height), max(0, PAPER_INPUT - width)
    if not (pad_h or pad_w):
        return x
    padding = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
    return keras.layers.ZeroPadding2D(padding, name="pad_to_32")(x)


@register_model(
    "classification",
    variants={"lenet5": {"style": "modern"}, "lenet5_paper": {"style": "paper"}},
    test_kwargs={"input_shape": (32, 32, 1), "num_classes": 10},
    no_checkpoint="LeNet-5 has no ImageNet checkpoint (it reads 32×32 digits)",
    min_input_size=1,
)
def lenet5(
    input_shape=(32, 32, 1),
    num_classes=10,
    *,
    style="modern",
    include_top=True,
    pooling=None,
    classifier_activation=None,
    name=None,
):
    """LeNet-5, adapting to the input size.

    Args:
        input_shape: (height, width, channels) of raw 0–255 pixels. Inputs
            smaller than 32×32 are zero-padded to 32×32; larger ones give C5 a
            larger map, flattened before F6.
        num_classes: size of the output layer.
        style: "paper" (tanh, average pooling) or "modern" (ReLU, max pooling).
        include_top: add F6 and the output layer; otherwise return C5's maps.
        pooling: None, "avg" or "max", applied to C5's maps when
            `include_top=False`.
        classifier_activation: activation of the output; None gives logits.
        name: model name; defaults to "lenet5" or "lenet5_paper".

    Example:
    >>> model = lenet5((28, 28, 1), num_classes=10)
    >>> model.count_params()
    61706
    """
    check_common_args(include_top, pooling, num_classes)
    if style not in STYLES:
        raise ValueError(f"style must be one of {sorted(STYLES)}, got {style!r}")
    act, pool = STYLES[style]["activation"], STYLES[style]["pool"]
    height, width = input_shape[0], input_shape[1]

    inputs, x = raw_pixel_input(input_shape)
    x = _pad_to_paper_size(x, height, width)
    x = keras.layers.Conv2D(6, 5, activation=act, name="c1_conv")(x)
    x = pool(2, name="s2_pool")(x)
    x = keras.layers.Conv2D(16, 5, activation=act, name="c3_conv")(x)
    x = pool(2, name="s4_pool")(x)
    x = keras.layers.Conv2D(120, 5, activation=act, name="c5_conv")(x)
    if include_top:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(84, activation=act, name="f6_dense")(x)
        x = classifier(x, num_classes, classifier_activation)
    else:
        x = pool_features(x, pooling)
    default_name = "lenet5" if style == "modern" else "lenet5_paper"
    return keras.Model(inputs, x, name=name or default_name)
