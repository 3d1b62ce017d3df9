"""Pieces every classification builder shares: input, normalisation, head."""

import keras

POOLINGS = (None, "avg", "max")


def check_common_args(include_top, pooling, num_classes):
    """Validate the arguments every builder takes the same way."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if include_top and (num_classes is None or num_classes < 1):
        raise ValueError(f"include_top=True needs num_classes >= 1, got {num_classes!r}")


def raw_pixel_input(input_shape, scale=1 / 127.5, offset=-1.0):
    """An `Input` for raw 0–255 pixels and its rescaled tensor ([-1, 1] by default).

    Normalising inside the model lets a saved `.keras` file predict on raw images.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Rescaling(scale, offset=offset, name="rescale")(inputs)
    return inputs, x


def pool_features(x, pooling):
    """Apply the `pooling` argument of a headless builder to a feature map."""
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def classifier(x, num_classes, classifier_activation, name="predictions"):
    """The logits (or activated) output layer, always computed in float32.

    float32 keeps mixed-precision training stable at the loss.
    """
    return keras.layers.Dense(
        num_classes, activation=classifier_activation, dtype="float32", name=name
    )(x)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_statistics(channels):
    """ImageNet mean and variance per channel; their averages for non-RGB inputs."""
    if channels == 3:
        return list(IMAGENET_MEAN), [s**2 for s in IMAGENET_STD]
    mean, std = sum(IMAGENET_MEAN) / 3, sum(IMAGENET_STD) / 3
    return [mean] * channels, [std**2] * channels


def imagenet_input(input_shape):
    """An `Input` for raw 0–255 pixels, scaled to [0, 1] and ImageNet-normalised."""
    inputs, x = raw_pixel_input(input_shape, scale=1 / 255.0, offset=0.0)
    mean, variance = imagenet_statistics(input_shape[-1])
    x = keras.layers.Normalization(mean=mean, variance=variance, name="normalize")(x)
    return inputs, x


def head(x, *, include_top, pooling, num_classes, classifier_activation, dropout=0.0):
    """The shared ending: global average pool → (dropout) → classifier, or `pooling`."""
    if not include_top:
        return pool_features(x, pooling)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="top_dropout")(x)
    return classifier(x, num_classes, classifier_activation)


def check_input_size(input_shape, minimum, name):
    """Reject inputs the network's strides would shrink below one pixel."""
    height, width = input_shape[0], input_shape[1]
    if height is not None and width is not None and min(height, width) < minimum:
        raise ValueError(
            f"{name} needs inputs of at least {minimum}×{minimum}, got {height}×{width}; "
            "upscale the images (data.image_size)"
        )
