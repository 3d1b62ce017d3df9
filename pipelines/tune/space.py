"""`tune.space`: sampling its entries (conditional ones with `when`) into a trial's config."""

from pipelines.config import validate_config


def _lookup(data, key):
    node = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(data, key, value):
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _holds(condition, params, base):
    for key, wanted in condition.items():
        value = params[key] if key in params else _lookup(base, key)
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if value not in allowed:
            return False
    return True


def suggest(trial, space, base):
    """Sample `space` for `trial` in its order; an entry with `when` only where it holds."""
    params = {}
    for key, entry in space.items():
        if entry.when and not _holds(entry.when, params, base):
            continue
        if entry.type == "categorical":
            params[key] = trial.suggest_categorical(key, entry.choices)
        elif entry.type == "int":
            params[key] = trial.suggest_int(
                key, int(entry.low), int(entry.high), step=int(entry.step or 1), log=entry.log
            )
        else:
            params[key] = trial.suggest_float(
                key, entry.low, entry.high, step=entry.step, log=entry.log
            )
    return params


def nested(params):
    """`{"train.lr": 0.01}` → `{"train": {"lr": 0.01}}`, the shape of an override file."""
    data = {}
    for key, value in params.items():
        _set(data, key, value)
    return data


def trial_config(cfg, params, metric):
    """The config of one trial: `cfg` with `params` set, `tune.epochs` and the metric
    as the checkpoint monitor. Invalid values raise `ConfigError`."""
    data = cfg.model_dump(mode="json")
    for key, value in params.items():
        _set(data, key, value)
    if cfg.tune.epochs:
        data["train"]["epochs"] = cfg.tune.epochs
    if not cfg.train.monitor:
        data["train"]["monitor"] = metric
    return validate_config(data, source="trial")
