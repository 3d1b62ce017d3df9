"""The run folder: the one place that names a run's files, its lock, and atomic writes.

`runs/<competition>/<run>/` holds the resolved `config.yaml`, `history.csv`,
`best.keras`, `backup/` (what `BackupAndRestore` resumes from), `state.json`,
`metrics.json`, `curves.png` and the task's plots, `oof.csv` and `fold-<k>/`
for a cross-validation, and `submission.csv` (`images.zip` and `samples/` for
a generation run). A tuning folder
(`runs/<competition>/tune/`) holds the study's report and `trials/`. Code
elsewhere asks a `RunFolder` or `TuneFolder` for a path; it never spells a
file name.
"""

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

from pipelines.errors import RunFolderBusy


class RunFolder:
    """Paths of one run. `RunFolder("runs/digits/lenet5-1a2b3c4d").best_model`."""

    CONFIG = "config.yaml"

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self):
        return f"RunFolder({str(self.path)!r})"

    def __str__(self):
        return str(self.path)

    def __fspath__(self):
        return str(self.path)

    @property
    def name(self):
        return self.path.name

    @property
    def config(self):
        return self.path / self.CONFIG

    @property
    def history(self):
        return self.path / "history.csv"

    @property
    def best_model(self):
        return self.path / "best.keras"

    @property
    def backup(self):
        return self.path / "backup"

    @property
    def backup_epoch(self):
        """The file in which `BackupAndRestore` records the last finished epoch."""
        return self.backup / "training_metadata.json"

    @property
    def state(self):
        return self.path / "state.json"

    @property
    def metrics(self):
        return self.path / "metrics.json"

    @property
    def backbone(self):
        """A pretraining run's trained backbone, what `model.weights` loads."""
        return self.path / "backbone.keras"

    @property
    def grid(self):
        """A pretraining run's label-fraction evaluation, one row per run."""
        return self.path / "grid.csv"

    def probe(self, fraction, seed):
        """Where a pretraining run's linear probe of one grid cell writes its submission."""
        return RunFolder(self.path / "linear-probe" / f"{fraction:g}-{seed}")

    @property
    def oof(self):
        return self.path / "oof.csv"

    @property
    def submission(self):
        return self.path / "submission.csv"

    @property
    def samples(self):
        return self.path / "samples.txt"

    @property
    def images_zip(self):
        """A generation run's submission: the generated images."""
        return self.path / "images.zip"

    def epoch_samples(self, epoch):
        """A generation run's grid of samples after epoch `epoch` (counted from 1)."""
        return self.path / "samples" / f"epoch-{epoch:03d}.png"

    @property
    def vocabulary(self):
        """A seq2seq run's source characters and target words."""
        return self.path / "vocabulary.json"

    @property
    def class_accuracy(self):
        """A seq2seq run's validation accuracy per token class, beside the copy baseline's."""
        return self.path / "class_accuracy.csv"

    @property
    def mistakes(self):
        """A seq2seq run's most frequent validation mistakes."""
        return self.path / "mistakes.csv"

    @property
    def embeddings(self):
        return self.path / "embeddings"

    @property
    def lock_file(self):
        return self.path / ".lock"

    def plot(self, name):
        """`curves`, `confusion_matrix`, … → `<run>/<name>.png`."""
        return self.path / f"{name}.png"

    def cache(self, split):
        """Where decoded images of a split are cached with `data.cache: disk`."""
        return self.path / "cache" / split

    def fold(self, k):
        """The run of fold `k` of a cross-validation: an ordinary run folder."""
        return RunFolder(self.path / f"fold-{k}")

    @property
    def partition(self):
        """A federated run's client of every training row."""
        return self.path / "partition.csv"

    @property
    def global_weights(self):
        """A federated run's global weights after its last finished round, for resuming."""
        return self.backup / "global.npz"

    @property
    def centralised(self):
        """A federated run's reference: the same model trained on all rows, an ordinary run."""
        return RunFolder(self.path / "centralised")

    def is_run(self):
        return self.config.is_file()

    def reset(self):
        """Forget a run's training (`train.resume=false`); its data cache stays."""
        shutil.rmtree(self.backup, ignore_errors=True)
        for path in (self.history, self.state, self.best_model, self.metrics):
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self):
        """Hold the folder for this process; another process gets `RunFolderBusy`.

        The lock is the operating system's on `.lock` (which records the owner's
        pid), so a killed process releases it: its stale file is simply taken over.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 64).decode(errors="replace").strip() or "another process"
                raise RunFolderBusy(
                    f"{self.path} is in use by process {owner}; wait for it to finish "
                    "or choose another run.name"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            try:
                yield self
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class TuneFolder:
    """Paths of a tuning study's folder (`runs/<competition>/tune` by default)."""

    def __init__(self, path):
        self.path = Path(path)

    @property
    def best(self):
        """The best trial's values as an override file for `kapps train --override`."""
        return self.path / "best.yaml"

    @property
    def trials_table(self):
        return self.path / "trials.csv"

    @property
    def journal(self):
        """The default Optuna storage: a journal file several processes can share."""
        return self.path / "study.log"

    def plot(self, name):
        return self.path / f"{name}.png"

    def trial(self, name):
        return RunFolder(self.path / "trials" / name)


def atomic_write(path, write):
    """Call `write(tmp_path)` then move the result onto `path` in one step.

    A crash or an exception leaves the old file (if any) untouched and no
    half-written file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path, text):
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def read_json(path, default=None):
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else default


def _json_default(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def update_json(path, **fields):
    data = read_json(path, {})
    data.update(fields)
    write_json(path, data)
    return data
