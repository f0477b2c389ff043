"""The tidy tables' schema: every column of the scores and metrics tables, with its dtype.

A scores table is long: one row per (run, checkpoint, metric, head, offset, probe)::

    run_id (str) | step (int64) | tokens_seen (int64) | metric (str) |
    layer (Int64, NA for model-level) | head (Int64, NA) | offset (Int64, NA but for per-offset scores) |
    probe (str, "" for scores that read no probe) | probe_len | probe_batch | probe_seed (Int64, NA likewise) |
    probe_key (str: :func:`probe_key` of the four, ``synthetic:L30:B16:s0``, "" likewise) |
    value (float64) | score_version (int64) |
    duplicate_of (string, NA: other people's revisions only, the earlier revision with identical weights)

A sweep's (and a loaded run's) table adds the run's coordinates, :data:`RUN_COLUMNS`. The
training-metrics table is ``step, tokens_seen, split, loss, loss_se`` per run (``run_id`` and the
run columns added when joined). A run's ``manifest.json`` is the typed
:class:`repeatlens.checkpoints.manifest.Manifest`, beside the run directory it describes.
This module imports neither torch nor pandas.
"""

from __future__ import annotations

import re
from typing import Any

from repeatlens.errors import ConfigError

__all__ = [
    "SCORE_COLUMNS",
    "SCORE_DTYPES",
    "ROW_COLUMNS",
    "PROBE_COLUMNS",
    "PROBE_KEY",
    "RUN_COLUMNS",
    "RUN_DEFAULTS",
    "RUN_DTYPES",
    "METRIC_COLUMNS",
    "METRIC_DTYPES",
    "probe_key",
    "FAMILIES",
    "check_family",
    "parse_key",
]

PROBE_COLUMNS = ["probe", "probe_len", "probe_batch", "probe_seed"]
"""Which probe a row read (:class:`repeatlens.scores.ProbeSpec`): family, copy length, batch, seed."""

ROW_COLUMNS = ["metric", "layer", "head", "offset", *PROBE_COLUMNS, "value"]
"""What :func:`repeatlens.scores.score_model` returns for one checkpoint."""

PROBE_KEY = "probe_key"
"""The column holding each row's :func:`probe_key`, written by the store
(:func:`repeatlens.results.store.tidy_scores`; a table written before it existed gets it
derived once when read, :func:`repeatlens.results.keys.row_keys`)."""

SCORE_COLUMNS = ["run_id", "step", "tokens_seen", *ROW_COLUMNS[:-1], PROBE_KEY, "value", "score_version", "duplicate_of"]
SCORE_DTYPES = {
    "run_id": "str",
    "step": "int64",
    "tokens_seen": "int64",
    "metric": "str",
    "layer": "Int64",
    "head": "Int64",
    "offset": "Int64",
    "probe": "str",
    "probe_len": "Int64",
    "probe_batch": "Int64",
    "probe_seed": "Int64",
    PROBE_KEY: "str",
    "value": "float64",
    "score_version": "int64",
    "duplicate_of": "string",
}

RUN_COLUMNS = [
    "repeated_fraction", "repeat_count", "total_tokens", "unique_tokens", "control",
    "model_preset", "n_params", "n_params_nonembedding", "seed",
]
"""A run's coordinates, joined into sweep tables: f (as requested), E, D (tokens trained
on), the unique tokens among them, which control the run is (``none`` for a repeated run,
``full`` for f = 0 on D, ``data_matched`` for f = 0 on the (1-f)·D unique tokens of a run
at f), model preset, trainable parameters N, non-embedding parameters (Kaplan et al.
2020's N) and seed."""
RUN_DTYPES = {
    "repeated_fraction": "float64",
    "repeat_count": "int64",
    "total_tokens": "int64",
    "unique_tokens": "int64",
    "control": "str",
    "model_preset": "str",
    "n_params": "int64",
    "n_params_nonembedding": "int64",
    "seed": "int64",
}
RUN_DEFAULTS: dict[str, object] = {
    "repeated_fraction": float("nan"),
    "repeat_count": float("nan"),
    "total_tokens": float("nan"),
    "unique_tokens": float("nan"),
    "control": "",
    "model_preset": "model",
    "n_params": 0,
    "n_params_nonembedding": 0,
    "seed": 0,
}
"""The :data:`RUN_COLUMNS` a table may lack, as the reductions fill them
(:func:`repeatlens.results.reduce.check_scores`): a foreign checkpoint folder has no sweep
coordinates. A run with unknown f and E is drawn in grey, in its own ``f = ?`` facet;
reductions that compare against the control skip it."""

METRIC_COLUMNS = ["step", "tokens_seen", "split", "loss", "loss_se"]
"""``loss_se``: the standard error of an evaluation's loss over its sequences (NaN for the
``train`` rows, and for every row of runs trained before it was recorded)."""
METRIC_DTYPES = {"step": "int64", "tokens_seen": "int64", "split": "str", "loss": "float64", "loss_se": "float64"}


def probe_key(probe: str, copy_len: object, batch: object, seed: object) -> str:
    """The key that tells probes apart in a table: ``""`` for rows that read no probe,
    else ``family:L{copy_len}:B{batch}:s{seed}`` (:attr:`repeatlens.scores.ProbeSpec.key`;
    the one builder of keys: :func:`parse_key` reads them back).

    >>> probe_key("synthetic", 30, 16, 0), probe_key("", None, None, None)
    ('synthetic:L30:B16:s0', '')
    """
    if not probe:
        return ""
    return f"{probe}:L{int(copy_len)}:B{int(batch)}:s{int(seed)}"


FAMILIES = ("uniform", "train", "synthetic", "text")
"""Probe families (:mod:`repeatlens.scores.probes`), in the order ``analyze`` scores them."""


def check_family(family: str) -> str:
    """``family`` if it is one of :data:`FAMILIES`, else a one-line ConfigError."""
    if family not in FAMILIES:
        raise ConfigError(f"probe {family!r}: unknown family; expected one of {', '.join(FAMILIES)}")
    return family


def parse_key(text: str) -> tuple[str, dict[str, int]]:
    """The family and the settings a (partial) probe key names, and only those (here, with
    :func:`probe_key`, so that reading tables never imports the scores and their torch).

    >>> parse_key("text:L20")
    ('text', {'copy_len': 20})
    >>> parse_key("synthetic:L30:B16:s0")
    ('synthetic', {'copy_len': 30, 'batch': 16, 'seed': 0})

    Raises:
        ConfigError: an empty key or a malformed setting.
    """
    parts = [p for p in str(text).strip().split(":") if p]
    if not parts:
        raise ConfigError("probe: empty name; expected a family such as synthetic, or a key such as synthetic:L30:B16:s0")
    settings: dict[str, int] = {}
    for p in parts[1:]:
        m = re.fullmatch(r"([LBs])(\d+)", p)
        if not m:
            raise ConfigError(f"probe {text!r}: cannot read {p!r}; expected L<copy length>, B<batch> or s<seed>")
        settings[{"L": "copy_len", "B": "batch", "s": "seed"}[m.group(1)]] = int(m.group(2))
    return parts[0], settings


_MOVED = {"Manifest": "repeatlens.checkpoints.manifest", "FileRecord": "repeatlens.checkpoints.manifest"}
"""Names this module had, now beside the run directory they describe."""


def __getattr__(name: str) -> Any:
    if name in _MOVED:  # a deprecated alias
        import importlib
        import warnings

        warnings.warn(f"repeatlens.results.schema.{name} is deprecated: it is now {_MOVED[name]}.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'repeatlens.results.schema' has no attribute {name!r}")
