"""Every generated competition runs end to end under JAX (and torch), and data-parallel.

Each command runs in a fresh interpreter with KERAS_BACKEND set (the backend
is chosen once per process); tf.data stays the input pipeline. The data are
generated here, tiny, and the models are the families' CPU-sized ones, one
epoch each. Two simulated CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=2`) stand in for two GPUs.
"""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest

from tests.conftest import FAST, REPO, prepare_module

SCRIPT = """
import os
import sys
import keras
from typer.testing import CliRunner
from pipelines.cli import app

assert keras.backend.backend() == os.environ["KERAS_BACKEND"], keras.backend.backend()
result = CliRunner().invoke(app, sys.argv[1:])
print(result.output)
print(result.stderr, file=sys.stderr)
sys.exit(result.exit_code)
"""
ONE_EPOCH = [*FAST, "train.epochs=1"]


def kapps_under_jax(*args, devices=1, cwd, backend="jax"):
    """`kapps ARGS` in a fresh JAX (or `backend`) process; returns the CompletedProcess."""
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO)}
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _digits(folder):
    (folder / "data").mkdir()
    prepare_module("digits").prepare(folder / "data")
    return []


def _shapes_seg(folder):
    prepare_module("shapes-seg").generate(folder / "data", train=48, test=8, size=32)
    return ["data.image_size=[32,32]", "model.args.filters=4", "model.args.depth=2"]


def _shapes_det(folder):
    prepare_module("shapes-det").generate(folder / "data", train=24, test=4, size=64)
    return ["model.args={width_multiple: 0.0625}", "data.image_size=[64, 64]", "train.batch_size=8"]


def _shapes_captions(folder):
    prepare_module("shapes-captions").generate(folder / "data", train=64, test=16, size=32)
    return ["data.image_size=[32,32]", "train.batch_size=16", "model.args.text_width=32"]


def _pydoc_text(folder):
    module = prepare_module("pydoc-text")
    data = folder / "data"
    data.mkdir()
    text = module.corpus()[:12_000]
    (data / "train.txt").write_text(text)
    prompts = module.prompts(text, count=3)
    pd.DataFrame({"id": ["p0", "p1", "p2"], "prompt": prompts}).to_csv(
        data / "test.csv", index=False
    )
    return [
        "data.seq_len=32",
        "model.args.num_layers=1",
        "model.args.hidden_dim=32",
        "model.args.num_heads=2",
        "generate.max_tokens=10",
        "generate.sample_tokens=20",
    ]


FAMILIES = {
    "digits": _digits,
    "shapes-seg": _shapes_seg,
    "shapes-det": _shapes_det,
    "shapes-captions": _shapes_captions,
    "pydoc-text": _pydoc_text,
}


@pytest.mark.parametrize("slug", FAMILIES)
def test_every_generated_competition_runs_under_jax(workdir, slug):
    folder = workdir / "competitions" / slug
    shutil.copytree(REPO / "competitions" / slug, folder, ignore=shutil.ignore_patterns("data"))
    overrides = FAMILIES[slug](folder)
    done = kapps_under_jax("run", folder, *ONE_EPOCH, *overrides, cwd=workdir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "devices: cpu:0" in done.stdout
    run = next((workdir / "runs" / slug).iterdir())
    assert (run / "submission.csv").is_file() and (run / "best.keras").is_file()
    assert json.loads((run / "metrics.json").read_text())["validation"]


# Classification and segmentation in the default run, the other families slow
TORCH = [
    slug if slug in ("digits", "shapes-seg") else pytest.param(slug, marks=pytest.mark.slow)
    for slug in FAMILIES
]


@pytest.mark.parametrize("slug", TORCH)
def test_every_generated_competition_runs_under_torch(workdir, slug):
    pytest.importorskip("torch", reason="the torch backend needs torch (pip install torch)")
    folder = workdir / "competitions" / slug
    shutil.copytree(REPO / "competitions" / slug, folder, ignore=shutil.ignore_patterns("data"))
    overrides = FAMILIES[slug](folder)
    done = kapps_under_jax("run", folder, *ONE_EPOCH, *overrides, cwd=workdir, backend="torch")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "devices: cpu:0" in done.stdout
    run = next((workdir / "runs" / slug).iterdir())
    assert (run / "submission.csv").is_file() and (run / "best.keras").is_file()
    assert json.loads((run / "metrics.json").read_text())["validation"]


@pytest.fixture
def digits(workdir):
    folder = workdir / "competitions" / "digits"
    shutil.copytree(REPO / "competitions" / "digits", folder, ignore=shutil.ignore_patterns("data"))
    _digits(folder)
    return folder


# tf.data's random augmentation draws in a parallel map, in no fixed order: off, so the
# two runs see the same batches.
SAME_BATCHES = ["augment.rotation=0", "augment.translation=0", "augment.zoom=0"]


def test_data_parallel_on_two_devices_trains_as_one_device(digits, workdir):
    """The same loss curve at the same global batch, and a checkpoint any process loads."""
    curves = {}
    for mode in ("none", "data_parallel"):
        done = kapps_under_jax(
            "train",
            digits,
            *FAST,
            *SAME_BATCHES,
            "train.epochs=2",
            f"train.distribution={mode}",
            f"run.dir=runs-{mode}",
            devices=2,
            cwd=workdir,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        run = next((workdir / f"runs-{mode}" / "digits").iterdir())
        curves[mode] = pd.read_csv(run / "history.csv")
    assert "devices: cpu:0, cpu:1 (data parallel; global batch 32 = 2 × 16)" in done.stdout
    for column in ("loss", "val_loss"):
        np.testing.assert_allclose(
            curves["data_parallel"][column], curves["none"][column], rtol=1e-4
        )
    model = keras.saving.load_model(run / "best.keras")  # here: TensorFlow, one device
    assert model.predict(np.zeros((3, 32, 32, 1), "float32"), verbose=0).shape == (3, 10)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["train.distribution=data_parallel", "train.batch_size=33"],
            "train.batch_size 33 does not split over 2 devices",
        ),
        (
            ["train.distribution=data_parallel", "data.val_fraction=0.0995"],
            "the validation set of 143 does not split over 2 devices",
        ),
        (
            [
                "train.distribution=data_parallel",
                "train.distribution_processes=2",
                "train.distribution_process_id=2",
                "train.distribution_coordinator=127.0.0.1:1",
            ],
            "train.distribution_process_id 2 is out of range for 2 processes",
        ),
        (
            [
                "train.distribution=data_parallel",
                "train.distribution_processes=2",
                "train.distribution_process_id=1",
                "train.distribution_coordinator=127.0.0.1:9",  # discard: nothing listens
                "train.distribution_timeout=2",
            ],
            "cannot reach the coordinator 127.0.0.1:9 within 2 s",
        ),
    ],
    ids=["batch", "validation", "process-id", "coordinator"],
)
def test_a_placement_that_cannot_work_is_one_line(digits, workdir, overrides, message):
    done = kapps_under_jax("train", digits, *overrides, devices=2, cwd=workdir)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not list((workdir / "runs").glob("*/*/best.keras"))  # refused before training


COMMANDS = """
import sys
from pathlib import Path
import keras
from typer.testing import CliRunner
from pipelines.cli import app

assert keras.backend.backend() == "jax"
folder, quick = sys.argv[1], sys.argv[2:]


def kapps(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (args, result.output[-3000:])
    return result.output


kapps("run", folder, *quick, "cv.folds=2")
kapps("run", folder, *quick, "train.seed=7")
first, second = sorted(Path("runs/digits").glob("lenet5-*"))
kapps("predict", first)
kapps("ensemble", first, second)
kapps("tune", folder, "--trials", "2", *quick)
print("all commands ran")
"""


@pytest.mark.slow
def test_cv_predict_ensemble_and_tune_run_under_jax(digits, workdir):
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", COMMANDS, str(digits), *ONE_EPOCH],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all commands ran" in done.stdout
