"""Vision Transformer, ViT-Ti/S/B/L with 16 or 32 pixel patches (Dosovitskiy et al., 2021).

"An image is worth 16x16 words", ICLR 2021, eq. 1–4 and Table 1 (Ti and S
from DeiT, Touvron et al. 2021): patch embedding, a class token, learned
position embeddings, pre-LayerNorm encoder blocks (multi-head self-attention
and a GELU MLP), a final LayerNorm and a linear head on the class token.

Parameter counts at 224×224×3 with 1,000 classes equal timm's reference
implementation: vit_tiny16 5,717,416; vit_small16 22,050,664; vit_base16
86,567,656; vit_base32 88,224,232; vit_large16 304,326,632; vit_large32
306,535,400 (the paper: 86 M for B, 307 M for L).
"""

import keras

from kapps.layers import ClassTokenPositionEmbedding, TransformerBlock
from kapps.layers.common import (
    check_common_args,
    classifier,
    pool_features,
    raw_pixel_input,
)
from kapps.pretrained import catalog
from kapps.registry import register_model

SIZES = {  # Table 1 (Ti and S: DeiT)
    "tiny": {"hidden_dim": 192, "depth": 12, "heads": 3, "mlp_dim": 768},
    "small": {"hidden_dim": 384, "depth": 12, "heads": 6, "mlp_dim": 1536},
    "base": {"hidden_dim": 768, "depth": 12, "heads": 12, "mlp_dim": 3072},
    "large": {"hidden_dim": 1024, "depth": 24, "heads": 16, "mlp_dim": 4096},
}
VARIANTS = {
    f"vit_{size}{patch}": {"size": size, "patch_size": patch}
    for size in SIZES
    for patch in (16, 32)
}
LN_EPSILON = 1e-6
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's pixel statistics
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
NORMALIZATIONS = {  # (scale, offset) of raw 0–255 pixels
    "inception": (1 / 127.5, -1.0),
    "clip": (
        [1 / (255 * s) for s in CLIP_STD],
        [-m / s for m, s in zip(CLIP_MEAN, CLIP_STD, strict=True)],
    ),
}


@register_model(
    "classification",
    variants=VARIANTS,
    test_kwargs={"input_shape": (32, 32, 3), "num_classes": 5},
    checkpoint=catalog.vit,
)
def vit(
    input_shape=(224, 224, 3),
    num_classes=1000,
    *,
    size="base",
    patch_size=16,
    dropout=0.0,
    include_top=True,
    pooling=None,
    classifier_activation=None,
    patch_bias=True,
    pre_norm=False,
    activation="gelu",
    layer_norm_epsilon=LN_EPSILON,
    normalization="inception",
    name=None,
):
    """A ViT; the input sides must be multiples of `patch_size`.

    With `include_top=False` the patch tokens come back as a (H/p, W/p, dim)
    map (layer `encoder_norm` holds all tokens), so dense tasks use it like a
    convolutional backbone of stride p; `pooling="token"` gives the class
    token's features instead (CLIP's image embedding).

    The options after `classifier_activation` build CLIP's image tower
    (Radford et al. 2021, section 2.4: "an additional layer normalization to
    the combined patch and position embeddings"), as OpenAI's code has it:
    `patch_bias=False`, `pre_norm=True`, `activation="quick_gelu"`,
    `layer_norm_epsilon=1e-5`, `normalization="clip"` (CLIP's pixel mean and
    standard deviation; `"inception"`, the default, maps pixels to [-1, 1]).
    """
    check_common_args(include_top, None if pooling == "token" else pooling, num_classes)
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {sorted(NORMALIZATIONS)}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    height, width = input_shape[0], input_shape[1]
    if height % patch_size or width % patch_size:
        raise ValueError(f"input {height}×{width} is not a multiple of patch {patch_size}")
    row = SIZES[size]
    dim, depth, heads, mlp_dim = row["hidden_dim"], row["depth"], row["heads"], row["mlp_dim"]
    grid = (height // patch_size, width // patch_size)

    inputs, x = raw_pixel_input(input_shape, *NORMALIZATIONS[normalization])
    x = keras.layers.Conv2D(
        dim, patch_size, strides=patch_size, use_bias=patch_bias, name="patch_embed"
    )(x)
    x = keras.layers.Reshape((grid[0] * grid[1], dim), name="patch_tokens")(x)
    x = ClassTokenPositionEmbedding(name="cls_pos_embed")(x)
    x = keras.layers.Dropout(dropout, name="embed_dropout")(x)
    if pre_norm:
        x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="pre_norm")(x)
    for index in range(depth):
        block = TransformerBlock(
            heads,
            mlp_dim,
            dropout,
            layer_norm_epsilon,
            activation=activation,
            name=f"encoder_block{index + 1}",
        )
        x = block(x)
    x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="encoder_norm")(x)
    if include_top:
        x = keras.layers.Cropping1D((0, grid[0] * grid[1]), name="class_token")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        x = classifier(x, num_classes, classifier_activation)
    elif pooling == "token":
        x = keras.layers.Cropping1D((0, grid[0] * grid[1]), name="class_token")(x)
        x = keras.layers.Flatten(name="flatten")(x)
    else:
        x = keras.layers.Cropping1D((1, 0), name="drop_class_token")(x)
        x = keras.layers.Reshape((*grid, dim), name="feature_map")(x)
        x = pool_features(x, pooling)
    default = f"vit_{size}{patch_size}"
    return keras.Model(inputs, x, name=name or default)
