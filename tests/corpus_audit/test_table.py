"""The tidy (f, E) table: 1-2-5 buckets of copies, E = copies x epochs, f per unit."""

from __future__ import annotations

import numpy as np
import pytest

from repeatlens.corpus_audit.count import UnitCounts
from repeatlens.corpus_audit.table import COLUMNS, audit_table, bucket_examples, bucket_of, log_edges
from repeatlens.errors import ConfigError


def _unit(name: str, copies: list[int], tokens_each: list[int]) -> UnitCounts:
    c, t = np.array(copies), np.array(copies) * np.array(tokens_each)
    return UnitCounts(name, c, t, int(t.sum()), describe=lambda i: f"item {i}")


def test_log_buckets_are_1_2_5_and_cover_every_count() -> None:
    assert log_edges(1).tolist() == [1, 2]
    assert log_edges(1000).tolist() == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    copies = np.arange(1, 3000)
    idx, lo, hi = bucket_of(copies, "log")
    assert np.all(lo[idx] <= copies) and np.all(copies <= hi[idx])
    assert np.all(lo[1:] == hi[:-1] + 1)  # contiguous, no gaps


def test_rows_hold_items_tokens_and_fractions_by_hand() -> None:
    units = [_unit("document", [1, 1, 1, 10, 12, 100], [50, 30, 20, 10, 10, 5]), _unit("sequence", [1, 3], [8, 8])]
    table = audit_table(units, epochs=1, bins="log")
    assert list(table.columns) == list(COLUMNS)
    doc = table[table.unit == "document"]
    assert doc.repeat_count.tolist() == [1, 10, 100] and doc.repeat_count_max.tolist() == [1, 19, 199]
    assert doc["items"].tolist() == [3, 2, 1]
    # the E a token of the bucket sees: 10 copies x 10 tokens and 12 x 10, weighted by their 100 and 120 tokens
    assert doc.repeat_count_mean.tolist() == pytest.approx([1, (10 * 100 + 12 * 120) / 220, 100])
    assert doc.tokens.tolist() == [100, 100 + 120, 500]
    assert doc.token_fraction.tolist() == pytest.approx([100 / 820, 220 / 820, 500 / 820])
    for _, rows in table.groupby("unit"):
        assert rows.token_fraction.sum() == pytest.approx(1.0)
    exact = audit_table(units, epochs=1, bins="exact")
    assert exact[exact.unit == "document"].repeat_count.tolist() == [1, 10, 12, 100]
    assert (exact.repeat_count == exact.repeat_count_max).all() and (exact.repeat_count == exact.repeat_count_mean).all()


def test_epochs_multiply_the_repeat_count() -> None:
    units = [_unit("document", [1, 10], [5, 5])]
    assert audit_table(units, epochs=3, bins="log").repeat_count_max.tolist() == [3, 57]
    half = audit_table(units, epochs=0.5, bins="log")
    assert half.repeat_count.tolist() == [0.5, 5.0] and half.tokens.tolist() == [5, 50]
    assert half.repeat_count_mean.tolist() == [0.5, 5.0]
    with pytest.raises(ConfigError, match="--epochs"):
        audit_table(units, epochs=0, bins="log")
    with pytest.raises(ConfigError, match="--bins 'decade'"):
        audit_table(units, epochs=1, bins="decade")


def test_examples_are_bounded_per_bucket_largest_first() -> None:
    unit = _unit("document", [1] * 10 + [10, 11, 12, 13], [1] * 10 + [5, 9, 7, 1])
    ex = bucket_examples(unit, "log", 2)
    assert ex == {1: ["item 0", "item 1"], 10: ["item 11", "item 12"]}
