"""The `kapps` command line: models | prepare | train | predict | submit | run | federate |
pretrain | tune | ensemble | generate.

A user-caused failure (bad config, missing or corrupt file, invalid
submission) prints one line and exits with status 2; anything else is a bug
and keeps its traceback.

The commands import Keras (and with it TensorFlow) only when they run, after
`main` has decided how much TensorFlow may print: by default the user sees
kapps' own lines and Keras' progress; `kapps --verbose …` shows the rest.
"""

import functools
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.quiet import import_tensorflow_quietly
from pipelines.tables import (
    blend_table,
    label_fraction_table,
    scalars,
    summary_table,
    tune_table,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Keras 3 classics and Kaggle-style competition pipelines.",
)
console = Console()
errors = Console(stderr=True)
_options = {"verbose": False}  # kapps --verbose

Competition = Annotated[Path, typer.Argument(help="competition folder, e.g. competitions/digits")]
Overrides = Annotated[
    list[str] | None, typer.Argument(help="key.sub=value overrides, e.g. train.epochs=5")
]
OverrideFiles = Annotated[
    list[Path] | None,
    typer.Option("--override", help="YAML file of overrides (e.g. a tuned best.yaml)"),
]
RunDir = Annotated[Path, typer.Argument(help="run folder, e.g. runs/digits/lenet5-1a2b3c4d")]


@app.callback()
def main(
    verbose: Annotated[
        bool,
        typer.Option("--verbose", help="also show TensorFlow's and absl's own log lines"),
    ] = False,
):
    """Keras 3 classics and Kaggle-style competition pipelines."""
    _options["verbose"] = verbose
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import_tensorflow_quietly()
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="tensorflow")


def user_errors(command):
    """Turn a `KappsError` into one red line and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from kapps.errors import KappsError

        try:
            return command(*args, **kwargs)
        except KappsError as err:
            from pipelines.devices import exit_process

            errors.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            exit_process(2)

    return wrapper


def _config(competition, overrides, override_files):
    from pipelines.config import load_config

    return load_config(competition, overrides or (), override_files or ())


def _log(message):
    console.print(message, highlight=False)


def _followed(metrics):
    """Whether this process helped process 0 train; then it says so, and process 0 goes on."""
    if "process" not in metrics:
        return False
    _log(
        f"process {metrics['process']} finished training; process 0 writes "
        f"{metrics['run_dir']} and its submission"
    )
    return True


@app.command()
@user_errors
def models(task: Annotated[str | None, typer.Option(help="only this task family")] = None):
    """List the registered model names."""
    import kapps

    table = Table("name", "task", "builder")
    for name in kapps.list_models(task):
        entry = kapps.get_entry(name)
        table.add_row(name, entry.task, f"{entry.builder.__module__}.{entry.builder.__name__}")
    console.print(table)


@app.command()
@user_errors
def prepare(competition: Competition, overrides: Overrides = None, override: OverrideFiles = None):
    """Download (Kaggle CLI) or generate a competition's data into its data folder."""
    from pipelines.prepare import prepare as prepare_data

    prepare_data(_config(competition, overrides, override), log=_log)


@app.command()
@user_errors
def train(competition: Competition, overrides: Overrides = None, override: OverrideFiles = None):
    """Train into runs/<competition>/<run>; re-running resumes an interrupted run."""
    from pipelines.cv import train_folds_or_one

    metrics = train_folds_or_one(_config(competition, overrides, override), log=_log)
    if _followed(metrics):
        return
    console.print(summary_table(metrics, "training"))


@app.command()
@user_errors
def predict(
    run_dir: RunDir,
    out: Annotated[Path | None, typer.Option(help="write here instead of the run folder")] = None,
):
    """Predict the test set with a run's best model and write a validated submission."""
    from pipelines.predict import predict as predict_run

    result = predict_run(run_dir, output=out, log=_log)
    for name, value in scalars(result.get("test")):
        _log(f"test {name}: {value:.4f}")


@app.command()
@user_errors
def submit(
    run_dir: RunDir,
    file: Annotated[Path | None, typer.Option(help="file to check instead of the run's")] = None,
    kaggle: Annotated[
        bool, typer.Option("--kaggle", help="then upload it with the Kaggle CLI")
    ] = False,
    message: Annotated[str | None, typer.Option(help="Kaggle submission message")] = None,
):
    """Validate a run's submission (submission.csv against sample_submission.csv, or
    images.zip); --kaggle uploads it."""
    from kapps.errors import ConfigError
    from pipelines.predict import check_submission, load_run, submission_file
    from pipelines.prepare import kaggle_submit
    from pipelines.runs import RunFolder

    cfg = load_run(run_dir)
    path = file or submission_file(RunFolder(run_dir), cfg)
    rows = check_submission(run_dir, file)
    what = "images" if cfg.submission.kind == "image_zip" else "rows"
    _log(f"[green]valid:[/] {path} ({rows} {what})")
    if kaggle:
        slug = cfg.competition.kaggle
        if not slug or "/" in slug:
            what = f"the Kaggle dataset {slug}" if slug else "no competition.kaggle slug"
            raise ConfigError(f"{cfg.competition.name} is not a Kaggle competition ({what})")
        text = message or f"kapps {cfg.model.name} ({Path(run_dir).name})"
        _log(kaggle_submit(slug, path, text, log=_log))


@app.command()
@user_errors
def run(competition: Competition, overrides: Overrides = None, override: OverrideFiles = None):
    """Prepare, train, predict, score and write the submission: the whole competition."""
    from pipelines.cv import train_folds_or_one
    from pipelines.predict import predict as predict_run
    from pipelines.prepare import prepare as prepare_data

    start = time.perf_counter()
    cfg = _config(competition, overrides, override)
    prepare_data(cfg, log=_log)
    metrics = train_folds_or_one(cfg, log=_log)
    if _followed(metrics):
        return
    metrics.update(predict_run(metrics["run_dir"], log=_log))
    title = f"{cfg.competition.name}: finished in {time.perf_counter() - start:.0f} s"
    console.print(summary_table(metrics, title))


@app.command()
@user_errors
def federate(
    competition: Competition,
    overrides: Overrides = None,
    override: OverrideFiles = None,
    superlink: Annotated[
        str | None,
        typer.Option(
            help="a running Flower SuperLink (HOST:PORT, its --port: 8000 by default) whose "
            "SuperNodes are the clients; default: simulate the clients on this machine"
        ),
    ] = None,
):
    """Federated learning (Flower): clients keep their rows, the server averages their
    models (federated.strategy fedavg | fedprox); then predict and write the submission."""
    from pipelines.federated.run import check_federated
    from pipelines.federated.run import federate as federate_run
    from pipelines.predict import predict as predict_run
    from pipelines.prepare import prepare as prepare_data

    start = time.perf_counter()
    cfg = _config(competition, overrides, override)
    check_federated(cfg)
    prepare_data(cfg, log=_log)
    metrics = federate_run(cfg, log=_log, superlink=superlink, verbose=_options["verbose"])
    metrics.update(predict_run(metrics["run_dir"], log=_log))
    title = f"{cfg.competition.name}: federated in {time.perf_counter() - start:.0f} s"
    console.print(summary_table(metrics, title))


@app.command()
@user_errors
def pretrain(competition: Competition, overrides: Overrides = None, override: OverrideFiles = None):
    """Self-supervised pretraining (ssl.task rotation | jigsaw | colorization | simclr) on the
    competition's images without labels; writes backbone.keras for model.weights, and with
    ssl.evaluate=true the label-fraction grid against training from scratch."""
    from pipelines.prepare import prepare as prepare_data
    from pipelines.ssl.run import check_ssl
    from pipelines.ssl.run import pretrain as pretrain_run

    start = time.perf_counter()
    cfg = _config(competition, overrides, override)
    check_ssl(cfg)
    prepare_data(cfg, log=_log)
    metrics = pretrain_run(cfg, log=_log)
    seconds = time.perf_counter() - start
    title = f"{cfg.competition.name}: {cfg.ssl.task} pretraining in {seconds:.0f} s"
    console.print(summary_table(metrics, title))
    if metrics.get("grid"):
        console.print(label_fraction_table(metrics["grid"]))


@app.command()
@user_errors
def ensemble(
    run_dirs: Annotated[list[Path], typer.Argument(help="run folders of one competition")],
    weights: Annotated[
        str, typer.Option(help="auto (fitted out of fold), equal, or e.g. 0.7,0.3")
    ] = "equal",
    out: Annotated[Path | None, typer.Option(help="folder for the blend")] = None,
):
    """Blend several runs' test predictions into one validated submission."""
    from pipelines.ensemble import ensemble as blend

    result = blend(run_dirs, weights, out, log=_log)
    if result["out_of_fold"]:
        console.print(blend_table(result["out_of_fold"]))
    for name, value in scalars(result.get("test")):
        _log(f"blend test {name}: {value:.4f}")


@app.command()
@user_errors
def tune(
    competition: Competition,
    overrides: Overrides = None,
    override: OverrideFiles = None,
    trials: Annotated[int | None, typer.Option(help="trials the study should hold")] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage: sqlite:///FILE, journal:FILE, postgresql://… "
            "(default: journal:<out>/study.log)"
        ),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option(help="study name (default: the competition's)")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes on this machine")] = 1,
    sampler: Annotated[str | None, typer.Option(help="tpe | random | cmaes")] = None,
    pruner: Annotated[str | None, typer.Option(help="median | hyperband | none")] = None,
    metric: Annotated[str | None, typer.Option(help="metric to optimise, e.g. val_loss")] = None,
    direction: Annotated[str | None, typer.Option(help="minimize | maximize")] = None,
    timeout: Annotated[
        float | None, typer.Option(help="stop starting trials after this many seconds")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="tune folder (default: runs/<competition>/tune)")
    ] = None,
    worker_index: Annotated[int | None, typer.Option(hidden=True)] = None,
):
    """Tune the competition with Optuna over its tune.space; writes best.yaml for --override."""
    from pipelines.tune import tune_competition

    sugar = {
        "trials": trials,
        "sampler": sampler,
        "pruner": pruner,
        "metric": metric,
        "direction": direction,
    }
    settings = [f"tune.{k}={v}" for k, v in sugar.items() if v is not None]
    all_overrides = [*(overrides or ()), *settings]
    cfg = _config(competition, all_overrides, override)
    command_args = [str(competition), *all_overrides, *(f"--override={f}" for f in override or ())]
    try:
        done = tune_competition(
            cfg,
            command_args,
            study_name=study_name,
            storage=storage,
            out=out,
            workers=workers,
            timeout=timeout,
            worker_index=worker_index,
            log=_log,
        )
    except KeyboardInterrupt:
        errors.print(
            "interrupted: the study keeps its finished trials; the same command resumes it"
        )
        sys.exit(130)
    if done is None:  # a worker process: the command that started it reports
        return
    session, result, seconds = done
    console.print(tune_table(session, result, seconds))
    for path in result.files:
        _log(f"wrote {path}")
    if result.best is not None:
        _log(f"retrain the best: kapps train {competition} --override {session.folder.best}")


@app.command()
@user_errors
def generate(
    run_dir: RunDir,
    prompt: Annotated[str, typer.Option(help="text to continue")] = "",
    max_tokens: Annotated[int | None, typer.Option(help="new tokens (generate.max_tokens)")] = None,
    sampler: Annotated[
        str | None, typer.Option(help="greedy | random | top_k | top_p | beam")
    ] = None,
    temperature: Annotated[float | None, typer.Option(help="sampling temperature")] = None,
    top_k: Annotated[int | None, typer.Option(help="top_k: tokens to sample among")] = None,
    top_p: Annotated[float | None, typer.Option(help="top_p: probability mass kept")] = None,
    num_beams: Annotated[int | None, typer.Option(help="beam: beams kept")] = None,
    seed: Annotated[int | None, typer.Option(help="sampling seed")] = None,
    ngram_weight: Annotated[
        float | None, typer.Option(help="text: the Kneser-Ney n-gram's share (0–1)")
    ] = None,
    num: Annotated[int, typer.Option(min=1, help="images: how many")] = 64,
    out: Annotated[Path | None, typer.Option(help="images: a new folder to write them to")] = None,
    label: Annotated[
        str | None, typer.Option("--class", help="images: the class asked for (conditional)")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="images: DDIM steps (generation.steps)")] = None,
    guidance: Annotated[
        float | None, typer.Option(help="images: classifier-free guidance scale")
    ] = None,
):
    """Continue a prompt with a text run's model, streaming tokens to the terminal; or write
    new images of a generation run (--num N --out DIR [--class K] [--steps S] [--seed S])."""
    from pipelines.predict import generate_from_run, generate_images, load_run

    if load_run(run_dir).competition.task == "generation":
        options = {"sampler": sampler, "steps": steps, "guidance_scale": guidance}
        written = generate_images(
            run_dir, num, out, label, seed, {k: v for k, v in options.items() if v is not None}
        )
        _log(f"wrote {len(written)} images to {out}")
        return

    options = {
        "max_tokens": max_tokens,
        "sampler": sampler,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "num_beams": num_beams,
        "seed": seed,
        "ngram_weight": ngram_weight,
    }
    overrides = {k: v for k, v in options.items() if v is not None}
    console.print(prompt, end="", style="dim", highlight=False, markup=False)

    def show(piece):
        console.print(piece, end="", highlight=False, markup=False, soft_wrap=True)

    def warn(message):
        errors.print(message, highlight=False)

    generate_from_run(run_dir, prompt, show, log=warn, **overrides)
    console.print()


if __name__ == "__main__":
    app()
