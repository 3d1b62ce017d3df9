"""The benchmark scripts run (tiny sizes; their figures go in the README, not here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.run_all import SCRIPTS  # their --quick arguments: the tiny sizes

REPO = Path(__file__).resolve().parents[1]


def _gpu_benchmark(*args):
    """Run benchmarks/gpu_train_step.py in a fresh process under JAX."""
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_train_step", *args],
        cwd=REPO,
        env={**os.environ, "KERAS_BACKEND": "jax"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.slow
def test_gpu_train_step_runs_under_jax_without_tensorflow(tmp_path):
    """The GPU benchmark at tiny sizes on the CPU, in a process of its own under JAX."""
    figures = tmp_path / "figures.json"
    result = _gpu_benchmark(*SCRIPTS["gpu_train_step"][1], "--figures", figures)  # --quick's
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tensorflow imported: False" in result.stdout
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in table] == ["resnet18", "vit_tiny16", "gpt_nano"]
    assert all(float(row.split("|")[3].split()[0].replace(",", "")) > 0 for row in table)
    assert len(json.loads(figures.read_text())) == 3


def test_gpu_train_step_without_a_gpu_measures_nothing(tmp_path):
    figures = tmp_path / "figures.json"
    result = _gpu_benchmark("--figures", figures)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no GPU" in result.stdout
    assert all(f["value"] == "not measured: no GPU" for f in json.loads(figures.read_text()))


def test_peak_flops_by_device_name():
    backend = os.environ.get("KERAS_BACKEND")
    from benchmarks.gpu_train_step import peak_flops

    # Imported, it must not switch the backend of every process started later.
    assert os.environ.get("KERAS_BACKEND") == backend

    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("cpu") is None


def test_jpeg_reduced_decode_matches_a_full_decode(tmp_path):
    """A JPEG 4× larger than needed is decoded at a quarter scale; pixels stay close."""
    import tensorflow as tf

    from benchmarks.input_pipeline import write_jpegs
    from pipelines.data.images import _decode_file, _decode_jpeg_reduced

    path = write_jpegs(tmp_path, 1, size=(256, 320))[0]
    data = tf.io.read_file(path)
    assert _decode_jpeg_reduced(data, (64, 64), 3).shape == (64, 80, 3)  # decoded at 1/4
    assert _decode_jpeg_reduced(data, (100, 100), 3).shape == (128, 160, 3)  # at 1/2
    reduced = _decode_file(tf.constant(path), (64, 64), 3).numpy().astype(float)
    full = np.asarray(Image.open(path).convert("RGB").resize((64, 64), Image.BILINEAR), float)
    assert reduced.shape == (64, 64, 3)
    assert np.abs(reduced - full).mean() < 4  # of 255: the same picture


@pytest.mark.slow
def test_input_pipeline_benchmark_runs_at_tiny_size():
    from benchmarks.input_pipeline import main

    rows, figures = main(["--images", "32", "--repeats", "1"])
    assert len(figures) == 2 and all(f.met is not None for f in figures)
    assert sum(row.startswith("| kapps") or row.startswith("| PIL") for row in rows) == 4


@pytest.mark.slow
def test_time_to_98_benchmark_runs_at_tiny_size():
    from benchmarks.time_to_98 import main

    rows, figures = main(["--repeats", "1", "--target", "0.3", "--max-epochs", "3"])
    assert len(figures) == 1 and figures[0].met is not None
    assert "never" not in "".join(rows)  # 30 % is reached within three epochs by both


@pytest.mark.slow
def test_run_all_quick_writes_a_table(tmp_path):
    out = tmp_path / "results.md"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", "--quick", "--out", out],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    text = out.read_text()
    assert text.count("### ") == len(SCRIPTS) and "failed" not in text
    assert "| figure | measured | goal | met |" in text


@pytest.mark.slow
def test_family_pipelines_runs_at_tiny_size():
    from benchmarks.family_pipelines import FAMILIES, main

    rows, figures = main(SCRIPTS["family_pipelines"][1])
    assert len(rows) == 2 + len(FAMILIES) and len(figures) == len(FAMILIES)
    assert all(float(row.split("|")[4].replace(",", "")) > 0 for row in rows[2:])


@pytest.mark.slow
def test_builder_parity_runs_at_tiny_size():
    from benchmarks.builder_parity import main

    rows, figures = main(SCRIPTS["builder_parity"][1])
    assert len(rows) == 2 + 3 and len(figures) == 3
    assert all(float(row.rsplit("|", 2)[1]) > 0 for row in rows[2:])


@pytest.mark.slow
def test_generate_benchmark_runs_at_tiny_size():
    from benchmarks.generate import main

    rows, figures = main(SCRIPTS["generate"][1])
    assert len(rows) == 2 + 4 and len(figures) == 2
    assert all(float(row.split("|")[2].replace(",", "")) > 0 for row in rows[2:])


@pytest.mark.slow
def test_pruning_benchmark_runs_at_tiny_size():
    from benchmarks.pruning import main

    rows, figures = main(SCRIPTS["pruning"][1])
    assert len(rows) == 2 + 2
    assert len(figures) == 2
    assert 0 < float(figures[0].value.split()[0]) <= 1


@pytest.mark.slow
def test_backends_benchmark_runs_at_tiny_size():
    from benchmarks.backends import main

    rows, figures = main(SCRIPTS["backends"][1])
    assert len(rows) == 2 + 1 and len(figures) == 1
    assert float(figures[0].value) > 0


@pytest.mark.slow
def test_federated_benchmark_runs_at_tiny_size():
    from benchmarks.federated import main

    rows, figures = main(SCRIPTS["federated"][1])
    assert rows[2].startswith("| all rows | centralised |") and rows[3].startswith("| iid |")
    assert len(figures) == 1 and figures[0].met in (True, False)
