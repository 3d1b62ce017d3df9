"""Optuna storages for `kapps tune`: a URL → a storage with heartbeats and retries.

Optuna's RDB storage has heartbeats; its journal storage has none, so
`HeartbeatJournalStorage` adds them (the only part written by hand here).
"""

import contextlib
import importlib.util
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback

# Not exported by optuna.storages, but it is the interface `fail_stale_trials`
# and `Study.optimize` look for; subclassing it is how a storage gets heartbeats.
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from kapps.errors import ConfigError

HEARTBEAT_ATTR = "kapps:heartbeat"


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage with the heartbeat its RDB storage has.

    A running trial records the time in a system attribute every
    `heartbeat_interval` seconds; a running trial whose last beat (or start)
    is older than `grace_period` is stale, and Optuna fails it and calls
    `heartbeat_stale_trial_callback` (a retry) as it does for RDB storages.
    """

    def __init__(self, backend, heartbeat_interval, grace_period=None, stale_callback=None):
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period or 2 * heartbeat_interval
        self.stale_callback = stale_callback

    def record_heartbeat(self, trial_id):
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id):
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            # A retried trial carries its predecessor's last beat: its start counts too.
            last = max(
                trial.system_attrs.get(HEARTBEAT_ATTR, 0.0), trial.datetime_start.timestamp()
            )
            if now - last > self.grace_period:
                # FrozenTrial has no public storage id; Optuna's own storages use this one.
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self):
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self.stale_callback


def redact(url):
    """The storage URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
    return url


# Two workers opening an empty database at once both create Optuna's tables;
# the slower one fails on a name the other has just taken (optuna#1092). Its
# next attempt finds the tables made.
SCHEMA_RACE = ("already exists", "duplicate key value")
SCHEMA_ATTEMPTS = 5


def _rdb_storage(url, tune, retry):
    """`RDBStorage(url)`, tried again while its schema creation races another worker's."""
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    heartbeat_interval=tune.heartbeat,
                    heartbeat_stale_trial_callback=retry,
                    engine_kwargs=_engine_kwargs(url),
                )
        except Exception as err:
            if attempt == SCHEMA_ATTEMPTS or not any(m in str(err) for m in SCHEMA_RACE):
                raise
            time.sleep(0.5 * attempt)


def open_storage(url, tune):
    """An Optuna storage for `url` with heartbeats and retries of dead workers' trials.

    `journal:PATH` is a journal file (several local processes); anything else
    is an SQLAlchemy URL (sqlite, postgresql, mysql). A URL that cannot be
    opened raises `ConfigError`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(
            max_retry=tune.max_retry, inherit_intermediate_values=True
        )
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return HeartbeatJournalStorage(
            JournalFileBackend(str(path)), tune.heartbeat, stale_callback=retry
        )
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg"):
        # psycopg 3 (the postgres extra), whichever default driver SQLAlchemy has.
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        return _rdb_storage(url, tune, retry)
    except ImportError as err:
        raise ConfigError(
            f"storage {redact(url)} needs a database driver that is not installed ({err.name}); "
            "pip install 'kapps[postgres]' (psycopg) for PostgreSQL, PyMySQL for MySQL"
        ) from None
    except Exception as err:  # SQLAlchemy's errors: bad URL, server down, bad password
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot open the study storage {redact(url)}: {reason}") from None


def _engine_kwargs(url):
    if url.startswith(("postgresql", "mysql")):
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    return {}
