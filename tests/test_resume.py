"""Kill a training process mid-run; the same command continues where it stopped."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd

from tests.conftest import REPO

EPOCHS = 8


def _train(comp, workdir):
    command = [sys.executable, "-m", "pipelines.cli", "train", str(comp)]
    command += [f"train.epochs={EPOCHS}", "train.patience=0"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finished_epochs(history):
    try:
        return len(pd.read_csv(history))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def test_killed_run_resumes_from_last_finished_epoch(competition, cli, workdir):
    comp = competition("digits")
    assert cli("prepare", comp).exit_code == 0
    process = _train(comp, workdir)
    runs = workdir / "runs" / "digits"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        histories = list(runs.glob("*/history.csv"))
        if histories and _finished_epochs(histories[0]) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    history = next(runs.glob("*/history.csv"))
    done_before = _finished_epochs(history)
    assert 2 <= done_before < EPOCHS

    resumed = _train(comp, workdir)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "resuming" in output
    epochs = pd.read_csv(history)["epoch"].tolist()
    assert epochs == list(range(EPOCHS))  # no epoch lost, none counted twice
    # The second process trained only the epochs the first did not finish.
    assert output.count("Epoch ") <= EPOCHS - done_before + 1
    assert (history.parent / "best.keras").is_file()
