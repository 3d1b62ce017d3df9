"""The hooks a task family implements. The engine calls only these."""

from dataclasses import dataclass, field
from typing import Any, ClassVar

import keras

from kapps.errors import ConfigError
from kapps.registry import create_model, get_entry, min_input_size
from pipelines.data.sources import read_csv


@dataclass
class TrainingData:
    """What `fit` needs, plus what the task wants to report about the data."""

    train: Any  # tf.data.Dataset of (inputs, targets) batches
    val: Any  # the same, without augmentation or shuffling
    train_size: int
    val_size: int
    skipped: list = field(default_factory=list)  # training files that failed to decode
    notes: list = field(default_factory=list)  # what the task adapted, for the run log


class Task:
    """A task family. Subclasses fill in every method that raises here.

    Life of a run: `training_data` → `build_model` → `compile_args` → fit by the
    engine → `evaluate` (validation metrics and plots) → `test_data` →
    `predict` → `submission_frame` → `score` against an answer key.
    """

    name: ClassVar[str]
    examples: ClassVar[str] = "images"  # what one training example is, for the run summary
    cross_validation: ClassVar[bool] = False  # implements the cv hooks below
    blending: ClassVar[bool] = False  # and the out-of-fold prediction hooks `ensemble` blends
    model_blending: ClassVar[bool] = False  # `ensemble` without folds: `predict_folds` only

    def __init__(self, cfg):
        self.cfg = cfg

    # Data ------------------------------------------------------------------
    def training_data(self, run_dir) -> TrainingData:
        raise NotImplementedError

    def test_data(self, run_dir):
        """`(dataset, ids)`; a test file that cannot be read raises `DataError`."""
        raise NotImplementedError

    # Model -----------------------------------------------------------------
    def model_kwargs(self) -> dict:
        """Arguments the task passes to the builder (input shape, classes…)."""
        raise NotImplementedError

    def fit_image_size(self):
        """Upscale `data.image_size` to what the model accepts; a note if it changed.

        Small images (digits are 8×8) then work with any registered model.
        """
        data = self.cfg.data
        smallest = min_input_size(self.cfg.model.name)
        if min(data.image_size) >= smallest:
            return None
        old = tuple(data.image_size)
        data.image_size = tuple(max(side, smallest) for side in old)
        name = self.cfg.model.name
        return f"images upscaled from {old} to {data.image_size}: {name} needs ≥ {smallest}"

    def build_model(self):
        name = self.cfg.model.name
        task = get_entry(name).task if "/" not in name else "classification"
        if task != self.name:
            raise ConfigError(
                f"model {name!r} is a {task} model; this is a {self.name} "
                "competition (see `kapps models`)"
            )
        return create_model(name, **{**self.model_kwargs(), **self.cfg.model.args})

    def compile_args(self) -> dict:
        """`loss` and `metrics` for `model.compile`."""
        raise NotImplementedError

    def monitor(self):
        """`(metric, mode)` that chooses the best epoch: `train.monitor`, else val_loss.

        Validation loss by default, not accuracy or Dice: on small validation
        sets those saturate and tie, and the first perfect epoch is rarely the best.
        """
        name = self.cfg.train.monitor
        if name:
            return name, "min" if name.endswith("loss") else "max"
        return "val_loss", "min"

    def objective(self):
        """`(metric, direction)` a tuning study optimises by default: the
        per-epoch validation metric closest to the competition's score
        (`tune.metric` / `tune.direction` override it)."""
        return "val_loss", "minimize"

    # After training ----------------------------------------------------------
    def evaluate(self, model: keras.Model, data: TrainingData, run_dir) -> dict:
        """Validation metrics for metrics.json, and the task's own plots."""
        raise NotImplementedError

    def predict(self, model, dataset):
        raise NotImplementedError

    def submission_frame(self, ids, predictions, sample):
        raise NotImplementedError

    def empty_columns(self, sample):
        """Submission columns where an empty value is an answer (an empty mask)."""
        return ()

    # Cross-validation (`cv.folds` > 1) -----------------------------------------
    def groups(self, ids=None):
        """The `cv.group_column` value of every training row (a train CSV column)."""
        cfg = self.cfg
        column = cfg.cv.group_column
        if cfg.data.format == "class_folders":
            raise ConfigError("cv.group_column needs a train CSV; data.format is class_folders")
        frame = read_csv(cfg.data_path(cfg.data.train), "train CSV", ids_as_text=True)
        if column not in frame.columns:
            raise ConfigError(
                f"cv.group_column {column!r} is not a column of {cfg.data.train} "
                f"(columns: {', '.join(map(str, frame.columns[:8]))})"
            )
        return frame[column].astype(str).to_numpy()

    def fold_groups(self, ids=None):
        """`groups()` when the folds are grouped, else None."""
        cv = self.cfg.cv
        return self.groups(ids) if cv.folds > 1 and cv.strategy == "group" else None

    def oof_frame(self):
        """Out-of-fold predictions of this fold's validation rows, kept by `evaluate`:
        a `row` column (the training row) first, then the truth and the predictions."""
        raise NotImplementedError

    def score_oof(self, frame) -> dict:
        """Validation metrics over all folds' out-of-fold predictions."""
        raise NotImplementedError

    def oof_predictions(self, frame):
        """The prediction columns of an out-of-fold frame as one array (for blending)."""
        raise NotImplementedError

    def with_oof_predictions(self, frame, predictions):
        """A copy of an out-of-fold frame with its predictions replaced."""
        raise NotImplementedError

    def oof_loss(self, frame, predictions) -> float:
        """The smooth loss that `--weights auto` minimises over blend weights."""
        raise NotImplementedError

    def duplicates_across_folds(self):
        """`(row, row)` pairs of identical training examples in different folds."""
        return []

    def predict_folds(self, models, dataset, weights=None):
        """The test predictions of several models, averaged (with `weights`, summing to 1)."""
        weights = weights or [1 / len(models)] * len(models)
        total = None
        for model, weight in zip(models, weights, strict=True):
            predictions = weight * self.predict(model, dataset)
            total = predictions if total is None else total + predictions
        return total

    def prepare_blend(self, run_dirs, out):
        """Put what `test_data` needs into an ensemble's folder (nothing by default)."""

    def score(self, frame, answers) -> dict:
        """Local score of a submission frame against an answer key of the same shape."""
        raise NotImplementedError
