"""Reading a ``tokenizer.json`` file: the one place a tokenizer is loaded from disk.

:mod:`repeatlens.data.tokenizer` (training, encoding) and :mod:`repeatlens.data.special`
(the special ids of a file beside a checkpoint) both read files through it, so neither
imports the other to load one. Importing this module imports ``tokenizers``.
"""

from __future__ import annotations

import os
from pathlib import Path

from tokenizers import Tokenizer

from repeatlens.errors import DataError, first_line

__all__ = ["load_tokenizer"]


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizers JSON file (ours, written by :func:`repeatlens.data.tokenizer.save_tokenizer`, or anyone's:
    its special ids are read by :func:`repeatlens.data.special.from_tokenizer`).

    Raises:
        DataError: The file is missing or is not tokenizers JSON.
    """
    src = Path(path)
    if not src.is_file():
        raise DataError(f"tokenizer: no file at '{src}'")
    try:
        tok = Tokenizer.from_file(str(src))
    except Exception as exc:  # tokenizers raises a bare Exception for every parse error
        reason = first_line(exc)
        raise DataError(f"tokenizer: '{src}' is not a valid tokenizer JSON file ({reason})") from None
    return tok
