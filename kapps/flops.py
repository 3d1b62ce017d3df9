"""`count_flops`: multiply–adds of a model for one input, layer by layer.

Counted as the MobileNet paper counts them: one multiply–add per weight use in
convolutions (depthwise included), dense layers and attention (the four
projections plus the score and weighting products); an average pool as one
multiply–add per input element it reads. Normalisation, activations, max
pooling and additions count zero: they are not multiply–adds, or fold into
the neighbouring layer at inference.
"""

import math

import keras

from kapps.layers.transformer import TransformerBlock


def _spatial(shape):
    return math.prod(shape[1:-1])


def _conv(layer, inputs, output):
    kernel = math.prod(layer.kernel_size) * inputs[-1] // layer.groups
    return _spatial(output) * output[-1] * kernel


def _depthwise(layer, inputs, output):
    return _spatial(output) * output[-1] * math.prod(layer.kernel_size)


def _dense(layer, inputs, output):
    return math.prod(inputs[1:-1]) * inputs[-1] * output[-1]


def _average_pool(layer, inputs, output):
    return math.prod(inputs[1:])


def _transformer_block(layer, inputs, output):
    """q, k, v and output projections, QKᵀ and the weighting, and the two MLP layers."""
    tokens, width = math.prod(inputs[1:-1]), inputs[-1]
    projections = 4 * tokens * width * width
    scores = 2 * tokens * tokens * width
    return projections + scores + 2 * tokens * width * layer.intermediate_dim


def _attention(layer, query, value):
    heads, key_dim = layer.num_heads, layer.key_dim
    value_dim = layer.value_dim or key_dim
    t_q, t_v = math.prod(query[1:-1]), math.prod(value[1:-1])
    projections = t_q * query[-1] * heads * key_dim  # query
    projections += t_v * value[-1] * heads * (key_dim + value_dim)  # key and value
    scores = t_q * t_v * heads * (key_dim + value_dim)  # QKᵀ and the weighted sum
    output = t_q * heads * value_dim * query[-1]
    return projections + scores + output


COUNTERS = {
    keras.layers.DepthwiseConv2D: _depthwise,
    keras.layers.Conv1D: _conv,
    keras.layers.Conv2D: _conv,
    keras.layers.Conv3D: _conv,
    keras.layers.Dense: _dense,
    keras.layers.AveragePooling2D: _average_pool,
    keras.layers.GlobalAveragePooling2D: _average_pool,
    keras.layers.GlobalAveragePooling1D: _average_pool,
    TransformerBlock: _transformer_block,
}


def _layer_flops(layer):
    if isinstance(layer, keras.Model):
        return count_flops(layer)
    if isinstance(layer, keras.layers.MultiHeadAttention):
        node = layer._inbound_nodes[0]
        tensors = node.arguments.keras_tensors
        query, value = tensors[0].shape, tensors[1].shape if len(tensors) > 1 else tensors[0].shape
        return _attention(layer, query, value)
    for kind in type(layer).__mro__:
        if kind in COUNTERS:
            total = 0
            for node in layer._inbound_nodes:
                inputs = node.arguments.keras_tensors[0].shape
                total += COUNTERS[kind](layer, inputs, node.outputs[0].shape)
            return total
    return 0


def count_flops(model):
    """Multiply–adds of `model` for one input (batch size 1).

    Example:
    >>> import kapps
    >>> round(count_flops(kapps.create_model("mobilenet")) / 1e6)
    569
    """
    return int(sum(_layer_flops(layer) for layer in model.layers))
