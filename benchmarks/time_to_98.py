"""Time to 98 % on digits: `kapps run competitions/digits` ÷ a plain Keras script.

Both train on the same files (the digits competition's train.csv, prepared
once) and are stopped by the same callback at the end of the first epoch
whose accuracy on the 360 held-out test digits (solution.csv) reaches the
target; the time runs from before either reads its CSV to that moment, so it
includes loading, building and compiling.

- ours: `pipelines.train.train` on the competition's own config, exactly what
  `kapps run` trains (LeNet-5, its augmentation and schedule);
- the reference: the Keras guide's "Simple MNIST convnet" as written there
  (two convolutions with max-pooling, dropout 0.5, a softmax layer, Adam,
  batch 128, 10 % validation split), the 8×8 digits scaled to [0, 1] and
  resized to its 28×28 input (its pooling layers need at least that much).

They alternate over `--repeats` seeds; the medians are compared. A side that
never reaches the target within `--max-epochs` counts as infinitely slow.
Goal: ours ÷ reference ≤ 1.0.

    python -m benchmarks.time_to_98 [--repeats 3] [--target 0.98] [--max-epochs 100]
"""

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from benchmarks.common import Figure, add_figures_argument, write_figures
from pipelines.config import load_config
from pipelines.data.images import batched, decoded_images
from pipelines.data.sources import read_test_source
from pipelines.prepare import prepare
from pipelines.tasks import get_task
from pipelines.train import train

REPO = Path(__file__).resolve().parents[1]


class StopAtAccuracy(keras.callbacks.Callback):
    """Stop once accuracy on the held-out test set reaches `target`; note when."""

    def __init__(self, inputs, truth, target, start, classes=None):
        super().__init__()
        self.inputs, self.truth, self.target, self.start = inputs, truth, target, start
        self.classes = classes  # model output index → label, when they differ
        self.seconds, self.epochs = math.inf, None

    def on_epoch_end(self, epoch, logs=None):
        predicted = np.argmax(self.model.predict(self.inputs, verbose=0), axis=-1)
        labels = predicted if self.classes is None else self.classes[predicted]
        if np.mean(labels == self.truth) >= self.target:
            self.seconds, self.epochs = time.perf_counter() - self.start, epoch + 1
            self.model.stop_training = True


def _ours(cfg_dir, run_dir, seed, target, max_epochs, truth):
    start = time.perf_counter()
    cfg = load_config(
        cfg_dir,
        [f"run.dir={run_dir}", f"train.seed={seed}", f"train.epochs={max_epochs}"],
    )
    cfg.train.resume = False
    cfg = get_task(cfg).resolve()  # the class names the model's outputs index
    source = read_test_source(cfg)
    inputs = batched(decoded_images(source, cfg.data.image_size, cfg.data.channels), batch_size=256)
    stop = StopAtAccuracy(inputs, truth, target, start, classes=np.asarray(cfg.data.classes))
    # The competition's early stopping stays on, as `kapps run` has it.
    train(
        cfg, log=lambda _: None, run_dir=Path(run_dir) / f"seed-{seed}", callbacks=[stop], verbose=0
    )
    return stop


def _reference(data_dir, seed, target, max_epochs, truth):
    """The Keras guide's MNIST convnet, as a user would adapt it to these files."""
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    frame = pd.read_csv(data_dir / "train.csv")
    y = keras.utils.to_categorical(frame.pop("label").to_numpy(), 10)
    x = frame.to_numpy().reshape(-1, 8, 8, 1).astype("float32") / 255
    x = keras.ops.convert_to_numpy(keras.ops.image.resize(x, (28, 28)))
    x_test = pd.read_csv(data_dir / "test.csv").to_numpy().reshape(-1, 8, 8, 1)
    x_test = keras.ops.image.resize(x_test.astype("float32") / 255, (28, 28))
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    stop = StopAtAccuracy(keras.ops.convert_to_numpy(x_test), truth, target, start)
    model.fit(
        x, y, batch_size=128, epochs=max_epochs, validation_split=0.1, callbacks=[stop], verbose=0
    )
    return stop


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="seeds, alternating sides")
    parser.add_argument("--target", type=float, default=0.98)
    parser.add_argument("--max-epochs", type=int, default=100)
    add_figures_argument(parser)
    args = parser.parse_args(argv)
    cfg_dir = REPO / "competitions" / "digits"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(cfg_dir, [f"run.dir={tmp}"])
        prepare(cfg, log=lambda _: None)
        truth = pd.read_csv(cfg.data_path(cfg.data.answers))["Label"].to_numpy()
        results = {"kapps run": [], "Keras guide convnet": []}
        for repeat in range(args.repeats):
            seed = repeat + 1
            sides = [
                (
                    "kapps run",
                    lambda s=seed: _ours(cfg_dir, tmp, s, args.target, args.max_epochs, truth),
                ),
                (
                    "Keras guide convnet",
                    lambda s=seed: _reference(cfg.data_dir, s, args.target, args.max_epochs, truth),
                ),
            ]
            for name, run in sides if repeat % 2 == 0 else sides[::-1]:
                keras.backend.clear_session()
                stop = run()
                results[name].append((stop.seconds, stop.epochs))
                print(
                    f"  seed {seed}, {name}: {stop.seconds:.1f} s, epochs {stop.epochs}", flush=True
                )
    medians = {name: statistics.median(s for s, _ in runs) for name, runs in results.items()}
    ratio = medians["kapps run"] / medians["Keras guide convnet"]
    rows = ["| trainer | seconds to the target (median) | epochs, per seed |", "|---|---|---|"]
    for name, runs in results.items():
        epochs = ", ".join(str(e) if e else "never" for _, e in runs)
        rows.append(f"| {name} | {medians[name]:.1f} | {epochs} |")
    print(
        f"digits, test accuracy ≥ {args.target:.0%}, {keras.backend.backend()} backend, "
        f"{args.repeats} seeds alternating"
    )
    print("\n".join(rows))
    figures = [
        Figure(
            f"time to {args.target:.0%} test accuracy on digits: kapps run ÷ Keras guide convnet",
            f"{ratio:.2f} ({medians['kapps run']:.1f} s vs {medians['Keras guide convnet']:.1f} s)",
            "≤ 1.0",
            ratio <= 1.0,
        )
    ]
    write_figures(args.figures, figures)
    return rows, figures


if __name__ == "__main__":
    main()
