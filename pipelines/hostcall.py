"""Host (NumPy) code as one op of a traced step, per backend.

kapps stays free of TensorFlow and JAX imports, so a model whose loss needs
host code (DETR's Hungarian matching) runs eagerly on its own; the engine
hands it this callback, and its train step is traced like any other.
"""

import keras
from keras import ops


def host_callback(fn, *args, shape, dtype):
    """`fn(*numpy arrays)` → an array of `shape` and `dtype`, inside a traced function.

    `tf.numpy_function` under TensorFlow (not XLA-compilable), `jax.pure_callback`
    under JAX (works inside `jax.jit`), a plain call on eager backends.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # only under the tensorflow backend

        result = tf.numpy_function(fn, list(args), dtype, stateful=False)
        # A dimension known only when the step runs (the batch in `fit`) stays None.
        return tf.ensure_shape(result, [d if isinstance(d, int) else None for d in shape])
    if backend == "jax":
        import jax

        return jax.pure_callback(fn, jax.ShapeDtypeStruct(shape, dtype), *args)
    return ops.convert_to_tensor(fn(*(ops.convert_to_numpy(a) for a in args)), dtype)
