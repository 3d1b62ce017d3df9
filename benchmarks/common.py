"""What the benchmark scripts share: alternating timing and the figures they report.

Every script's `main(argv)` returns `(rows, figures)`: `rows` the markdown
table it prints, `figures` a list of `Figure`s, the headline numbers that
`benchmarks/run_all.py` collects. With `--figures PATH` a script also writes
its figures there as JSON, which is how `run_all.py` reads a script it runs in
a separate process.
"""

import json
import statistics
import time
from dataclasses import asdict, dataclass


@dataclass
class Figure:
    """One headline number: what it is, its measured value as text, its goal."""

    figure: str
    value: str
    goal: str = ""
    met: bool | None = None  # None: no goal, or not measured


def add_figures_argument(parser):
    parser.add_argument("--figures", metavar="PATH", help="also write the figures here as JSON")


def write_figures(path, figures):
    if path:
        with open(path, "w") as file:
            json.dump([asdict(f) for f in figures], file, indent=1)


def read_figures(path):
    with open(path) as file:
        return [Figure(**entry) for entry in json.load(file)]


def alternate(contenders, repeats):
    """Median seconds of each zero-argument callable, run alternately.

    The order flips every repeat, so neither side always runs first (warm
    caches, turbo clocks, a neighbour's load hit both alike).
    """
    names = list(contenders)
    times = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
