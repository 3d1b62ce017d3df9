"""Digits, federated: test accuracy against centralised training, per partition and strategy.

Each cell is `kapps federate competitions/digits` (10 clients, 20 rounds of 5
local epochs, the competition's settings) with that `federated.partition` and
`federated.strategy`, scored on the held-out test answers, mean ± std over
`--seeds` seeds (each seed draws its own partition, client sampling and
initial weights: `federated.seed` = `train.seed` = seed). The reference is the
same model trained centrally for rounds × local epochs epochs with the same
`train.seed`, side by side in this run; the gap is federated − centralised,
in points. Bytes per round are the model's size × the clients, each way; a
second table gives the global model's validation accuracy after chosen rounds.

    python -m benchmarks.federated [--seeds 3] [--cells iid:fedavg,dirichlet:fedavg,...]
        [KEY=VALUE ...]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import Figure, add_figures_argument, write_figures
from pipelines.config import load_config
from pipelines.federated.run import federate
from pipelines.predict import predict
from pipelines.prepare import prepare
from pipelines.train import train

REPO = Path(__file__).resolve().parents[1]
CELLS = "iid:fedavg,dirichlet:fedavg,dirichlet:fedprox"
QUIET = lambda line: None  # noqa: E731


def test_accuracy(run_dir):
    return predict(run_dir, log=QUIET)["test"]["accuracy"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cells", default=CELLS, help="partition:strategy, comma-separated")
    parser.add_argument("--alpha", type=float, default=0.1, help="dirichlet concentration")
    parser.add_argument("overrides", nargs="*", help="key=value for every run")
    add_figures_argument(parser)
    args = parser.parse_args(argv)
    folder = REPO / "competitions" / "digits"
    prepare(load_config(folder), log=QUIET)
    cells = [tuple(cell.split(":")) for cell in args.cells.split(",")]
    gaps, accuracy, seconds, sent, curves = {}, {}, {}, {}, {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as runs:
        for seed in range(args.seeds):
            common = [*args.overrides, f"run.dir={runs}", f"train.seed={seed}"]
            cfg = load_config(folder, [*common, f"federated.seed={seed}"])
            central = cfg.model_copy(deep=True)
            central.train.epochs = cfg.federated.rounds * cfg.federated.local_epochs
            central.train.patience = 0
            reference = test_accuracy(train(central, QUIET, verbose=0)["run_dir"])
            accuracy.setdefault("centralised", []).append(reference)
            print(f"seed {seed}: centralised {reference:.4f}", flush=True)
            for partition, strategy in cells:
                cfg = load_config(
                    folder,
                    [
                        *common,
                        f"federated.seed={seed}",
                        f"federated.partition={partition}",
                        f"federated.alpha={args.alpha}",
                        f"federated.strategy={strategy}",
                        "federated.centralised=false",
                    ],
                )
                metrics = federate(cfg, log=QUIET)
                score = test_accuracy(metrics["run_dir"])
                key = (partition, strategy)
                history = pd.read_csv(Path(metrics["run_dir"]) / "history.csv")
                curves.setdefault(key, []).append(history.set_index("round")["val_accuracy"])
                accuracy.setdefault(key, []).append(score)
                gaps.setdefault(key, []).append(100 * (score - reference))
                seconds.setdefault(key, []).append(metrics["train_seconds"])
                sent[key] = metrics["federated"]["bytes_per_round"]
                print(f"seed {seed}: {partition} {strategy} {score:.4f}", flush=True)
    rows = [
        "| partition | strategy | test accuracy | gap to centralised (points) "
        "| MB per round (both ways) | seconds |",
        "|---|---|---|---|---|---|",
        f"| all rows | centralised | {_mean_std(accuracy['centralised'], 100)} | – | – | – |",
    ]
    for key in cells:
        name = key[0] if key[0] == "iid" else f"dirichlet α = {args.alpha:g}"
        rows.append(
            f"| {name} | {key[1]} | {_mean_std(accuracy[key], 100)} | {_mean_std(gaps[key])} "
            f"| {sent[key] / 1e6:.2f} | {statistics.mean(seconds[key]):.0f} |"
        )
    rows += ["", *_per_round(cells, curves, args.alpha)]
    print(f"{args.seeds} seeds; {time.perf_counter() - start:.0f} s")
    print("\n".join(rows))
    figures = []
    if ("iid", "fedavg") in gaps:
        gap = statistics.mean(gaps["iid", "fedavg"])
        figures.append(
            Figure(
                "digits, 10 IID clients, FedAvg: test accuracy − centralised (points)",
                f"{gap:+.2f}",
                "≥ −1",
                gap >= -1,
            )
        )
    write_figures(args.figures, figures)
    return rows, figures


def _per_round(cells, curves, alpha):
    """Validation accuracy of the global model after chosen rounds, mean over the seeds."""
    rounds = curves[cells[0]][0].index[1:]
    shown = sorted({1, 2, 5, 10, 15, *rounds[-1:]} & set(rounds))
    header = "| validation accuracy after round | " + " | ".join(map(str, shown)) + " |"
    rows = [header, "|---|" + "---|" * len(shown)]
    for key in cells:
        mean = pd.concat(curves[key], axis=1).mean(axis=1)
        name = f"{key[0] if key[0] == 'iid' else f'dirichlet α = {alpha:g}'}, {key[1]}"
        rows.append(f"| {name} | " + " | ".join(f"{100 * mean[r]:.1f}" for r in shown) + " |")
    return rows


def _mean_std(values, scale=1.0):
    values = [scale * v for v in values]
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


if __name__ == "__main__":
    main()
