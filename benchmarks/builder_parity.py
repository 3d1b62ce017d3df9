"""Train-step time of kapps builders ÷ the keras.applications model of the same architecture.

Same input, batch, optimiser and loss; the two models of a pair alternate in
one process (the order flips every repeat), and the median of the repeats is
compared. Goal: ratio ≤ 1.05.

    python -m benchmarks.builder_parity [--size 128] [--batch 8] [--repeats 5]
"""

import argparse
import statistics
import time

import keras
import numpy as np

import kapps
from benchmarks.common import Figure, add_figures_argument, write_figures

PAIRS = [
    ("resnet50", "ResNet50"),
    ("mobilenet", "MobileNet"),
    ("efficientnet_b0", "EfficientNetB0"),
]


def _compiled(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _time_steps(model, images, labels, steps):
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, labels)
    return (time.perf_counter() - start) / steps


def compare(ours_name, keras_name, size, batch, repeats, steps):
    shape = (size, size, 3)
    ours = _compiled(kapps.create_model(ours_name, input_shape=shape, num_classes=1000))
    theirs = _compiled(
        getattr(keras.applications, keras_name)(
            weights=None, input_shape=shape, classifier_activation=None
        )
    )
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, *shape)).astype("float32")
    labels = rng.integers(0, 1000, batch)
    for model in (ours, theirs):  # compile the step functions before timing
        _time_steps(model, images, labels, 2)
    times = {"ours": [], "keras": []}
    for repeat in range(repeats):
        order = [("ours", ours), ("keras", theirs)]
        for key, model in order if repeat % 2 == 0 else order[::-1]:
            times[key].append(_time_steps(model, images, labels, steps))
    ours_s, theirs_s = statistics.median(times["ours"]), statistics.median(times["keras"])
    return ours_s, theirs_s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    add_figures_argument(parser)
    args = parser.parse_args(argv)
    figures = []
    rows = [
        "| model | kapps (s/step) | keras.applications (s/step) | ratio |",
        "|---|---|---|---|",
    ]
    for ours_name, keras_name in PAIRS:
        ours_s, theirs_s = compare(
            ours_name, keras_name, args.size, args.batch, args.repeats, args.steps
        )
        rows.append(
            f"| {ours_name} vs {keras_name} | {ours_s:.3f} | {theirs_s:.3f} | "
            f"{ours_s / theirs_s:.3f} |"
        )
        ratio = ours_s / theirs_s
        figures.append(
            Figure(
                f"train step of kapps {ours_name} ÷ keras.applications {keras_name}",
                f"{ratio:.2f}",
                "≤ 1.05",
                ratio <= 1.05,
            )
        )
    print(
        f"{keras.backend.backend()} backend, {args.size}×{args.size}, batch {args.batch}, "
        f"median of {args.repeats} alternating repeats of {args.steps} steps"
    )
    print("\n".join(rows))
    write_figures(args.figures, figures)
    return rows, figures


if __name__ == "__main__":
    main()
