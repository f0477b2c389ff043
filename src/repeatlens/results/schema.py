"""The tidy tables' schema: every column of the scores and metrics tables, with its dtype.

A scores table is long: one row per (run, checkpoint, metric, head, offset, probe)::

    run_id (str) | step (int64) | tokens_seen (int64) | metric (str) |
    layer (Int64, NA for model-level) | head (Int64, NA) | offset (Int64, NA but for per-offset scores) |
    probe (str, "" for scores that read no probe) | probe_len | probe_batch | probe_seed (Int64, NA likewise) |
    value (float64) | score_version (int64) |
    duplicate_of (string, NA: other people's revisions only, the earlier revision with identical weights)

A sweep's (and a loaded run's) table adds the run's coordinates, :data:`RUN_COLUMNS`. The
training-metrics table is ``step, tokens_seen, split, loss, loss_se`` per run (``run_id`` and the
run columns added when joined). A run's ``manifest.json`` is the typed :class:`Manifest`.
This module imports neither torch nor pandas.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Optional

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from repeatlens.errors import ConfigError

__all__ = [
    "SCORE_COLUMNS",
    "SCORE_DTYPES",
    "ROW_COLUMNS",
    "PROBE_COLUMNS",
    "RUN_COLUMNS",
    "RUN_DTYPES",
    "METRIC_COLUMNS",
    "METRIC_DTYPES",
    "probe_key",
    "FAMILIES",
    "check_family",
    "parse_key",
    "Manifest",
    "FileRecord",
]

PROBE_COLUMNS = ["probe", "probe_len", "probe_batch", "probe_seed"]
"""Which probe a row read (:class:`repeatlens.scores.ProbeSpec`): family, copy length, batch, seed."""

ROW_COLUMNS = ["metric", "layer", "head", "offset", *PROBE_COLUMNS, "value"]
"""What :func:`repeatlens.scores.score_model` returns for one checkpoint."""

SCORE_COLUMNS = ["run_id", "step", "tokens_seen", *ROW_COLUMNS, "score_version", "duplicate_of"]
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

METRIC_COLUMNS = ["step", "tokens_seen", "split", "loss", "loss_se"]
"""``loss_se``: the standard error of an evaluation's loss over its sequences (NaN for the
``train`` rows, and for every row of runs trained before it was recorded)."""
METRIC_DTYPES = {"step": "int64", "tokens_seen": "int64", "split": "str", "loss": "float64", "loss_se": "float64"}


def probe_key(probe: str, copy_len: object, batch: object, seed: object) -> str:
    """The key that tells probes apart in a table: ``""`` for rows that read no probe,
    else :attr:`repeatlens.scores.ProbeSpec.key` (``synthetic:L30:B16:s0``)."""
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


# ------------------------------------------------------------------------------ the manifest


#: A count a manifest records (tokens, sequences, steps, ids): whole, >= 0, and small enough
#: (2**53, as the config's limit) that arrays of it and products with it cannot overflow.
Count = Annotated[int, Field(ge=0, le=2**53)]
#: A :data:`Count` that cannot be 0 (a sequence length, a batch size, E).
Positive = Annotated[int, Field(ge=1, le=2**53)]


class FileRecord(BaseModel):
    """What a file of a run directory was when the run was written: its sha256 and size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class Manifest(BaseModel):
    """A run's ``manifest.json``, typed: the repetition spec as realised, the pool's layout,
    the seeds, the schedule's hash and the model's size, written once when the run is
    prepared (:func:`repeatlens.train.prepare_run`) and read by every later stage.

    The quantities keep their config names (``total_tokens`` D, ``repeated_fraction`` f,
    ``repeat_count`` E, ``repeated_tokens`` S, as in ``mixture:`` and the tables); manifests
    written before format 2 used ``D``, ``f``, ``E``, ``S`` and are read the same.
    ``repeated_fraction`` is the f realised in whole sequences; ``requested`` holds the
    mixture as configured (:attr:`requested_fraction`, the sweep's design coordinate).
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    format_version: int = 2  # prepare_run writes 3 (files recorded); older manifests lack the key or say 2
    run_id: str
    total_tokens: Count = Field(validation_alias=AliasChoices("total_tokens", "D"))
    repeated_fraction: float = Field(validation_alias=AliasChoices("repeated_fraction", "f"))
    repeat_count: Positive = Field(validation_alias=AliasChoices("repeat_count", "E"))
    repeated_tokens: Count = Field(validation_alias=AliasChoices("repeated_tokens", "S"))
    requested: dict[str, Any]
    plan: dict[str, Any]
    seq_len: Positive
    vocab_size: Positive
    n_test: Count
    n_repeated: Count
    n_unique: Count
    n_synthetic: Count = 0
    synthetic_ids: Optional[tuple[int, int]] = None
    n_params: Optional[int] = None
    n_params_nonembedding: Optional[int] = None
    repeated_ids: list[int] = Field(default_factory=list)
    test_ids: list[int] = Field(default_factory=list)
    schedule: dict[str, Any]
    pool: dict[str, Any]
    seeds: dict[str, Any]
    corpus: dict[str, Any]
    tokenizer: Optional[str] = None
    special_ids: Optional[dict[str, Any]] = None
    batch_size: Positive
    total_steps: Count
    checkpoint_steps: list[Count]
    files: dict[str, FileRecord] = Field(default_factory=dict)
    """Format 3: the sha256 and size of every file the run was written with, by path in the
    run directory (``config.yaml``, ``tokenizer.json``, ``data/*.npy``); empty in older manifests."""

    @model_validator(mode="after")
    def _records_complete(self) -> "Manifest":
        pool_keys = {"rows_sha256": str, "is_synthetic_sha256": str} if self.pool.get("layout") == "reference" else {"sha256": str}
        for name, keys in (("schedule", {"sha256": str, "slots": int}), ("pool", pool_keys)):
            record = getattr(self, name)
            for key, kind in keys.items():
                if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
                    raise ValueError(f"{name}.{key}: missing or not a {kind.__name__}")
        return self

    @property
    def requested_fraction(self) -> float:
        """f as configured (before rounding to whole sequences): the sweep's coordinate."""
        return float(self.requested.get("repeated_fraction", self.repeated_fraction))

    def special(self):
        """The run's :class:`~repeatlens.data.special.SpecialIds` (BOS 0 for a manifest
        written before they were recorded, as those runs were trained)."""
        from repeatlens.data.special import SpecialIds

        return SpecialIds.from_json(self.special_ids)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``manifest.json`` (format 2 names)."""
        return self.model_dump(mode="json")
