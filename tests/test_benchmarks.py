"""The benchmark scripts run (tiny sizes; their figures go in the README, not here)."""

import pytest


@pytest.mark.slow
def test_builder_parity_runs_at_tiny_size():
    from benchmarks.builder_parity import main

    rows = main(["--size", "32", "--batch", "2", "--repeats", "1", "--steps", "1"])
    assert len(rows) == 2 + 3
    assert all(float(row.rsplit("|", 2)[1]) > 0 for row in rows[2:])


@pytest.mark.slow
def test_generate_benchmark_runs_at_tiny_size():
    from benchmarks.generate import main

    rows, speed = main(
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
        ]
    )
    assert len(rows) == 2 + 4 and all(value > 0 for value in speed.values())


@pytest.mark.slow
def test_pruning_benchmark_runs_at_tiny_size():
    from benchmarks.pruning import main

    rows, figures = main(["--trials", "2", "--epochs", "2"])
    assert len(rows) == 2 + 2
    assert 0 < figures["epoch_ratio"] <= 1
