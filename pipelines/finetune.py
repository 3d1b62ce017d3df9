"""Fine-tuning a pretrained model: a frozen-backbone phase and a smaller backbone learning rate.

`train.freeze_epochs` trains the new head first: the pretrained layers are
not trainable, so their batch normalisation runs in inference mode (Keras 3
normalises with the moving statistics in a layer that is not trainable),
then every layer trains. `train.backbone_lr_mult` gives the pretrained
layers a fraction of the learning rate through the optimiser's own update
step, so the schedule, weight decay and EMA stay Keras'.
"""

import os

import keras

from pipelines.runs import atomic_write

BASE_OPTIMIZERS = (keras.optimizers.SGD, keras.optimizers.Adam, keras.optimizers.AdamW)


def _layerwise(base):
    """`base` whose update step scales the learning rate of some layers' variables."""

    @keras.saving.register_keras_serializable(package="kapps", name=f"Layerwise{base.__name__}")
    class Layerwise(base):
        def __init__(self, *args, scaled_layers=(), lr_mult=1.0, **kwargs):
            super().__init__(*args, **kwargs)
            self.scaled_layers, self.lr_mult = list(scaled_layers), float(lr_mult)
            self._scaled = frozenset(self.scaled_layers)

        def build(self, variables):
            super().build(variables)
            # By index, as Keras' own update steps find a variable's slots: the
            # backend may hand `update_step` its native variable, without a path.
            self._scaled_index = {
                self._get_variable_index(v)
                for v in variables
                if v.path.split("/")[0] in self._scaled  # the owning top-level layer
            }

        def update_step(self, gradient, variable, learning_rate):
            if self._get_variable_index(variable) in self._scaled_index:
                learning_rate = learning_rate * self.lr_mult
            return super().update_step(gradient, variable, learning_rate)

        def get_config(self):
            return {
                **super().get_config(),
                "scaled_layers": self.scaled_layers,
                "lr_mult": self.lr_mult,
            }

    Layerwise.__name__ = Layerwise.__qualname__ = f"Layerwise{base.__name__}"
    return Layerwise


LAYERWISE = {base: _layerwise(base) for base in BASE_OPTIMIZERS}


def with_backbone_lr(optimizer, layers, lr_mult):
    """The same optimiser with `layers`' learning rate multiplied by `lr_mult`."""
    if lr_mult == 1.0:
        return optimizer
    layerwise = LAYERWISE[type(optimizer)]
    return layerwise.from_config(
        {
            **optimizer.get_config(),
            "scaled_layers": [layer.name for layer in layers],
            "lr_mult": lr_mult,
        }
    )


def set_frozen(layers, frozen):
    """Freeze (or unfreeze) `layers`; the model must be compiled again afterwards."""
    for layer in layers:
        layer.trainable = not frozen


def unfreeze_saved(path):
    """Save again, every layer trainable, a best model the frozen phase wrote.

    Keras saves `trainable` with each layer: left as it is, the file would
    load with a frozen backbone (and an optimiser state that does not fit).
    """
    model = keras.saving.load_model(path, compile=False)
    if all(layer.trainable for layer in model.layers):
        return

    def save(tmp):
        keras_file = f"{tmp}.keras"  # Keras wants the suffix; the move keeps it atomic
        try:
            model.save(keras_file)
            os.replace(keras_file, tmp)
        finally:
            if os.path.exists(keras_file):
                os.unlink(keras_file)

    set_frozen(model.layers, False)
    atomic_write(path, save)
