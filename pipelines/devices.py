"""Where a run trains: its devices, data parallelism over them, and several processes.

`train.distribution`:
- `none`: Keras' default device (the first GPU, else the CPU);
- `data_parallel`: every local device of the default kind (GPUs, else CPUs)
  holds a replica of the model and takes `train.batch_size / devices` of each
  global batch; gradients are averaged, so the updates are those of one
  device with the whole batch. JAX: `keras.distribution.DataParallel`;
  TensorFlow: `tf.distribute.MirroredStrategy`; torch: refused (Keras'
  torch backend has no data parallelism of its own);
- `auto`: `data_parallel` when there are several accelerators, else `none`.

Several machines (JAX only): one process per machine, each started with the
same command plus `train.distribution_process_id`, joined through JAX's
distributed runtime at `train.distribution_coordinator` (host:port of
process 0) with `train.distribution_processes` processes; JAX's own
environment variables are read when the keys are unset. The devices of all
processes form one data-parallel mesh; each process reads its shard of every
global batch. Only process 0 writes the run folder.
"""

import os
from contextlib import contextmanager
from dataclasses import dataclass

import keras

from kapps.errors import ConfigError

CONNECT_SECONDS = 60  # how long a process waits for the others to join


@dataclass(frozen=True)
class Placement:
    """The devices a run uses and this process's place among the processes."""

    devices: tuple = ()
    process_id: int = 0
    processes: int = 1
    data_parallel: bool = False

    @property
    def writes(self):
        """Only the first process writes the run folder, checkpoints and submission."""
        return self.process_id == 0

    def describe(self, batch_size):
        where = ", ".join(self.devices) or "the default device"
        if not self.data_parallel:
            return f"devices: {where}"
        per = batch_size // len(self.devices)
        processes = f", {self.processes} processes" if self.processes > 1 else ""
        return (
            f"devices: {where} (data parallel{processes}; global batch {batch_size} = "
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


def _local_devices():
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


def _join_processes(train):
    """Start JAX's distributed runtime when several processes are asked for."""
    coordinator = train.distribution_coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    processes = train.distribution_processes or int(os.environ.get("JAX_NUM_PROCESSES", 0) or 0)
    if not coordinator and processes <= 1:
        return 0, 1
    if keras.backend.backend() != "jax":
        raise ConfigError(
            "several processes need the JAX backend (KERAS_BACKEND=jax): Keras' "
            "multi-process training runs on JAX's distributed runtime"
        )
    process_id = train.distribution_process_id
    if process_id is None:
        process_id = int(os.environ.get("JAX_PROCESS_ID", -1))
    if not coordinator or processes < 2 or not 0 <= process_id < processes:
        raise ConfigError(
            "several processes need train.distribution_coordinator (host:port of process 0), "
            "train.distribution_processes (≥ 2) and train.distribution_process_id in "
            f"0…{max(processes, 2) - 1}; got {coordinator!r}, {processes}, {process_id}"
        )
    import jax

    if not jax.distributed.is_initialized():
        if all(d.platform == "cpu" for d in jax.devices(backend="cpu")):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            jax.distributed.initialize(
                coordinator,
                num_processes=processes,
                process_id=process_id,
                initialization_timeout=CONNECT_SECONDS,
            )
        except Exception as err:  # unreachable coordinator, a process id already taken, …
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(
                f"process {process_id} could not join {processes} processes at "
                f"{coordinator} within {CONNECT_SECONDS} s ({first})"
            ) from None
    return process_id, processes


def placement(train):
    """The `Placement` that `train.distribution*` asks for, joining other processes first."""
    process_id, processes = _join_processes(train)
    mode = train.distribution
    if mode == "auto":
        mode = "data_parallel" if len(_accelerators()) > 1 or processes > 1 else "none"
    if mode == "none" and processes > 1:
        mode = "data_parallel"
    if mode == "none":
        return Placement(_local_devices()[:1], process_id, processes)
    backend = keras.backend.backend()
    if backend not in ("jax", "tensorflow"):
        raise ConfigError(
            f"train.distribution=data_parallel needs the JAX or TensorFlow backend, "
            f"not {backend} (KERAS_BACKEND=jax)"
        )
    devices = _local_devices()
    if train.batch_size % len(devices):
        raise ConfigError(
            f"train.batch_size {train.batch_size} does not split over {len(devices)} devices: "
            f"use a multiple of {len(devices)}"
        )
    return Placement(devices, process_id, processes, data_parallel=True)


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
