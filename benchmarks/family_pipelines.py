"""Does each family's input pipeline keep an accelerator busy? Pipeline ÷ train step, images/s.

For every generated competition, at a GPU-like batch size: the training
pipeline the run itself builds (`Task.training_data`: decode cache, shuffle,
augmentation, mosaic, targets) is iterated alone, in examples/s, against the
family's model taking training steps (`train_on_batch`, `Task.compile_args`)
on one in-memory batch, in examples/s, alternately, median of the repeats.
Goal: pipeline ÷ step ≥ 1.2, so that the step never waits for data.

On a CPU-only machine the step is the CPU's, so the ratio says whether this
host's pipeline outruns this host's training; the pipeline's own figure is
what an accelerator's step would have to beat (compare
`benchmarks.gpu_train_step` on the GPU).

    python -m benchmarks.family_pipelines [--examples 512] [--repeats 3] [--only SLUGS] [--batch N]
"""

import argparse
import math
import shutil
import tempfile
from pathlib import Path

import keras
import pandas as pd

from benchmarks.common import Figure, add_figures_argument, alternate, write_figures
from pipelines.config import load_config
from pipelines.prepare import prepare_module
from pipelines.train import resolve_run

REPO = Path(__file__).resolve().parents[1]
# slug → (GPU-like batch size, config overrides)
FAMILIES = {
    "digits": (256, []),
    "shapes-seg": (64, []),
    "shapes-det": (64, []),
    "shapes-captions": (256, []),
    "pydoc-text": (64, []),
}


def _data(slug, folder, examples):
    """Generate `examples` training examples (digits: the whole set) into `folder/data`."""
    module, data = prepare_module(REPO / "competitions" / slug), folder / "data"
    if slug == "pydoc-text":
        data.mkdir()
        text = module.corpus()
        (data / "train.txt").write_text(text)
        frame = pd.DataFrame({"id": ["p0"], "prompt": module.prompts(text, count=1)})
        frame.to_csv(data / "test.csv", index=False)
    elif hasattr(module, "generate"):
        module.generate(data, train=examples, test=8)
    else:
        data.mkdir()
        module.prepare(data)


def measure(slug, batch, examples, repeats, root):
    """(pipeline examples/s, train-step examples/s, model name) of one competition."""
    folder = root / "competitions" / slug
    shutil.copytree(REPO / "competitions" / slug, folder, ignore=shutil.ignore_patterns("data"))
    _data(slug, folder, examples)
    overrides = [f"train.batch_size={batch}", f"run.dir={root / 'runs'}", *FAMILIES[slug][1]]
    cfg, task, run, _ = resolve_run(load_config(folder, overrides))
    data = task.training_data(run)
    model = task.build_model(data.model_args)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), **task.compile_args())
    first = _parts(next(iter(data.train)))
    steps = max(1, math.ceil(min(data.train_size, examples) / batch))  # text: a whole corpus
    counted = {"pipeline": 0}

    def pipeline():
        counted["pipeline"] = sum(_examples(batch) for batch in data.train.take(steps))

    def train():
        for _ in range(steps):
            model.train_on_batch(*first)

    pipeline(), train()  # fill the decode cache, trace and compile
    seconds = alternate({"pipeline": pipeline, "model": train}, repeats)
    step_examples = steps * _examples(first)
    return counted["pipeline"] / seconds["pipeline"], step_examples / seconds["model"], cfg


def _parts(batch):
    """`(inputs, targets[, sample weights])`; a dual encoder's batch is its inputs alone."""
    return batch if isinstance(batch, tuple) else (batch,)


def _examples(batch):
    return int(keras.tree.flatten(_parts(batch)[0])[0].shape[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=512, help="generated training examples")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default=",".join(FAMILIES), help="comma-separated slugs")
    parser.add_argument("--batch", type=int, help="one batch size for every family (quick checks)")
    add_figures_argument(parser)
    args = parser.parse_args(argv)
    rows = [
        "| competition | model | batch | pipeline examples/s | train step examples/s | ratio |",
        "|---|---|---|---|---|---|",
    ]
    figures = []
    for slug in args.only.split(","):
        batch = args.batch or FAMILIES[slug][0]
        with tempfile.TemporaryDirectory() as tmp:
            pipeline, step, cfg = measure(slug, batch, args.examples, args.repeats, Path(tmp))
        ratio = pipeline / step
        size = "×".join(map(str, cfg.data.image_size)) if cfg.competition.task != "text" else ""
        rows.append(
            f"| {slug} {size} | {cfg.model.name} | {batch} | {pipeline:,.0f} | {step:,.0f} "
            f"| {ratio:.2f} |"
        )
        figures.append(
            Figure(
                f"input pipeline ÷ {cfg.model.name} train step, examples/s ({slug}, batch {batch})",
                f"{ratio:.2f} ({pipeline:,.0f} vs {step:,.0f})",
                "≥ 1.2",
                ratio >= 1.2,
            )
        )
    print(f"{keras.backend.backend()} backend; median of {args.repeats} alternating repeats")
    print("\n".join(rows))
    write_figures(args.figures, figures)
    return rows, figures


if __name__ == "__main__":
    main()
