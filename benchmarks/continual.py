"""Seq-digits: every continual method in every scenario, mean ± std over seeds.

Each cell is the final average accuracy over the five tasks (validation
split) of `kapps run competitions/seq-digits` with that `continual.method`,
`continual.scenario` and `continual.buffer` (rehearsal methods: 200 and 500;
the others keep no buffer), over `--seeds` seeds (`train.seed`). The DER
paper's Seq-MNIST class-IL figures with a 200-example buffer are the
reference ordering: SGD 19.7 %, ER 80.4 %, DER 91.4 %, DER++ 91.0 %,
joint 95.6 %.

    python -m benchmarks.continual [--seeds 3] [--epochs 5] [--scenarios S,...] [KEY=VALUE ...]
"""

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, add_figures_argument, write_figures
from pipelines.config import load_config
from pipelines.cv import train_folds_or_one
from pipelines.prepare import prepare
from pipelines.train import TrainingDiverged

REPO = Path(__file__).resolve().parents[1]
METHODS = ("finetune", "ewc", "lwf", "er", "der", "derpp", "joint")
REHEARSAL = ("er", "der", "derpp")


def average(folder, runs, overrides):
    """The run's final average accuracy; NaN when it diverged."""
    cfg = load_config(folder, [*overrides, f"run.dir={runs}"])
    try:
        metrics = train_folds_or_one(cfg, log=lambda _: None, verbose=0)
    except TrainingDiverged:
        return float("nan")
    return metrics["validation"]["average_accuracy"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="epochs per task (default: the config's)")
    parser.add_argument("--scenarios", default="class_il,task_il,domain_il")
    parser.add_argument("--buffers", default="200,500")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "overrides", nargs="*", help="key=value for every run, e.g. continual.alpha=1"
    )
    add_figures_argument(parser)
    args = parser.parse_args(argv)
    folder = REPO / "competitions" / "seq-digits"
    prepare(load_config(folder), log=lambda _: None)
    scenarios, buffers = args.scenarios.split(","), [int(b) for b in args.buffers.split(",")]
    epochs = [f"train.epochs={args.epochs}"] if args.epochs else []
    epochs += args.overrides
    cells, start = {}, time.perf_counter()
    with tempfile.TemporaryDirectory() as runs:
        for method in args.methods.split(","):
            for buffer in buffers if method in REHEARSAL else [None]:
                for scenario in scenarios:
                    overrides = [
                        *epochs,
                        f"continual.method={method}",
                        f"continual.scenario={scenario}",
                    ]
                    overrides += [f"continual.buffer={buffer}"] if buffer else []
                    scores = [
                        average(folder, runs, [*overrides, f"train.seed={seed}"])
                        for seed in range(args.seeds)
                    ]
                    cells[method, buffer, scenario] = scores
                    print(method, buffer, scenario, [f"{s:.3f}" for s in scores], flush=True)
    rows = [
        "| method | buffer | " + " | ".join(scenarios) + " |",
        "|---|---|" + "---|" * len(scenarios),
    ]
    for method, buffer in dict.fromkeys((m, b) for m, b, _ in cells):
        values = [_mean_std(cells[method, buffer, s]) for s in scenarios]
        rows.append(f"| {method} | {buffer or '–'} | " + " | ".join(values) + " |")
    print(f"{args.seeds} seeds; {time.perf_counter() - start:.0f} s")
    print("\n".join(rows))
    figures = []
    if "class_il" in scenarios and {"finetune", "er", "derpp", "joint"} <= set(
        args.methods.split(",")
    ):
        mean = {
            m: statistics.mean(cells[m, 200 if m in REHEARSAL else None, "class_il"])
            for m in ("finetune", "er", "derpp", "joint")
        }
        figures = [
            Figure(
                "seq-digits class-IL, buffer 200: DER++ average accuracy",
                f"{mean['derpp']:.1%}",
                "≥ 85 %",
                mean["derpp"] >= 0.85,
            ),
            Figure(
                "seq-digits class-IL: finetune < ER < DER++ < joint",
                " < ".join(f"{mean[m]:.1%}" for m in mean),
                "in that order",
                mean["finetune"] < mean["er"] < mean["derpp"] < mean["joint"],
            ),
        ]
    write_figures(args.figures, figures)
    return rows, figures


def _mean_std(scores):
    """Mean ± std of the runs that finished, and how many diverged."""
    finite = [s for s in scores if math.isfinite(s)]
    diverged = (
        f" ({len(scores) - len(finite)} of {len(scores)} diverged)"
        if len(finite) < len(scores)
        else ""
    )
    if len(finite) < 2:
        return (f"{100 * finite[0]:.1f}" if finite else "–") + diverged
    return f"{100 * statistics.mean(finite):.1f} ± {100 * statistics.stdev(finite):.1f}{diverged}"


if __name__ == "__main__":
    main()
