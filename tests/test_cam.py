"""Grad-CAM points at the pixels that drive the class score, on every backend."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

# A model whose class-0 logit is the mean of its (identity) feature map: the
# heat map must reproduce the image, peaking on the bright square.
SCRIPT = """
import keras
import numpy as np
from pipelines.cam import grad_cam

inputs = keras.Input((16, 16, 1))
x = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", name="features")(inputs)
x = keras.layers.GlobalAveragePooling2D()(x)
logits = keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant([[1.0, -1.0]]))(x)
model = keras.Model(inputs, logits)
image = np.zeros((1, 16, 16, 1), "float32")
image[0, 2:6, 9:13] = 200.0
cam = grad_cam(model, image, classes=[0], layer_name="features")[0]
assert cam.shape == (16, 16)
assert np.unravel_index(cam.argmax(), cam.shape)[0] in range(2, 6)
assert cam[2:6, 9:13].mean() > 0.9 and cam[10:, :6].max() < 0.05
print("ok", keras.backend.backend())
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_grad_cam_finds_the_evidence(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"ok {backend}"


def test_cam_grid_is_written(tmp_path):
    import kapps
    from pipelines.cam import write_cam_grid

    model = kapps.create_model("resnet18", input_shape=(32, 32, 3), num_classes=3)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3))
    write_cam_grid(model, images, ["a", "b", "c", "d"], tmp_path / "cam.png")
    assert (tmp_path / "cam.png").stat().st_size > 5_000
