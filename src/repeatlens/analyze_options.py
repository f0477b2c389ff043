"""How to score: :class:`AnalyzeOptions`, declared once for the Python API
(:func:`repeatlens.analysis.analyze`), the command line (``repeatlens analyze``: its defaults,
bounds and help come from here) and a sweep file's ``analyze:`` section. Reading options
imports neither torch nor TransformerLens, nor pandas: this module sits beside
:mod:`repeatlens.config` rather than inside :mod:`repeatlens.analysis` (whose scoring loop needs
pandas) because the command line reads its defaults when it starts, before any command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from repeatlens.config import MAX_COUNT, DeviceName, format_validation_error
from repeatlens.errors import ConfigError

__all__ = ["AnalyzeOptions", "PROBE_FIELDS", "FOREIGN_FIELDS", "SWEEP_FIELDS"]

PROBE_FIELDS = ("probes", "probe_len", "probe_batch", "probe_seed")
"""The options that choose the probes (each combination is its own set of rows)."""
FOREIGN_FIELDS = ("tokens", "tokens_per_step", "out", "revisions", "download")
"""The options of other people's checkpoints only (runs keep their tables inside)."""
SWEEP_FIELDS = ("metrics", "max_sequences", "batch_size", "device", *PROBE_FIELDS)
"""The options a sweep file's ``analyze:`` section may set (the same for every point)."""


def _names(value: Any) -> Any:
    """``"induction, test_loss"`` -> ``("induction", "test_loss")`` (as on the command line); a list -> a tuple."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value) if isinstance(value, list) else value


class AnalyzeOptions(BaseModel):
    """How :func:`repeatlens.analysis.analyze` scores (frozen; every field has its default).

    ``AnalyzeOptions(probes="synthetic,text", probe_len=20)`` is what
    ``analyze(path, probes="synthetic,text", probe_len=20)`` and
    ``repeatlens analyze PATH --probe synthetic,text --probe-len 20`` build. ``seed`` is read
    as the deprecated name of ``probe_seed`` (giving both is an error).

    >>> AnalyzeOptions(probes="synthetic, text", probe_batch=8).probes
    ('synthetic', 'text')
    >>> AnalyzeOptions.parse({"seed": 3}).kwargs()
    {'probe_seed': 3}
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    metrics: Optional[tuple[str, ...]] = Field(None, description="Scores to compute (default: the default battery)")
    max_sequences: int = Field(64, ge=0, le=MAX_COUNT, description="Test / repeated sequences the behaviour scores read")
    batch_size: int = Field(32, ge=1, le=MAX_COUNT, description="Sequences per forward pass of the behaviour scores")
    device: DeviceName = Field("auto", description="torch device: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    probes: Optional[tuple[str, ...]] = Field(
        None, description="Probe families, comma-separated: uniform, train, synthetic, text (default: every one that applies)"
    )
    probe_len: Optional[int] = Field(None, ge=2, le=MAX_COUNT, description="Copy length L of the [BOS, r, r] probe (default 2P for the context)")
    probe_batch: int = Field(16, ge=1, le=MAX_COUNT, description="Probe rows of each kind")
    probe_seed: int = Field(0, ge=0, le=MAX_COUNT, description="Seed of the probe draw")
    force: bool = Field(False, description="Score again what is already scored")
    progress: bool = Field(True, description="Progress bar over checkpoints")
    lock_timeout: Optional[float] = Field(None, ge=0, description="Seconds to wait while another process writes the same table (None: no limit)")
    tokens: Optional[Path] = Field(None, description="Foreign folders: .npy of token ids [n, seq]: the test set, and the train and text probes")
    tokens_per_step: Optional[int] = Field(None, ge=1, le=MAX_COUNT, description="Foreign folders: tokens_seen = step x this")
    out: Optional[Path] = Field(None, description="Foreign folders and hf:ORG/NAME: folder for the tables (required for hf:)")
    revisions: Optional[tuple[str, ...]] = Field(None, description="hf:ORG/NAME: revisions (default: every cached one with a step)")
    download: bool = Field(False, description="hf:ORG/NAME: fetch requested revisions missing from the cache (network)")

    @model_validator(mode="before")
    @classmethod
    def _deprecated_seed(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "seed" in data:
            if "probe_seed" in data:
                raise ValueError(f"seed = {data['seed']} and probe_seed = {data['probe_seed']}: give probe_seed only (seed is its deprecated name)")
            data = {("probe_seed" if k == "seed" else k): v for k, v in data.items()}
        return data

    @field_validator("metrics", "probes", "revisions", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        return _names(value)

    @field_validator("tokens", "out", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        return Path(value) if isinstance(value, str) else value

    @field_validator("probes")
    @classmethod
    def _some_family(cls, value: Optional[tuple[str, ...]]) -> Optional[tuple[str, ...]]:
        if value is not None and not value:
            raise ValueError("empty list; name at least one probe family or leave it out for every family that applies")
        return tuple(dict.fromkeys(value)) if value is not None else None

    @classmethod
    def parse(cls, options: Mapping[str, Any], where: str = "analyze", section: str = "") -> "AnalyzeOptions":
        """Options from a mapping (keyword arguments, a sweep file's section), or a one-line
        :class:`ConfigError` naming ``where`` and the field."""
        try:
            return cls.model_validate(dict(options))
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, where, section=section)) from None

    def with_(self, where: str = "analyze", **changes: Any) -> "AnalyzeOptions":
        """A copy with ``changes`` (validated as the constructor validates them)."""
        return self.parse({**self.kwargs(), **changes}, where) if changes else self

    def kwargs(self) -> dict[str, Any]:
        """The options that were set, as :func:`repeatlens.analysis.analyze` takes them
        (lists where a sequence is given, as a sweep file holds them)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_dump(exclude_unset=True).items()}

    def probe_options(self) -> dict[str, Any]:
        """The probe settings that were set, as :func:`repeatlens.analysis.analyze` takes them."""
        return {k: v for k, v in self.kwargs().items() if k in PROBE_FIELDS}
