"""Exact counters: hashes folded in chunks, documents by key, the trainer's sequence cut."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from repeatlens.corpus_audit.count import DocumentCounter, HashCounter, StreamCutter
from repeatlens.corpus_audit.stream import Document


def test_hash_counter_folds_chunks_into_the_same_counts_as_counting_at_once() -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 50, 10_000).astype(np.uint64)
    counter = HashCounter(compact_every=777)
    for part in np.array_split(hashes, 37):
        counter.add(part)
    keys, counts = counter.result()
    expected = Counter(hashes.tolist())
    assert dict(zip(keys.tolist(), counts.tolist())) == expected
    assert counter.added == len(hashes) and list(keys) == sorted(keys)


def test_documents_are_counted_by_key_with_tokens_summed_over_copies(tmp_path: Path) -> None:
    counter = DocumentCounter(tmp_path)
    docs = [Document(np.arange(3), 11, "a b"), Document(np.arange(5), 22, "c d"), Document(np.arange(3), 11, "a b"),
            Document(np.arange(4), 11, "a  b"), Document(np.arange(2), 33, "é " * 200)]
    assert [counter.add(d) for d in docs] == [(0, True), (1, True), (0, False), (0, False), (2, True)]
    units = counter.finish()
    assert units.copies.tolist() == [3, 1, 1]
    assert units.tokens.tolist() == [4 + 4 + 5, 6, 3]  # ids + one BOS per copy
    assert units.total_tokens == sum(len(d.ids) + 1 for d in docs)
    assert units.describe(0) == "doc #0 ×3: “a b”"
    assert units.describe(1) == "doc #1 ×1: “c d”"
    assert counter.preview(2).startswith("é é") and len(counter.preview(2).encode()) <= 192  # cut at a character


def test_sequences_are_the_rows_the_trainer_cuts(tmp_path: Path) -> None:
    """Rows of seq_len-1 consecutive stream ids (the stream being BOS + ids per document);
    the repeated rows of a periodic stream are counted, the tail is left out."""
    rng = np.random.default_rng(1)
    docs = [rng.integers(1, 9, int(rng.integers(0, 30))).astype(np.uint16) for _ in range(400)]
    docs += [np.array([5, 6, 7], dtype=np.uint16)] * 300  # a repeated pattern: BOS 5 6 7, period 4
    seq_len, bos = 9, 0
    cutter = StreamCutter(seq_len, bos, np.dtype(np.uint16), spill=tmp_path / "s.bin", spill_limit=10**6)
    for ids in docs:
        cutter.feed(Document(ids, 0, ""))
    seqs, stream = cutter.finish()
    flat = np.concatenate([np.concatenate([[bos], d]) for d in docs]).astype(np.uint16)
    assert stream is not None and np.array_equal(stream, flat)
    body = seq_len - 1
    rows = [tuple(flat[i : i + body]) for i in range(0, len(flat) - body + 1, body)]
    expected = sorted(Counter(rows).values())
    assert sorted(seqs.copies.tolist()) == expected
    assert max(expected) > 50  # the periodic part gives many identical rows
    assert seqs.total_tokens == len(rows) * seq_len
    assert cutter.stream_tokens == len(flat)


def test_the_span_spill_is_dropped_past_its_limit(tmp_path: Path) -> None:
    cutter = StreamCutter(8, 0, np.dtype(np.uint16), spill=tmp_path / "s.bin", spill_limit=100)
    for _ in range(50):
        cutter.feed(Document(np.arange(1, 5, dtype=np.uint16), 0, ""))
    seqs, stream = cutter.finish()
    assert stream is None and cutter.spill_dropped and not (tmp_path / "s.bin").exists()
    # a stream of period 5 (BOS 1 2 3 4) cut into rows of 7: 5 phases, each row seen 250 // 35 times
    assert seqs.copies.tolist() == [250 // 35] * 5 and seqs.total_tokens == 35 * 8


def test_a_bin_stretch_before_the_first_bos_gets_no_bos(tmp_path: Path) -> None:
    cutter = StreamCutter(4, 0, np.dtype(np.uint16), spill=tmp_path / "s.bin", spill_limit=100)
    cutter.feed(Document(np.array([3, 4], dtype=np.uint16), 0, "", bos=False))
    cutter.feed(Document(np.array([5], dtype=np.uint16), 0, ""))
    _, stream = cutter.finish()
    assert stream is not None and stream.tolist() == [3, 4, 0, 5]
