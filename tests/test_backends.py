"""Every builder runs on the JAX backend too: forward pass and one train step.

Each model runs in a fresh interpreter with KERAS_BACKEND=jax, which also
proves that kapps imports no TensorFlow. Language models also generate there,
with TensorFlow made unimportable: keras-hub's samplers import it when it is
installed, and need none when it is not (as on a GPU machine). XLA compiles slowly on CPU, so the
default run covers LeNet-5 and GPT-nano (an image and a text model; the GPU
benchmark's test trains ResNet-18 and a ViT there too); `-m slow` runs them all, YOLO-n
and the other detectors included.
"""

import os
import subprocess
import sys

import pytest

import kapps
from tests.conftest import REPO

DEFAULT = {"lenet5", "gpt_nano", "wgan_gp"}  # WGAN-GP: its penalty uses JAX's own grad

SCRIPT = """
import sys
if sys.argv[2] == "text":  # as on a GPU machine without TensorFlow: importing it fails
    sys.modules["tensorflow"] = None
import keras
import numpy as np
import kapps

assert keras.backend.backend() == "jax"
assert sys.modules.get("tensorflow") is None, "kapps imported tensorflow"
entry = kapps.get_entry(sys.argv[1])
model = kapps.create_model(entry.name, **entry.test_kwargs)
rng = np.random.default_rng(0)
if entry.task == "text":  # language models: token ids in, one logit vector per token
    images = rng.integers(0, entry.test_kwargs["vocab_size"], (2, 12)).astype("int32")
    targets, expected = np.roll(images, -1, axis=1), (2, 12, entry.test_kwargs["vocab_size"])
    # Compiled generation on jax: cached and uncached greedy decoding agree.
    from pipelines.generate import generate
    cached = generate(model, [[1, 2, 3], [4]], 6)
    assert cached == generate(model, [[1, 2, 3], [4]], 6, use_cache=False), cached
    assert len(generate(model, [[1, 2]], 6, "top_p", seed=1)[0]) == 6
elif entry.task == "retrieval":  # dual encoders: image-text pairs in, a 2×2 similarity out
    shape = entry.test_kwargs["image_shape"]
    images = {
        "images": rng.uniform(0, 255, (2, *shape)).astype("float32"),
        "token_ids": rng.integers(1, entry.test_kwargs["vocab_size"], (2, 12)).astype("int32"),
        "padding_mask": np.ones((2, 12), "int32"),
    }
    targets, expected = np.array([0, 1]), (2, 2)
    assert model.encode_texts(images["token_ids"]).shape == (2, entry.test_kwargs["embed_dim"])
elif entry.task == "generation":  # images in, the model's own loss; then new images
    images = rng.uniform(0, 255, (4, *entry.test_kwargs["image_shape"])).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    loss = float(model.train_on_batch(images, return_dict=True)["loss"])
    assert np.isfinite(loss), loss
    found = model.sample(2, seed=0)
    assert found.shape == (2, *entry.test_kwargs["image_shape"]) and np.isfinite(found).all()
    print("ok", found.shape, loss)
    sys.exit(0)
elif entry.task == "detection":  # raw head outputs per anchor point; predict gives boxes
    images = rng.uniform(0, 255, (2, *model.input_shape[1:])).astype("float32")
    classes = entry.test_kwargs["num_classes"]
    targets = {"boxes": np.array([[[4, 4, 30, 40]]] * 2, "float32"), "labels": np.array([[0], [1]])}
    expected = (2, *model.output_shape[1:])
    found = model.predict(images, verbose=0)
    assert found["boxes"].shape == (2, model.max_detections, 4), found["boxes"].shape
else:
    images = rng.uniform(0, 255, (2, *model.input_shape[1:])).astype("float32")
    classes = entry.test_kwargs["num_classes"]
    targets, expected = np.array([0, 1]), (2, classes)
    if entry.task == "segmentation":  # one logit vector per pixel
        targets = rng.integers(0, classes, (2, *images.shape[1:3]))
        expected = (2, *images.shape[1:3], classes)
logits = np.asarray(model(images, training=False))
assert logits.shape == expected, logits.shape
assert np.isfinite(logits).all()
model.compile(
    optimizer=keras.optimizers.SGD(0.01),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
loss = float(model.train_on_batch(images, targets))
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
        [sys.executable, "-c", SCRIPT, name, kapps.get_entry(name).task],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")
