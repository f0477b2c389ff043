"""Repeated spans of at least K tokens, through a suffix array (``pydivsufsort``).

Over the flat token stream t (every document behind its BOS, as the trainer reads it):

* c(s), the count of the K-gram starting at s: the number of suffixes that share its first
  K ids. In the suffix array (libdivsufsort) those suffixes are adjacent, each pair joined
  by a longest common prefix (Kasai's LCP array) of at least K, so c is the size of the
  run of LCP ≥ K around s's rank (Manber & Myers 1993; Lee et al. 2022 use the same array
  to find repeated substrings of a training set). c(s) = 1 for the last K−1 starts.
* E(p), the repeat count of token p: the largest c(s) over the K-grams that cover it
  (s ≤ p < s + K). E(p) ≥ 2 exactly when p lies inside a span of ≥ K tokens that occurs
  at least twice.
* an item is a *stretch*: a maximal run of consecutive tokens sharing one E; stretches with
  the same ids and the same E are one distinct item, with their positions summed as its
  tokens.

Memory grows with the stream (about 30 bytes per token for uint16 ids: the array, the
suffix array libdivsufsort builds over its bytes, the LCP array and the counts), so spans
are counted only while the stream holds at most ``span_max_tokens`` tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from jaxtyping import Integer

from repeatlens.corpus_audit.count import UnitCounts
from repeatlens.errors import optional_import

BYTES_PER_TOKEN = 30
"""About the peak memory per stream token of :func:`span_counts` (uint16 ids; measured in
analyses/corpus_audit/README.md)."""


def _require_pydivsufsort():  # noqa: ANN202 - module object
    return optional_import("pydivsufsort", "repeated spans", "audit", hint=" (or pass --no-spans)")


def kgram_counts(tokens: Integer[np.ndarray, "n"], k: int) -> Integer[np.ndarray, "n"]:
    """c(s): how many times the K-gram starting at each position s occurs in ``tokens``.

    >>> kgram_counts(np.array([1, 2, 3, 1, 2, 3, 1, 2], dtype=np.uint16), 3).tolist()
    [2, 2, 2, 2, 2, 2, 1, 1]
    """
    sufsort = _require_pydivsufsort()
    n = len(tokens)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # int32 throughout while positions fit (libdivsufsort's own suffix array is int32 up to 2^31)
    index = np.int32 if n < 2**31 - 1 else np.int64
    sa = sufsort.divsufsort(np.ascontiguousarray(tokens))
    lcp = sufsort.kasai(np.ascontiguousarray(tokens), sa)  # lcp[i] = LCP(suffix sa[i], suffix sa[i+1])
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = lcp[:-1] < k
    del lcp
    group = np.cumsum(new_group, dtype=index)
    del new_group
    group -= 1
    sizes = np.bincount(group).astype(index)
    counts = np.empty(n, dtype=index)
    counts[sa] = sizes[group]
    return counts


def repeat_per_token(starts: Integer[np.ndarray, "n"], k: int) -> Integer[np.ndarray, "n"]:
    """E(p) = max c(s) over s ≤ p < s + k (the K-grams covering p), from c = ``starts``.

    >>> repeat_per_token(np.array([1, 3, 1, 1, 1, 1]), 2).tolist()
    [1, 3, 3, 1, 1, 1]
    """
    from scipy.ndimage import maximum_filter1d

    if len(starts) == 0:
        return starts.copy()
    # origin (k-1)//2 places the window of size k at [p-k+1, p]; positions before 0 read 0
    return maximum_filter1d(starts, size=k, origin=(k - 1) // 2, mode="constant", cval=0)


def span_counts(tokens: Integer[np.ndarray, "n"], k: int, decode: Callable[[np.ndarray], str]) -> UnitCounts:
    """The ``span`` unit: distinct stretches of one repeat count E(p) (see the module docstring)."""
    import xxhash

    e = repeat_per_token(kgram_counts(tokens, k), k)
    cuts = np.flatnonzero(np.diff(e) != 0) + 1
    starts = np.concatenate([[0], cuts]).astype(np.int64)
    ends = np.concatenate([cuts, [len(tokens)]]).astype(np.int64)
    digest = xxhash.xxh3_64_intdigest
    keys = np.fromiter((digest(tokens[a:b].tobytes()) for a, b in zip(starts.tolist(), ends.tolist())),
                       dtype=np.uint64, count=len(starts))
    repeat = e[starts]
    # one item per distinct (content, E): its stretches' lengths summed, its first start kept
    order = np.lexsort((starts, keys, repeat))
    pair_changes = np.ones(len(order), dtype=bool)
    pair_changes[1:] = (keys[order][1:] != keys[order][:-1]) | (repeat[order][1:] != repeat[order][:-1])
    item = np.cumsum(pair_changes) - 1
    first = order[pair_changes]
    lengths = np.bincount(item, weights=(ends - starts)[order]).astype(np.int64)
    copies = repeat[first].astype(np.int64)
    first_start, first_end = starts[first], ends[first]

    def describe(i: int) -> str:
        a, b = int(first_start[i]), int(first_end[i])
        text = decode(tokens[a : min(b, a + 24)]).replace("\n", " ⏎ ")
        return f"tokens {a:,}–{b - 1:,} ({b - a} long): “{text}{'…' if b - a > 24 else ''}”"

    note = (f"tokens inside spans of >= {k} tokens that occur more than once (suffix array, libdivsufsort); "
            "an item is a distinct stretch of tokens sharing one repeat count")
    return UnitCounts("span", copies, lengths, int(lengths.sum()), describe=describe, notes=(note,))
