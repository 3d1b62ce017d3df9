"""Pruning savings: the same digits study with and without a pruner.

Both studies use the competition's own `tune.space`, the same sampler seed and
the same trial budget; they run in this process, one after the other, each in
its own storage under a temporary folder. Reported per study: epochs consumed
(every trial's epochs, pruned ones included), the best value of the tuning
metric (digits tunes val_loss: its validation accuracy saturates at 100 %),
the held-out test accuracy of the best trial's model, and the wall time.
Goal: pruning consumes ≤ 60 % of the epochs for a best test accuracy within
0.5 points.

    python -m benchmarks.pruning [--trials 20] [--epochs 10] [--pruner median]
"""

import argparse
import tempfile
import time
from pathlib import Path

from rich.text import Text

from benchmarks.common import Figure, add_figures_argument, write_figures
from pipelines.config import load_config
from pipelines.predict import predict
from pipelines.prepare import prepare
from pipelines.tune import open_study, optimize

REPO = Path(__file__).resolve().parents[1]


def _study(args, pruner, root):
    cfg = load_config(
        REPO / "competitions" / args.competition,
        [
            f"tune.trials={args.trials}",
            f"tune.epochs={args.epochs}",
            f"tune.pruner={pruner}",
            f"tune.seed={args.seed}",
            f"run.dir={root / pruner}",
        ],
    )
    prepare(cfg, log=lambda _: None)
    session = open_study(cfg, study_name=pruner, storage=f"sqlite:///{root / pruner}.db")
    start = time.perf_counter()
    show = lambda line: print(f"  {pruner}: {Text.from_markup(line).plain}", flush=True)  # noqa: E731
    optimize(session, log=show)
    seconds = time.perf_counter() - start
    trials = session.study.get_trials(deepcopy=False)
    epochs = sum(len(t.intermediate_values) for t in trials)
    pruned = sum(t.state.name == "PRUNED" for t in trials)
    best = session.study.best_trial
    # The held-out answer key scores the best trial's model: the figure that matters.
    scored = predict(best.user_attrs["run_dir"], output=root / f"{pruner}.csv", log=lambda _: None)
    return {
        "epochs": epochs,
        "best": best.value,
        "test": scored["test"]["accuracy"],
        "seconds": seconds,
        "pruned": pruned,
        "metric": session.metric,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="digits")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--pruner", default="median", choices=["median", "hyperband"])
    parser.add_argument("--seed", type=int, default=0)
    add_figures_argument(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plain = _study(args, "none", root)
        pruned = _study(args, args.pruner, root)
    ratio = pruned["epochs"] / plain["epochs"]
    points = 100 * (plain["test"] - pruned["test"])
    metric = plain["metric"]
    rows = [
        f"| study | trials | pruned | epochs | best {metric} | its test accuracy | wall |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in (("no pruning", plain), (args.pruner, pruned)):
        rows.append(
            f"| {name} | {args.trials} | {result['pruned']} | {result['epochs']} | "
            f"{result['best']:.4f} | {100 * result['test']:.2f} % | {result['seconds']:.0f} s |"
        )
    print("\n".join(rows))
    print(
        f"epochs with pruning ÷ without: {ratio:.2f} (goal ≤ 0.60); test accuracy of the "
        f"best trial lost to pruning: {points:.2f} points (goal ≤ 0.5)"
    )
    figures = [
        Figure(
            f"tuning digits ({args.trials} trials): epochs with the {args.pruner} pruner ÷ without",
            f"{ratio:.2f} ({pruned['epochs']} of {plain['epochs']})",
            "≤ 0.60",
            ratio <= 0.60,
        ),
        Figure(
            "the same, best trial's test accuracy lost to pruning (points)",
            f"{points:.2f} ({100 * pruned['test']:.2f} % vs {100 * plain['test']:.2f} %)",
            "≤ 0.5",
            points <= 0.5,
        ),
    ]
    write_figures(args.figures, figures)
    return rows, figures


if __name__ == "__main__":
    main()
