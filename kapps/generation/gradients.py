"""The gradient of a function's output with respect to its input, on each backend.

Keras has no backend-neutral gradient op, and WGAN-GP's penalty needs one inside
the loss (a gradient the optimiser then differentiates again). Each backend's own
autodiff is imported only when that backend runs.
"""

import keras
from keras import ops


def input_gradient(fn, x):
    """d sum(fn(x)) / dx, differentiable again (for a loss that holds it)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            y = ops.sum(fn(x))
        return tape.gradient(y, x)
    if backend == "jax":
        import jax

        return jax.grad(lambda value: ops.sum(fn(value)))(x)
    if backend == "torch":
        import torch

        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(ops.sum(fn(x)), x, create_graph=True)[0]
    raise NotImplementedError(f"no input gradient on the {backend} backend")
