"""GoogLeNet, Inception v1 (Szegedy et al., 2015).

"Going deeper with convolutions", CVPR 2015, Table 1 and Fig. 3. Nine
inception modules of four parallel branches (1×1; 1×1 → 3×3; 1×1 → 5×5;
3×3 max-pool → 1×1), local response normalisation in the stem, 40 % dropout
before the classifier, and optional auxiliary classifiers on 4a and 4d
(5×5/3 average pool, 1×1 conv of 128, dense 1,024, 70 % dropout).

Table 1's parameter column counts weights without biases, in units of 1,024.
Built from the table's own filter numbers, the weights total 6,824K against
the column's 6,798K (0.4 % apart); single rows of the column disagree with
its filter numbers by up to 7 % (4c, 5a) and conv1's 2.7K cannot come from a
7×7×3×64 kernel, so the test holds the total to 1 % and each module to 8 %.
With biases, at 224×224×3 and 1,000 classes: 6,998,552 parameters, and
13,378,280 with the auxiliary heads.
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

# Table 1: name: (#1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj)
MODULES = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
POOL_BEFORE = {"4a", "5a"}
AUX_AFTER = ("4a", "4d")


def _conv(x, filters, kernel, name, stride=1):
    return keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", activation="relu", name=name
    )(x)


def inception(x, spec, name):
    """The four-branch module, concatenated along channels."""
    n1, r3, n3, r5, n5, proj = spec
    branch1 = _conv(x, n1, 1, f"{name}_1x1")
    branch3 = _conv(_conv(x, r3, 1, f"{name}_3x3_reduce"), n3, 3, f"{name}_3x3")
    branch5 = _conv(_conv(x, r5, 1, f"{name}_5x5_reduce"), n5, 5, f"{name}_5x5")
    pooled = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branch_pool = _conv(pooled, proj, 1, f"{name}_pool_proj")
    return keras.layers.Concatenate(name=f"{name}_output")([branch1, branch3, branch5, branch_pool])


def auxiliary_classifier(x, num_classes, name):
    x = keras.layers.AveragePooling2D(5, strides=3, name=f"{name}_pool")(x)
    x = _conv(x, 128, 1, f"{name}_conv")
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = keras.layers.Dense(1024, activation="relu", name=f"{name}_fc")(x)
    x = keras.layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return classifier(x, num_classes, None, name=f"{name}_predictions")


@register_model(
    "classification",
    variants={"googlenet": {}},
    test_kwargs={"input_shape": (32, 32, 3), "num_classes": 5},
    no_checkpoint=(
        "torchvision's GoogLeNet adds batch normalisation, drops local response "
        "normalisation and uses 3×3 convolutions in the 5×5 branches, so its weights "
        "are not the paper's layers"
    ),
)
def googlenet(
    input_shape=(224, 224, 3),
    num_classes=1000,
    *,
    aux_heads=False,
    dropout=0.4,
    include_top=True,
    pooling=None,
    classifier_activation=None,
    name=None,
):
    """GoogLeNet; with `aux_heads=True` the model returns [main, aux_4a, aux_4d] logits.

    The auxiliary heads need inputs of at least 224×224 (their 5×5/3 pooling
    runs on the 14×14 maps); the paper weights their losses by 0.3.
    Feature maps by layer name: `conv2_3x3` (stride 4), `inception_3b_output`
    (8), `inception_4e_output` (16), `inception_5b_output` (32).
    """
    check_common_args(include_top, pooling, num_classes)
    check_input_size(input_shape, 224 if aux_heads else 32, "googlenet")
    inputs, x = raw_pixel_input(input_shape)
    x = _conv(x, 64, 7, "conv1_7x7", stride=2)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = LocalResponseNormalization(name="norm1")(x)
    x = _conv(x, 64, 1, "conv2_3x3_reduce")
    x = _conv(x, 192, 3, "conv2_3x3")
    x = LocalResponseNormalization(name="norm2")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    aux_outputs = []
    for module, spec in MODULES.items():
        if module in POOL_BEFORE:
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{module[0]}")(x)
        x = inception(x, spec, f"inception_{module}")
        if aux_heads and include_top and module in AUX_AFTER:
            aux_outputs.append(auxiliary_classifier(x, num_classes, f"aux_{module}"))
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(dropout, name="top_dropout")(x)
        x = classifier(x, num_classes, classifier_activation)
    else:
        x = pool_features(x, pooling)
    outputs = [x, *aux_outputs] if aux_outputs else x
    return keras.Model(inputs, outputs, name=name or "googlenet")
