"""Task-neutral prediction: a run's best model → a validated `submission.csv`."""

from pathlib import Path

import keras

from kapps.errors import ConfigError
from pipelines.config import load_config
from pipelines.cv import fold_dir
from pipelines.data.sources import read_csv
from pipelines.runs import update_json
from pipelines.submit import read_sample, write_submission
from pipelines.submit.validate import validate_submission
from pipelines.tasks import get_task
from pipelines.train import BEST_MODEL, METRICS_FILE

SUBMISSION_FILE = "submission.csv"


def load_run(run_dir):
    """The config a run saved, with the checks `predict` and `submit` need."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.yaml)")
    return load_config(run_dir / "config.yaml")


def test_predictions(run_dir, log=print):
    """`(cfg, task, ids, predictions)` of a run on the test set.

    A cross-validated run averages its fold models' predictions.
    """
    run_dir = Path(run_dir)
    cfg = load_run(run_dir)
    files = model_files(run_dir, cfg)
    task = get_task(cfg)
    dataset, ids = task.test_data(run_dir)
    if len(files) > 1:  # cross-validation: the fold models' predictions, averaged
        models = [keras.saving.load_model(f) for f in files]
        predictions = task.predict_folds(models, dataset)
        log(f"averaged the test predictions of {len(files)} fold models")
    else:
        predictions = task.predict(keras.saving.load_model(files[0]), dataset)
    return cfg, task, ids, predictions


def model_files(run_dir, cfg):
    """The run's best model, or its fold models when it is cross-validated."""
    folds = cfg.cv.folds if cfg.cv.fold is None else 1
    files = (
        [fold_dir(run_dir, k) / BEST_MODEL for k in range(folds)]
        if folds > 1
        else [run_dir / BEST_MODEL]
    )
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise ConfigError(f"{run_dir} has no {missing[0].relative_to(run_dir)}; train it first")
    return files


def write_predictions(cfg, task, ids, predictions, path, log=print):
    """Write the validated submission of `predictions` to `path`; score it when the
    competition has an answer key. Returns `{"submission": path, "test": scores?}`."""
    sample = read_sample(cfg.data_path(cfg.data.sample_submission))
    frame = task.submission_frame(ids, predictions, sample)
    path = write_submission(frame, sample, Path(path), allow_empty=task.empty_columns(sample))
    log(f"wrote {path} ({len(frame)} rows, validated against {cfg.data.sample_submission})")
    result = {"submission": str(path)}
    if cfg.data.answers:
        answers = read_csv(cfg.data_path(cfg.data.answers), "answer key", ids_as_text=True)
        result["test"] = task.score(frame, answers)
    return result


def predict(run_dir, output=None, log=print):
    """Predict the test set with the run's best model and write the submission.

    The file is validated against `sample_submission.csv` before it is written,
    and written atomically. With an answer key (`data.answers`), the submission
    is also scored and the score stored in metrics.json under "test".
    """
    run_dir = Path(run_dir)
    cfg, task, ids, predictions = test_predictions(run_dir, log)
    path = Path(output) if output else run_dir / SUBMISSION_FILE
    result = write_predictions(cfg, task, ids, predictions, path, log)
    if "test" in result:
        update_json(run_dir / METRICS_FILE, test=result["test"])
    return result


def check_submission(run_dir, file=None):
    """Validate a run's submission (or another file) against the sample; return its row count."""
    run_dir = Path(run_dir)
    cfg = load_run(run_dir)
    path = Path(file) if file else run_dir / SUBMISSION_FILE
    frame = read_csv(path, "submission", ids_as_text=True)
    sample = read_sample(cfg.data_path(cfg.data.sample_submission))
    allow_empty = get_task(cfg).empty_columns(sample)
    validate_submission(frame, sample, path.name, allow_empty=allow_empty)
    return len(frame)


def generate_from_run(run_dir, prompt, show, log=print, **overrides):
    """Continue `prompt` with a text run's best model, calling `show` with each new piece.

    Characters the tokenizer does not know are replaced by its unknown id, and
    a request beyond the model's context slides the window; both are said.
    Returns the generated text.
    """
    run_dir = Path(run_dir)
    cfg = load_run(run_dir)
    if cfg.competition.task != "text":
        raise ConfigError(f"{run_dir} is a {cfg.competition.task} run; generate needs a text run")
    if not (run_dir / BEST_MODEL).is_file():
        raise ConfigError(f"{run_dir} has no {BEST_MODEL}; train it first")
    task = get_task(cfg)
    tokenizer = task.load_tokenizer(run_dir)
    gen = task.generate_config(**overrides)
    model = keras.saving.load_model(run_dir / BEST_MODEL)
    unknown = tokenizer.unknown(prompt)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown)
        log(f"[yellow]not in the vocabulary, replaced by the unknown token: {shown}[/]")
    limit = getattr(model, "max_length", None)
    if limit and len(task.encode_prompt(prompt)) + gen.max_tokens > limit:
        log(
            f"[yellow]prompt + {gen.max_tokens} tokens exceed the context of {limit}: "
            f"the window slides, the model sees the last {limit // 2} tokens[/]"
        )
    new_ids = []

    def stream(token):
        before = tokenizer.decode(new_ids)
        new_ids.append(token)
        show(tokenizer.decode(new_ids)[len(before) :])

    (text,) = task.generate_texts(model, [prompt], stream=stream, **overrides)
    return text
