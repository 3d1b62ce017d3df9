"""`competition.yaml` + override files + `key.sub=value` overrides → a validated `Config`.

YAML gives the values, override files and then `key=value` arguments win, and
an unknown key is an error naming the closest valid key.
"""

import difflib
from pathlib import Path

import yaml
from pydantic import ValidationError

from kapps.errors import ConfigError
from pipelines.config.schema import CONFIG_FILE, Config, fields_at
from pipelines.runs import RunFolder


def _read_yaml(path):
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def parse_override(text):
    """`"train.lr=3e-3"` → `(["train", "lr"], 0.003)`; values are parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def _set_nested(data, keys, value, original):
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {original!r}: {'.'.join(keys[: i + 1])} is not a section")
        node = child
    node[keys[-1]] = value


def _merge(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _describe(error):
    loc = [str(p) for p in error["loc"]]
    key = ".".join(loc) or "config"
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(loc[-1], fields_at(loc[:-1]), n=1, cutoff=0.5)
        hint = f"; did you mean {'.'.join(loc[:-1] + close)!r}?" if close else ""
        return f"unknown config key {key!r}{hint}"
    if error["type"] == "missing":
        return f"config key {key!r} is required"
    if not loc:  # a check across keys: the message names them, the input is everything
        return error["msg"].removeprefix("Value error, ")
    return f"{key}: {error['msg']} (got {error.get('input')!r})"


def validate_config(data, source="config"):
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        errors = err.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {_describe(errors[0])}{more}") from None


def load_config(target, overrides=(), override_files=()):
    """Resolve a competition folder, a competition YAML or a run folder into a `Config`.

    Args:
        target: a competition folder (holding competition.yaml), a YAML file, or
            a run folder (holding the config.yaml a run saved).
        overrides: `key.sub=value` strings, applied last.
        override_files: YAML files of partial configs (e.g. a tuned best.yaml),
            merged in order before `overrides`.
    """
    path = Path(target)
    if path.is_dir():
        candidates = [path / CONFIG_FILE, RunFolder(path).config]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ConfigError(f"{path} has no {CONFIG_FILE} (is it a competition folder?)")
        path = found
    elif not path.exists():
        raise ConfigError(f"no competition folder or config file at {target}")
    data = _read_yaml(path)
    for extra in override_files:
        _merge(data, _read_yaml(extra))
    for text in overrides:
        keys, value = parse_override(text)
        _set_nested(data, keys, value, text)
    competition = data.setdefault("competition", {})
    if isinstance(competition, dict) and not competition.get("dir"):
        competition["dir"] = str(path.parent.resolve())
    return validate_config(data, source=path.name)
