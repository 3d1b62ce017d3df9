"""`kapps prepare`: lay out a competition's files in its data folder (and the
Kaggle CLI calls: download here, `kapps submit --kaggle` upload).

A competition whose data ships with Kaggle (`competition.kaggle`) is downloaded
with the Kaggle CLI unless its `sample_submission.csv` is already there or the
data folder holds files already; then
the competition's own optional `prepare.py` (a function `prepare(data_dir)`)
lays out or generates what the config reads.
"""

import importlib.util
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

from kapps.errors import KappsError
from pipelines.errors import DataError

PREPARE_SCRIPT = "prepare.py"


def _kaggle_configured():
    home = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))
    has_env = os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")
    token_files = ("kaggle.json", "access_token")
    return bool(has_env or os.environ.get("KAGGLE_API_TOKEN")) or any(
        (home / name).is_file() for name in token_files
    )


def _unzip_all(folder):
    """Extract every zip in `folder`, and the zips those contain (Kaggle nests them)."""
    while archives := sorted(folder.rglob("*.zip")):
        for archive in archives:
            try:
                with zipfile.ZipFile(archive) as zipped:
                    zipped.extractall(archive.parent)
            except zipfile.BadZipFile:
                raise DataError(f"downloaded archive is corrupt: {archive}") from None
            archive.unlink()


def download(slug, data_dir, log=print):
    """Download and unzip a Kaggle competition's files with the Kaggle CLI.

    A slug with a slash (`owner/name`) is a Kaggle dataset rather than a competition.
    """
    dataset = "/" in slug
    url = f"https://www.kaggle.com/{'datasets' if dataset else 'competitions'}/{slug}"
    if shutil.which("kaggle") is None or not _kaggle_configured():
        raise KappsError(
            f"{slug} data is missing from {data_dir}: install and configure the Kaggle CLI "
            f"(pip install kaggle; API token in ~/.kaggle/kaggle.json), or download it from "
            f"{url if dataset else url + '/data'} and unzip it there"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    log(f"downloading {slug} with the Kaggle CLI into {data_dir}")
    command = ["datasets", "download", "-d"] if dataset else ["competitions", "download", "-c"]
    done = subprocess.run(
        ["kaggle", *command, slug, "-p", str(data_dir)], capture_output=True, text=True
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        hint = "" if dataset else f"; have you accepted the rules at {url}/rules ?"
        raise KappsError(f"the Kaggle CLI could not download {slug} ({lines[-1]}){hint}")
    _unzip_all(data_dir)


def kaggle_submit(slug, file, message, log=print):
    """Upload a submission with `kaggle competitions submit -c slug -f file -m message`."""
    if shutil.which("kaggle") is None or not _kaggle_configured():
        raise KappsError(
            "submitting needs the Kaggle CLI: pip install kaggle, and put your API token in "
            f"~/.kaggle/kaggle.json; or upload {file} at "
            f"https://www.kaggle.com/competitions/{slug}/submit"
        )
    log(f"submitting {file} to {slug} with the Kaggle CLI")
    done = subprocess.run(
        ["kaggle", "competitions", "submit", "-c", slug, "-f", str(file), "-m", message],
        capture_output=True,
        text=True,
    )
    lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
    if done.returncode != 0:
        raise KappsError(f"the Kaggle CLI could not submit to {slug}: {lines[-1]}")
    return (done.stdout.strip().splitlines() or ["submitted"])[-1]


def prepare_module(competition_dir):
    """A competition's `prepare.py` as a module (its `prepare`, and `generate` where
    the data are generated)."""
    script = Path(competition_dir) / PREPARE_SCRIPT
    name = f"kapps_prepare_{script.parent.name.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_prepare_script(script, data_dir):
    module = prepare_module(script.parent)
    try:
        module.prepare(Path(data_dir))
    except (OSError, ValueError) as err:
        raise DataError(f"{script}: {err}") from None


def prepare(cfg, log=print):
    """Make `cfg.data_dir` hold everything the config reads."""
    data_dir = cfg.data_dir
    # What shows the data is there: the sample submission (an image zip has none: the
    # training images)
    images = cfg.submission.kind == "image_zip"
    needed = cfg.data_path(cfg.data.train if images else cfg.data.sample_submission)
    has_sample = needed.exists()
    # A data folder the user filled (e.g. a dataset's files, laid out by prepare.py) is used.
    filled = data_dir.is_dir() and any(data_dir.iterdir())
    if cfg.competition.kaggle and not has_sample and not filled:
        download(cfg.competition.kaggle, data_dir, log)
    script = cfg.competition_dir / PREPARE_SCRIPT
    if script.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        run_prepare_script(script, data_dir)
    if not needed.exists():
        raise DataError(f"{needed} is missing after prepare")
    _report_rle_order(cfg, log)
    log(f"data ready in {data_dir}")
    return data_dir


def _report_rle_order(cfg, log):
    """Say which RLE order the training masks use, when known masks can tell."""
    if cfg.data.format != "rle_csv" or not cfg.data.masks:
        return
    from pipelines.data.masks import detect_order, read_mask_source

    found, how = detect_order(
        cfg.model_copy(update={"data": cfg.data.model_copy(update={"rle_order": "auto"})}),
        read_mask_source(cfg),
    )
    log(how)
    if cfg.data.rle_order not in ("auto", found):
        log(f"[yellow]data.rle_order is {cfg.data.rle_order}, but the masks say {found}[/]")
