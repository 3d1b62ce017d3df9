"""The server's side of a federation: Flower's strategy, the global model, the run folder.

`serve` is the body of the ServerApp, the same under Flower's simulation and
its deployment: it sends the global weights (and the run's config) to the
sampled clients each round, lets Flower's FedAvg or FedProx average what comes
back (weighted by the clients' example counts; a client that fails is left
out of that round), scores the new global model on the validation split,
appends the round to `history.csv` and keeps the best as `best.keras`.
"""

import random
import re
import time

import keras
import numpy as np
import pandas as pd
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp.strategy import FedAvg, FedProx

from kapps.errors import KappsError
from pipelines.data.batching import steps_per_epoch
from pipelines.runs import atomic_write, update_json, write_text
from pipelines.tasks import get_task
from pipelines.train import build_optimizer

CONFIG_KEY = "kapps-config"  # the run's config.yaml, in every training message's config
OFFSET_KEY = "kapps-rounds-done"  # rounds finished before this start (a resumed federation)
ROUND_PREFIX = "round "  # how the line the server logs after each round starts


class FederationFailed(KappsError):
    """No client of a round came back: nothing to average."""


class _Accounted:
    """What a round sent and received, for the history (mixed into Flower's strategies)."""

    def configure_train(self, server_round, arrays, config, grid):
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self.sampled = len(messages)
        self.bytes_down = arrays.count_bytes() * len(messages)
        return messages

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        answered = [m for m in replies if not m.has_error()]
        # a client that crashed answers with an error; one that vanished, not at all
        self.replies, self.failures = len(answered), self.sampled - len(answered)
        if not answered:
            reasons = "; ".join(sorted({_reason(m.error.reason) for m in replies}))
            raise FederationFailed(
                f"round {server_round}: no client came back ({reasons or 'timed out'})"
            )
        self.bytes_up = sum(m.content["arrays"].count_bytes() for m in answered)
        arrays, metrics = super().aggregate_train(server_round, answered)
        self.client_loss = float(metrics["loss"]) if metrics and "loss" in metrics else None
        return arrays, metrics


def _reason(text):
    """The client's own message out of Flower's wrapping of it: "Exception … occurred.
    Message: …'>" (simulation) or "<class '…'>:<'…'>" (a SuperNode)."""
    last = text.strip().splitlines()[-1] if text.strip() else ""
    last = last.split("Message: ", 1)[-1]
    wrapped = re.search(r":<'(.*)'>$", last)
    return wrapped.group(1) if wrapped else last.removesuffix("'>")


class AccountedFedAvg(_Accounted, FedAvg):
    pass


class AccountedFedProx(_Accounted, FedProx):
    pass


def make_strategy(f):
    """Flower's strategy for `federated` settings `f`.

    A round starts once `min_clients` clients (all, by default) are connected
    and samples `fraction` of those connected; a client lost for good stalls
    the next rounds unless `min_clients` allows for it (Flower waits).
    """
    least = f.min_clients or f.clients
    common = {
        "fraction_train": f.fraction,
        "fraction_evaluate": 0.0,  # the server scores the global model itself
        "min_train_nodes": max(1, int(f.fraction * least)),
        "min_available_nodes": least,
    }
    if f.strategy == "fedprox":
        return AccountedFedProx(proximal_mu=f.mu, **common)
    return AccountedFedAvg(**common)


def initial_model(cfg, task, data):
    """The global model before round 1, seeded by `train.seed`, compiled as a centralised
    run's model (so best.keras loads, and resumes, like any run's)."""
    keras.utils.set_random_seed(cfg.train.seed)
    model = task.build_model(data.model_args)
    optimizer = build_optimizer(cfg.train, steps_per_epoch(data.train_size, cfg.train.batch_size))
    optimizer.build(model.trainable_variables)
    model.compile(optimizer=optimizer, **task.compile_args())
    return model


def resume_point(run, resume=True):
    """`(rounds finished, their global weights or None, their history rows)` of a run.

    History and weights are written in that order after each round, so a run
    killed in between keeps only the rounds whose weights were saved.
    """
    if not resume or not run.global_weights.is_file():
        return 0, None, []
    with np.load(run.global_weights) as saved:
        done = int(saved["round"])
        weights = [saved[f"w{i}"] for i in range(len(saved.files) - 1)]
    rows = pd.read_csv(run.history) if run.history.is_file() else pd.DataFrame({"round": []})
    rows = rows[rows["round"] <= done].to_dict("records")
    return done, weights, rows


class GlobalModel:
    """Scores the global weights after each round and writes the round to the run folder."""

    def __init__(self, cfg, task, data, run, log, done=0, rows=()):
        self.cfg, self.data, self.run, self.log = cfg, data, run, log
        self.model = initial_model(cfg, task, data)
        self.monitor, self.mode = task.monitor()
        self.done, self.rows = done, list(rows)
        scores = [r[self.monitor] for r in self.rows if r["round"] > 0]
        pick = min if self.mode == "min" else max
        self.best = pick(scores) if scores else None
        elapsed = self.rows[-1]["seconds"] if self.rows else 0.0
        self.start = time.perf_counter() - elapsed

    def evaluate(self, flower_round, arrays, strategy):
        """Flower's `evaluate_fn`: round 0 is the starting weights (a resumed run's were
        scored before it stopped)."""
        server_round = flower_round + self.done
        if flower_round == 0 and self.done:
            return None
        weights = arrays.to_numpy_ndarrays()
        self.model.set_weights(weights)
        scores = self.model.evaluate(self.data.val, verbose=0, return_dict=True)
        after = server_round > 0
        row = {
            "round": server_round,
            "local_epochs": self.cfg.federated.local_epochs,
            "clients": getattr(strategy, "replies", 0) if after else 0,
            "failed": getattr(strategy, "failures", 0) if after else 0,
            "loss": getattr(strategy, "client_loss", None) if after else None,
            **{f"val_{k}": float(v) for k, v in scores.items()},
            "bytes_down": getattr(strategy, "bytes_down", 0) if after else 0,
            "bytes_up": getattr(strategy, "bytes_up", 0) if after else 0,
            "seconds": round(time.perf_counter() - self.start, 1),
        }
        self.rows.append(row)
        write_text(self.run.history, pd.DataFrame(self.rows).to_csv(index=False))
        if not after:
            return MetricRecord({k: float(v) for k, v in scores.items()})
        value = row.get(self.monitor)
        if value is not None and (
            self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        ):
            self.best = value
            self.model.save(self.run.best_model)
        arrays = {f"w{i}": w for i, w in enumerate(weights)}

        def save(tmp):  # to an open file: given a name, np.savez would append ".npz"
            with open(tmp, "wb") as file:
                np.savez(file, round=server_round, **arrays)

        atomic_write(self.run.global_weights, save)
        shown = " ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
        failed = f", {row['failed']} failed" if row["failed"] else ""
        self.log(
            f"{ROUND_PREFIX}{server_round}/{self.cfg.federated.rounds}: {row['clients']} "
            f"clients{failed}, client loss {row['loss']:.4f}, {shown}"
        )
        return MetricRecord({k: float(v) for k, v in scores.items()})


def serve(grid, cfg, run, log=print):
    """Run `cfg.federated.rounds` rounds over the clients `grid` reaches; returns the
    metrics of the best global model (also written to the run's metrics.json)."""
    f = cfg.federated
    task = get_task(cfg)
    done, weights, rows = resume_point(run, cfg.train.resume)
    random.seed(f.seed + done)  # Flower samples each round's clients with Python's `random`
    data = task.training_data(run)
    server = GlobalModel(cfg, task, data, run, log, done, rows)
    strategy = make_strategy(f)
    config = ConfigRecord({CONFIG_KEY: run.config.read_text(), OFFSET_KEY: done})
    if done < f.rounds:
        strategy.start(
            grid,
            ArrayRecord(weights or server.model.get_weights()),
            num_rounds=f.rounds - done,
            timeout=f.round_timeout,
            train_config=config,
            evaluate_fn=lambda rnd, arrays: server.evaluate(rnd, arrays, strategy),
        )
    model = keras.saving.load_model(run.best_model)
    evaluation = task.evaluate(model, data, run)
    history = pd.DataFrame(server.rows)
    best = history.loc[history["round"] > 0, server.monitor]
    best_round = int(history.loc[best.idxmin() if server.mode == "min" else best.idxmax(), "round"])
    return update_json(
        run.metrics,
        model=cfg.model.name,
        params=int(model.count_params()),
        monitor=server.monitor,
        best_round=best_round,
        federated={
            "clients": f.clients,
            "rounds": f.rounds,
            "strategy": f.strategy,
            "partition": f.partition,
            "bytes_per_round": int(history["bytes_down"].iloc[-1] + history["bytes_up"].iloc[-1]),
            "failed_client_rounds": int(history["failed"].sum()),
        },
        train_images=data.train_size,
        val_images=data.val_size,
        skipped_files=data.skipped,
        validation=evaluation.metrics,
        train_seconds=float(history["seconds"].iloc[-1]),
    )
