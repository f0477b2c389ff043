"""The corpus in the paper's (f, E) coordinates: one tidy table of repeat-count buckets.

Each unit's distinct items (:class:`~repeatlens.corpus_audit.count.UnitCounts`) are put in
buckets of their copy count c: with ``bins="log"`` the 1-2-5 buckets [1], [2, 4], [5, 9],
[10, 19], [20, 49], [50, 99], [100, 199], …; with ``bins="exact"`` one bucket per distinct
c. A bucket's repeat count is the number of times the trainer sees each of its tokens over
the planned ``epochs``: E = c × epochs (Hernandez et al. 2022's E), from
``repeat_count`` = c_low × epochs to ``repeat_count_max`` = c_high × epochs, and
``repeat_count_mean`` is the E a token of the bucket sees on average (its items' c × epochs
weighted by their tokens: a bucket [20, 49] whose documents all have 31 copies says 31). Its
``token_fraction`` is the share f of the unit's tokens (all copies) that sit in it, so
each unit's fractions sum to 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from jaxtyping import Integer

from repeatlens.corpus_audit.count import UnitCounts
from repeatlens.errors import ConfigError

UNITS = ("document", "near_document", "sequence", "span")
COLUMNS = ("unit", "repeat_count", "repeat_count_max", "repeat_count_mean", "items", "tokens", "token_fraction")
BINS = ("log", "exact")
UNIT_NOUNS = {
    "document": ("documents", "copied"),
    "near_document": ("near-duplicate clusters", "copied"),
    "sequence": ("training sequences", "repeated"),
    "span": ("repeated stretches", "repeated"),
}
"""How a summary names a unit's items and what happens to them."""


def items_label(unit: str, items: int) -> str:
    """``1 document``, ``12 near-duplicate clusters``.

    >>> items_label("span", 1), items_label("document", 1200)
    ('1 repeated stretch', '1,200 documents')
    """
    noun = UNIT_NOUNS[unit][0]
    if items == 1:
        noun = noun[:-2] if noun.endswith("ches") else noun[:-1]
    return f"{items:,} {noun}"


def log_edges(max_copies: int) -> Integer[np.ndarray, "buckets"]:
    """Lower edges of the 1-2-5 buckets up to one past ``max_copies``.

    >>> log_edges(120).tolist()
    [1, 2, 5, 10, 20, 50, 100, 200]
    """
    edges, decade = [], 1
    while True:
        for step in (1, 2, 5):
            edges.append(step * decade)
            if step * decade > max_copies:
                return np.array(edges, dtype=np.int64)
        decade *= 10


def bucket_of(copies: Integer[np.ndarray, "items"], bins: str) -> tuple[Integer[np.ndarray, "items"], Integer[np.ndarray, "buckets"], Integer[np.ndarray, "buckets"]]:
    """Bucket index of each item, and each bucket's lowest and highest copy count.

    >>> idx, lo, hi = bucket_of(np.array([1, 1, 10, 12, 100]), "log")
    >>> idx.tolist(), lo.tolist(), hi.tolist()
    ([0, 0, 3, 3, 6], [1, 2, 5, 10, 20, 50, 100], [1, 4, 9, 19, 49, 99, 199])
    """
    if bins not in BINS:
        raise ConfigError(f"--bins {bins!r}: expected one of {', '.join(BINS)}")
    if bins == "exact":
        lo, idx = np.unique(copies, return_inverse=True)
        return idx.reshape(-1), lo.astype(np.int64), lo.astype(np.int64)
    edges = log_edges(int(copies.max()) if len(copies) else 1)
    idx = np.searchsorted(edges, copies, side="right") - 1
    return idx, edges[:-1], edges[1:] - 1


def _scaled(copies: np.ndarray, epochs: float) -> list:
    """c × epochs, as ints when the product is whole."""
    values = copies * epochs
    if float(epochs).is_integer():
        return [int(v) for v in values]
    return [float(v) for v in values]


def unit_table(counts: UnitCounts, epochs: float, bins: str) -> pd.DataFrame:
    """The rows of one unit: one per non-empty bucket, lowest repeat count first."""
    idx, lo, hi = bucket_of(counts.copies, bins)
    items = np.bincount(idx, minlength=len(lo))
    weights = counts.tokens.astype(np.float64)
    tokens = np.bincount(idx, weights=weights, minlength=len(lo)).astype(np.int64)
    copy_tokens = np.bincount(idx, weights=weights * counts.copies, minlength=len(lo))
    keep = items > 0
    total = counts.total_tokens
    mean = copy_tokens[keep] / np.maximum(tokens[keep], 1)
    mean = np.where(tokens[keep] > 0, mean, lo[keep])  # an empty item (0 tokens) weighs nothing: its bucket's lower edge
    return pd.DataFrame({
        "unit": counts.unit,
        "repeat_count": _scaled(lo[keep], epochs),
        "repeat_count_max": _scaled(hi[keep], epochs),
        "repeat_count_mean": mean * epochs,
        "items": items[keep].astype(np.int64),
        "tokens": tokens[keep],
        "token_fraction": tokens[keep] / total if total else np.zeros(int(keep.sum())),
    })


def audit_table(units: Iterable[UnitCounts], epochs: float, bins: str) -> pd.DataFrame:
    """The tidy table of every unit (columns :data:`COLUMNS`), units in :data:`UNITS` order."""
    if not (epochs > 0 and math.isfinite(epochs)):
        raise ConfigError(f"--epochs {epochs}: expected a positive number of passes over the corpus")
    frames = [unit_table(u, epochs, bins) for u in sorted(units, key=lambda u: UNITS.index(u.unit))]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    return table[list(COLUMNS)]


def bucket_examples(counts: UnitCounts, bins: str, per_bucket: int) -> dict[int, list[str]]:
    """Up to ``per_bucket`` named items per bucket (its lowest copy count -> descriptions),
    the items with the most tokens first (ties: the first seen)."""
    if counts.describe is None or per_bucket <= 0 or not counts.items:
        return {}
    idx, lo, _ = bucket_of(counts.copies, bins)
    order = np.lexsort((np.arange(len(idx)), -counts.tokens, idx))
    out: dict[int, list[str]] = {}
    taken = np.zeros(len(lo), dtype=np.int64)
    for i in order.tolist():
        b = int(idx[i])
        if taken[b] < per_bucket:
            out.setdefault(int(lo[b]), []).append(counts.describe(i))
            taken[b] += 1
    return out
