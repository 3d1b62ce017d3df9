"""Two processes on loopback, joined by JAX's distributed runtime, train one run.

Each process is a real `kapps` command with one CPU device; process 0 owns the
run folder. Killing one stops the other with one line, and the same commands
resume both from the last finished epoch.
"""

import os
import shutil
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.conftest import FAST, REPO, prepare_module

KAPPS = "from pipelines.cli import app; app()"


@pytest.fixture
def digits(workdir):
    folder = workdir / "competitions" / "digits"
    shutil.copytree(REPO / "competitions" / "digits", folder, ignore=shutil.ignore_patterns("data"))
    (folder / "data").mkdir()
    prepare_module("digits").prepare(folder / "data")
    return folder


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(folder, process, port, cwd):
    """`kapps run` as process `process` of 2, under JAX; returns the Popen."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)}
    args = [
        *FAST,
        "train.epochs=4",
        "train.distribution=data_parallel",
        f"train.distribution_coordinator=127.0.0.1:{port}",
        "train.distribution_processes=2",
        f"train.distribution_process_id={process}",
    ]
    return subprocess.Popen(
        [sys.executable, "-c", KAPPS, "run", str(folder), *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(processes, timeout=600):
    return [p.communicate(timeout=timeout) for p in processes]


def epochs_logged(runs):
    histories = list(runs.glob("digits/*/history.csv"))
    return len(pd.read_csv(histories[0])) if histories and histories[0].stat().st_size else 0


def test_two_processes_train_one_run_and_resume_after_one_is_killed(digits, workdir):
    port, runs = free_port(), workdir / "runs"
    processes = [start(digits, k, port, workdir) for k in (0, 1)]
    deadline = time.monotonic() + 600
    while epochs_logged(runs) < 2 and time.monotonic() < deadline:
        assert processes[0].poll() is None, finish(processes)
        time.sleep(0.2)
    processes[1].kill()
    (out, err), _ = finish(processes)
    assert processes[0].returncode == 2, out[-2000:] + err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "process 0 lost the other processes" in errors[0], err[-3000:]
    assert "Traceback" not in err
    [run] = (runs / "digits").iterdir()
    assert not (run / "submission.csv").exists()
    trained = epochs_logged(runs)
    assert 2 <= trained < 4

    processes = [start(digits, k, port, workdir) for k in (0, 1)]
    (out0, err0), (out1, err1) = finish(processes)
    assert [p.returncode for p in processes] == [0, 0], out0[-2000:] + err0[-2000:] + err1[-2000:]
    assert f"from epoch {trained + 1}" in out0
    assert "process 0 of 2" in out0 and "process 1 finished training" in " ".join(out1.split())
    assert list((runs / "digits").iterdir()) == [run]  # process 1 wrote nothing of its own
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    assert (run / "submission.csv").is_file() and (run / "metrics.json").is_file()
