"""User-facing errors.

Every fault a user can cause (a bad config value, a missing corpus, a corrupt checkpoint)
raises a :class:`RepeatlensError` whose message is ONE line naming the file, field or value
and what was expected. The CLI prints it as ``error: <message>`` and exits with code 2,
without a traceback. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class RepeatlensError(Exception):
    """A fault in the user's input, reported in one line."""

    exit_code = 2


class ConfigError(RepeatlensError):
    """A config field has an unknown name, a wrong type or an impossible value."""


class DataError(RepeatlensError):
    """A corpus, tokenizer or token file is missing, empty or unreadable."""


class CheckpointError(RepeatlensError):
    """A checkpoint or run directory is missing, corrupt or inconsistent."""


class WriteError(RepeatlensError):
    """A file could not be written; the version already on disk (if any) is left intact."""


class DiskFullError(WriteError):
    """The disk (or the user's quota) filled up while a file was being written."""


class LockTimeout(RepeatlensError):
    """Another repeatlens process held a folder's lock for longer than we were willing to wait."""
