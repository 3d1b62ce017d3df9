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

Several machines (JAX only): one process per machine, joined by JAX's
distributed runtime (`jax.distributed.initialize`) from the
`train.distribution_*` keys or Keras' `KERAS_DISTRIBUTION_*` variables. Keras
gives each process its share of every global batch; each process builds the
same batches (same seed), so the shares are disjoint. Every process runs the
same steps and callbacks, since creating, loading and saving distributed
weights are collective steps; the others write into a scratch folder, so only
process 0 writes the run folder. They start from a copy of process 0's backup
and history (`share`): a resumed run goes on from process 0's last finished
epoch everywhere. Then the processes part (`leave`) and process 0 alone
evaluates, predicts and writes the submission on its own devices.
"""

import io
import os
import socket
import sys
import tarfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace

import keras
import numpy as np

from kapps.errors import ConfigError, KappsError

_joined = False  # this process is part of a multi-process run
# What JAX's collectives (Gloo on CPUs) and its runtime say when a process is gone
_PEER_ERRORS = ("Gloo", "closed by peer", "Connection reset", "heartbeat", "UNAVAILABLE")


class PeerLost(KappsError):
    """Another process of a multi-process run stopped (killed, crashed, unreachable)."""


@dataclass(frozen=True)
class Placement:
    """The devices a run uses, and whether it spreads each batch over them."""

    devices: tuple = ()
    data_parallel: bool = False
    process: int = 0  # this process's id among `processes`
    processes: int = 1

    def describe(self, batch_size):
        # TensorFlow's "/device:CPU:0" as JAX's "cpu:0"
        where = ", ".join(d.rsplit("device:", 1)[-1].lower() for d in self.devices)
        where = where or "the default device"
        if not self.data_parallel:
            return f"devices: {where}"
        per = batch_size // len(self.devices)
        processes = f"process {self.process} of {self.processes}; " if self.processes > 1 else ""
        return (
            f"devices: {where} (data parallel; {processes}global batch {batch_size} = "
            f"{len(self.devices)} × {per})"
        )

    def share(self, folder, paths):
        """Copy process 0's `paths` (files or folders in `folder`) into every process's `folder`.

        A process starting from what process 0 has (its backup, its history)
        takes the same steps, and restores the same weights.
        """
        if self.processes == 1:
            return
        from jax.experimental import multihost_utils

        payload = np.zeros(0, dtype=np.uint8)
        if self.process == 0:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                for path in paths:
                    if path.exists():
                        tar.add(path, arcname=str(path.relative_to(folder)))
            payload = np.frombuffer(buffer.getvalue(), dtype=np.uint8)
        size = int(multihost_utils.broadcast_one_to_all(np.int32(payload.size)))
        if self.process:
            payload = np.zeros(size, dtype=np.uint8)
        payload = np.asarray(multihost_utils.broadcast_one_to_all(payload))
        if self.process:
            with tarfile.open(fileobj=io.BytesIO(payload.tobytes())) as tar:
                tar.extractall(folder, filter="data")

    @contextmanager
    def watch(self):
        """Turn the runtime's error for a vanished process into `PeerLost`."""
        try:
            yield
        except Exception as err:
            if self.processes > 1 and any(s in str(err) for s in _PEER_ERRORS):
                raise PeerLost(
                    f"process {self.process} lost the other processes "
                    f"({str(err).splitlines()[0][:120]}); run the same command in every "
                    "process to resume from the last finished epoch"
                ) from None
            raise

    def leave(self):
        """After training: wait for every process, then part (process 0 goes on alone)."""
        global _joined
        if self.processes == 1 or not _joined:
            return
        import jax
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("kapps: training finished")
        jax.distributed.shutdown()
        _joined = False


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
    if backend == "torch":
        import torch

        return tuple(f"cuda:{i}" for i in range(torch.cuda.device_count())) or ("cpu:0",)
    return ()


def cluster(train):
    """`(coordinator, processes, process id)` from the config, else Keras' variables."""
    env = os.environ
    coordinator = train.distribution_coordinator or env.get(
        "KERAS_DISTRIBUTION_JOB_ADDRESSES", env.get("JAX_COORDINATOR_ADDRESS")
    )
    processes, process = train.distribution_processes, train.distribution_process_id
    try:
        if processes is None:
            processes = int(env.get("KERAS_DISTRIBUTION_NUM_PROCESSES", 1))
        if process is None:
            process = int(env.get("KERAS_DISTRIBUTION_PROCESS_ID", 0))
    except ValueError as err:
        raise ConfigError(f"KERAS_DISTRIBUTION_* must be whole numbers: {err}") from None
    return (coordinator.split(",")[0] if coordinator else None), processes, process


def placement(train):
    """The `Placement` that `train.distribution` asks for (several processes join here)."""
    coordinator, processes, process = cluster(train)
    mode = train.distribution
    backend = keras.backend.backend()
    if processes > 1:
        _check_cluster(mode, backend, coordinator, processes, process)
        _join(coordinator, processes, process, train.distribution_timeout)
    if mode == "auto":
        mode = "data_parallel" if processes > 1 or len(_accelerators()) > 1 else "none"
    if mode == "none":
        return Placement(_devices()[:1])
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
    return Placement(devices, data_parallel=True, process=process, processes=processes)


def _check_cluster(mode, backend, coordinator, processes, process):
    if mode == "none":
        raise ConfigError(
            f"{processes} processes train one model: set train.distribution=data_parallel"
        )
    if backend != "jax":
        raise ConfigError(
            f"several processes need the JAX backend, not {backend} (KERAS_BACKEND=jax)"
        )
    if not 0 <= process < processes:
        raise ConfigError(
            f"train.distribution_process_id {process} is out of range for {processes} processes "
            f"(0 to {processes - 1})"
        )
    if not coordinator:
        raise ConfigError(
            "several processes need process 0's address: train.distribution_coordinator=HOST:PORT"
        )


def _address(coordinator):
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"train.distribution_coordinator {coordinator!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _join(coordinator, processes, process, timeout):
    """Join the other processes through JAX's distributed runtime (once per process).

    The runtime aborts the process (no Python error) when it cannot reach the
    coordinator, so the address is tried first: process 0 must be able to
    listen on it, the others to connect to it within `timeout` seconds.
    """
    global _joined
    if _joined:
        return
    import jax

    host, port = _address(coordinator)
    if process == 0:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as JAX's server does
            try:
                probe.bind(("", port))
            except OSError as err:
                raise ConfigError(
                    f"process 0 cannot listen on port {port} for the other processes: "
                    f"{err.strerror}"
                ) from None
    else:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((host, port), timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise ConfigError(
                        f"cannot reach the coordinator {coordinator} within {timeout:g} s: "
                        "start process 0 there, or fix train.distribution_coordinator"
                    ) from None
                time.sleep(0.5)
    jax.distributed.initialize(
        coordinator,
        num_processes=processes,
        process_id=process,
        initialization_timeout=max(1, int(timeout)),
    )
    _joined = True
    # Keras cannot count a process's share of the batches before its first epoch ends
    warnings.filterwarnings("ignore", message="Your input ran out of data")


def exit_process(status):
    """Exit with `status`; a process that joined others skips JAX's shutdown barrier.

    That barrier waits for every process and aborts this one with a C++
    trace when one is gone; the run folder is complete at this point.
    """
    if _joined:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def ready_for(place, data, batch_size):
    """`data` with validation batches that split over the devices and processes.

    Training batches drop their remainder. A validation set keeps every
    example: under JAX its last batch must split over the devices (TensorFlow's
    MirroredStrategy splits a partial batch unevenly); over several processes,
    Keras hands each process an equal share of every batch, so the set is
    cut into batches of one size, a multiple of the devices that divides it
    (declared whole, so that Keras can read the size).
    """
    devices = len(place.devices)
    count = data.val_size
    if not place.data_parallel or keras.backend.backend() != "jax":
        return data
    if count % devices:
        raise ConfigError(
            f"the validation set of {count} does not split over {devices} devices: its last "
            f"batch would not; change its size (data.val_fraction) to a multiple of {devices}"
        )
    if place.processes == 1:
        return data
    per, most = count // devices, max(1, batch_size // devices)
    share = max(d for d in range(1, min(per, most) + 1) if per % d == 0)
    return replace(data, val=data.val.rebatch(share * devices, drop_remainder=True))


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
