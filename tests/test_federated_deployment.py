"""A deployed federation: a Flower SuperLink and three SuperNodes, each its own process on
127.0.0.1, run `kapps federate --superlink`; one SuperNode is killed in the middle of
the federation, and its round completes with the other two.

The SuperLink notices a lost node by its missed heartbeats (Flower's 30 s
interval, twice), so this test takes about two minutes.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from tests import replicas

KAPPS = "from pipelines.cli import app; app()"
BIN = Path(sys.executable).parent


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check, seconds, what):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def listening(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_deployed_federation_drops_a_killed_client_and_finishes(competition, workdir):
    folder = competition("digit-recognizer")
    replicas.digit_recognizer(folder / "data", n_train=200, n_test=20)
    env = {
        **os.environ,
        "FLWR_HOME": str(workdir / "flower"),
        "FLWR_TELEMETRY_ENABLED": "0",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    port = free_port()
    processes = []

    def start(*command, log):
        process = subprocess.Popen(
            [str(c) for c in command],
            env=env,
            cwd=workdir,
            stdout=open(workdir / log, "w"),  # noqa: SIM115  (the process owns it)
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed with its children
        )
        processes.append(process)
        return process

    try:
        start(
            BIN / "flower-superlink", "--insecure", "--port", port,
            "--disable-runtime-dependency-installation", log="superlink.log",
        )  # fmt: skip
        wait_for(lambda: listening(port), 60, "the SuperLink")
        here = f" competition-dir='{folder}'"  # where a client machine keeps the competition
        nodes = [
            start(
                BIN / "flower-supernode",
                "--insecure",
                "--superlink",
                f"127.0.0.1:{port}",
                "--port",
                free_port(),
                "--node-config",
                f"partition-id={k} num-partitions=3" + (here if k == 0 else ""),
                log=f"supernode-{k}.log",
            )  # fmt: skip
            for k in range(3)
        ]
        federation = start(
            sys.executable, "-c", KAPPS, "federate", folder, "--superlink", f"127.0.0.1:{port}",
            "federated.clients=3", "federated.rounds=2", "federated.min_clients=2",
            "federated.centralised=false", log="federate.log",
        )  # fmt: skip
        runs = workdir / "runs" / "digit-recognizer"

        def round_one_done():
            found = list(runs.glob("*/history.csv"))
            return bool(found) and 1 in pd.read_csv(found[0])["round"].tolist()

        wait_for(round_one_done, 300, "round 1")
        os.killpg(nodes[2].pid, signal.SIGKILL)  # a client machine dies during round 2
        federation.wait(timeout=400)
        output = (workdir / "federate.log").read_text()
        assert federation.returncode == 0, output
        assert "round 2/2: 2 clients, 1 failed" in output
        run_dir = next(runs.iterdir())
        history = pd.read_csv(run_dir / "history.csv")
        assert history["round"].tolist() == [0, 1, 2]
        assert history["clients"].tolist() == [0, 3, 2]
        assert history["failed"].tolist() == [0, 0, 1]
        submission = pd.read_csv(run_dir / "submission.csv")
        assert submission["ImageId"].tolist() == list(range(1, 21))
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
