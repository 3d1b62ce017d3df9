"""Multi-scale feature maps of any convolutional (or ViT) model, by layer name."""

import math

import keras


def feature_layers(model):
    """`{stride: layer name}`: the last layer at each downsampling level of `model`.

    A layer counts when no later layer has a finer map, which skips side
    branches such as squeeze-and-excitation's 1×1 maps. Works for kapps'
    builders and for keras.applications models alike.

    Example:
    >>> import kapps
    >>> feature_layers(kapps.create_model("resnet50", include_top=False))[8]
    'conv3_block4_out'
    """
    height = model.inputs[0].shape[1]
    if height is None:
        raise ValueError(f"{model.name} has no fixed input height; build it with an input_shape")
    found, finest_later = {}, None
    for layer in reversed(model.layers):
        shape = getattr(layer.output, "shape", None)
        if shape is None or len(shape) != 4 or not shape[1]:
            continue
        if isinstance(layer, keras.layers.ZeroPadding2D):
            continue  # padding ahead of a strided convolution, not a feature map
        stride = 2 ** round(math.log2(height / shape[1]))
        if stride < 2 or stride in found:
            continue
        if finest_later is None or stride <= finest_later:
            found[stride] = layer.name
            finest_later = stride
    return dict(sorted(found.items()))


def feature_extractor(model, layer_names=None):
    """A model returning the named layers' outputs (default: every stride's last map)."""
    names = layer_names or list(feature_layers(model).values())
    outputs = [model.get_layer(name).output for name in names]
    return keras.Model(model.inputs, outputs, name=f"{model.name}_features")
