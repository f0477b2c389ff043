"""results.store: the tables on disk (a first test of its own; more of issue 24 is left)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from repeatlens.results.schema import SCORE_COLUMNS
from repeatlens.results.store import load_scores, tidy_scores, write_parquet


def _two_probe_table(tmp_path: Path) -> Path:
    """One head's induction under two probes (and a test loss that reads none)."""
    rows = [
        dict(metric="induction", layer=0, head=0, probe="synthetic", probe_len=8, probe_batch=16, probe_seed=0, value=0.9),
        dict(metric="induction", layer=0, head=0, probe="uniform", probe_len=8, probe_batch=16, probe_seed=0, value=0.1),
        dict(metric="test_loss", layer=None, head=None, probe="", probe_len=None, probe_batch=None, probe_seed=None, value=3.0),
    ]
    df = pd.DataFrame([{"run_id": "r", "step": 10, "tokens_seen": 640, "offset": None, "score_version": 1, **r} for r in rows])
    path = tmp_path / "scores.parquet"
    write_parquet(path, tidy_scores(df[[c for c in SCORE_COLUMNS if c in df.columns]]))
    return path


def test_load_scores_without_a_probe_says_which_probes_it_holds(tmp_path: Path) -> None:
    """``probe=None`` returns every probe's rows; ``attrs["probes"]`` names them, so a caller
    can tell that one (run, step, metric, head) has a value per probe."""
    path = _two_probe_table(tmp_path)
    every = load_scores(path)
    assert every.attrs["probes"] == ["synthetic:L8:B16:s0", "uniform:L8:B16:s0"]
    assert sorted(every[every.metric == "induction"].value) == [0.1, 0.9]
    one = load_scores(path, probe="synthetic")
    assert one.attrs["probes"] == ["synthetic:L8:B16:s0"]
    assert one.set_index("metric").value.to_dict() == {"induction": 0.9, "test_loss": 3.0}


def test_load_scores_names_a_probe_the_table_lacks(tmp_path: Path) -> None:
    from repeatlens.errors import ConfigError

    with pytest.raises(ConfigError, match=r"probe 'text': not in this table; it holds synthetic:L8:B16:s0, uniform:L8:B16:s0"):
        load_scores(_two_probe_table(tmp_path), probe="text")
