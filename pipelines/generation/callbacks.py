"""What a generation run does after each epoch."""

import keras

from kapps.generation.metrics import fid
from pipelines.generation.plots import grid_labels, write_grid
from pipelines.generation.score import requested_labels, sample


class EpochSamples(keras.callbacks.Callback):
    """After each epoch: `samples/epoch-XXX.png`, and `val_fid` (before the checkpoint
    reads it) after the first epoch of each `fit`, every `fid_every` epochs and after
    the last; NaN in between, which neither the checkpoint nor early stopping counts as
    better than a measured value (a NaN first would: hence the first is measured)."""

    def __init__(self, generation, num_classes, reference, run):
        super().__init__()
        self.generation, self.num_classes = generation, num_classes
        self.reference, self.run = reference, run
        self.labels = grid_labels(num_classes)
        self.first = True

    def on_train_begin(self, logs=None):
        self.first = True

    def on_epoch_end(self, epoch, logs=None):
        generation = self.generation
        count = len(self.labels) if self.labels is not None else 64
        grid = sample(
            self.model, count, generation, self.labels, seed=0, steps=generation.epoch_steps
        )
        write_grid(grid, self.run.epoch_samples(epoch + 1))
        value = float("nan")
        last = epoch + 1 == self.params.get("epochs")
        if self.first or (epoch + 1) % generation.fid_every == 0 or last:
            self.first = False
            requested = requested_labels(generation.epoch_images, self.num_classes)
            images = sample(
                self.model,
                generation.epoch_images,
                generation,
                requested,
                seed=0,
                steps=generation.epoch_steps,
            )
            value = fid(self.reference.extractor.features(images), self.reference.features)
        if logs is not None:
            logs["val_fid"] = value
