"""The benchmark scripts run (tiny sizes; their figures go in the README, not here)."""

import pytest


@pytest.mark.slow
def test_builder_parity_runs_at_tiny_size():
    from benchmarks.builder_parity import main

    rows = main(["--size", "32", "--batch", "2", "--repeats", "1", "--steps", "1"])
    assert len(rows) == 2 + 3
    assert all(float(row.rsplit("|", 2)[1]) > 0 for row in rows[2:])
