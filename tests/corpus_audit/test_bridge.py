"""From an audit to a sweep that repeatlens.sweep.load_sweep accepts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from repeatlens.config import DataConfig
from repeatlens.corpus_audit.bridge import sweep_document, sweep_grid
from repeatlens.errors import ConfigError
from repeatlens.sweep import load_sweep


def table() -> pd.DataFrame:
    return pd.DataFrame({"unit": ["document"] * 4, "repeat_count": [1, 10, 100, 1000],
                         "repeat_count_max": [1, 19, 199, 1999], "repeat_count_mean": [1.0, 10.0, 100.0, 1000.0], "items": [50, 3, 1, 1],
                         "tokens": [6000, 1200, 800, 2000], "token_fraction": [0.6, 0.12, 0.08, 0.2]})


def test_the_sweep_spans_the_buckets_and_loads(tmp_path: Path) -> None:
    data = DataConfig(source=str(tmp_path / "c.jsonl"), seq_len=32)
    text, record = sweep_document(table(), "document", data, 320_000, {"preset": "attn2-tiny"})
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    spec = load_sweep(path)
    assert spec.grid["mixture.repeated_fraction"] == [0.0, 0.08, 0.12, 0.2]
    assert spec.grid["mixture.repeat_count"] == [10, 100, 1000]
    assert len(spec.points) == 1 + 3 * 3  # the control once, every (f, E) of the buckets
    assert spec.base["data"]["source"] == str(tmp_path / "c.jsonl") and spec.base["mixture"]["total_tokens"] == 320_000
    assert record["left_out"] == []


def test_an_f_too_small_for_the_largest_e_is_left_out_and_named() -> None:
    # D = 32,000 tokens = 1000 sequences; f = 0.08 at E = 1000 is 0.08 of a sequence
    fs, es, left_out = sweep_grid(table(), "document", 32_000, 32)
    assert es == [10, 100] and fs == [0.08, 0.12, 0.2]
    assert left_out == ["E = 1000: no f of the corpus holds one sequence of 32 tokens at D = 32,000"]
    with pytest.raises(ConfigError, match="no repeated sequence buckets"):
        sweep_grid(table().assign(unit="sequence", repeat_count=1, repeat_count_max=1, repeat_count_mean=1.0), "sequence", 32_000, 32)


def test_each_bucket_enters_the_grid_at_its_tokens_mean_repeat_count_not_its_lower_edge() -> None:
    """A [20, 49] bucket whose documents all have 31 copies is repetition 31, not 20."""
    t = table().assign(repeat_count_mean=[1.0, 31.0, 140.4, 1000.0])
    assert sweep_grid(t, "document", 320_000, 32)[1] == [31, 140, 1000]
