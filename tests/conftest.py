"""Shared fixtures: competitions copied into a temporary folder, tiny overrides."""

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
# A few epochs of the real pipeline: enough to beat chance by far, fast on 2 cores.
FAST = ["train.epochs=3", "train.patience=0", "train.warmup_epochs=0"]


def prepare_module(slug):
    """A shipped competition's prepare.py as a module (its `generate` makes tiny data)."""
    from pipelines.prepare import prepare_module as load  # after TF_CPP_MIN_LOG_LEVEL

    return load(REPO / "competitions" / slug)


def assert_one_line_error(result, *fragments):
    """The CLI failed as a user-caused error: exit 2, one `error:` line holding `fragments`."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run from an empty folder, as a user would; runs/ lands here."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def competition(workdir):
    """Copy a shipped competition folder (without its data) into the work folder."""

    def copy(slug):
        target = workdir / "competitions" / slug
        shutil.copytree(REPO / "competitions" / slug, target, ignore=shutil.ignore_patterns("data"))
        return target

    return copy


def shared_run(root, slug, *overrides, data=None):
    """`kapps run <slug> overrides…` in `root`, on a copy of the shipped competition
    (its data made by `data(folder / "data")` when given): for a module-scoped fixture
    whose one run several tests read. Returns `(competition folder, run folder, output)`."""
    from pipelines.cli import app

    folder = root / slug
    shutil.copytree(REPO / "competitions" / slug, folder, ignore=shutil.ignore_patterns("data"))
    if data is not None:
        data(folder / "data")
    before = os.getcwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(app, ["run", slug, *overrides])
    finally:
        os.chdir(before)
    assert result.exit_code == 0, result.output
    (run,) = (root / "runs" / slug).iterdir()
    return folder, run, result.output


@pytest.fixture
def cli():
    """Invoke `kapps ...` in-process; returns the click Result."""
    from pipelines.cli import app

    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """One finished short digits run, shared by the tests that only read it."""
    from pipelines.config import load_config
    from pipelines.predict import predict
    from pipelines.prepare import prepare
    from pipelines.train import train

    root = tmp_path_factory.mktemp("digits")
    comp = root / "competitions" / "digits"
    shutil.copytree(REPO / "competitions" / "digits", comp, ignore=shutil.ignore_patterns("data"))
    cfg = load_config(comp, [*FAST, f"run.dir={root / 'runs'}"])
    prepare(cfg, log=lambda _: None)
    metrics = train(cfg, log=lambda _: None)
    metrics.update(predict(metrics["run_dir"], log=lambda _: None))
    return Path(metrics["run_dir"]), metrics
