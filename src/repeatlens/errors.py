"""User-facing errors.

Every fault a user can cause (a bad config value, a missing corpus, a corrupt checkpoint)
raises a :class:`RepeatlensError` whose message is ONE line naming the file, field or value
and what was expected. The CLI prints it as ``error: <message>`` and exits with code 2,
without a traceback. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

import errno
from typing import Any


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


class ResourceError(RepeatlensError):
    """The machine lacks the memory (or another resource) that what was asked for needs."""


class LockTimeout(RepeatlensError):
    """Another repeatlens process held a folder's lock for longer than we were willing to wait."""


class StaleTableWarning(RuntimeWarning):
    """A folder's joined table lacks complete runs that sit in the folder: what is read off it
    leaves them out until ``repeatlens analyze FOLDER`` rewrites it. The CLI shows it in one line."""


#: OS error numbers that describe the machine or the user's files, never a bug of ours: a
#: path the user may not read or write, a full or read-only disk, a name too long, too many
#: open files, no memory, a file over the size limit, a failing device.
ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "ENAMETOOLONG", "EMFILE", "ENFILE", "ENOMEM", "EFBIG", "ELOOP", "EIO")
    if hasattr(errno, name)
)

#: Longest value (or quoted reason) a one-line message repeats; longer ones are cut in the middle.
SHOWN_CHARS = 200


def optional_import(module: str, needed_for: str, extra: str, *, error: type[RepeatlensError] = RepeatlensError, hint: str = "") -> Any:
    """``module``, imported, or ``error``: one line saying what needs it and which extra of
    repeatlens installs it (every optional dependency is imported through here).

    >>> optional_import("json", "a doctest", "dev").__name__
    'json'
    >>> optional_import("no_such_module_here", "repeated spans", "audit", hint=" (or pass --no-spans)")
    Traceback (most recent call last):
    ...
    repeatlens.errors.RepeatlensError: the 'no_such_module_here' package is needed for repeated spans: pip install 'repeatlens[audit]' (or pass --no-spans)
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise error(f"the '{module}' package is needed for {needed_for}: pip install 'repeatlens[{extra}]'{hint}") from None


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` on one line, at most about ``limit`` characters: its start and end kept,
    the middle replaced by ``…`` (a 5,000-character path still shows where it starts and ends).

    >>> shorten("a" * 300, 20)
    'aaaaaaaaaaaaa…aaaaaa'
    >>> shorten("two\\nlines")
    'two lines'
    """
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    head = (limit * 2) // 3
    return f"{flat[:head]}…{flat[len(flat) - (limit - head - 1):]}"


def first_line(err: BaseException | str, limit: int = SHOWN_CHARS) -> str:
    """The first non-blank line of an exception's message (its type's name when the message
    is empty), shortened to ``limit`` characters: what a one-line error quotes of a library's reason.

    >>> first_line(ValueError(""))
    'ValueError'
    >>> first_line(OSError("\\n  bad header\\nmore detail"))
    'bad header'
    """
    text = str(err)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__ if isinstance(err, BaseException) else ""
    return shorten(lines[0], limit)


def os_error_message(err: OSError, path: object = None) -> str:
    """One line for an operating-system failure on a user's file: the file, then the
    system's reason (``permission denied``, ``file name too long`` …).

    >>> import errno
    >>> os_error_message(PermissionError(errno.EACCES, "Permission denied", "/data/run/config.yaml"))
    '/data/run/config.yaml: permission denied'
    """
    import os

    where = path if path is not None else (err.filename if err.filename is not None else None)
    reason = os.strerror(err.errno).lower() if err.errno else first_line(err)
    return f"{shorten(str(where))}: {reason}" if where is not None else reason


def damaged_file_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged weights or config file raises, and nothing else.

    Measured on truncated, bit-flipped and foreign files through ``torch.load(weights_only=True)``
    (zip and legacy formats), safetensors, and transformers' config and weight readers
    (``tests/test_errors.py`` holds the measurement): an ``except`` around such a read catches
    these and reports the file; a ``TypeError``, ``AttributeError``, ``NameError`` ... raised
    there is a bug of ours or of a library and surfaces as a traceback.
    """
    import pickle
    import struct

    from safetensors import SafetensorError

    found: list[type[BaseException]] = [
        OSError, EOFError, RuntimeError, ValueError, KeyError, IndexError, struct.error, pickle.UnpicklingError, SafetensorError,
    ]
    try:  # transformers' config classes validate their fields through huggingface_hub's strict dataclasses
        from huggingface_hub.errors import StrictDataclassError

        found.append(StrictDataclassError)
    except ImportError:
        pass
    return tuple(found)
