"""Feature extractors for FID, KID and MiFID, and the classifier behind conditional accuracy.

Two kinds, and `metrics.json` says which one scored a run (their numbers are
not comparable):
- `inception`: InceptionV3's 2,048-d average pool (keras.applications, ImageNet
  weights from a file on disk: `generation.inception_weights`), images resized
  to 299×299 and grey ones repeated over three channels, as FID is defined.
- `domain`: the 84-d F6 layer of a LeNet-5 trained on the competition's own real
  images and their classes (or on `generation.extractor_classes`' class folders)
  — an offline "domain FID", and the judge of conditional accuracy. It is trained
  once (seeded) and kept in the data folder, so every run is scored by the same one.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

import kapps
from kapps.errors import ConfigError

LENET_SIDE = 32
FEATURE_LAYER = "f6_dense"
INCEPTION_SIDE = 299


@dataclass
class Extractor:
    """`features(images)` of raw 0–255 images; `classify(images)` for a domain extractor."""

    name: str  # "inception" or "domain"
    model: keras.Model  # images → features
    classifier: keras.Model | None = None  # images → class logits (domain only)
    classes: list | None = None

    def features(self, images, batch_size=256):
        return self.model.predict(np.asarray(images, "float32"), batch_size, verbose=0)

    def classify(self, images, batch_size=256):
        """The class index each image is judged to show."""
        logits = self.classifier.predict(np.asarray(images, "float32"), batch_size, verbose=0)
        return logits.argmax(axis=1)


def _resized(input_shape, side):
    """An input of `input_shape` and that image resized to side × side."""
    inputs = keras.Input(tuple(input_shape), name="images")
    x = inputs
    if tuple(input_shape[:2]) != (side, side):
        x = keras.layers.Resizing(side, side, name="resize")(x)
    return inputs, x


def inception_extractor(weights, input_shape):
    """InceptionV3's pool features of images of `input_shape` (weights: a notop .h5 file)."""
    inputs, x = _resized(input_shape, INCEPTION_SIDE)
    if input_shape[-1] == 1:
        x = keras.layers.Concatenate(name="grey_to_rgb")([x, x, x])
    inception = kapps.create_model(
        "keras.applications/InceptionV3",
        input_shape=(INCEPTION_SIDE, INCEPTION_SIDE, 3),
        include_top=False,
        pooling="avg",
        weights=weights,
    )
    return Extractor("inception", keras.Model(inputs, inception(x), name="inception_features"))


def _domain_file(data_dir, images, labels, epochs):
    """Where the domain classifier of these images and labels is kept."""
    digest = hashlib.sha1()
    digest.update(np.ascontiguousarray(images, dtype="uint8").tobytes())
    digest.update(json.dumps([str(c) for c in labels]).encode())
    digest.update(f"{images.shape}|{epochs}|{LENET_SIDE}".encode())
    return Path(data_dir) / f"domain-classifier-{digest.hexdigest()[:10]}.keras"


def domain_extractor(data_dir, images, labels, classes, epochs=15, seed=0, log=print):
    """The LeNet-5 domain classifier of real `images` (0–255) and `labels` (class indices),
    trained on first use and kept in `data_dir`."""
    if len(classes) < 2:
        raise ConfigError(
            "domain features need at least two classes of real images; give the data "
            "class labels, generation.extractor_classes, or generation.inception_weights"
        )
    images = np.asarray(images)
    path = _domain_file(data_dir, images, labels, epochs)
    if path.is_file():
        classifier = keras.saving.load_model(path)
    else:
        keras.utils.set_random_seed(seed)
        inputs, x = _resized(images.shape[1:], min(LENET_SIDE, max(images.shape[1:3])))
        lenet = kapps.create_model(
            "lenet5", input_shape=tuple(x.shape[1:]), num_classes=len(classes), name="lenet5"
        )
        classifier = keras.Model(inputs, lenet(x), name="domain_classifier")
        classifier.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        history = classifier.fit(
            images.astype("float32"), np.asarray(labels), batch_size=64, epochs=epochs, verbose=0
        )
        accuracy = history.history["accuracy"][-1]
        log(
            f"trained the domain classifier of the real images ({accuracy:.1%} of them right): "
            f"{path.name}"
        )
        _save(classifier, path)
    return Extractor("domain", _features_of(classifier), classifier, list(classes))


def _save(model, path):
    """Save a .keras file in one step (Keras wants the suffix; a crash leaves nothing)."""
    tmp = path.with_name(f".{path.stem}-{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _features_of(classifier):
    """The classifier cut at LeNet-5's F6, on the same (resized) inputs."""
    lenet = classifier.get_layer("lenet5")
    f6 = keras.Model(lenet.inputs, lenet.get_layer(FEATURE_LAYER).output)
    inputs = keras.Input(classifier.input_shape[1:], name="images")
    names = [layer.name for layer in classifier.layers]
    x = classifier.get_layer("resize")(inputs) if "resize" in names else inputs
    return keras.Model(inputs, f6(x), name="domain_features")
