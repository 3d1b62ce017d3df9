"""The server's side of a federation: Flower's strategy, the global model, the run folder.

`serve` is the body of the ServerApp, the same under Flower's simulation and
its deployment: it sends the global weights (and the run's config) to the
sampled clients each round, lets Flower's FedAvg or FedProx average what comes
back (weighted by the clients' example counts; a client that fails is left
out of that round), scores the new global model on the validation split,
appends the round to `history.csv` and keeps the best as `best.keras`.
"""

import random
import time

import keras
import pandas as pd
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp.strategy import FedAvg, FedProx

from kapps.errors import KappsError
from pipelines.data.batching import steps_per_epoch
from pipelines.runs import update_json, write_text
from pipelines.tasks import get_task
from pipelines.train import build_optimizer

CONFIG_KEY = "kapps-config"  # the run's config.yaml, in every training message's config
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
            reasons = "; ".join(sorted({m.error.reason.splitlines()[-1] for m in replies}))
            raise FederationFailed(
                f"round {server_round}: no client came back ({reasons or 'timed out'})"
            )
        self.bytes_up = sum(m.content["arrays"].count_bytes() for m in answered)
        arrays, metrics = super().aggregate_train(server_round, answered)
        self.client_loss = float(metrics["loss"]) if metrics and "loss" in metrics else None
        return arrays, metrics


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


class GlobalModel:
    """Scores the global weights after each round and writes the round to the run folder."""

    def __init__(self, cfg, task, data, run, log):
        self.cfg, self.data, self.run, self.log = cfg, data, run, log
        self.model = initial_model(cfg, task, data)
        self.monitor, self.mode = task.monitor()
        self.best, self.rows, self.start = None, [], time.perf_counter()

    def evaluate(self, server_round, arrays, strategy):
        self.model.set_weights(arrays.to_numpy_ndarrays())
        scores = self.model.evaluate(self.data.val, verbose=0, return_dict=True)
        row = {
            "round": server_round,
            "local_epochs": self.cfg.federated.local_epochs,
            "clients": getattr(strategy, "replies", 0) if server_round else 0,
            "failed": getattr(strategy, "failures", 0) if server_round else 0,
            "loss": getattr(strategy, "client_loss", None) if server_round else None,
            **{f"val_{k}": float(v) for k, v in scores.items()},
            "bytes_down": getattr(strategy, "bytes_down", 0) if server_round else 0,
            "bytes_up": getattr(strategy, "bytes_up", 0) if server_round else 0,
            "seconds": round(time.perf_counter() - self.start, 1),
        }
        self.rows.append(row)
        write_text(self.run.history, pd.DataFrame(self.rows).to_csv(index=False))
        value = row.get(self.monitor)
        better = value is not None and (
            self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        )
        if better and server_round:
            self.best = value
            self.model.save(self.run.best_model)
        if server_round:
            shown = " ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
            failed = f", {row['failed']} failed" if row["failed"] else ""
            rounds = self.cfg.federated.rounds
            self.log(
                f"{ROUND_PREFIX}{server_round}/{rounds}: {row['clients']} clients{failed}, "
                f"client loss {row['loss']:.4f}, {shown}"
            )
        return MetricRecord({k: float(v) for k, v in scores.items()})


def serve(grid, cfg, run, log=print):
    """Run `cfg.federated.rounds` rounds over the clients `grid` reaches; returns the
    metrics of the best global model (also written to the run's metrics.json)."""
    f = cfg.federated
    task = get_task(cfg)
    random.seed(f.seed)  # Flower samples each round's clients with Python's `random`
    data = task.training_data(run)
    server = GlobalModel(cfg, task, data, run, log)
    strategy = make_strategy(f)
    config = ConfigRecord({CONFIG_KEY: run.config.read_text()})
    strategy.start(
        grid,
        ArrayRecord(server.model.get_weights()),
        num_rounds=f.rounds,
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
