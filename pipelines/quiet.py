"""Start TensorFlow without its C++ start-up lines (standard library only, so it can run
before anything imports TensorFlow)."""

import os
import sys


def import_tensorflow_quietly():
    """Import TensorFlow and start its devices with the process's stderr on /dev/null.

    TensorFlow ≥ 2.19 prints its C++ start-up lines (oneDNN, CUDA drivers,
    cuInit) whatever `TF_CPP_MIN_LOG_LEVEL` says (tensorflow#100442); they
    come from C++, so only the file descriptor can hold them back. An import
    error still surfaces: it is raised after stderr is restored.
    """
    if "tensorflow" in sys.modules:
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
