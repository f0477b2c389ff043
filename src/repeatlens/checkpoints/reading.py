"""Reading a run's files safely: JSON objects, checkpoint sidecars, ``.npy`` arrays and parquet
tables, each with a one-line error naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from tokenize import TokenError
from typing import Any, Sequence

import numpy as np

from repeatlens.errors import ENVIRONMENT_ERRNOS, CheckpointError, first_line, os_error_message, shorten


def step_name(step: int) -> str:
    return f"step_{step:07d}"


# ------------------------------------------------------------------------ reading safely


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object (a dict) from ``path``, or a one-line CheckpointError naming the file."""
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {what} is missing") from None
    except OSError as e:
        raise CheckpointError(os_error_message(e, path)) from None
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: unreadable {what} (not UTF-8 text at byte {e.start})") from None
    except ValueError as e:  # json.JSONDecodeError, or a number too long to convert
        raise CheckpointError(f"{path}: unreadable {what} (not JSON: {first_line(e)})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: unreadable {what} (a JSON {type(raw).__name__}; expected an object)")
    return raw


#: A sidecar's fields that readers use, and the JSON types they must have (None: may be absent).
_SIDECAR_FIELDS: dict[str, tuple[type, bool]] = {
    "step": (int, True), "tokens_seen": (int, True), "sha256": (str, True), "train_state": (dict, False),
    "environment": (dict, False), "versions": (dict, False), "config_sha256": (str, False), "manifest_sha256": (str, False),
}


#: ``complete.json``'s fields that readers use.
_COMPLETION_FIELDS: dict[str, tuple[type, bool]] = {"step": (int, True), "tokens_seen": (int, True), "environment": (dict, False)}


def _check_fields(path: Path, meta: dict[str, Any], fields: dict[str, tuple[type, bool]], what: str) -> dict[str, Any]:
    """``meta`` if each of ``fields`` (name -> (JSON type, required)) has its type, else a one-line CheckpointError."""
    for key, (kind, required) in fields.items():
        value = meta.get(key)
        if value is None and not required:
            continue
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            got = "missing" if value is None else shorten(repr(value), 60)
            expected = "a whole number >= 0" if kind is int else "a JSON " + {str: "string", dict: "object"}[kind]
            raise CheckpointError(f"{path}: unreadable {what} (field '{key}': {got}; expected {expected})")
    return meta


def read_sidecar(side: Path) -> dict[str, Any]:
    """A checkpoint's JSON sidecar, its fields checked (:data:`_SIDECAR_FIELDS`) and its step
    the one its name gives, or a one-line CheckpointError naming the file and field."""
    meta = _check_fields(side, read_json_object(side, "checkpoint sidecar"), _SIDECAR_FIELDS, "checkpoint sidecar")
    ts = meta.get("train_state")
    if ts is not None and not isinstance(ts.get("sha256"), str):
        raise CheckpointError(f"{side}: unreadable checkpoint sidecar (field 'train_state.sha256': missing or not a string)")
    groups = ts.get("param_groups") if ts is not None else []
    if not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups):
        raise CheckpointError(f"{side}: unreadable checkpoint sidecar (field 'train_state.param_groups': expected the optimizer's parameter groups)")
    if side.name != f"{step_name(meta['step'])}.json":
        raise CheckpointError(f"{side}: sidecar says step {meta['step']}; expected its name to be {step_name(meta['step'])}.json")
    return meta


NPY_HEADER_ERRORS: tuple[type[Exception], ...] = (ValueError, EOFError, SyntaxError, TokenError, TypeError)
"""What numpy raises reading a truncated or malformed ``.npy`` (it parses the header as a
Python literal: a flipped bit can leave a bracket unclosed, ``tokenize.TokenError``)."""


def load_npy(path: Path, *, mmap: bool = False) -> np.ndarray:
    """A run's ``.npy`` file (never unpickled), or a one-line CheckpointError naming the file."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except OSError as e:
        if e.errno in (None, 0):  # numpy's own "failed to interpret file as a pickle" etc.
            raise CheckpointError(f"{path}: unreadable .npy file ({first_line(e)})") from None
        raise CheckpointError(os_error_message(e, path)) from None
    except NPY_HEADER_ERRORS as e:
        raise CheckpointError(f"{path}: unreadable .npy file ({first_line(e)})") from None


def read_parquet_table(path: Path, columns: Sequence[str], what: str):
    """A parquet table holding at least ``columns``, or a one-line CheckpointError naming the file."""
    import pandas as pd
    import pyarrow as pa

    try:
        df = pd.read_parquet(path)
    except OSError as e:
        if e.errno in ENVIRONMENT_ERRNOS:
            raise CheckpointError(os_error_message(e, path)) from None
        raise CheckpointError(f"{path}: unreadable {what} ({first_line(e)})") from None
    except (ValueError, pa.ArrowException) as e:
        raise CheckpointError(f"{path}: unreadable {what} ({first_line(e)})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CheckpointError(f"{path}: {what} lacks column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    return df
def _declared_special(path: Path) -> tuple[int, ...]:
    """Ids of the special tokens a ``tokenizer.json`` declares (read as JSON)."""
    if not path.is_file():
        return ()
    try:
        added = json.loads(path.read_text(encoding="utf-8")).get("added_tokens", [])
    except (OSError, ValueError, AttributeError):  # ValueError: not JSON, or not UTF-8
        return ()
    return tuple(int(t["id"]) for t in added if isinstance(t, dict) and t.get("special") and isinstance(t.get("id"), int))
