"""Kill a training process mid-run; the same command continues where it stopped.

And a second command on a run folder in use stops without touching it.
"""

import os
import signal
import subprocess
import sys
import time

import pandas as pd

from pipelines.runs import RunFolder
from tests.conftest import REPO, assert_one_line_error

EPOCHS = 8


def _train(comp, workdir, *overrides):
    command = [sys.executable, "-m", "pipelines.cli", "train", str(comp), *overrides]
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


def test_a_second_command_on_a_run_folder_in_use_stops_and_harms_nothing(competition, cli, workdir):
    comp = competition("digits")
    assert cli("prepare", comp).exit_code == 0
    first = _train(comp, workdir, "run.name=shared")
    history = workdir / "runs" / "digits" / "shared" / "history.csv"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None and _finished_epochs(history) < 1:
        time.sleep(0.05)
    assert first.poll() is None, "training ended before the second command could start"
    second = cli("train", comp, "run.name=shared", f"train.epochs={EPOCHS}", "train.patience=0")
    assert_one_line_error(second, "runs/digits/shared is in use by process", str(first.pid))
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output
    assert pd.read_csv(history)["epoch"].tolist() == list(range(EPOCHS))
    assert (history.parent / "metrics.json").is_file()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.lock_file.write_text("999999999")  # no such process holds it any more
    with run.lock():
        assert run.lock_file.read_text() == str(os.getpid())
    assert run.lock_file.read_text() == ""
