"""Wall time of `kapps run` under JAX ÷ under TensorFlow, on the same competition and settings.

Each run is the user's command in a fresh process (`KERAS_BACKEND` set, the
data prepared once beforehand, a run folder of its own), alternating the
backends over the repeats; the median wall time of each side, and the
training time the run itself records (`train_seconds`), are reported with
their ratio. tf.data feeds both.

    python -m benchmarks.backends [--competitions digits,shapes-det] [--epochs 5] [--repeats 2]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, add_figures_argument, write_figures
from pipelines.config import load_config
from pipelines.prepare import prepare

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("jax", "tensorflow")


def _run(folder, backend, overrides, run_dir):
    env = {**os.environ, "KERAS_BACKEND": backend}
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            str(folder),
            f"run.dir={run_dir}",
            *overrides,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{backend} run of {folder.name} failed:\n{done.stderr[-2000:]}")
    metrics = json.loads(next(Path(run_dir).glob("*/*/metrics.json")).read_text())
    return seconds, metrics["train_seconds"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competitions", default="digits,shapes-det")
    parser.add_argument("--epochs", type=int, default=5, help="fixed epochs (no early stop)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=[], help="more key=value overrides")
    add_figures_argument(parser)
    args = parser.parse_args(argv)
    overrides = [f"train.epochs={args.epochs}", "train.patience=0", *args.set]
    rows = ["| competition | JAX wall s | TF wall s | JAX ÷ TF wall | JAX ÷ TF training |"]
    rows.append("|---|---|---|---|---|")
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        for slug in args.competitions.split(","):
            folder = Path(tmp) / "competitions" / slug
            shutil.copytree(
                REPO / "competitions" / slug, folder, ignore=shutil.ignore_patterns("data")
            )
            prepare(load_config(folder, [f"run.dir={tmp}/runs"]), log=lambda _: None)
            times = {backend: [] for backend in BACKENDS}
            for repeat in range(args.repeats):
                for backend in BACKENDS if repeat % 2 == 0 else BACKENDS[::-1]:
                    run_dir = Path(tmp) / f"runs-{slug}-{backend}-{repeat}"
                    times[backend].append(_run(folder, backend, overrides, run_dir))
                    print(f"  {slug}, {backend}: {times[backend][-1][0]:.1f} s", flush=True)
            wall = {b: statistics.median(t[0] for t in times[b]) for b in BACKENDS}
            training = {b: statistics.median(t[1] for t in times[b]) for b in BACKENDS}
            ratio = wall["jax"] / wall["tensorflow"]
            rows.append(
                f"| {slug} | {wall['jax']:.1f} | {wall['tensorflow']:.1f} | {ratio:.2f} | "
                f"{training['jax'] / training['tensorflow']:.2f} |"
            )
            figures.append(
                Figure(f"`kapps run {slug}` wall time, JAX ÷ TensorFlow", f"{ratio:.2f}")
            )
    print("\n".join(rows))
    write_figures(args.figures, figures)
    return rows, figures


if __name__ == "__main__":
    main()
