"""The competition schema: every key, its default and a one-line comment.

This is the table of defaults (`Config` and its sections; the learning paradigms'
sections are in `paradigms.py`, the tuning section in `tuning.py`);
`pipelines.config.loading` reads YAML and `key.sub=value` overrides into it.
"""

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from pipelines.config.base import Section
from pipelines.config.generation import GenerationConfig
from pipelines.config.paradigms import (
    FEDERATED_PLACEMENT_KEYS,
    SSL_EVALUATION_KEYS,
    ContinualConfig,
    FederatedConfig,
    SSLConfig,
)
from pipelines.config.tuning import TuneConfig

CONFIG_FILE = "competition.yaml"


# Keys added after runs existed: left out of the fingerprint at their default,
# so those runs keep their folder names.
FINGERPRINT_DEFAULTS = (
    ("model", "weights", None),
    ("train", "freeze_epochs", 0),
    ("train", "backbone_lr_mult", 1.0),
    ("data", "label_fraction", 1.0),
    ("train", "beta_1", 0.9),
    ("train", "beta_2", 0.999),
    ("data", "context_words", 2),
    ("generate", "length_penalty", 0.6),
    ("generate", "ngram_weight", 0.0),
)


# Where a run trains, not what it computes: never part of its name.
PLACEMENT_KEYS = (
    "distribution",
    "distribution_coordinator",
    "distribution_processes",
    "distribution_process_id",
    "distribution_timeout",
)


class CompetitionConfig(Section):
    name: str  # folder name under run.dir
    task: Literal[
        "classification", "segmentation", "detection", "retrieval", "text", "seq2seq", "generation"
    ] = "classification"  # task family
    kaggle: str | None = None  # Kaggle competition slug (or owner/dataset) `kapps prepare`
    # downloads; None: made by prepare.py
    dir: str | None = None  # the competition folder; filled in when the config is loaded


class DataConfig(Section):
    dir: str = "data"  # data folder, relative to the competition folder
    format: Literal[
        "pixel_csv",
        "class_folders",
        "csv_paths",
        "mask_folders",
        "rle_csv",
        "box_csv",
        "coco",
        "yolo_txt",
        "captions",
        "coco_captions",
        "text",
        "token_csv",
        "image_folder",
    ] = "pixel_csv"  # train layout; mask_folders, rle_csv: segmentation; box_csv, coco,
    # yolo_txt: detection (one row per box; COCO instances JSON; YOLO label files); captions,
    # coco_captions: retrieval (an image,caption CSV or COCO captions JSON); text: a corpus;
    # image_folder: generation (a folder of images, no labels); token_csv: seq2seq (a row per
    # token, Kaggle's text normalization: sentence_id, token_id, class, before, after)
    train: str = "train.csv"  # pixel CSV, CSV of ids+labels, or folder of class folders
    train_images: str = "{id}"  # csv_paths: image path for a train id, relative to data.dir
    test: str = "test.csv"  # pixel CSV, or CSV listing test ids (often sample_submission.csv)
    test_images: str = "{id}"  # image layouts: image path for a test id, relative to data.dir
    sample_submission: str = "sample_submission.csv"  # the format every submission must match
    answers: str | None = None  # held-out answer key (same header as the submission), scored
    id_column: str | None = None  # id column in data.test; None: sample submission's first
    label_column: str = "label"  # label column in the train CSV
    masks: str | None = None  # mask image of a train id (mask_folders; rle_csv: checks the order)
    mask_scale: int = Field(1, ge=1)  # mask pixel value / mask_scale = class id (255: 0/255 PNGs)
    rle_column: str = "rle_mask"  # rle_csv: the RLE column (also the submission's)
    class_column: str | None = None  # rle_csv with one row per image and class: its class column
    rle_order: Literal["F", "C", "auto"] = "auto"  # F column-major, C row-major; auto: detect
    rle_empty: str = ""  # how an empty mask is written ("" or "-")
    box_columns: list[str] = ["bbox"]  # box_csv: one column of four numbers, or four columns
    box_format: Literal["xywh", "xyxy", "center_xywh", "yxyx"] = "xywh"  # box_csv: their order
    labels: str | None = None  # yolo_txt: label file of an image ({stem}), e.g. labels/{stem}.txt
    pixel_shape: tuple[int, int, int] | None = None  # pixel_csv: (height, width, channels)
    image_size: tuple[int, int] = (32, 32)  # model input (height, width); images are resized
    channels: Literal[1, 3] = 3  # colour channels fed to the model
    classes: list[Any] | None = None  # class labels in output order; None: sorted train labels
    # (segmentation: the foreground classes, mask ids 1, 2, …; 0 is background)
    val_fraction: float = Field(0.1, gt=0, lt=1)  # stratified validation split of train
    # share of the training split that keeps its labels (stratified, seeded by train.seed);
    # the validation split is unchanged. Classification and segmentation.
    label_fraction: float = Field(1.0, gt=0, le=1)
    cache: Literal["memory", "disk", "none"] = "memory"  # where decoded images are cached
    # text: data.train is a text file, a folder of text files or a CSV (text_column);
    # the validation split is the last val_fraction of the corpus by position
    text_column: str = "text"  # text: the column of a CSV corpus
    prompt_column: str = "prompt"  # text: the prompt column of data.test
    tokenizer: Literal["char", "word", "bpe", "unigram"] = "char"  # text, captions: char,
    # word (lower-cased words), or SentencePiece subwords (bpe, unigram)
    vocab_size: int = Field(1000, ge=16)  # text: subword vocabulary size
    seq_len: int = Field(128, ge=2)  # text: tokens per training window (the model's context)
    ngram_order: int = Field(5, ge=1, le=12)  # text: order of the Kneser-Ney baseline
    # retrieval: data.train lists captions (several per image), split by image; data.test
    # holds the query captions (id + caption_column), data.gallery the images searched
    image_column: str = "image"  # captions: the image file column
    caption_column: str = "caption"  # captions and retrieval queries: the caption column
    gallery: str | None = None  # retrieval: CSV of the test images searched (image_column)
    prompt_template: str = "a photo of a {}"  # zero-shot prompt of a class (label_column)
    context_words: int = Field(2, ge=0)  # token_csv: words each side the model sees with a token


class AugmentConfig(Section):
    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"] = "none"
    rotation: float = Field(0.0, ge=0, le=0.5)  # max rotation, fraction of a full turn
    translation: float = Field(0.0, ge=0, le=0.5)  # max shift, fraction of height/width
    zoom: float = Field(0.0, ge=0, lt=1)  # max zoom in or out, fraction
    contrast: float = Field(0.0, ge=0, lt=1)  # max contrast change, fraction
    mosaic: float = Field(0.0, ge=0, le=1)  # detection: chance an example is a 2×2 mosaic


class ModelConfig(Section):
    name: str = "lenet5"  # a `kapps models` name
    args: dict[str, Any] = {}  # extra builder keyword arguments
    # pretrained weights: "imagenet", or a path (relative to the competition folder) of a
    # keras.applications .h5 file, a keras-hub preset folder or a kapps .keras model,
    # or a keras-hub preset name (gpt2_base_en, hf://…)
    weights: str | None = None


class TrainConfig(Section):
    epochs: int = Field(30, ge=1)  # maximum epochs
    batch_size: int = Field(64, ge=1)  # images per step
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"  # optimiser
    lr: float = Field(1e-3, gt=0)  # peak learning rate, reached after warm-up
    weight_decay: float = Field(1e-4, ge=0)  # decoupled weight decay (adamw, sgd)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd momentum
    beta_1: float = Field(0.9, ge=0, lt=1)  # adam, adamw: first-moment decay (DCGAN: 0.5)
    beta_2: float = Field(0.999, ge=0, lt=1)  # adam, adamw: second-moment decay
    warmup_epochs: float = Field(1.0, ge=0)  # linear warm-up before the cosine decay
    clipnorm: float = Field(0.0, ge=0)  # clip the gradients' global norm to this; 0: off
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # cross-entropy label smoothing
    loss: Literal["ce", "dice", "dice_ce", "focal"] | None = None  # None: the task's default
    patience: int = Field(10, ge=0)  # early-stopping patience in epochs; 0 turns it off
    # with model.weights: epochs that train only the new head, the pretrained layers frozen
    # (their batch normalisation in inference mode), before all layers train
    freeze_epochs: int = Field(0, ge=0)
    # with model.weights: the pretrained layers' learning rate as a fraction of train.lr
    backbone_lr_mult: float = Field(1.0, ge=0, le=1)
    mixed_precision: Literal["off", "float16", "bfloat16"] = "off"  # mixed-precision policy
    # XLA-compile the train step (TensorFlow, JAX; torch trains eagerly); None: Keras decides
    jit_compile: bool | None = None
    ema: bool = False  # evaluate and save the exponential moving average of the weights
    ema_momentum: float = Field(0.99, gt=0, lt=1)  # EMA momentum
    seed: int = 42  # seed of weights, split, shuffling and augmentation
    monitor: str | None = None  # metric that picks the best epoch; None: val_loss
    resume: bool = True  # continue an interrupted run found in the run folder
    # none | data_parallel (every local GPU, else CPU, takes batch_size / devices of each
    # batch) | auto (data_parallel with several accelerators); see pipelines/devices.py
    distribution: Literal["none", "data_parallel", "auto"] = "none"
    # Several processes (one per machine, JAX): process 0's host:port, how many processes,
    # this one's id; None: Keras' KERAS_DISTRIBUTION_* (or JAX_COORDINATOR_ADDRESS) variables
    distribution_coordinator: str | None = None
    distribution_processes: int | None = Field(None, ge=1)
    distribution_process_id: int | None = Field(None, ge=0)
    distribution_timeout: float = Field(300.0, gt=0)  # seconds to wait for the other processes


class SubmissionConfig(Section):
    # what the target columns hold: a label, probabilities, RLE masks, a box PredictionString,
    # text, or space-joined ids of the best matches; image_zip: no CSV, generated images in
    # images.zip (the generation section says how many, their size and format)
    kind: Literal["label", "probability", "rle", "boxes", "text", "matches", "image_zip"] = "label"
    positive_class: Any = None  # probability with one target column: P(this class)
    clip: float = Field(0.0, ge=0, lt=0.5)  # probability: clip to [clip, 1 - clip]
    metric: Literal["accuracy", "log_loss", "dice", "recall", "map", "map50", "wheat"] | None = (
        None  # local score; None: by kind (matches: recall@top_k, boxes: map50)
    )
    top_k: int = Field(5, ge=1)  # matches: ids per query
    threshold: float = Field(0.5, gt=0, lt=1)  # binary masks: foreground probability cut-off
    tta: bool = False  # test-time augmentation: average with the flipped images' predictions
    tta_flips: list[Literal["horizontal", "vertical"]] = ["horizontal"]  # the flipped views
    min_area: int = Field(0, ge=0)  # masks: drop predicted regions under this many pixels
    box_string: Literal["conf_xywh", "class_conf_xyxy"] = "conf_xywh"  # boxes: each box as
    # "conf x y w h" (Global Wheat) or "class conf x1 y1 x2 y2" (VinBigData)
    score_threshold: float = Field(0.25, ge=0, lt=1)  # boxes: lowest confidence submitted
    iou_threshold: float = Field(0.6, gt=0, le=1)  # boxes: non-max suppression overlap
    max_detections: int = Field(100, ge=1)  # boxes: most boxes per image
    no_finding: str | None = None  # boxes: the string of an image with none (VinBigData:
    # "14 1 0 0 1 1"); None: empty


class GenerateConfig(Section):
    """Text generation defaults for submissions, samples and `kapps generate`."""

    max_tokens: int = Field(200, ge=1)  # new tokens per prompt
    sampler: Literal["greedy", "random", "top_k", "top_p", "beam"] = "top_k"  # keras_hub sampler
    temperature: float = Field(0.8, gt=0)  # logits are divided by it before sampling
    top_k: int = Field(40, ge=1)  # top_k: sample among the k likeliest tokens
    top_p: float = Field(0.9, gt=0, le=1)  # top_p: the smallest set with this probability
    num_beams: int = Field(4, ge=1)  # beam: beams kept
    length_penalty: float = Field(0.6, ge=0)  # seq2seq beam: GNMT's α; 0: most probable
    ngram_weight: float = Field(0.0, ge=0, le=1)  # text: the Kneser-Ney n-gram's share of
    # the next-token probabilities (metrics.json: blend_ngram_weight, fitted on validation)
    seed: int = 42  # sampling seed
    batch_size: int = Field(32, ge=1)  # prompts generated together
    sample_tokens: int = Field(400, ge=1)  # tokens per sample in the run folder's samples.txt
    sample_temperatures: list[float] = [0.5, 0.8, 1.0]  # samples.txt: one sample per temperature


class CVConfig(Section):
    """k-fold cross-validation: one run per fold, out-of-fold predictions, averaged test."""

    folds: int = Field(1, ge=1)  # 1: one train/validation split (data.val_fraction)
    strategy: Literal["kfold", "stratified", "group"] = "stratified"  # how rows go to folds
    group_column: str | None = None  # group: rows sharing this train-CSV column share a fold
    fold: int | None = Field(None, ge=0)  # set by the engine in each fold's run


class RunConfig(Section):
    dir: str = "runs"  # runs are written to <dir>/<competition.name>/<name>
    name: str | None = None  # None: model name + config hash, so a re-run resumes


class Config(Section):
    competition: CompetitionConfig
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    submission: SubmissionConfig = SubmissionConfig()
    generate: GenerateConfig = GenerateConfig()
    cv: CVConfig = CVConfig()
    continual: ContinualConfig = ContinualConfig()
    federated: FederatedConfig = FederatedConfig()
    ssl: SSLConfig = SSLConfig()
    generation: GenerationConfig = GenerationConfig()
    tune: TuneConfig = TuneConfig()
    run: RunConfig = RunConfig()

    @model_validator(mode="after")
    def _check_pixel_shape(self):
        if self.data.format == "pixel_csv" and self.data.pixel_shape is None:
            raise ValueError("data.pixel_shape is required when data.format is pixel_csv")
        formats = {
            "segmentation": {"mask_folders", "rle_csv"},
            "detection": {"box_csv", "coco", "yolo_txt"},
            "retrieval": {"captions", "coco_captions"},
            "text": {"text"},
            "seq2seq": {"token_csv"},
            "generation": {"image_folder", "class_folders", "pixel_csv"},
        }
        task = self.competition.task
        wanted = formats.get(task, {"pixel_csv", "class_folders", "csv_paths"})
        if self.data.format not in wanted:
            raise ValueError(
                f"data.format {self.data.format!r} does not fit a {task} competition "
                f"(one of {sorted(wanted)})"
            )
        if (task == "generation") != (self.submission.kind == "image_zip"):
            raise ValueError(
                "submission.kind image_zip goes with competition.task generation, and only it"
            )
        if task == "text" and self.data.answers:
            raise ValueError("text competitions have no local score: remove data.answers")
        if self.cv.strategy == "group" and self.cv.folds > 1 and not self.cv.group_column:
            raise ValueError("cv.strategy group needs cv.group_column (the train CSV column)")
        if self.cv.fold is not None and self.cv.fold >= self.cv.folds:
            raise ValueError(f"cv.fold {self.cv.fold} is not below cv.folds {self.cv.folds}")
        for key, entry in self.tune.space.items():
            check_tunable_key(key, "tune.space")
            for condition in entry.when or {}:
                check_tunable_key(condition, f"tune.space.{key}.when", tunable=False)
        if (self.train.freeze_epochs or self.train.backbone_lr_mult != 1) and not (
            self.model.weights
        ):
            raise ValueError(
                "train.freeze_epochs and train.backbone_lr_mult need model.weights "
                "(the pretrained layers they apply to)"
            )
        if self.train.freeze_epochs >= self.train.epochs:
            raise ValueError(
                f"train.freeze_epochs ({self.train.freeze_epochs}) must be below "
                f"train.epochs ({self.train.epochs}) so the whole model trains too"
            )
        if self.data.format == "mask_folders" and not self.data.masks:
            raise ValueError(
                "data.masks (the mask file of a train id) is required for mask_folders"
            )
        return self

    # Paths ------------------------------------------------------------------
    @property
    def competition_dir(self):
        return Path(self.competition.dir)

    @property
    def data_dir(self):
        return self.competition_dir / self.data.dir

    def data_path(self, relative):
        return self.data_dir / relative

    def fingerprint(self, federated=False, pretext=False):
        """A short hash of everything that changes what a run computes; `federated`,
        `pretext`: of this config's federated or pretraining run."""
        exclude = {"run": True, "tune": True, "cv": {"fold"}, "train": set(PLACEMENT_KEYS)}
        if self.cv.folds == 1:
            exclude["cv"] = True  # so configs from before cross-validation keep their runs
        if self.continual.scenario is None:
            exclude["continual"] = True  # likewise for continual learning
        if self.competition.task != "generation":
            exclude["generation"] = True
        exclude["ssl"] = set(SSL_EVALUATION_KEYS) if pretext else True
        if not federated:
            exclude["federated"] = True  # a federated run is named apart (`federated=True`)
        else:
            exclude["federated"] = set(FEDERATED_PLACEMENT_KEYS)
        payload = self.model_dump(mode="json", exclude=exclude)
        for section, key, default in FINGERPRINT_DEFAULTS:  # keys newer than existing runs
            if payload[section].get(key) == default:
                del payload[section][key]
        return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]

    def run_name(self, federated=False, pretext=False):
        kind = "-federated" if federated else f"-{self.ssl.task}" if pretext else ""
        fingerprint = self.fingerprint(federated, pretext)
        return self.run.name or f"{self.model.name}{kind}-{fingerprint}"

    def run_dir(self, federated=False, pretext=False):
        """Where the run is written; `federated`, `pretext`: this config's `kapps federate`
        or `kapps pretrain` run."""
        return Path(self.run.dir) / self.competition.name / self.run_name(federated, pretext)

    def to_yaml(self):
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def fields_at(loc):
    """Valid key names at a location of the schema, for "did you mean" hints."""
    model = Config
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def check_tunable_key(key, where, tunable=True):
    """Raise `ValueError` unless `key` (e.g. "train.lr") names a value of the schema.

    Keys under a free-form mapping (`model.args.width`) are accepted as they are.
    """
    parts = key.split(".")
    if tunable and parts[0] in ("tune", "run", "competition"):
        raise ValueError(f"{where}: {key!r} cannot be tuned (it is not part of a trial's run)")
    model = Config
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            close = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean {'.'.join(parts[:i] + close)!r}?" if close else ""
            raise ValueError(f"{where}: unknown config key {key!r}{hint}")
        annotation = fields[part].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        if i == len(parts) - 1 or getattr(annotation, "__origin__", None) is dict:
            return
        raise ValueError(f"{where}: {'.'.join(parts[: i + 1])} in {key!r} is not a section")
    raise ValueError(f"{where}: {key!r} is a section, not a value")
