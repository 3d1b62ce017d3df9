"""Errors a user causes through data and submissions; only the engine raises them.

They are `KappsError`s, so the CLI prints their message on one line and exits 2.
"""

from kapps.errors import KappsError


class DataError(KappsError):
    """A data file is missing, unreadable or malformed."""


class SubmissionError(KappsError):
    """A submission does not match `sample_submission.csv`."""


class RunFolderBusy(KappsError):
    """Another process is writing the run folder."""
