"""The hooks a task family implements. The engine calls only these.

Hooks are stateless: what one hook needs from another travels in the value
it returns (`TrainingData`, `Evaluation`, `TestSet`), never in attributes
left on the task.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

import keras
import numpy as np
import pandas as pd

from kapps.errors import ConfigError
from kapps.pretrained import split_head
from kapps.pretrained.hub import is_preset_handle
from kapps.pretrained.loading import read_keras_model
from kapps.registry import create_model, get_entry, min_input_size
from pipelines.data import batched, decoded_images
from pipelines.data.images import require_decoded
from pipelines.data.masks import image_sizes
from pipelines.data.sources import read_csv, read_test_images
from pipelines.errors import SubmissionError


@dataclass
class TrainingData:
    """What `fit` needs, what the builder needs from the data, and what `evaluate` reads."""

    train: Any  # tf.data.Dataset of (inputs, targets) batches
    val: Any  # the same, without augmentation or shuffling
    train_size: int
    val_size: int
    model_args: dict = field(default_factory=dict)  # builder arguments the data decides
    validation: Any = None  # the task's own view of the validation split, for `evaluate`
    skipped: list = field(default_factory=list)  # training files that failed to decode
    notes: list = field(default_factory=list)  # what the task adapted, for the run log


@dataclass
class Evaluation:
    """Validation metrics for metrics.json, and the out-of-fold rows of a CV fold."""

    metrics: dict
    oof: pd.DataFrame | None = None  # a `row` column (the training row) first


@dataclass
class TestSet:
    """What `predict` runs on, and what the submission and its score need about it."""

    inputs: Any  # batches of images, or (gallery, queries), or prompts
    ids: np.ndarray  # the submission's ids, in order
    sizes: list | None = None  # (height, width) of each test image, for full-size outputs
    context: Any = None  # the task's own extra (the gallery's ids, the tokenizer)


class Task:
    """A task family. Subclasses fill in every method that raises here.

    Life of a run: `resolve` (complete the config from the data; it is saved
    before anything is trained) → `training_data` → `build_model` →
    `compile_args` → fit by the engine → `evaluate` → `test_data` → `predict`
    → `submission_frame` → `score` against an answer key.
    """

    name: ClassVar[str]
    examples: ClassVar[str] = "images"  # what one training example is, for the run summary
    # What the family can do beyond train and predict, declared once:
    #   "cv": cross-validation (the out-of-fold hooks below);
    #   "blend_oof": `kapps ensemble` fits blend weights on out-of-fold predictions;
    #   "blend_models": `kapps ensemble` blends the models' test predictions only;
    #   "tta": test-time augmentation by flips (`submission.tta`);
    #   "label_fraction": train on a share of the labels (`data.label_fraction`), and
    #   so be pretrained without them (`kapps pretrain`).
    supports: ClassVar[frozenset] = frozenset()
    # Submission and answer values are text as written: "None" or "NA" is a token, not a
    # missing value (text normalization).
    text_values: ClassVar[bool] = False

    def __init__(self, cfg):
        self.cfg = cfg

    # Config ------------------------------------------------------------------
    def resolve(self):
        """A completed copy of the config: what the data decides (classes, sizes,
        orders) filled in, and what this family cannot do refused."""
        cfg = self.cfg.model_copy(deep=True)
        if cfg.cv.folds > 1 and "cv" not in self.supports:
            raise ConfigError(f"cv.folds: {self.name} runs are not cross-validated")
        if cfg.submission.tta and "tta" not in self.supports:
            raise ConfigError(f"submission.tta: {self.name} runs have no test-time augmentation")
        if cfg.data.label_fraction < 1 and "label_fraction" not in self.supports:
            raise ConfigError(f"data.label_fraction: {self.name} runs train on all their labels")
        smallest = min_input_size(cfg.model.name)
        if min(cfg.data.image_size) < smallest:  # 8×8 digits work with any registered model
            cfg.data.image_size = tuple(max(side, smallest) for side in cfg.data.image_size)
        return cfg

    def resolution_notes(self, original):
        """What `resolve` changed in `original`, said in the run log."""
        if tuple(original.data.image_size) == tuple(self.cfg.data.image_size):
            return []
        name = self.cfg.model.name
        return [
            f"images upscaled from {tuple(original.data.image_size)} to "
            f"{tuple(self.cfg.data.image_size)}: {name} needs ≥ {min_input_size(name)}"
        ]

    # Data ------------------------------------------------------------------
    def training_data(self, run, rows=None) -> TrainingData:
        """Batches for `fit`. `rows` (training-CSV rows; classification only) keeps just
        those of the training split: a federated client's share."""
        raise NotImplementedError

    def test_data(self, run) -> TestSet:
        """The test inputs; a test file that cannot be read raises `DataError`."""
        raise NotImplementedError

    # Model -----------------------------------------------------------------
    def build_model(self, model_args):
        """The registered model, with what the data decided (`TrainingData.model_args`)."""
        name = self.cfg.model.name
        task = get_entry(name).task if "/" not in name else "classification"
        if task != self.name:
            raise ConfigError(
                f"model {name!r} is a {task} model; this is a {self.name} "
                "competition (see `kapps models`)"
            )
        weights = self.cfg.model.weights
        if weights not in (None, "imagenet") and not is_preset_handle(weights):
            weights = self.cfg.competition_dir / weights  # an absolute path stays as it is
        return create_model(name, weights=weights, **{**model_args, **self.cfg.model.args})

    def pretrained_layers(self, model):
        """The layers `model.weights` filled: all with weights but the classifier, or
        those a `.keras` backbone holds (a pretrained feature extractor)."""
        body = split_head(model)[0]
        weights = self.cfg.model.weights
        path = self.cfg.competition_dir / weights if weights else None
        if path is not None and path.suffix == ".keras" and path.is_file():
            held = read_keras_model(path)
            body = [layer for layer in body if layer.name in held]
        return body

    def epoch_callbacks(self, data: TrainingData, run) -> list:
        """Keras callbacks that run first after each epoch, so the checkpoint and the
        history see the logs they add (generation's `val_fid`)."""
        return []

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
    def evaluate(self, model: keras.Model, data: TrainingData, run) -> Evaluation:
        """Validation metrics (and out-of-fold rows), and the task's own plots in `run`."""
        raise NotImplementedError

    def predict(self, model, test: TestSet):
        return self.predict_folds([model], test)

    def predict_folds(self, models, test: TestSet, weights=None):
        """The test predictions of several models, averaged (with `weights`, summing to 1)."""
        raise NotImplementedError

    def submission_frame(self, test: TestSet, predictions, sample):
        raise NotImplementedError

    def empty_columns(self, sample):
        """Submission columns where an empty value is an answer (an empty mask)."""
        return ()

    def valid_values(self, sample):
        """`{column: allowed values}` a submission is held to (a label's classes)."""
        return {}

    def score(self, frame, answers, test: TestSet) -> dict:
        """Local score of a submission frame against an answer key of the same shape."""
        raise NotImplementedError

    # Cross-validation and blending ------------------------------------------------
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

    def score_oof(self, frame) -> dict:
        """Validation metrics over all folds' out-of-fold rows."""
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

    def prepare_blend(self, run_dirs, out):
        """Put what `test_data` needs into an ensemble's folder (nothing by default)."""


def aligned_answers(frame, answers, keys):
    """The answer key merged with a submission on `keys` (`<column>_true` / `_pred`).

    Raises `SubmissionError` when the headers differ or the two hold other rows.
    """
    columns = list(answers.columns)
    if list(frame.columns) != columns:
        raise SubmissionError(f"answer key header {columns} differs from the submission's")
    as_text = dict.fromkeys(keys, str)
    merged = answers.astype(as_text).merge(
        frame.astype(as_text), on=list(keys), suffixes=("_true", "_pred")
    )
    if len(merged) != len(answers):
        raise SubmissionError("the answer key and the submission hold different rows")
    return merged


def image_model_args(cfg, num_classes):
    """What an image model's builder takes from the data: input shape and classes."""
    return {"input_shape": (*cfg.data.image_size, cfg.data.channels), "num_classes": num_classes}


def full_size_test_set(cfg):
    """Test images at the model's size, with each image's own size kept, for tasks
    whose outputs (masks, boxes) go back to the image's pixels."""
    source = read_test_images(cfg)
    sizes = [tuple(s) for s in image_sizes(source.paths)]
    images = require_decoded(
        decoded_images(source, cfg.data.image_size, cfg.data.channels, cache="none")
    )
    return TestSet(batched(images, batch_size=cfg.train.batch_size), source.ids, sizes)
