"""Online elastic weight consolidation (Kirkpatrick et al. 2017; online: Schwarz et al. 2018).

After each task the diagonal of the empirical Fisher information of the
task's training examples — the mean over examples of the squared gradient of
log p(y | x) — is added to the running Fisher, decayed by γ, and the weights
are kept as the anchor. While later tasks train, each weight pays
λ / 2 · F · (θ − θ*)², attached as the variable's Keras regularizer, so it
enters the loss on every backend as `model.losses`.

Per-example gradients have no Keras op; `_gradients` asks the backend.
"""

import keras
import numpy as np
from keras import ops


class EWCPenalty:
    """λ / 2 · Σ F · (θ − θ*)² of one variable, as a Keras regularizer."""

    def __init__(self, fisher, anchor, strength):
        self.fisher, self.anchor, self.strength = fisher, anchor, strength

    def __call__(self, variable):
        fisher = ops.convert_to_tensor(self.fisher, "float32")
        anchor = ops.convert_to_tensor(self.anchor, "float32")
        drift = ops.cast(variable, "float32") - anchor
        return 0.5 * self.strength * ops.sum(fisher * ops.square(drift))


def fisher_diagonal(model, images, labels):
    """Mean over the examples of each trainable weight's squared log-likelihood gradient."""
    total = [np.zeros(v.shape, dtype=np.float64) for v in model.trainable_variables]
    for image, label in zip(images, labels, strict=True):
        for acc, grad in zip(total, _gradients(model, image[None], label[None]), strict=True):
            acc += np.square(grad)
    return [acc / max(1, len(images)) for acc in total]


def consolidate(model, fisher, gamma, strength):
    """Anchor the weights where they are now, and penalise moving them (online EWC).

    `fisher` is this task's; the running Fisher (kept on the model's variables'
    penalties) decays by `gamma` and adds it. Returns nothing; the variables
    carry their penalties until `release`.
    """
    for variable, new in zip(model.trainable_variables, fisher, strict=True):
        old = variable.regularizer.fisher if isinstance(variable.regularizer, EWCPenalty) else 0.0
        anchor = keras.ops.convert_to_numpy(variable.value)
        variable.regularizer = EWCPenalty(gamma * old + new, anchor, strength)


def release(model):
    """Take the penalties off (before saving: the saved model is a plain classifier)."""
    for variable in model.trainable_variables:
        if isinstance(variable.regularizer, EWCPenalty):
            variable.regularizer = None


def _log_likelihood(model, trainable, non_trainable, images, labels):
    logits, _ = model.stateless_call(trainable, non_trainable, images, training=False)
    return -keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)[0]


def _gradients(model, images, labels):
    """Gradients of log p(labels | images) with respect to the trainable weights, as NumPy."""
    backend = keras.backend.backend()
    variables = model.trainable_variables
    non_trainable = [v.value for v in model.non_trainable_variables]
    if backend == "jax":
        import jax

        def value(trainable):
            return _log_likelihood(model, trainable, non_trainable, images, labels)

        return [np.asarray(g) for g in jax.grad(value)([v.value for v in variables])]
    if backend == "torch":
        import torch

        trainable = [v.value.detach().requires_grad_(True) for v in variables]
        value = _log_likelihood(
            model, trainable, non_trainable, torch.as_tensor(images), torch.as_tensor(labels)
        )
        grads = torch.autograd.grad(value, trainable)
        return [g.detach().cpu().numpy() for g in grads]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        logits = model(images, training=False)
        value = -keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)[0]
    return [g.numpy() for g in tape.gradient(value, variables)]
