"""Segmenter (Strudel, Garcia, Laptev and Schmid, 2021): ViT encoder, mask transformer.

"Segmenter: Transformer for Semantic Segmentation", ICCV 2021, section 3.2:
the ViT encodes the image's patches; the decoder appends one learned
embedding per class to the patch tokens, runs them through transformer
blocks, projects patches and classes, L2-normalises both and takes their
scalar products as patch-level class masks (N × K), layer-normalised over
classes and upsampled bilinearly to the input size. The paper uses two
decoder layers of the encoder's width; so does this builder.
"""

import keras

from kapps.classification.vit import LN_EPSILON, SIZES, vit
from kapps.layers import ClassEmbeddings, TransformerBlock
from kapps.registry import register_model

VARIANTS = {
    f"segmenter_{size}{patch}": {"size": size, "patch_size": patch}
    for size in ("tiny", "small", "base")
    for patch in (8, 16)
}


@register_model(
    "segmentation",
    variants=VARIANTS,
    test_kwargs={"input_shape": (32, 32, 3), "num_classes": 3},
)
def segmenter(
    input_shape=(512, 512, 3),
    num_classes=150,
    *,
    size="small",
    patch_size=16,
    decoder_layers=2,
    dropout=0.0,
    name=None,
):
    """Segmenter with a mask-transformer decoder; outputs logits (H, W, num_classes).

    Args:
        input_shape: (height, width, channels), sides multiples of `patch_size`.
        num_classes: output classes, background included.
        size: ViT size of the encoder ("tiny", "small", "base", "large").
        patch_size: encoder patch side; the masks are predicted per patch.
        decoder_layers: transformer blocks of the mask decoder (the paper: 2).

    Example:
    >>> segmenter((32, 32, 3), num_classes=4, size="tiny", patch_size=8).output_shape
    (None, 32, 32, 4)
    """
    row = SIZES[size]
    dim, heads, mlp_dim = row["hidden_dim"], row["heads"], row["mlp_dim"]
    encoder = vit(input_shape, size=size, patch_size=patch_size, dropout=dropout, include_top=False)
    grid = (input_shape[0] // patch_size, input_shape[1] // patch_size)
    patches = grid[0] * grid[1]
    x = keras.layers.Reshape((patches, dim), name="patch_encodings")(encoder.output)
    x = keras.layers.Dense(dim, name="decoder_proj")(x)
    x = ClassEmbeddings(num_classes, name="class_embeddings")(x)
    for index in range(decoder_layers):
        block = TransformerBlock(
            heads, mlp_dim, dropout, LN_EPSILON, name=f"decoder_block{index + 1}"
        )
        x = block(x)
    x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="decoder_norm")(x)
    patch_features = keras.layers.Cropping1D((0, num_classes), name="patch_features")(x)
    class_features = keras.layers.Cropping1D((patches, 0), name="class_features")(x)
    patch_features = keras.layers.Dense(dim, use_bias=False, name="proj_patch")(patch_features)
    class_features = keras.layers.Dense(dim, use_bias=False, name="proj_classes")(class_features)
    patch_features = keras.layers.UnitNormalization(name="patch_l2norm")(patch_features)
    class_features = keras.layers.UnitNormalization(name="class_l2norm")(class_features)
    masks = keras.layers.Dot(axes=(2, 2), name="masks")([patch_features, class_features])
    masks = keras.layers.LayerNormalization(epsilon=1e-5, name="mask_norm")(masks)
    masks = keras.layers.Reshape((*grid, num_classes), name="mask_grid")(masks)
    logits = keras.layers.UpSampling2D(
        patch_size, interpolation="bilinear", dtype="float32", name="logits"
    )(masks)
    return keras.Model(encoder.inputs, logits, name=name or f"segmenter_{size}{patch_size}")
