"""Errors a user can cause in kapps. The CLI prints their message on one line and exits 2.

The data and submission errors, which only the engine raises, are in `pipelines.errors`.

Anything else that escapes is a bug and keeps its traceback.
"""


class KappsError(Exception):
    """Base class of user-caused errors (bad config, bad data, bad submission)."""


class ConfigError(KappsError, ValueError):
    """A config value, key or model argument is invalid."""


class UnknownModelError(ConfigError, KeyError):
    """`create_model` was given a name no registry knows."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""
