"""Train one model on a sequence of tasks, scoring every task after each one.

The run is an ordinary run folder: `config.yaml`, `best.keras` (the model
after the last task, what `predict` uses), `history.csv` (one row per epoch,
with its task), `metrics.json` (the accuracy matrix, average accuracy after
each task, forgetting, backward transfer), `accuracy_matrix.png` and
`average_accuracy.png`. Each task is one `model.fit` on `ReplayBatches`, with
the optimiser and its schedule started afresh, as mammoth does. Tasks are
scored on the validation split (the competition's test labels are hidden).
"""

import time

import keras
import numpy as np
import pandas as pd

from kapps.errors import ConfigError
from pipelines.continual.buffer import ReservoirBuffer
from pipelines.continual.ewc import consolidate, fisher_diagonal, release
from pipelines.continual.metrics import average_accuracy, backward_transfer, forgetting
from pipelines.continual.replay import REHEARSAL, ContinualLoss, OfferToBuffer, ReplayBatches
from pipelines.continual.scenarios import logit_mask, make_tasks, task_rows
from pipelines.plots import plot_accuracy_matrix, plot_task_curve
from pipelines.runs import update_json, write_text
from pipelines.tasks.base import image_model_args
from pipelines.train import TrainingDiverged, build_optimizer, resolve_run


def check_continual(cfg):
    """Refuse what continual learning cannot run, before any data is read."""
    if cfg.competition.task != "classification":
        raise ConfigError(
            f"continual learning runs over a classification competition, not {cfg.competition.task}"
        )
    if cfg.cv.folds > 1:
        raise ConfigError("continual learning trains one sequence: set cv.folds=1")


def train_continual(cfg, log=print, *, run_dir=None, verbose=2):
    """Train `cfg`'s model task after task; returns metrics.json with `run_dir` added."""
    check_continual(cfg)
    cfg, task, run, notes = resolve_run(cfg, run_dir)
    c = cfg.continual
    with run.lock():
        run.reset()  # a sequence restarts from its first task
        write_text(run.config, cfg.to_yaml())
        for note in notes:
            log(note)
        keras.utils.set_random_seed(cfg.train.seed)
        train_x, train_y, val_x, val_y = task.labelled_arrays(run)
        num_classes = len(cfg.data.classes)
        tasks = make_tasks(c, num_classes, train_x.shape[1:])
        if c.method in REHEARSAL and c.buffer > len(train_x):
            raise ConfigError(
                f"continual.buffer {c.buffer} is larger than the {len(train_x)} training examples"
            )
        if len(val_x) == 0:
            raise ConfigError("continual learning scores each task on data.val_fraction > 0")
        log(
            f"{c.scenario}: {len(tasks)} tasks ({_describe(tasks, c)}), method {c.method}"
            + (f", buffer {c.buffer}" if c.method in REHEARSAL else "")
        )
        start = time.perf_counter()
        model, matrix, history = _learn(
            cfg, task, tasks, train_x, train_y, val_x, val_y, log, verbose
        )
        seconds = time.perf_counter() - start
        model.save(run.best_model)
        write_text(run.history, pd.DataFrame(history).to_csv(index=False))
        curve = average_accuracy(matrix)
        title = f"{c.method}, {c.scenario}"
        plot_accuracy_matrix(matrix, run.plot("accuracy_matrix"), f"Accuracy matrix: {title}")
        plot_task_curve(curve, run.plot("average_accuracy"), title, "average accuracy so far")
        metrics = update_json(
            run.metrics,
            model=cfg.model.name,
            params=int(model.count_params()),
            scenario=c.scenario,
            method=c.method,
            tasks=[list(map(int, t.classes)) for t in tasks],
            accuracy_matrix=np.round(matrix, 4).tolist(),
            average_accuracy_after_each_task=np.round(curve, 4).tolist(),
            validation={
                "average_accuracy": float(curve[-1]),
                "forgetting": forgetting(matrix),
                "backward_transfer": backward_transfer(matrix),
            },
            train_images=len(train_x),
            val_images=len(val_x),
            train_seconds=round(seconds, 1),
        )
    return {**metrics, "run_dir": str(run.path)}


def _describe(tasks, c):
    if c.scenario == "domain_il":
        return f"every class, {c.domain}"
    return ", ".join("/".join(map(str, t.classes)) for t in tasks)


def _learn(cfg, task, tasks, train_x, train_y, val_x, val_y, log, verbose):
    """`(final model, accuracy matrix, per-epoch history rows)` of the sequence."""
    c, n = cfg.continual, len(tasks)
    num_classes = len(cfg.data.classes)
    model_args = image_model_args(cfg, num_classes)
    model = task.build_model(model_args)
    buffer = ReservoirBuffer(c.buffer, seed=cfg.train.seed)
    matrix, history = np.zeros((n, n)), []
    # each task's view of its examples, once (a rotation of every image is not cheap)
    train_views = [_task_view(t, train_x, train_y) for t in tasks]
    val_views = [_task_view(t, val_x, val_y) for t in tasks]
    for k in range(n):
        if c.method == "joint":  # the upper bound: a fresh model on every task so far
            keras.utils.set_random_seed(cfg.train.seed)
            model = task.build_model(model_args)
            parts = train_views[: k + 1]
            images, labels = (np.concatenate(p) for p in zip(*parts, strict=True))
        else:
            images, labels = train_views[k]
        batches = _batches(cfg, model, tasks, k, images, labels, buffer)
        steps = len(batches)
        model.compile(
            optimizer=build_optimizer(cfg.train, steps),
            loss=ContinualLoss(num_classes, temperature=c.temperature),
        )
        callbacks = [keras.callbacks.TerminateOnNaN()]
        if c.method in REHEARSAL:
            callbacks.append(OfferToBuffer(batches, buffer, task=k))
        fitted = model.fit(
            batches, epochs=cfg.train.epochs, shuffle=False, verbose=verbose, callbacks=callbacks
        )
        for epoch, loss in enumerate(fitted.history["loss"]):
            history.append({"task": k + 1, "epoch": epoch, "loss": loss})
        if not np.isfinite(fitted.history["loss"][-1]):
            advice = " or continual.ewc_lambda" if c.method == "ewc" else ""
            raise TrainingDiverged(
                f"training diverged (NaN loss) in task {k + 1} of {n}; lower train.lr{advice}"
            )
        if c.method == "ewc" and k < n - 1:
            consolidate(model, fisher_diagonal(model, images, labels), c.ewc_gamma, c.ewc_lambda)
        matrix[k] = _scores(model, tasks, k, c.scenario, val_views, cfg.train.batch_size)
        log(
            f"after task {k + 1}/{n}: accuracy per task "
            + " ".join(f"{a:.2f}" for a in matrix[k, : k + 1])
            + f"; average {matrix[k, : k + 1].mean():.3f}"
        )
    release(model)
    return model, matrix, history


def _task_view(current, images, labels):
    rows = task_rows(labels, current)
    return current.view(images[rows]), labels[rows]


def _batches(cfg, model, tasks, k, images, labels, buffer):
    c = cfg.continual
    old_logits, old_classes = None, ()
    if c.method == "lwf" and k:
        old_logits = model.predict(images, batch_size=cfg.train.batch_size, verbose=0)
        old_classes = sorted({cls for t in tasks[:k] for cls in t.classes})
    return ReplayBatches(
        images,
        labels,
        num_classes=len(cfg.data.classes),
        batch_size=cfg.train.batch_size,
        method="finetune" if c.method == "joint" else c.method,
        buffer=buffer,
        replay_size=c.replay_batch,
        alpha=c.alpha,
        beta=c.beta,
        lwf_lambda=c.lwf_lambda,
        old_logits=old_logits,
        old_classes=old_classes,
        seed=cfg.train.seed + k,
    )


def _scores(model, tasks, trained, scenario, val_views, batch_size):
    """Accuracy on every task's validation examples after training tasks 0…`trained`."""
    num_classes = model.output_shape[-1]
    row = []
    for j, (images, labels) in enumerate(val_views):
        if len(labels) == 0:
            row.append(float("nan"))
            continue
        logits = model.predict(images, batch_size=batch_size, verbose=0)
        mask = logit_mask(tasks, j, trained, scenario, num_classes)
        row.append(float((np.where(mask, logits, -np.inf).argmax(axis=1) == labels).mean()))
    return row
