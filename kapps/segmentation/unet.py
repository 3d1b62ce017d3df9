"""U-Net (Ronneberger, Fischer and Brox, 2015), classic or on any encoder.

"U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI
2015, Fig. 1: a contracting path of 3×3 convolution pairs and 2×2 max pools
that doubles the filters at each of four steps (64 → 1024), an expanding
path of 2×2 up-convolutions that halve them, concatenation with the
contracting path's feature map at each level, and a 1×1 convolution to the
class scores. At the paper's size (one input channel, two classes) the
network has 31,030,658 parameters, the count the tests derive layer by layer
from Fig. 1.
Two deliberate differences, both common practice and both switchable: "same"
padding so the output covers the whole input (the paper crops, its output is
smaller than its input), and optional batch normalisation. An addition, off by
default: a space-to-depth stem (`space_to_depth`), which runs the network on
b×b patches packed into channels and pixel-shuffles its logits back.

With `encoder=` the contracting path is any classification model built with
`include_top=False` (kapps name or "keras.applications/…"): its last feature
map at each stride is a skip connection (`kapps.feature_layers`), or the
layers named in `skip_layers`.
"""

import keras

from kapps.features import feature_layers
from kapps.layers.common import raw_pixel_input
from kapps.registry import create_model, register_model

VARIANTS = {
    "unet": {},
    "unet_resnet34": {"encoder": "resnet34", "decoder_filters": (256, 128, 64, 32, 16)},
    "unet_mobilenet": {"encoder": "mobilenet", "decoder_filters": (256, 128, 64, 32, 16)},
    "unet_efficientnet_b0": {
        "encoder": "efficientnet_b0",
        "decoder_filters": (256, 128, 64, 32, 16),
    },
}


def conv_pair(x, filters, batch_norm, name, padding="same"):
    """Two 3×3 convolutions with ReLU (and batch norm): one box pair of Fig. 1."""
    for index in (1, 2):
        x = keras.layers.Conv2D(
            filters, 3, padding=padding, use_bias=not batch_norm, name=f"{name}_conv{index}"
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{name}_bn{index}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{index}")(x)
    return x


def up_block(x, skip, filters, batch_norm, name):
    """2×2 up-convolution halving the filters, concatenation with the skip, conv pair."""
    x = keras.layers.Conv2DTranspose(filters, 2, strides=2, name=f"{name}_upconv")(x)
    if skip is not None:
        x = keras.layers.Concatenate(name=f"{name}_concat")([skip, x])
    return conv_pair(x, filters, batch_norm, name)


def segmentation_head(x, num_classes, name="logits"):
    """1×1 convolution to per-class logits, kept in float32 under mixed precision."""
    return keras.layers.Conv2D(num_classes, 1, dtype="float32", name=name)(x)


def _regroup(x, split, merged, name, dtype=None):
    """Reshape to `split` (5-D), swap its axes 2 and 3, reshape to `merged` (Keras layers only)."""
    x = keras.layers.Reshape(split, name=f"{name}_split", dtype=dtype)(x)
    x = keras.layers.Permute((1, 3, 2, 4, 5), name=f"{name}_permute", dtype=dtype)(x)
    return keras.layers.Reshape(merged, name=f"{name}_merge", dtype=dtype)(x)


def pixel_unshuffle(x, block, name):
    """Move each block×block patch of pixels into channels: (H, W, C) → (H/b, W/b, b·b·C)."""
    height, width, channels = x.shape[1:]
    rows, cols = height // block, width // block
    return _regroup(
        x, (rows, block, cols, block, channels), (rows, cols, block * block * channels), name
    )


def pixel_shuffle(x, block, name, dtype=None):
    """The inverse of `pixel_unshuffle`: the sub-pixel convolution's shuffle (Shi et al. 2016).

    `dtype="float32"` keeps float32 logits float32 under mixed precision.
    """
    height, width, channels = x.shape[1:]
    out = channels // (block * block)
    return _regroup(
        x, (height, width, block, block, out), (height * block, width * block, out), name, dtype
    )


def _classic(input_shape, num_classes, depth, filters, batch_norm, dropout, block=1):
    inputs, x = raw_pixel_input(input_shape)
    if block > 1:
        x = pixel_unshuffle(x, block, "space_to_depth")
    skips = []
    for level in range(depth):
        x = conv_pair(x, filters * 2**level, batch_norm, f"down{level + 1}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"down{level + 1}_pool")(x)
    x = conv_pair(x, filters * 2**depth, batch_norm, "bottleneck")
    if dropout:
        x = keras.layers.Dropout(dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(depth)):
        x = up_block(x, skips[level], filters * 2**level, batch_norm, f"up{level + 1}")
    if block == 1:
        return inputs, segmentation_head(x, num_classes)
    logits = segmentation_head(x, num_classes * block * block)
    return inputs, pixel_shuffle(logits, block, "depth_to_space", dtype="float32")


def _on_encoder(
    input_shape, num_classes, encoder, skip_layers, decoder_filters, batch_norm, weights
):
    backbone = encoder
    if isinstance(encoder, str):
        backbone = create_model(
            encoder, input_shape=input_shape, include_top=False, weights=weights
        )
    names = skip_layers or list(feature_layers(backbone).values())
    outputs = [backbone.get_layer(n).output for n in names]
    deepest = outputs[-1]
    stride = input_shape[0] // deepest.shape[1]
    levels = stride.bit_length() - 1
    if len(decoder_filters) < levels:
        raise ValueError(
            f"the encoder's stride is {stride}: decoder_filters needs {levels} entries, "
            f"got {len(decoder_filters)}"
        )
    by_size = {o.shape[1]: o for o in outputs[:-1]}
    x = deepest
    for index in range(levels):
        size = deepest.shape[1] * 2 ** (index + 1)
        x = up_block(
            x, by_size.get(size), decoder_filters[index], batch_norm, f"up{levels - index}"
        )
    return backbone.inputs[0], segmentation_head(x, num_classes)


@register_model(
    "segmentation",
    variants=VARIANTS,
    test_kwargs={"input_shape": (32, 32, 3), "num_classes": 3, "filters": 4, "depth": 2},
)
def unet(
    input_shape=(256, 256, 3),
    num_classes=2,
    *,
    depth=4,
    filters=64,
    batch_norm=False,
    dropout=0.0,
    space_to_depth=1,
    encoder=None,
    skip_layers=None,
    decoder_filters=(256, 128, 64, 32, 16),
    encoder_weights=None,
    name=None,
):
    """A U-Net returning per-pixel class logits (H, W, num_classes) at input size.

    Args:
        input_shape: (height, width, channels); sides divisible by 2**depth
            (by the encoder's largest stride with `encoder`).
        num_classes: output channels, background included.
        depth: pooling steps of the classic contracting path (the paper: 4).
        filters: filters of the first level, doubled at each step (the paper: 64).
        batch_norm: batch normalisation after every 3×3 convolution.
        dropout: dropout at the bottleneck (the paper drops out at the end of
            the contracting path).
        space_to_depth: block size b of an optional space-to-depth stem (not
            in the paper; 1 = off): each b×b patch of pixels becomes one pixel
            of b·b·C channels, the U-Net runs at 1/b of the resolution, and its
            1×1 head gives b·b·num_classes logits that a pixel shuffle puts
            back at input resolution. For small images on CPUs, where the
            full-resolution level with few channels costs most of the time.
        encoder: a classification model name or a headless `keras.Model` to
            use as the contracting path; then `depth` and `filters` are unused.
        skip_layers: encoder layer names used as skip connections, shallow to
            deep, the last one being the deepest map; default: the last layer
            at each stride.
        decoder_filters: filters of each up block, deepest first (encoder only).
        encoder_weights: the named encoder's `weights` (`"imagenet"`, a path or
            a keras-hub preset; see `kapps.create_model`).

    Example:
    >>> model = unet((64, 64, 3), num_classes=3, filters=8, depth=3)
    >>> model.output_shape
    (None, 64, 64, 3)
    """
    if space_to_depth < 1 or (encoder is not None and space_to_depth != 1):
        raise ValueError(
            f"space_to_depth must be >= 1, and 1 with an encoder; got {space_to_depth}"
        )
    if encoder_weights is not None and not isinstance(encoder, str):
        raise ValueError("encoder_weights needs encoder= a registered classification model name")
    if encoder is None:
        side = space_to_depth * 2**depth
        if input_shape[0] % side or input_shape[1] % side:
            raise ValueError(f"input sides must be multiples of space_to_depth * 2**depth = {side}")
        inputs, logits = _classic(
            input_shape, num_classes, depth, filters, batch_norm, dropout, space_to_depth
        )
        default = "unet"
    else:
        inputs, logits = _on_encoder(
            input_shape,
            num_classes,
            encoder,
            skip_layers,
            decoder_filters,
            batch_norm,
            encoder_weights,
        )
        default = f"unet_{encoder if isinstance(encoder, str) else encoder.name}"
    return keras.Model(inputs, logits, name=name or default.replace("/", "_").replace(".", "_"))
