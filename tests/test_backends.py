"""Every builder runs on the JAX backend too: forward pass and one train step.

Each model runs in a fresh interpreter with KERAS_BACKEND=jax, which also
proves that kapps imports no TensorFlow. XLA compiles slowly on CPU, so the
default run covers one small row of each family; `-m slow` runs them all.
"""

import os
import subprocess
import sys

import pytest

import kapps
from tests.conftest import REPO

DEFAULT = {"lenet5", "alexnet", "vgg16", "resnet18", "mobilenet_025", "vit_tiny16"}

SCRIPT = """
import sys
import keras
import numpy as np
import kapps

assert keras.backend.backend() == "jax"
assert "tensorflow" not in sys.modules, "kapps imported tensorflow"
entry = kapps.get_entry(sys.argv[1])
model = kapps.create_model(entry.name, **entry.test_kwargs)
images = np.random.default_rng(0).uniform(0, 255, (2, *model.input_shape[1:])).astype("float32")
logits = np.asarray(model(images, training=False))
assert logits.shape == (2, entry.test_kwargs["num_classes"]), logits.shape
assert np.isfinite(logits).all()
model.compile(
    optimizer=keras.optimizers.SGD(0.01),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
loss = float(model.train_on_batch(images, np.array([0, 1])))
assert np.isfinite(loss), loss
print("ok", logits.shape, loss)
"""


@pytest.mark.parametrize(
    "name",
    [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in kapps.list_models()],
)
def test_model_runs_and_trains_on_jax(name):
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, name], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")
