"""Task-neutral training: `model.fit` with checkpoints, resume, schedule and seeds."""

import contextlib
import tempfile
import time

import keras
import numpy as np
import pandas as pd

from kapps.errors import ConfigError, KappsError
from pipelines.data.batching import steps_per_epoch
from pipelines.devices import cluster, distributed, placement, ready_for
from pipelines.finetune import set_frozen, unfreeze_saved, with_backbone_lr
from pipelines.plots import plot_curves
from pipelines.runs import RunFolder, read_json, update_json, write_text
from pipelines.tasks import get_task


class TrainingDiverged(KappsError):
    """The loss became NaN; the run keeps its best checkpoint so far."""


@contextlib.contextmanager
def precision_policy(mode):
    """Set the mixed-precision policy for the block, and restore the old one after."""
    previous = keras.config.dtype_policy()
    if mode != "off":
        keras.config.set_dtype_policy(f"mixed_{mode}")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_optimizer(train, steps_per_epoch, learning_rate=None):
    """The optimiser with linear warm-up then cosine decay over the whole run.

    `train.clipnorm` clips the gradients' global norm (DETR's recipe: 0.1).
    `learning_rate`: a constant one instead of the schedule (a federated client
    sets each round's).
    """
    total = max(1, train.epochs * steps_per_epoch)
    warmup = min(int(train.warmup_epochs * steps_per_epoch), total - 1)
    schedule = learning_rate or keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else train.lr,
        decay_steps=total - warmup,
        alpha=0.01,
        warmup_target=train.lr if warmup else None,
        warmup_steps=warmup,
    )
    common = {
        "use_ema": train.ema,
        "ema_momentum": train.ema_momentum,
        "global_clipnorm": train.clipnorm or None,
    }
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(
            schedule, momentum=train.momentum, weight_decay=train.weight_decay or None, **common
        )
    betas = {"beta_1": train.beta_1, "beta_2": train.beta_2}
    if train.optimizer == "adam":
        return keras.optimizers.Adam(schedule, **betas, **common)
    return keras.optimizers.AdamW(schedule, weight_decay=train.weight_decay, **betas, **common)


def _resume_point(run, monitor, mode):
    """First epoch to run and the best monitored value so far, from the backup."""
    epoch = int(read_json(run.backup_epoch, {}).get("epoch", 0))
    if epoch == 0 or not run.history.is_file():
        return 0, None
    # The history may hold an epoch the backup missed (killed in between):
    # keep only the epochs the backup holds, so none is counted twice.
    history = pd.read_csv(run.history)
    history = history[history["epoch"] < epoch]
    write_text(run.history, history.to_csv(index=False))
    values = history[monitor].dropna() if monitor in history else pd.Series(dtype=float)
    best = None if values.empty else float(values.min() if mode == "min" else values.max())
    return epoch, best


def _callbacks(cfg, run, monitor, mode, best_so_far, extra):
    callbacks = [keras.callbacks.TerminateOnNaN()]
    if cfg.train.ema:
        # Validate and checkpoint the averaged weights, train the raw ones.
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    callbacks += [
        keras.callbacks.ModelCheckpoint(
            run.best_model,
            monitor=monitor,
            mode=mode,
            save_best_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.BackupAndRestore(run.backup, delete_checkpoint=False),
        keras.callbacks.CSVLogger(run.history, append=True),
    ]
    if cfg.train.patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=cfg.train.patience)
        )
    # Last, so an epoch is logged and backed up before a pruner can stop the run.
    return callbacks + list(extra)


def resolve_run(cfg, run_dir=None, task_type=None):
    """`(resolved cfg, task, run folder, notes)` of a run about to train.

    The folder is named from the config as the user gave it (so the same
    command finds the same run); the task completes the config from the data.
    `task_type`: a `Task` class instead of the competition's (a pretext task).
    """
    run = RunFolder(run_dir or cfg.run_dir())
    make_task = task_type or get_task
    task = make_task(cfg)
    resolved = task.resolve()
    resolved.run.name = run.name
    task = make_task(resolved)
    return resolved, task, run, task.resolution_notes(cfg)


def train(cfg, log=print, *, run_dir=None, callbacks=(), verbose=2, task_type=None):
    """Train one run of the competition `cfg` and evaluate its best epoch.

    The config is resolved and saved in the run folder before any training
    data is built. Re-running an interrupted run continues from its last
    finished epoch; a run that finished is not trained again
    (`train.resume=false` starts afresh). The folder is locked meanwhile.
    Cross-validation trains one such run per fold (`pipelines.cv.train_cv`).

    Args:
        cfg: the competition's `Config`.
        log: where progress lines go.
        run_dir: train here instead of `cfg.run_dir()` (tuning trials, folds).
        callbacks: extra Keras callbacks, called after the run's own each epoch.
        verbose: `model.fit` verbosity.
        task_type: train this `Task` class instead of the competition's (pretraining).

    Returns:
        The run folder's metrics.json content as a dict, with `run_dir` added;
        in a process other than 0 of several, only `run_dir` and `process`.
    """
    if cfg.cv.fold is not None and cluster(cfg.train)[1] > 1:
        raise ConfigError("several processes train one run: set cv.folds=0, or use one process")
    place = placement(cfg.train)
    cfg, task, run, notes = resolve_run(cfg, run_dir, task_type)
    if place.process:  # the same steps, written into a scratch folder: process 0 writes the run
        with tempfile.TemporaryDirectory(prefix="kapps-process-") as scratch, place.watch():
            _train(cfg, task, RunFolder(scratch), notes, place, log, callbacks, verbose)
        return {"run_dir": str(run.path), "process": place.process}
    with place.watch():
        return _train(cfg, task, run, notes, place, log, callbacks, verbose)


def _train(cfg, task, run, notes, place, log, callbacks, verbose):
    with run.lock():
        if not cfg.train.resume:
            run.reset()
        write_text(run.config, cfg.to_yaml())
        place.share(run.path, [run.backup, run.history, run.state])  # every process resumes alike
        log(place.describe(cfg.train.batch_size))
        keras.utils.set_random_seed(cfg.train.seed)
        with precision_policy(cfg.train.mixed_precision):
            data = task.training_data(run)  # outside the distribution: the same batches
            data = ready_for(place, data, cfg.train.batch_size)
            for note in notes + data.notes:
                log(note)
            for path in data.skipped:
                log(f"[yellow]skipped unreadable training image: {path}[/]")
            monitor, mode = task.monitor()
            if read_json(run.state, {}).get("finished"):
                log(f"{run} already finished training; train.resume=false retrains it")
            else:
                with distributed(place):
                    _fit(cfg, task, data, run, monitor, mode, log, callbacks, verbose)
            place.leave()
            if place.process:
                return None
            model = keras.saving.load_model(run.best_model)  # one device: any set size
            evaluation = task.evaluate(model, data, run)
            if cfg.cv.fold is not None and evaluation.oof is not None:
                write_text(run.oof, evaluation.oof.to_csv(index=False))
        plot_curves(run.history, run.plot("curves"))
        metrics = _record_metrics(run, cfg, task, data, model, evaluation, monitor, mode)
    return {**metrics, "run_dir": str(run.path)}


def _record_metrics(run, cfg, task, data, model, evaluation, monitor, mode):
    """metrics.json of a trained run: the model, its best epoch, data sizes, validation."""
    history = pd.read_csv(run.history)
    scores = history[monitor]
    best_epoch = int(history["epoch"][scores.idxmin() if mode == "min" else scores.idxmax()])
    return update_json(
        run.metrics,
        model=cfg.model.name,
        params=int(model.count_params()),
        epochs_run=len(history),
        best_epoch=best_epoch + 1,
        monitor=monitor,
        examples=task.examples,
        train_images=data.train_size,
        val_images=data.val_size,
        skipped_files=data.skipped,
        validation=evaluation.metrics,
        train_seconds=read_json(run.state, {}).get("train_seconds"),
    )


def _fit(cfg, task, data, run, monitor, mode, log, extra_callbacks, verbose):
    steps = steps_per_epoch(data.train_size, cfg.train.batch_size)
    model = task.build_model(data.model_args)
    pretrained = task.pretrained_layers(model) if cfg.model.weights else []
    optimizer = with_backbone_lr(
        build_optimizer(cfg.train, steps), pretrained, cfg.train.backbone_lr_mult
    )
    if keras.config.dtype_policy().name == "mixed_float16":  # what compile would wrap it in
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    # Built now, over every variable that will train: left to the first traced train
    # step, TensorFlow builds the slot variables inside the graph, 20× slower (11 s
    # against 0.6 s for YOLO-n); and a frozen phase then shares the state and backups.
    optimizer.build(model.trainable_variables)
    jit = "auto" if cfg.train.jit_compile is None else cfg.train.jit_compile
    if jit is True and keras.backend.backend() == "torch":
        # Keras' torch backend would torch.compile the step: minutes of C++ builds on a CPU
        log("train.jit_compile: XLA only; the torch backend trains eagerly")
        jit = False
    initial_epoch, best_so_far = _resume_point(run, monitor, mode)
    if initial_epoch:
        log(f"resuming {run} from epoch {initial_epoch + 1}")
    phases = [(cfg.train.epochs, False)]  # (last epoch, pretrained layers frozen)
    if len(pretrained) == len([layer for layer in model.layers if layer.weights]):
        if cfg.train.freeze_epochs:
            log("every layer came from model.weights (no new head): nothing to freeze")
    elif pretrained and initial_epoch < cfg.train.freeze_epochs:
        phases.insert(0, (cfg.train.freeze_epochs, True))
        log(f"epochs 1–{cfg.train.freeze_epochs} train the new head, the pretrained layers frozen")
    callbacks = task.epoch_callbacks(data, run)
    callbacks += _callbacks(cfg, run, monitor, mode, best_so_far, extra_callbacks)
    state = read_json(run.state, {})
    start, losses = time.perf_counter(), []
    for epochs, frozen in phases:
        set_frozen(pretrained, frozen)
        model.compile(optimizer=optimizer, jit_compile=jit, **task.compile_args())
        history = model.fit(
            data.train,
            validation_data=data.val,
            epochs=epochs,  # BackupAndRestore starts each phase where the last one stopped
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles
            verbose=verbose,
        )
        losses += history.history.get("loss", [])
        if losses and not np.isfinite(losses[-1]):
            break
    if pretrained and cfg.train.freeze_epochs and run.best_model.is_file():
        unfreeze_saved(run.best_model)
    seconds = state.get("train_seconds", 0.0) + time.perf_counter() - start
    if losses and not np.isfinite(losses[-1]):
        update_json(run.state, train_seconds=seconds, diverged=True)
        raise TrainingDiverged(
            f"training diverged (NaN loss) in epoch {initial_epoch + len(losses)}; "
            "lower train.lr or turn off train.mixed_precision"
        )
    update_json(run.state, finished=True, train_seconds=round(seconds, 1))
