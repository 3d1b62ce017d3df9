"""Task-neutral prediction: a run's best model → a validated `submission.csv`."""

from pathlib import Path

import keras

from kapps.errors import ConfigError
from pipelines.config import load_config
from pipelines.data.sources import read_csv
from pipelines.runs import RunFolder, update_json
from pipelines.submit import read_sample, write_submission
from pipelines.submit.validate import validate_submission
from pipelines.tasks import get_task
from pipelines.tasks.text import encode_prompt


def load_run(run_dir):
    """The config a run saved, with the checks `predict` and `submit` need."""
    run = RunFolder(run_dir)
    if not run.is_run():
        raise ConfigError(f"{run} is not a run folder (no {run.config.name})")
    return load_config(run.config)


def test_predictions(run_dir, log=print):
    """`(cfg, task, test set, predictions)` of a run on the test set.

    A cross-validated run averages its fold models' predictions.
    """
    run = RunFolder(run_dir)
    cfg = load_run(run_dir)
    files = model_files(run, cfg)
    task = get_task(cfg)
    test = task.test_data(run)
    models = [keras.saving.load_model(f) for f in files]
    predictions = task.predict_folds(models, test)
    if len(files) > 1:
        log(f"averaged the test predictions of {len(files)} fold models")
    return cfg, task, test, predictions


def model_files(run_dir, cfg):
    """The run's best model, or its fold models when it is cross-validated."""
    run = RunFolder(run_dir)
    folds = cfg.cv.folds if cfg.cv.fold is None else 1
    files = [run.fold(k).best_model for k in range(folds)] if folds > 1 else [run.best_model]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise ConfigError(f"{run} has no {missing[0].relative_to(run.path)}; train it first")
    return files


def write_predictions(cfg, task, test, predictions, path, log=print):
    """Write the validated submission of `predictions` to `path`; score it when the
    competition has an answer key. Returns `{"submission": path, "test": scores?}`."""
    if cfg.submission.kind == "image_zip":  # no CSV: the generation task writes images.zip
        return task.write_submission(test, predictions, path, log)
    sample = read_sample(cfg.data_path(cfg.data.sample_submission), task.text_values)
    frame = task.submission_frame(test, predictions, sample)
    path = write_submission(
        frame,
        sample,
        Path(path),
        allow_empty=task.empty_columns(sample),
        valid_values=task.valid_values(sample),
    )
    log(f"wrote {path} ({len(frame)} rows, validated against {cfg.data.sample_submission})")
    result = {"submission": str(path)}
    if cfg.data.answers:
        answers = read_csv(
            cfg.data_path(cfg.data.answers), "answer key", ids_as_text=True, text=task.text_values
        )
        result["test"] = task.score(frame, answers, test)
    return result


def submission_file(run, cfg):
    """The run's submission: `submission.csv`, or `images.zip` for an image_zip competition."""
    return run.images_zip if cfg.submission.kind == "image_zip" else run.submission


def predict(run_dir, output=None, log=print):
    """Predict the test set with the run's best model and write the submission.

    The file is validated against `sample_submission.csv` before it is written,
    and written atomically. With an answer key (`data.answers`), the submission
    is also scored and the score stored in metrics.json under "test".
    """
    run = RunFolder(run_dir)
    with run.lock():
        cfg, task, test, predictions = test_predictions(run, log)
        path = Path(output) if output else submission_file(run, cfg)
        result = write_predictions(cfg, task, test, predictions, path, log)
        if "test" in result:
            update_json(run.metrics, test=result["test"])
    return result


def check_submission(run_dir, file=None):
    """Validate a run's submission (or another file) against the sample; return its row count."""
    run = RunFolder(run_dir)
    cfg = load_run(run_dir)
    path = Path(file) if file else submission_file(run, cfg)
    task = get_task(cfg)
    if cfg.submission.kind == "image_zip":
        return task.check_submission(path)
    frame = read_csv(path, "submission", ids_as_text=True, text=task.text_values)
    sample = read_sample(cfg.data_path(cfg.data.sample_submission), task.text_values)
    validate_submission(
        frame,
        sample,
        path.name,
        allow_empty=task.empty_columns(sample),
        valid_values=task.valid_values(sample),
    )
    return len(frame)


def generate_from_run(run_dir, prompt, show, log=print, **overrides):
    """Continue `prompt` with a text run's best model, calling `show` with each new piece.

    Characters the tokenizer does not know are replaced by its unknown id, and
    a request beyond the model's context slides the window; both are said.
    Returns the generated text.
    """
    run = RunFolder(run_dir)
    cfg = load_run(run_dir)
    if cfg.competition.task != "text":
        raise ConfigError(f"{run} is a {cfg.competition.task} run; generate needs a text run")
    (model_file,) = model_files(run, cfg)
    task = get_task(cfg)
    tokenizer = task.load_tokenizer(run)
    gen = task.generate_config(**overrides)
    model = keras.saving.load_model(model_file)
    unknown = tokenizer.unknown(prompt)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown)
        log(f"[yellow]not in the vocabulary, replaced by the unknown token: {shown}[/]")
    limit = getattr(model, "max_length", None)
    if limit and len(encode_prompt(tokenizer, prompt)) + gen.max_tokens > limit:
        log(
            f"[yellow]prompt + {gen.max_tokens} tokens exceed the context of {limit}: "
            f"the window slides, the model sees the last {limit // 2} tokens[/]"
        )
    new_ids = []

    def stream(token):
        before = tokenizer.decode(new_ids)
        new_ids.append(token)
        show(tokenizer.decode(new_ids)[len(before) :])

    (text,) = task.generate_texts(model, tokenizer, [prompt], stream=stream, **overrides)
    return text


def generate_images(run_dir, num, out, label=None, seed=None, options=None):
    """Write `num` new images of a generation run's best model to the new folder `out`
    (`label`: the class asked for; `options`: generation keys such as steps). Returns
    the files written."""
    run = RunFolder(run_dir)
    cfg = load_run(run_dir)
    if out is None:
        raise ConfigError("kapps generate on a generation run needs --out DIR")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} exists and is not an empty folder; nothing was written")
    try:
        cfg.generation = cfg.generation.model_copy(update=options or {})
        type(cfg.generation).model_validate(cfg.generation.model_dump())
    except ValueError as err:
        raise ConfigError(f"kapps generate: {err}") from None
    (model_file,) = model_files(run, cfg)
    task = get_task(cfg)
    model = keras.saving.load_model(model_file)
    return task.write_images(model, out, num, label, cfg.train.seed if seed is None else seed)
