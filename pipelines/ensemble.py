"""`kapps ensemble RUN_A RUN_B …`: a weighted blend of several runs' predictions.

The runs must belong to one competition. Their test predictions (each
cross-validated run's already fold-averaged) are averaged with the weights;
`--weights auto` fits the weights on the runs' out-of-fold predictions (the
rows every run predicted out of fold), by minimising the task's out-of-fold
loss (log loss for classification) over non-negative weights that sum to 1,
and reports the blend's out-of-fold scores next to each member's. The blend
is written as a validated submission in its own folder with `metrics.json`
and `oof.csv`.

Segmentation runs keep out-of-fold Dice terms, not probabilities: their
blend takes given weights (equal by default), and every run's models predict
each test batch together, their mask probabilities weighted. Retrieval runs
blend the same way: the gallery is ranked by the weighted mean of the
models' cosine similarities.
"""

import hashlib
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from scipy.optimize import minimize

from kapps.errors import ConfigError
from pipelines.predict import load_run, model_files, test_predictions, write_predictions
from pipelines.runs import RunFolder, write_json, write_text
from pipelines.tasks import get_task


def parse_weights(text, count):
    """`"auto"`, `"equal"` or comma-separated numbers (normalised to sum to 1)."""
    if text in ("auto", "equal"):
        return text
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise ConfigError(f"--weights {text!r}: auto, equal, or one number per run") from None
    if len(weights) != count or min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError(
            f"--weights {text!r}: give {count} non-negative numbers, one per run, not all 0"
        )
    return [w / sum(weights) for w in weights]


def _oof_frames(run_dirs):
    frames = []
    for run_dir in run_dirs:
        path = RunFolder(run_dir).oof
        if not path.is_file():
            return None
        frames.append(pd.read_csv(path).set_index("row"))
    common = sorted(set.intersection(*(set(f.index) for f in frames)))
    if not common:
        raise ConfigError("the runs' out-of-fold predictions share no training row")
    frames = [f.loc[common] for f in frames]
    for run_dir, frame in zip(run_dirs[1:], frames[1:], strict=True):
        if not (frame["label"].astype(str) == frames[0]["label"].astype(str)).all():
            raise ConfigError(f"{run_dir}: its training rows are not the first run's")
    return frames


def fit_weights(task, frame, members):
    """Non-negative weights summing to 1 that minimise the task's out-of-fold loss."""
    stacked = np.stack(members)

    def loss(logits):
        weights = np.exp(logits - logits.max())
        weights /= weights.sum()
        return task.oof_loss(frame, np.tensordot(weights, stacked, axes=1))

    fitted = minimize(loss, np.zeros(len(members)), method="Nelder-Mead", options={"xatol": 1e-4})
    weights = np.exp(fitted.x - fitted.x.max())
    return (weights / weights.sum()).tolist()


def ensemble(run_dirs, weights="equal", out=None, log=print):
    """Blend `run_dirs` into `out` (default `runs/<competition>/ensemble-<hash>`)."""
    if len(run_dirs) < 2:
        raise ConfigError("ensemble needs at least two runs")
    run_dirs = [Path(r) for r in run_dirs]
    configs = [load_run(r) for r in run_dirs]
    cfg = configs[0]
    for run_dir, other in zip(run_dirs[1:], configs[1:], strict=True):
        if other.competition.name != cfg.competition.name:
            raise ConfigError(
                f"{run_dir} is a {other.competition.name} run, not {cfg.competition.name}"
            )
    task = get_task(cfg)
    if not task.supports & {"blend_oof", "blend_models"}:
        raise ConfigError(f"ensembles of {task.name} runs are not available")
    weights = parse_weights(weights, len(run_dirs)) if isinstance(weights, str) else weights
    if "blend_oof" not in task.supports:
        return _ensemble_models(task, run_dirs, configs, weights, out, log)
    frames = _oof_frames(run_dirs)
    if weights == "auto" and frames is None:
        raise ConfigError(
            "--weights auto needs out-of-fold predictions: train the runs with cv.folds"
        )
    members_oof = [task.oof_predictions(f) for f in frames] if frames else None
    if weights == "auto":
        weights = fit_weights(task, frames[0], members_oof)
    elif weights == "equal":
        weights = [1 / len(run_dirs)] * len(run_dirs)
    rows = []
    if frames:
        blended_oof = np.tensordot(weights, np.stack(members_oof), axes=1)
        for run_dir, weight, frame in zip(run_dirs, weights, frames, strict=True):
            rows.append({"run": str(run_dir), "weight": weight, **task.score_oof(frame)})
        blend_frame = task.with_oof_predictions(frames[0], blended_oof)
        rows.append({"run": "blend", "weight": 1.0, **task.score_oof(blend_frame)})
    out = _out_run(cfg, run_dirs, weights, out)
    write_text(out.config, cfg.to_yaml())
    if frames:
        write_text(out.oof, blend_frame.reset_index().to_csv(index=False))
    blended = None
    for run_dir, weight in zip(run_dirs, weights, strict=True):
        _, _, test, predictions = test_predictions(run_dir, log)
        blended = weight * predictions if blended is None else blended + weight * predictions
    result = write_predictions(cfg, task, test, blended, out.submission, log)
    metrics = {
        "members": [str(r) for r in run_dirs],
        "weights": weights,
        "out_of_fold": rows,
        **({"test": result["test"]} if "test" in result else {}),
    }
    write_json(out.metrics, metrics)
    return {**metrics, "run_dir": str(out), "submission": result["submission"]}


def _out_run(cfg, run_dirs, weights, out):
    """The blend's folder: a run folder of its own (config, submission, metrics)."""
    name = "+".join(r.name for r in run_dirs) + ",".join(f"{w:.4f}" for w in weights)
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    out = Path(out) if out else Path(cfg.run.dir) / cfg.competition.name / f"ensemble-{digest}"
    out.mkdir(parents=True, exist_ok=True)
    return RunFolder(out)


def _ensemble_models(task, run_dirs, configs, weights, out, log):
    """Tasks whose predictions are not averaged as arrays (masks as RLE): every run's
    models predict each test batch together, their probabilities weighted.
    Their out-of-fold files hold scores, not probabilities, so weights are given."""
    if weights == "auto":
        raise ConfigError(
            f"--weights auto needs out-of-fold probabilities, which {task.name} runs do "
            "not keep: give the weights (equal, or e.g. 0.6,0.4)"
        )
    if weights == "equal":
        weights = [1 / len(run_dirs)] * len(run_dirs)
    cfg = configs[0]
    for run_dir, other in zip(run_dirs[1:], configs[1:], strict=True):
        if tuple(other.data.image_size) != tuple(cfg.data.image_size):
            raise ConfigError(
                f"{run_dir} predicts at {tuple(other.data.image_size)}, the first run at "
                f"{tuple(cfg.data.image_size)}: blend runs of one input size"
            )
    models, model_weights, rows = [], [], []
    for run_dir, run_cfg, weight in zip(run_dirs, configs, weights, strict=True):
        files = model_files(run_dir, run_cfg)
        models += [keras.saving.load_model(f) for f in files]
        model_weights += [weight / len(files)] * len(files)
        oof = RunFolder(run_dir).oof
        scores = task.score_oof(pd.read_csv(oof)) if oof.is_file() else {}
        rows.append({"run": str(run_dir), "weight": weight, **_scalars(scores)})
    out = _out_run(cfg, run_dirs, weights, out)
    write_text(out.config, cfg.to_yaml())
    task.prepare_blend(run_dirs, out.path)
    test = task.test_data(out)
    blended = task.predict_folds(models, test, model_weights)
    log(f"blended the test predictions of {len(models)} models from {len(run_dirs)} runs")
    result = write_predictions(cfg, task, test, blended, out.submission, log)
    metrics = {
        "members": [str(r) for r in run_dirs],
        "weights": weights,
        "out_of_fold": rows if all(len(r) > 2 for r in rows) else [],
        **({"test": result["test"]} if "test" in result else {}),
    }
    write_json(out.metrics, metrics)
    return {**metrics, "run_dir": str(out), "submission": result["submission"]}


def _scalars(scores):
    return {k: v for k, v in scores.items() if isinstance(v, int | float)}
