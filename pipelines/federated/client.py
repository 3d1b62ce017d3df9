"""A client's round: take the global weights, `fit` them on its own rows, send them back.

A client process keeps its rows' batches and one compiled model between
rounds (Flower calls the ClientApp afresh for every message; the cache is the
process's), so only the weights change hands: each round sets them, resets
the optimiser, sets the round's learning rate, and fits `local_epochs`.
FedProx adds μ/2 · ‖w − w_global‖² to the loss (Li et al. 2020), with w_global
the weights the round started from.
"""

import tempfile
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import yaml
from keras import ops

from pipelines.config import validate_config
from pipelines.data.batching import steps_per_epoch
from pipelines.federated.partition import partition
from pipelines.runs import RunFolder
from pipelines.tasks import get_task
from pipelines.train import build_optimizer


class Proximal(keras.Model):
    """`model` whose training loss adds μ/2 · ‖w − w_anchor‖² over its trainable weights.

    μ and the anchors are non-trainable variables of this wrapper, so a new
    round assigns them and the compiled train step stays (no retracing); with
    μ = 0 it trains exactly as `model` does (FedAvg).
    """

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.mu = self.add_weight(shape=(), initializer="zeros", trainable=False, name="mu")
        self.anchors = [
            self.add_weight(shape=w.shape, initializer="zeros", trainable=False, name="anchor")
            for w in model.trainable_weights
        ]

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        drift = [
            ops.sum(ops.square(ops.cast(w, "float32") - a))
            for w, a in zip(self.model.trainable_weights, self.anchors, strict=True)
        ]
        return loss + 0.5 * self.mu * ops.sum(ops.stack(drift))

    def anchor(self, mu):
        """Pull towards the weights as they are now, with strength `mu`."""
        self.mu.assign(mu)
        for anchor, weight in zip(self.anchors, self.model.trainable_weights, strict=True):
            anchor.assign(ops.cast(weight, "float32"))


def round_lr(train, server_round, rounds):
    """The learning rate of round `server_round` (1-based): `train.lr` decayed over the
    rounds by the cosine `build_optimizer` decays a centralised run's steps with."""
    cosine = keras.optimizers.schedules.CosineDecay(train.lr, decay_steps=rounds, alpha=0.01)
    return float(cosine(server_round - 1))


def client_rows(cfg, task, client):
    """The training-CSV rows client `client` holds, dealt as the server dealt them."""
    rows, labels = task.training_rows()
    f = cfg.federated
    owner = partition(labels, f.clients, f.partition, f.alpha, f.seed)
    return rows[owner == client]


@dataclass
class Client:
    """One client of one federation in this process: its batches and its compiled model."""

    cfg: Any
    data: Any
    model: Proximal
    scratch: Any  # the folder of its decode cache (`data.cache: disk`), for the process's life


_clients: dict = {}  # (config text, client) → Client, for this process's life


def _client(config_text, client):
    key = (config_text, client)
    if key not in _clients:
        cfg = validate_config(yaml.safe_load(config_text), source="the federation's config")
        task = get_task(cfg)
        keras.utils.set_random_seed(cfg.train.seed + client)
        scratch = tempfile.TemporaryDirectory(prefix="kapps-client-")  # a client writes no run
        data = task.training_data(RunFolder(scratch.name), rows=client_rows(cfg, task, client))
        steps = steps_per_epoch(data.train_size, cfg.train.batch_size)
        model = Proximal(task.build_model(data.model_args))
        optimizer = build_optimizer(cfg.train, steps, learning_rate=cfg.train.lr)
        model.compile(optimizer=optimizer, **task.compile_args())
        _clients[key] = Client(cfg, data, model, scratch)
    return _clients[key]


def train_round(config_text, client, weights, server_round, mu):
    """`(new weights, examples, mean training loss)` of client `client` after its round."""
    state = _client(config_text, client)
    cfg, model = state.cfg, state.model
    model.model.set_weights(weights)
    model.anchor(mu)
    optimizer = model.optimizer
    rate = optimizer.learning_rate  # the variable a constant learning rate lives in
    for variable in optimizer.variables:  # a fresh optimiser each round, as FedAvg's clients
        if variable is not rate:
            variable.assign(ops.zeros_like(variable))
    rate.assign(round_lr(cfg.train, server_round, cfg.federated.rounds))
    history = model.fit(
        state.data.train,
        epochs=cfg.federated.local_epochs,
        shuffle=False,  # the tf.data pipeline shuffles
        verbose=0,
    )
    loss = float(np.mean(history.history["loss"]))
    return model.model.get_weights(), state.data.train_size, loss
