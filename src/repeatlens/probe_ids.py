"""Which ids the probes treat as special, and where that came from: one record per table.

Every probe row starts with a BOS id, and no random block draws a special id
(:mod:`repeatlens.scores.probes`). Which ids those are is decided where a run or a folder of
checkpoints is read (the tokenizer, the ``.bin`` settings, a foreign model's config, or a
default when none names one); :class:`SpecialIds` records the result and its source, so
that ``repeatlens analyze`` and ``repeatlens info`` can print it and every scores table
keeps it in its metadata (``meta["probe_ids"]``). This module imports neither torch nor
pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

__all__ = ["SpecialIds", "IdSource"]

IdSource = Literal["tokenizer", "bin", "config", "default"]
"""``tokenizer``: the run's tokenizer; ``bin``: a ``.bin`` corpus' ``data.bin_bos_id``;
``config``: a foreign model's config (``bos_token_id``, ``eos_token_id``, ``pad_token_id``);
``default``: nothing named one, so a documented default was taken."""


@dataclass(frozen=True)
class SpecialIds:
    """The probes' BOS and the ids kept out of their random tokens, with their source.

    Attributes:
        bos: the id at position 0 of every probe row.
        excluded: every id no random block draws (``bos`` among them).
        source: where they came from (:data:`IdSource`).
        where: the file and field, or why the default applies (one phrase).

    >>> ids = SpecialIds(50256, (50256,), "config", "step0/config.json bos_token_id")
    >>> ids.describe()
    'probe BOS 50256, special ids excluded [50256] (from the config: step0/config.json bos_token_id)'
    >>> SpecialIds.from_json(ids.to_json()) == ids
    True
    """

    bos: int
    excluded: tuple[int, ...]
    source: IdSource
    where: str = ""

    def to_json(self) -> dict[str, Any]:
        """What the scores table's metadata holds under ``probe_ids``."""
        return {"bos": int(self.bos), "excluded": [int(i) for i in self.excluded], "source": self.source, "where": self.where}

    @classmethod
    def from_json(cls, d: Any) -> Optional["SpecialIds"]:
        """The record :meth:`to_json` wrote; None for anything else (a table written before it)."""
        if not isinstance(d, dict) or not isinstance(d.get("bos"), int) or d.get("source") not in ("tokenizer", "bin", "config", "default"):
            return None
        return cls(int(d["bos"]), tuple(int(i) for i in d.get("excluded", ())), d["source"], str(d.get("where", "")))

    def describe(self) -> str:
        """One line for ``analyze`` and ``info``."""
        whence = {"tokenizer": "the tokenizer", "bin": "the .bin settings", "config": "the config", "default": "a default"}[self.source]
        return f"probe BOS {self.bos}, special ids excluded {list(self.excluded)} (from {whence}" + (f": {self.where})" if self.where else ")")
