"""`kapps federate`: deal the rows out, run the rounds (simulated, or on a SuperLink),
train the centralised reference, and leave an ordinary run folder.

The run folder holds `config.yaml`, `partition.csv` (the client of every
training row) and `partition.png`, `history.csv` (one row per round: clients
that answered, mean client loss, the global model's validation scores, bytes
sent each way), `best.keras` (the best round's global model, what `predict`
uses), `metrics.json`, `curves.png` (validation accuracy per round against the
centralised run's per epoch) and `centralised/`, an ordinary run of the same
model for rounds × local epochs. After each round the global weights are kept
(`backup/global.npz`), so the same command resumes a stopped federation after
its last finished round.
"""

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from flwr.serverapp import ServerApp
from flwr.simulation import run_simulation

from kapps.errors import ConfigError, KappsError
from pipelines.federated.app import client_app
from pipelines.federated.partition import class_counts, partition
from pipelines.federated.server import ROUND_PREFIX, resume_point, serve
from pipelines.plots import plot_partition, plot_rounds
from pipelines.predict import predict
from pipelines.runs import read_json, update_json, write_text
from pipelines.train import resolve_run, train

APP_DIR = Path(__file__).with_name("flower_app")  # what `flwr run` sends to a SuperLink
BOX = "│╭╮╰╯─ "  # the frame `flwr` draws around its messages
WAITING = "Waiting for nodes to connect"  # Flower's line while too few SuperNodes are up


def check_federated(cfg):
    """Refuse what a federation cannot run, before any data is read."""
    if cfg.competition.task != "classification":
        raise ConfigError(
            f"kapps federate runs over a classification competition, not {cfg.competition.task}"
        )
    if cfg.cv.folds > 1:
        raise ConfigError("a federation trains one global model: set cv.folds=1")
    if cfg.continual.scenario is not None:
        raise ConfigError("continual.scenario and kapps federate do not combine")
    f = cfg.federated
    if f.min_clients is not None and f.min_clients > f.clients:
        raise ConfigError(
            f"federated.min_clients {f.min_clients} is more than federated.clients {f.clients}"
        )


def federate(cfg, log=print, *, run_dir=None, superlink=None, verbose=False):
    """Train `cfg`'s model federated; returns metrics.json with `run_dir` added.

    Args:
        superlink: address of a running Flower SuperLink (HOST:PORT, its
            `--port`, 8000 by default) whose SuperNodes are the clients; None
            simulates `federated.clients` clients on this machine.
        verbose: keep Flower's and Ray's own log lines.
    """
    check_federated(cfg)
    cfg, task, run, notes = resolve_run(cfg, run_dir or cfg.run_dir(federated=True))
    f = cfg.federated
    with run.lock(), _flower_logs(verbose):
        if not cfg.train.resume:
            run.reset()
        write_text(run.config, cfg.to_yaml())
        for note in notes:
            log(note)
        done = resume_point(run, cfg.train.resume)[0]
        if done:
            log(f"resuming {run} after round {done} (train.resume=false starts afresh)")
        deal(cfg, task, run)
        where = f"SuperLink {superlink}" if superlink else "simulated on this machine"
        log(
            f"{f.strategy}: {f.clients} clients ({f.partition}), {f.rounds} rounds of "
            f"{f.local_epochs} local epoch(s), {where}"
        )
        if superlink:
            _deploy(run, superlink, log, verbose)
        else:
            _simulate(cfg, run, log, verbose)
        if f.centralised:
            update_json(run.metrics, centralised=_centralised(cfg, run, log))
        _plot(cfg, run)
    return {**read_json(run.metrics), "run_dir": str(run.path)}


def deal(cfg, task, run):
    """Write which client holds each training row (`partition.csv`) and its plot."""
    f = cfg.federated
    rows, labels = task.training_rows()
    owner = partition(labels, f.clients, f.partition, f.alpha, f.seed)
    frame = pd.DataFrame({"row": rows, "label": labels, "client": owner})
    write_text(run.partition, frame.to_csv(index=False))
    counts = class_counts(owner, labels, f.clients, len(cfg.data.classes))
    scheme = "IID" if f.partition == "iid" else f"Dirichlet α = {f.alpha:g}"
    plot_partition(counts, cfg.data.classes, run.plot("partition"), f"{scheme}: rows per client")


def _simulate(cfg, run, log, verbose):
    """The rounds under Flower's simulation engine: one Ray actor per concurrent client."""
    f = cfg.federated
    server = ServerApp()

    @server.main()
    def _main(grid, context):
        serve(grid, cfg, run, log)

    init_args = {} if verbose else {"log_to_driver": False, "logging_level": logging.ERROR}
    run_simulation(
        server_app=server,
        client_app=client_app,
        num_supernodes=f.clients,
        backend_config={
            "client_resources": {"num_cpus": f.cpus_per_client, "num_gpus": f.gpus_per_client},
            "init_args": init_args,
        },
    )


@contextlib.contextmanager
def _flower_logs(verbose):
    """Flower's own lines (every message it routes, its deprecation notes) and the library
    warnings Ray turns back on, only with `kapps --verbose`."""
    logger = logging.getLogger("flwr")
    level = logger.level
    with warnings.catch_warnings():
        if not verbose:
            logger.setLevel(logging.ERROR)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
        try:
            yield
        finally:
            logger.setLevel(level)


def _deploy(run, superlink, log, verbose):
    """The rounds on a running SuperLink: `flwr run` sends it `flower_app/`, whose ServerApp
    (started by the SuperLink on its machine) writes this run folder. The ServerApp's own
    lines come back through `flwr run --stream`; Flower's only with `verbose`."""
    flwr = shutil.which("flwr") or str(Path(sys.executable).with_name("flwr"))
    tail = []
    with tempfile.TemporaryDirectory(prefix="kapps-flwr-") as home:
        Path(home, "config.toml").write_text(
            f'[superlink]\ndefault = "kapps"\n\n[superlink.kapps]\n'
            f'address = "{superlink}"\ninsecure = true\n'
        )
        command = [
            flwr, "run", str(APP_DIR), "kapps", "--stream",
            "--run-config", f'run-dir="{run.path.resolve()}"',
        ]  # fmt: skip
        env = {**os.environ, "FLWR_HOME": home}
        with subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as flower:
            waiting = False
            for line in flower.stdout:
                line = line.rstrip()
                text = line.strip(BOX).strip()  # `flwr` frames its errors in a box
                if text:
                    tail = [*tail[-5:], text]
                if verbose or line.startswith(ROUND_PREFIX):
                    log(line)
                elif WAITING in line and not waiting:  # Flower says it each second
                    log(line[line.index(WAITING) :])
                    waiting = True
    if not run.metrics.is_file():
        raise FederationUnreachable(
            f"the federation on {superlink} did not finish: " + " ".join(tail[-2:])
        )


class FederationUnreachable(KappsError):
    """`flwr run` could not run the federation on the SuperLink."""


def _centralised(cfg, run, log):
    """The same model trained on every client's rows together, for as many epochs, and
    scored on the test set when the competition has answers."""
    reference = cfg.model_copy(deep=True)
    reference.train.epochs = cfg.federated.rounds * cfg.federated.local_epochs
    reference.train.patience = 0
    log(f"centralised reference: {reference.train.epochs} epochs on all rows")
    quiet = lambda line: None  # noqa: E731
    metrics = train(reference, quiet, run_dir=run.centralised.path, verbose=0)
    tested = predict(run.centralised.path, log=quiet)
    return {
        "validation": metrics["validation"],
        "test": tested.get("test"),
        "train_seconds": metrics["train_seconds"],
    }


def _plot(cfg, run):
    history = pd.read_csv(run.history)
    metric = "accuracy" if "val_accuracy" in history else "loss"
    curve = None
    if cfg.federated.centralised:
        central = pd.read_csv(run.centralised.history)
        curve = pd.Series(central[f"val_{metric}"].to_numpy(), index=np.arange(1, len(central) + 1))
    f = cfg.federated
    plot_rounds(history[history["round"] > 0], curve, run.plot("curves"), metric,
                f"{f.strategy}, {f.clients} clients, {f.partition}")  # fmt: skip
