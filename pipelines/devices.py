"""Where a run trains: its devices, and data parallelism over them.

`train.distribution`:
- `none`: Keras' default device (the first GPU, else the CPU);
- `data_parallel`: every local device of the default kind (GPUs, else CPUs)
  holds a replica of the model and takes `train.batch_size / devices` of each
  global batch; gradients are averaged, so the updates are those of one
  device with the whole batch. JAX: `keras.distribution.DataParallel`;
  TensorFlow: `tf.distribute.MirroredStrategy`; torch: refused (Keras'
  torch backend has no data parallelism of its own);
- `auto`: `data_parallel` when there are several accelerators, else `none`.

Several machines are not supported yet: Keras shards each global batch
over the processes only when every batch has a static size that splits
evenly, and the validation and test sets end in a partial batch.
"""

from contextlib import contextmanager
from dataclasses import dataclass

import keras

from kapps.errors import ConfigError


@dataclass(frozen=True)
class Placement:
    """The devices a run uses, and whether it spreads each batch over them."""

    devices: tuple = ()
    data_parallel: bool = False

    def describe(self, batch_size):
        # TensorFlow's "/device:CPU:0" as JAX's "cpu:0"
        where = ", ".join(d.rsplit("device:", 1)[-1].lower() for d in self.devices)
        where = where or "the default device"
        if not self.data_parallel:
            return f"devices: {where}"
        per = batch_size // len(self.devices)
        return (
            f"devices: {where} (data parallel; global batch {batch_size} = "
            f"{len(self.devices)} × {per})"
        )


def _accelerators():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [d for d in jax.devices() if d.platform != "cpu"]
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.config.list_logical_devices("GPU")
    if backend == "torch":
        import torch

        return list(range(torch.cuda.device_count()))
    return []


def _devices():
    """Names of the devices data parallelism spreads over: the accelerators, else the CPUs."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = jax.devices()
        kind = "cpu" if all(d.platform == "cpu" for d in devices) else None
        return tuple(f"{d.platform}:{d.id}" for d in devices if kind is None or d.platform == kind)
    if backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tuple(d.name for d in devices)
    return ()


def placement(train):
    """The `Placement` that `train.distribution` asks for."""
    mode = train.distribution
    if mode == "auto":
        mode = "data_parallel" if len(_accelerators()) > 1 else "none"
    if mode == "none":
        return Placement(_devices()[:1])
    backend = keras.backend.backend()
    if backend not in ("jax", "tensorflow"):
        raise ConfigError(
            f"train.distribution=data_parallel needs the JAX or TensorFlow backend, "
            f"not {backend} (KERAS_BACKEND=jax)"
        )
    devices = _devices()
    if train.batch_size % len(devices):
        raise ConfigError(
            f"train.batch_size {train.batch_size} does not split over {len(devices)} devices: "
            f"use a multiple of {len(devices)}"
        )
    return Placement(devices, data_parallel=True)


def check_batches_split(place, count, what):
    """Every batch of a set of `count` examples must split over the devices.

    Training batches drop their remainder; a validation set keeps every
    example, so under JAX its last batch must split too (TensorFlow's
    MirroredStrategy splits a partial batch unevenly). The batch size is a
    multiple of the devices, so that last batch splits exactly when `count` does.
    """
    devices = len(place.devices)
    jax = keras.backend.backend() == "jax"
    if place.data_parallel and jax and count % devices:
        raise ConfigError(
            f"the {what} set of {count} does not split over {devices} devices: its last batch "
            f"would not; change its size (data.val_fraction) to a multiple of {devices}"
        )


@contextmanager
def distributed(place):
    """Build, train and evaluate inside this block to use `place`'s devices."""
    if not place.data_parallel:
        yield
        return
    backend = keras.backend.backend()
    if backend == "jax":
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)
        return
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(devices=list(place.devices))
    with strategy.scope():
        yield
