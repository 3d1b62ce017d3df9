"""Run every benchmark, each in its own process, and write their figures as one markdown table.

A fresh process per script keeps one benchmark's memory, threads and compiled
functions from touching the next; `gpu_train_step` runs under
`KERAS_BACKEND=jax` (and reports "not measured" where there is no GPU). The
table names the machine and the date; each script's own tables follow it.
A script that fails is reported in the table and makes the exit status 1.

    python -m benchmarks.run_all [--out benchmarks/results.md] [--only input_pipeline,...] [--quick]

`--quick` runs every script at tiny sizes: it checks the scripts run, its
figures mean nothing.
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import Figure, read_figures

REPO = Path(__file__).resolve().parents[1]

# script: (full-size arguments, tiny arguments for --quick, extra environment)
SCRIPTS = {
    "builder_parity": ([], ["--size", "32", "--batch", "2", "--repeats", "1", "--steps", "1"], {}),
    "generate": (
        [],
        [
            "--new",
            "8",
            "--repeats",
            "1",
            "--vocab",
            "32",
            "--layers",
            "1",
            "--width",
            "16",
            "--heads",
            "2",
            "--context",
            "32",
        ],
        {},
    ),
    "pruning": ([], ["--trials", "2", "--epochs", "2"], {}),
    "backends": ([], ["--competitions", "digits", "--epochs", "1", "--repeats", "1"], {}),
    "input_pipeline": ([], ["--images", "64", "--repeats", "1"], {}),
    "family_pipelines": ([], ["--examples", "16", "--repeats", "1", "--batch", "8"], {}),
    "continual": (
        [],
        ["--seeds", "1", "--epochs", "1", "--scenarios", "class_il", "--buffers", "200"],
        {},
    ),
    "federated": (
        [],
        [
            "--seeds",
            "1",
            "--cells",
            "iid:fedavg",
            "federated.clients=2",
            "federated.rounds=1",
            "federated.local_epochs=1",
        ],
        {},
    ),
    "time_to_98": ([], ["--repeats", "1", "--target", "0.5", "--max-epochs", "3"], {}),
    "gpu_train_step": (
        [],
        [
            "--cpu",
            "--image-models",
            "resnet18,vit_tiny16",
            "--size",
            "32",
            "--batch",
            "2",
            "--text-model",
            "gpt_nano",
            "--length",
            "32",
            "--text-batch",
            "2",
            "--vocab",
            "64",
            "--steps",
            "2",
            "--repeats",
            "1",
        ],
        {"KERAS_BACKEND": "jax"},
    ),
}


def machine():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = (
        subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        )
        if _has("nvidia-smi")
        else None
    )
    gpus = gpu.stdout.strip().replace("\n", ", ") if gpu and gpu.returncode == 0 else "no GPU"
    return f"{cores} CPU cores ({platform.machine()}, {platform.system()}), {gpus}"


def _has(command):
    return any((Path(p) / command).is_file() for p in os.environ.get("PATH", "").split(os.pathsep))


def run_script(name, args, env, folder):
    """Run one benchmark; returns (figures, its printed table lines)."""
    figures_path = Path(folder) / f"{name}.json"
    command = [sys.executable, "-m", f"benchmarks.{name}", *args, "--figures", str(figures_path)]
    print(f"$ {' '.join(command[1:])}", flush=True)
    process = subprocess.Popen(
        command, cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True
    )
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line.rstrip("\n"))
    if process.wait() != 0 or not figures_path.is_file():
        return [Figure(name, f"failed (exit status {process.returncode}); see its output")], lines
    return read_figures(figures_path), lines


def _tables(lines):
    """The markdown tables among a script's printed lines, a blank line between tables."""
    kept = []
    for previous, line in zip(["", *lines], lines, strict=False):
        if line.startswith("|"):
            if kept and not previous.startswith("|"):
                kept.append("")
            kept.append(line)
    return kept


def table(figures):
    marks = {True: "yes", False: "**no**", None: "–"}
    rows = ["| figure | measured | goal | met |", "|---|---|---|---|"]
    rows += [f"| {f.figure} | {f.value} | {f.goal or '–'} | {marks[f.met]} |" for f in figures]
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results.md"))
    parser.add_argument("--only", help="comma-separated script names; default: all")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks, not figures")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCRIPTS)
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {sorted(SCRIPTS)}")
    figures, details = [], []
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            full, quick, env = SCRIPTS[name]
            found, lines = run_script(name, quick if args.quick else full, env, folder)
            figures += found
            details += ["", f"### {name}", "", *_tables(lines)]
    failed = any(f.value.startswith("failed") for f in figures)
    header = [
        "# Benchmark figures" + (" (--quick: tiny sizes, not figures)" if args.quick else ""),
        "",
        f"{datetime.date.today().isoformat()}, {machine()}, Python {platform.python_version()}.",
        "Each figure is a ratio of ours to a reference measured side by side in one run "
        "(alternating, several repeats, the median); see each script's docstring.",
        "",
    ]
    text = "\n".join([*header, *table(figures), "", "## Per script", *details, ""])
    Path(args.out).write_text(text)
    print(f"\nwrote {args.out}")
    print("\n".join(table(figures)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
