"""The damage map: bucket against region, and the summary's numbers."""

from __future__ import annotations

import pandas as pd

from repeatlens.corpus_audit.damage import classify, damage_table, summary_lines
from repeatlens.corpus_audit.region import Region

REGION = Region(1e7, 40.0, 900.0, None, "published", "test edges", ("a caveat",))


def table() -> pd.DataFrame:
    return pd.DataFrame({
        "unit": ["document"] * 5 + ["sequence"],
        "repeat_count": [1, 20, 50, 500, 1000, 1], "repeat_count_max": [1, 49, 99, 999, 1999, 1],
        "items": [900, 10, 4, 2, 1, 100], "tokens": [8000, 700, 400, 600, 300, 1000],
        "token_fraction": [0.8, 0.07, 0.04, 0.06, 0.03, 1.0]})


def test_buckets_are_inside_partly_or_outside_by_their_edges() -> None:
    damaged = damage_table(table(), REGION)
    assert damaged.region.tolist() == ["below", "partly inside", "inside", "partly inside", "above", "below"]
    assert classify(40, 900, REGION) == "inside" and classify(39, 39, REGION) == "below"
    half = Region(1e7, 40.0, None, None, "fit", "")
    assert [classify(lo, hi, half) for lo, hi in [(1, 39), (20, 49), (50, 99)]] == ["below", "unknown", "unknown"]


def test_summary_states_the_fractions_in_and_around_the_region() -> None:
    lines = summary_lines(damage_table(table(), REGION), epochs=1, region=REGION)
    assert lines[0] == ("document: 20% of tokens sit in documents with more than one copy; 4% of tokens (4 documents) sit in "
                        "documents copied 50–99 times, inside the predicted region E = 40–900 for N = 10M; 13% in buckets "
                        "partly inside (E = 20–49, 500–999).")
    assert lines[1] == ("sequence: 0% of tokens sit in training sequences with more than one copy; none lies wholly inside "
                        "the predicted region E = 40–900 for N = 10M.")
    assert lines[2:] == ["region: test edges.", "note: a caveat."]


def test_summary_without_a_model_size_names_the_most_repeated_bucket() -> None:
    lines = summary_lines(table(), epochs=2, region=None)
    assert lines[0] == ("document: 20% of tokens sit in documents with more than one copy (E = copies × 2 epochs); "
                        "the most repeated bucket, E = 1,000–1,999, holds 3%.")
