"""Repeated spans: the suffix-array counts against brute force over every K-gram."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from repeatlens.corpus_audit.spans import kgram_counts, repeat_per_token, span_counts


def brute_force_repeats(tokens: list[int], k: int) -> list[int]:
    """E(p) by definition: the largest count, over the K-grams covering p, of that K-gram."""
    grams = Counter(tuple(tokens[s : s + k]) for s in range(len(tokens) - k + 1))
    c = [grams[tuple(tokens[s : s + k])] if s <= len(tokens) - k else 1 for s in range(len(tokens))]
    return [max(c[max(0, p - k + 1) : p + 1]) for p in range(len(tokens))]


def brute_force_stretches(tokens: list[int], e: list[int]) -> Counter:
    """(E, length) summed per distinct (content, E) of maximal runs of equal E."""
    out: dict = {}
    start = 0
    for p in range(1, len(tokens) + 1):
        if p == len(tokens) or e[p] != e[start]:
            key = (tuple(tokens[start:p]), e[start])
            out[key] = out.get(key, 0) + p - start
            start = p
    return Counter((key[1], length) for key, length in out.items())


@pytest.mark.parametrize("k", [1, 2, 5, 8, 13])
def test_kgram_and_token_repeat_counts_match_brute_force(k: int) -> None:
    rng = np.random.default_rng(k)
    base = rng.integers(0, 6, 400)
    planted = rng.integers(0, 6, 40)  # a 40-token span planted 4 times into otherwise random ids
    tokens = np.concatenate([base[:100], planted, base[100:200], planted, base[200:300], planted, planted, base[300:]])
    tokens = tokens.astype(np.uint16)
    c = kgram_counts(tokens, k)
    grams = Counter(tuple(tokens[s : s + k]) for s in range(len(tokens) - k + 1))
    assert c.tolist() == [grams[tuple(tokens[s : s + k])] if s <= len(tokens) - k else 1 for s in range(len(tokens))]
    assert repeat_per_token(c, k).tolist() == brute_force_repeats(tokens.tolist(), k)


def test_large_ids_and_uint32_streams() -> None:
    rng = np.random.default_rng(3)
    tokens = np.concatenate([rng.integers(0, 70_000, 300), np.arange(60_000, 60_050), rng.integers(0, 70_000, 300),
                             np.arange(60_000, 60_050)]).astype(np.uint32)
    e = repeat_per_token(kgram_counts(tokens, 20), 20)
    assert e.tolist() == brute_force_repeats(tokens.tolist(), 20)
    assert e[300:350].tolist() == [2] * 50


def test_span_items_are_distinct_stretches_of_one_repeat_count() -> None:
    rng = np.random.default_rng(5)
    passage = rng.integers(1, 50, 60)
    parts = []
    for _ in range(5):
        parts += [rng.integers(1, 50, 30), passage]
    tokens = np.concatenate(parts + [rng.integers(1, 50, 30)]).astype(np.uint16)
    k = 10
    unit = span_counts(tokens, k, decode=lambda ids: " ".join(map(str, ids)))
    e = brute_force_repeats(tokens.tolist(), k)
    expected = brute_force_stretches(tokens.tolist(), e)
    assert Counter(zip(unit.copies.tolist(), unit.tokens.tolist())) == expected
    assert unit.total_tokens == len(tokens)
    # the passage: one item, repeated 5 times, 5 x 60 tokens (random flanks rarely extend it)
    five = [(c, t) for c, t in zip(unit.copies.tolist(), unit.tokens.tolist()) if c == 5]
    assert len(five) == 1 and 5 * 60 <= five[0][1] <= 5 * 62
    i = unit.copies.tolist().index(5)
    assert unit.describe is not None
    assert any(f"({n} long)" in unit.describe(i) for n in (60, 61, 62))
