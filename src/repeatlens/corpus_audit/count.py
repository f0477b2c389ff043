"""Exact repeat counts of documents and training sequences, in one streaming pass.

Nothing of the corpus's text stays in memory: each document is reduced to a 64-bit key
(:mod:`repeatlens.corpus_audit.stream`), each training sequence to the xxh3-64 hash of its
ids. Per distinct document the counter keeps its copies, its tokens summed over the copies
and the ordinal of its first copy (three ``array('q')`` entries and one dict entry, about
100 bytes), and writes its preview to a fixed-width file in the work folder. Sequence hashes
are buffered and folded into a sorted ``(hash, count)`` pair of numpy arrays every
:data:`COMPACT_EVERY` hashes, so they cost 16 bytes per *distinct* sequence.

Two items with different contents but equal 64-bit hashes would be counted as copies; for
n distinct items the chance that any two collide is about n² / 2⁶⁵ (reported per unit as
``hash_collision_chance``).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Optional

import numpy as np
from jaxtyping import Integer, UInt64

from repeatlens.corpus_audit.stream import Document

COMPACT_EVERY = 1 << 22
"""Sequence hashes buffered before they are folded into the sorted counts."""

PREVIEW_BYTES = 192
"""Bytes of a document's preview kept on disk (UTF-8, cut at a character boundary)."""

_FEED_TOKENS = 1 << 20  # tokens buffered before the sequence cutter and the span spill run


@dataclass(frozen=True)
class UnitCounts:
    """The distinct items of one unit (document, near_document, sequence or span).

    Attributes:
        unit: the unit's name.
        copies: per distinct item, how many times it occurs in the corpus (≥ 1).
        tokens: per distinct item, its tokens summed over all its copies.
        total_tokens: the tokens of the whole corpus counted in this unit (the sum of
            ``tokens``): the denominator of ``token_fraction``.
        describe: names an item for hover text (its ordinal and first words), or None.
        notes: what the reader should know about how this unit was counted.
    """

    unit: str
    copies: Integer[np.ndarray, "items"]
    tokens: Integer[np.ndarray, "items"]
    total_tokens: int
    describe: Optional[Callable[[int], str]] = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.copies) != len(self.tokens):
            raise ValueError(f"{self.unit}: {len(self.copies)} copy counts for {len(self.tokens)} token counts")

    @property
    def items(self) -> int:
        return len(self.copies)

    @property
    def hash_collision_chance(self) -> float:
        """Chance that two of the distinct items share a 64-bit hash (n² / 2⁶⁵, capped at 1)."""
        return min(1.0, float(self.items) ** 2 / 2.0**65)


class HashCounter:
    """Counts of 64-bit hashes: a buffer, folded into sorted unique keys and counts.

    >>> c = HashCounter(compact_every=2)
    >>> c.add(np.array([5, 3, 5], dtype=np.uint64)); c.add(np.array([3], dtype=np.uint64))
    >>> keys, counts = c.result()
    >>> keys.tolist(), counts.tolist()
    ([3, 5], [2, 2])
    """

    def __init__(self, compact_every: int = COMPACT_EVERY):
        self.compact_every = compact_every
        self.keys = np.empty(0, dtype=np.uint64)
        self.counts = np.empty(0, dtype=np.int64)
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self.added = 0

    def add(self, hashes: UInt64[np.ndarray, "n"]) -> None:
        self._buffer.append(hashes)
        self._buffered += len(hashes)
        self.added += len(hashes)
        if self._buffered >= self.compact_every:
            self._compact()

    def _compact(self) -> None:
        if not self._buffer:
            return
        keys = np.concatenate([self.keys, *self._buffer])
        counts = np.concatenate([self.counts, np.ones(self._buffered, dtype=np.int64)])
        self.keys, inverse = np.unique(keys, return_inverse=True)
        self.counts = np.zeros(len(self.keys), dtype=np.int64)
        np.add.at(self.counts, inverse, counts)
        self._buffer, self._buffered = [], 0

    def result(self) -> tuple[UInt64[np.ndarray, "distinct"], Integer[np.ndarray, "distinct"]]:
        """The distinct hashes, sorted, and how often each was added."""
        self._compact()
        return self.keys, self.counts


class DocumentCounter:
    """Exact-duplicate documents: copies and tokens per distinct key, previews on disk."""

    def __init__(self, workdir: Path):
        self._index: dict[int, int] = {}
        self.copies = array("q")
        self.tokens = array("q")
        self.first = array("q")  # ordinal of the first copy in the corpus
        self.n_documents = 0
        self._preview_path = workdir / "previews.bin"
        self._previews: Optional[BinaryIO] = open(self._preview_path, "wb")

    def add(self, doc: Document) -> tuple[int, bool]:
        """Count one document (its BOS included in its tokens); return (distinct index, new?)."""
        n_tokens = doc.n_tokens
        idx = self._index.get(doc.key)
        new = idx is None
        if idx is None:
            idx = len(self.copies)
            self._index[doc.key] = idx
            self.copies.append(1)
            self.tokens.append(n_tokens)
            self.first.append(self.n_documents)
            raw = doc.preview.encode("utf-8")[:PREVIEW_BYTES]
            assert self._previews is not None
            self._previews.write(raw.ljust(PREVIEW_BYTES, b"\0"))
        else:
            self.copies[idx] += 1
            self.tokens[idx] += n_tokens
        self.n_documents += 1
        return idx, new

    def finish(self) -> UnitCounts:
        """Close the preview file; the document unit's counts."""
        if self._previews is not None:
            self._previews.close()
            self._previews = None
        copies = np.frombuffer(self.copies, dtype=np.int64)
        tokens = np.frombuffer(self.tokens, dtype=np.int64)
        return UnitCounts("document", copies, tokens, int(tokens.sum()), describe=self.describe,
                          notes=("key: xxh3-64 of the text after NFC and whitespace collapsing (ids for .bin); "
                                 "tokens: a document's ids plus its BOS",))

    def preview(self, idx: int) -> str:
        with open(self._preview_path, "rb") as f:
            f.seek(idx * PREVIEW_BYTES)
            return f.read(PREVIEW_BYTES).rstrip(b"\0").decode("utf-8", errors="ignore")

    def describe(self, idx: int) -> str:
        """``doc #17 ×10: “first words…”`` (ordinal of its first copy, its copies)."""
        return f"doc #{self.first[idx]} ×{self.copies[idx]}: “{self.preview(idx)}”"


@dataclass
class StreamCutter:
    """Cuts the flat token stream into the trainer's sequences and keeps what spans need.

    The trainer (:func:`repeatlens.data.streams.load_corpus`) cuts the flat stream
    ``[BOS, doc0..., BOS, doc1..., ...]`` into rows of ``seq_len - 1`` consecutive ids, each
    trained on with one more BOS in front (``seq_len`` tokens); the tail that does not fill a
    row is never trained on. Each row's hash goes to a :class:`HashCounter`. The stream
    itself is also written to ``spill`` while it is at most ``spill_limit`` tokens long
    (for the suffix array of repeated spans), else the spill is dropped.
    """

    seq_len: int
    bos: int
    dtype: np.dtype
    spill: Optional[Path] = None
    spill_limit: int = 0
    sequences: HashCounter = field(default_factory=HashCounter)
    stream_tokens: int = 0
    spill_dropped: bool = False
    _pieces: list = field(default_factory=list)
    _pending: int = 0
    _carry: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint32))
    _spill_file: Optional[BinaryIO] = None

    def __post_init__(self) -> None:
        self._carry = np.empty(0, dtype=self.dtype)
        if self.spill is not None:
            self._spill_file = open(self.spill, "wb")

    def feed(self, doc: Document) -> None:
        """Append one document to the stream: its BOS (if it has one), then its ids."""
        if doc.bos:
            self._pieces.append(np.array([self.bos], dtype=self.dtype))
        self._pieces.append(doc.ids)
        self._pending += doc.n_tokens
        if self._pending >= _FEED_TOKENS:
            self._flush()

    def _flush(self) -> None:
        if not self._pieces:
            return
        flat = np.concatenate(self._pieces).astype(self.dtype, copy=False)
        self._pieces, self._pending = [], 0
        self.stream_tokens += len(flat)
        self._write_spill(flat)
        body = self.seq_len - 1
        rows = np.concatenate([self._carry, flat])
        n = len(rows) // body
        if n:
            import xxhash

            block = np.ascontiguousarray(rows[: n * body]).reshape(n, body)
            digest = xxhash.xxh3_64_intdigest
            self.sequences.add(np.fromiter((digest(r.tobytes()) for r in block), dtype=np.uint64, count=n))
        self._carry = rows[n * body :].copy()

    def _write_spill(self, flat: np.ndarray) -> None:
        if self._spill_file is None:
            return
        if self.stream_tokens > self.spill_limit:
            self._spill_file.close()
            self._spill_file = None
            assert self.spill is not None
            self.spill.unlink(missing_ok=True)
            self.spill_dropped = True
            return
        self._spill_file.write(np.ascontiguousarray(flat).tobytes())

    def finish(self) -> tuple[UnitCounts, Optional[np.ndarray]]:
        """The sequence unit's counts, and the whole stream when it was kept for spans."""
        self._flush()
        keys, counts = self.sequences.result()
        tokens = counts * self.seq_len
        n_rows = self.sequences.added
        dropped = len(self._carry)
        notes = (f"{n_rows:,} sequences of {self.seq_len} tokens (BOS + {self.seq_len - 1} stream ids); "
                 f"the last {dropped:,} ids of the stream fill no sequence and are left out",)
        seqs = UnitCounts("sequence", counts, tokens, int(tokens.sum()), notes=notes)
        stream = None
        if self._spill_file is not None:
            self._spill_file.close()
            self._spill_file = None
            assert self.spill is not None
            stream = np.fromfile(self.spill, dtype=self.dtype)
        return seqs, stream
