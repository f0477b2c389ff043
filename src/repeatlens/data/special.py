"""Special ids: the one place BOS and the other special ids of a run are decided.

The tokenizer decides them (or, for a pre-tokenized ``.bin`` corpus, ``data.bin_bos_id``;
for the synthetic-only source, its own vocabulary, which reserves id 0 for BOS; for other
people's checkpoints, the model's config or its tokenizer). Everything downstream reads
the :class:`SpecialIds` that comes out: the BOS that opens every corpus and synthetic row,
the ids the synthetic source may draw (:meth:`SpecialIds.ordinary_ids`, never a special
one), every probe family's BOS and excluded ids, and the run's manifest, which records
them (:meth:`SpecialIds.to_json`). A manifest written before they were recorded reads as
BOS 0 (:meth:`SpecialIds.from_json` of ``None``): every run was trained that way then.

A tokenizer is accepted whatever its layout: GPT-2's ``<|endoftext|>`` = 50256 as its last
id, Llama's ``<s>`` = 1, ours at id 0. Its BOS is ``data.bos_token`` when set, else the
first of :data:`BOS_CANDIDATES` it holds; one that holds none and is given no
``data.bos_token`` is one :class:`~repeatlens.errors.DataError` line naming the file and
the field to set. Importing this module imports neither torch nor ``tokenizers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Optional

import numpy as np
from jaxtyping import Int64

from repeatlens.errors import DataError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["BOS_CANDIDATES", "SYNTHETIC_BOS", "IdSource", "SpecialIds", "from_tokenizer", "from_token_file", "legacy"]

BOS_CANDIDATES = ("<|endoftext|>", "<|begin_of_text|>", "<|startoftext|>", "<s>", "<bos>", "<BOS>", "[BOS]")
"""Tokens that open a document in common tokenizers, in the order a BOS is looked for."""

SYNTHETIC_BOS = 0
"""The synthetic-only source's vocabulary (``data.synthetic.vocab_size`` ids) reserves id 0
for BOS; its ordinary ids are 1 .. vocab_size - 1."""


IdSource = Literal["tokenizer", "bin", "config", "synthetic", "legacy", "default"]
"""What decided a :class:`SpecialIds`: ``tokenizer`` (a run's tokenizer, or a
``tokenizer.json`` beside someone else's checkpoint); ``bin``: a ``.bin`` corpus's
``data.bin_bos_id``; ``config``: a foreign model's config (``bos_token_id``,
``eos_token_id``, ``pad_token_id``); ``synthetic``: the synthetic-only source's vocabulary;
``legacy``: a run written before they were recorded (BOS 0, as it was trained); ``default``:
nothing named one, so a documented default was taken (with a warning)."""


@dataclass(frozen=True)
class SpecialIds:
    """A run's (or a checkpoint's) special ids, and where they came from.

    Attributes:
        bos: the id at position 0 of every training row and every probe row.
        special: every special id (``bos`` included), sorted; no synthetic or random
            probe token takes one of them.
        bos_token: the BOS token's text, when a tokenizer names it.
        source: where they were read, for messages (``tokenizer 'x/tokenizer.json'``,
            ``data.bin_bos_id``, ``step0/config.json bos_token_id``, ...).
        kind: what decided them (:data:`IdSource`).

    Scores tables record them (``meta["probe_ids"]``, :meth:`to_json`); ``analyze`` and
    ``info`` print :meth:`describe`:

    >>> ids = SpecialIds(50256, (50256,), "<|endoftext|>", "step0/config.json bos_token_id", "config")
    >>> ids.describe()
    'probe BOS 50256, special ids excluded [50256] (from the config: step0/config.json bos_token_id)'
    >>> SpecialIds.from_record(ids.to_json()) == ids, SpecialIds.from_record({"bos": "x"})
    (True, None)
    """

    bos: int
    special: tuple[int, ...]
    bos_token: Optional[str] = None
    source: str = ""
    kind: IdSource = "tokenizer"

    def __post_init__(self) -> None:
        object.__setattr__(self, "special", tuple(sorted({int(self.bos), *map(int, self.special)})))

    def ordinary_ids(self, vocab_size: int, n: Optional[int] = None) -> Int64[np.ndarray, "n_ids"]:
        """The first ``n`` (default: all) non-special ids below ``vocab_size``, in increasing order.

        The synthetic source draws from these; with the special ids all at one end of the
        vocabulary they are one contiguous range.

        >>> SpecialIds(0, (0,)).ordinary_ids(6).tolist(), SpecialIds(5, (2, 5)).ordinary_ids(8, 4).tolist()
        ([1, 2, 3, 4, 5], [0, 1, 3, 4])

        Raises:
            DataError: fewer than ``n`` non-special ids exist (naming both counts).
        """
        ids = np.setdiff1d(np.arange(int(vocab_size), dtype=np.int64), np.asarray(self.special, dtype=np.int64))
        if n is not None:
            if n > len(ids):
                raise DataError(
                    f"data.synthetic.token_ids = {n} exceeds the {len(ids)} non-special ids of the vocabulary ({vocab_size} ids, "
                    f"special {list(self.special)})"
                )
            ids = ids[: int(n)]
        return ids

    def to_json(self) -> dict[str, Any]:
        """What the manifest (``special_ids``) and every scores table (``probe_ids``) record."""
        return {"bos": int(self.bos), "special": [int(i) for i in self.special], "bos_token": self.bos_token, "source": self.source,
                "kind": self.kind}

    @classmethod
    def from_json(cls, d: Optional[dict[str, Any]]) -> "SpecialIds":
        """Read :meth:`to_json`; ``None`` (a manifest written before they were recorded) is
        BOS 0, as every run was then trained."""
        if d is None:
            return legacy()
        return cls(int(d["bos"]), tuple(int(i) for i in d.get("special", [d["bos"]])), d.get("bos_token"), d.get("source", ""),
                   d.get("kind", "tokenizer"))

    @classmethod
    def from_record(cls, d: Any) -> Optional["SpecialIds"]:
        """A scores table's ``probe_ids`` record; None for anything else (a table written before it was kept)."""
        if not isinstance(d, dict) or not isinstance(d.get("bos"), int) or not isinstance(d.get("special", []), list):
            return None
        try:
            return cls.from_json(d)
        except (TypeError, ValueError):
            return None

    def describe(self) -> str:
        """One line for ``analyze``, ``info`` and the report."""
        whence = {"tokenizer": "the tokenizer", "bin": "the .bin settings", "config": "the config", "synthetic": "the synthetic source",
                  "legacy": "a run written before they were recorded", "default": "a default"}.get(self.kind, self.kind)
        return f"probe BOS {self.bos}, special ids excluded {list(self.special)} (from {whence}" + (f": {self.source})" if self.source else ")")


def legacy() -> "SpecialIds":
    """The special ids of a run written before they were recorded: BOS (and the only special id) 0."""
    return SpecialIds(SYNTHETIC_BOS, (SYNTHETIC_BOS,), source="manifest without special_ids (written before they were recorded)", kind="legacy")


def from_tokenizer(tok: "Tokenizer", where: str, bos_token: Optional[str] = None) -> SpecialIds:
    """The special ids of a ``tokenizers`` tokenizer: every added token marked special, and
    the BOS: ``bos_token`` when given, else the first of :data:`BOS_CANDIDATES` it holds.

    Args:
        tok: the tokenizer.
        where: how messages name it (its file).
        bos_token: ``data.bos_token``.

    Raises:
        DataError: ``bos_token`` is not one of its tokens, or none is given and it holds no
            BOS-like token (one line naming ``where`` and ``data.bos_token``).
    """
    special = {int(i) for i, t in tok.get_added_tokens_decoder().items() if t.special}
    if bos_token is not None:
        bos = tok.token_to_id(bos_token)
        if bos is None:
            raise DataError(f"{where}: data.bos_token = {bos_token!r} is not a token of this tokenizer; {_named(tok, special)}")
        return SpecialIds(int(bos), tuple(special | {int(bos)}), bos_token, f"{where}, data.bos_token")
    for name in BOS_CANDIDATES:
        bos = tok.token_to_id(name)
        if bos is not None:
            return SpecialIds(int(bos), tuple(special | {int(bos)}), name, where)
    raise DataError(
        f"{where}: no BOS-like token ({', '.join(BOS_CANDIDATES)}) in this tokenizer; set data.bos_token to the token that "
        f"opens a document ({_named(tok, special)})"
    )


def _named(tok: "Tokenizer", special: set[int]) -> str:
    names = [tok.id_to_token(i) for i in sorted(special)][:8]
    return f"its special tokens: {', '.join(names)}" if names else "it declares no special tokens"


def from_token_file(path: str, where: str, bos_token: Optional[str] = None) -> SpecialIds:
    """:func:`from_tokenizer` of a ``tokenizer.json`` file (imports ``tokenizers``)."""
    from repeatlens.data.tokenizer_file import load_tokenizer

    return from_tokenizer(load_tokenizer(path), where, bos_token)
