"""`kapps pretrain`: train a pretext task, export the backbone, and (`ssl.evaluate`)
measure what it is worth with few labels.

The label-fraction grid is the papers' protocol: for each `data.label_fraction`
in `ssl.fractions` and each seed in `ssl.seeds`, the competition's model is
trained on that share of the labels from scratch and fine-tuned from the
backbone (ordinary runs, same recipe, only `model.weights` differs), and —
for classification — a logistic regression is fitted on the frozen
backbone's features (the linear probe). Every cell is scored on the test set
against the competition's answer key, and written to `grid.csv` and `grid.png`.
"""

import time

import keras
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from kapps.errors import ConfigError
from pipelines.config.schema import SSLConfig
from pipelines.plots import plot_label_fractions
from pipelines.predict import predict, write_predictions
from pipelines.runs import RunFolder, update_json, write_text
from pipelines.ssl.task import PretextTask, check_ssl
from pipelines.tasks import get_task
from pipelines.train import train


def pretrain(cfg, log=print, *, verbose=2):
    """Train `cfg.ssl.task` on the competition's images; returns metrics.json with `run_dir`
    and `backbone` (the file `model.weights` takes) added."""
    check_ssl(cfg)
    if cfg.ssl.evaluate and not cfg.data.answers:
        raise ConfigError("ssl.evaluate scores every cell on the test set: set data.answers")
    run_dir = cfg.run_dir(pretext=True)
    metrics = train(cfg, log, run_dir=run_dir, verbose=verbose, task_type=PretextTask)
    run = RunFolder(metrics["run_dir"])
    log(f"backbone: {run.backbone} (kapps run … model.weights={run.backbone.resolve()})")
    metrics["backbone"] = str(run.backbone)
    if cfg.ssl.evaluate:
        grid = label_fraction_grid(cfg, run, log)
        metrics["grid"] = summarise(grid)
    return metrics


def downstream_config(cfg, fraction, seed, weights=None):
    """The ordinary run of the grid: the competition's own recipe on a share of the labels,
    fine-tuned from `weights` with `ssl.freeze_epochs` and `ssl.backbone_lr_mult`."""
    c = cfg.model_copy(deep=True)
    c.ssl = SSLConfig()
    c.data.label_fraction = fraction
    c.train.seed = seed
    if weights:
        c.model.weights = str(weights)
        c.train.freeze_epochs = cfg.ssl.freeze_epochs
        c.train.backbone_lr_mult = cfg.ssl.backbone_lr_mult
    return c


def _cell(fraction, seed, method, labels, scores, seconds):
    metric, score = next(iter(scores.items()))
    return {
        "fraction": fraction,
        "labels": labels,
        "seed": seed,
        "method": method,
        "metric": metric,
        "score": score,
        "seconds": round(seconds, 1),
    }


def label_fraction_grid(cfg, run, log=print):
    """Every cell of the grid (see the module docstring); finished runs are not retrained."""
    backbone = run.backbone.resolve()
    cells = []
    quiet = lambda line: None  # noqa: E731 - the grid's own line per cell says enough
    for fraction in cfg.ssl.fractions:
        for seed in cfg.ssl.seeds:
            for method, weights in (("scratch", None), ("finetune", backbone)):
                start = time.perf_counter()
                metrics = train(downstream_config(cfg, fraction, seed, weights), quiet, verbose=0)
                scores = predict(metrics["run_dir"], log=quiet)["test"]
                cell = _cell(
                    fraction,
                    seed,
                    method,
                    metrics["train_images"],
                    scores,
                    time.perf_counter() - start,
                )
                cells.append(cell)
                log(_line(cell))
            if cfg.competition.task == "classification":
                start = time.perf_counter()
                c = downstream_config(cfg, fraction, seed)
                labels, scores = linear_probe(c, backbone, run.probe(fraction, seed))
                cell = _cell(
                    fraction, seed, "linear_probe", labels, scores, time.perf_counter() - start
                )
                cells.append(cell)
                log(_line(cell))
    frame = pd.DataFrame(cells)
    write_text(run.grid, frame.to_csv(index=False))
    plot_label_fractions(
        frame,
        run.plot("grid"),
        f"{cfg.competition.name}: {cfg.ssl.task} pretraining against training from scratch",
    )
    update_json(run.metrics, grid=summarise(frame))
    return frame


def _line(cell):
    return (
        f"{cell['fraction']:g} of the labels ({cell['labels']}), seed {cell['seed']}, "
        f"{cell['method']}: test {cell['metric']} {cell['score']:.4f} ({cell['seconds']:.0f} s)"
    )


def linear_probe(cfg, backbone_path, run):
    """`(labelled images, test scores)` of a logistic regression on the frozen backbone's
    features (its output, averaged over space, standardised), fitted on the labelled
    rows; its submission is written in `run`."""
    cfg = get_task(cfg).resolve()
    task = get_task(cfg)
    run.path.mkdir(parents=True, exist_ok=True)
    train_x, train_y, _, _ = task.labelled_arrays(run)
    features = keras.saving.load_model(backbone_path, compile=False)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    probe.fit(_embed(features, train_x), train_y)
    test = task.test_data(run)
    test_x = np.concatenate(list(test.inputs.as_numpy_iterator()))
    probabilities = np.zeros((len(test_x), len(cfg.data.classes)))
    probabilities[:, probe.classes_] = probe.predict_proba(_embed(features, test_x))
    result = write_predictions(cfg, task, test, probabilities, run.submission, log=lambda _: None)
    return len(train_x), result["test"]


def _embed(features, images):
    out = features.predict(images.astype(np.float32), batch_size=256, verbose=0)
    return out.reshape(len(out), -1) if out.ndim == 2 else out.mean(axis=(1, 2))


def summarise(frame):
    """`{method: {fraction: {"mean", "std", "runs"}}}` of the grid's test scores."""
    summary = {}
    for (method, fraction), scores in frame.groupby(["method", "fraction"])["score"]:
        summary.setdefault(method, {})[f"{fraction:g}"] = {
            "mean": round(float(scores.mean()), 4),
            "std": round(float(scores.std(ddof=0)), 4),
            "runs": int(len(scores)),
        }
    return summary
