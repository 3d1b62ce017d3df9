"""The run folder: atomic writes, and the small files a run keeps about itself."""

import json
import os
import tempfile
from pathlib import Path

STATE_FILE = "state.json"


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
