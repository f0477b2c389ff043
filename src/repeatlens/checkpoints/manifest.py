"""A run's ``manifest.json``, typed (:class:`Manifest`): what :class:`~repeatlens.checkpoints.RunDir`
reads and :func:`repeatlens.train.prepare_run` writes, beside the run directory it describes.
Imports neither torch nor pandas."""

from __future__ import annotations

from typing import Annotated, Any, Optional

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

__all__ = ["Manifest", "FileRecord"]


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
