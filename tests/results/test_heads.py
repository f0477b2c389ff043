"""top_heads: the best heads of a metric per run, at one checkpoint, on one probe."""

from __future__ import annotations

import pandas as pd
import pytest

import repeatlens
from repeatlens.results.heads import top_heads
from repeatlens.results.reduce import TableError
from tests.plots.plot_factories import INDUCTION_HEAD, make_scores


@pytest.fixture(scope="module")
def sweep() -> pd.DataFrame:
    return make_scores(fractions=(0.0, 0.1), repeat_counts=(10, 100), models=(("tiny", 100_000),), seeds=(0,),
                       metrics=("induction", "test_loss", "copying_ov"), steps=(0, 100, 400))


def _manual(scores: pd.DataFrame, run: str, metric: str, step: int, k: int, largest: bool = True) -> list[tuple[int, int, float]]:
    rows = scores[(scores.run_id == run) & (scores.metric == metric) & (scores.step == step)]
    rows = rows.sort_values(["value", "layer", "head"], ascending=[not largest, True, True]).head(k)
    return [(int(a), int(b), float(v)) for a, b, v in zip(rows.layer, rows["head"], rows.value)]


def test_top_heads_per_run_at_the_last_checkpoint(sweep) -> None:
    best = repeatlens.top_heads(sweep, "induction", k=3)
    assert "top_heads" in repeatlens.__all__ and repeatlens.top_heads is top_heads
    assert list(best.columns) == ["run_id", "step", "tokens_seen", "rank", "layer", "head", "head_idx", "name", "value", "probe"]
    assert sorted(best.run_id.unique()) == sorted(sweep.run_id.unique()) and (best.step == 400).all()
    for run, g in best.groupby("run_id"):
        assert g["rank"].tolist() == [1, 2, 3]
        assert list(zip(g.layer.astype(int), g["head"].astype(int), g.value)) == _manual(sweep, run, "induction", 400, 3)
    top = best[best["rank"] == 1]
    assert set(zip(top.layer, top["head"])) == {INDUCTION_HEAD}  # the factory's induction head wins in every run
    assert (best.head_idx == best["head"]).all() and callable(best.head)  # best.head is DataFrame.head
    assert best.name.iloc[0] == f"L{INDUCTION_HEAD[0]}.H{INDUCTION_HEAD[1]}"


def test_step_run_order_and_k(sweep) -> None:
    run = "tiny-f0.1-E100-s0"
    first = top_heads(sweep, "induction", k=2, step="first", run_id=run)
    assert first.run_id.unique().tolist() == [run] and (first.step == 0).all()
    at = top_heads(sweep, "induction", k=2, step=100, run_id=run, largest=False)
    assert list(zip(at.layer.astype(int), at["head"].astype(int), at.value)) == _manual(sweep, run, "induction", 100, 2, largest=False)
    assert len(top_heads(sweep, "copying_ov", k=100, run_id=run)) == len(top_heads(sweep, "copying_ov", k=None, run_id=run)) == 8


def test_score_model_rows_without_run_columns() -> None:
    rows = pd.DataFrame({"metric": "induction", "layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "offset": pd.NA,
                         "probe": "synthetic", "probe_len": 30, "probe_batch": 16, "probe_seed": 0, "value": [0.1, 0.2, 0.9, 0.4]})
    best = top_heads(rows, "induction", k=1)
    assert best[["name", "value", "probe"]].values.tolist() == [["L1.H0", 0.9, "synthetic:L30:B16:s0"]]
    assert best.step.isna().all() and best.run_id.tolist() == [""]


def test_bad_requests_are_one_line(sweep) -> None:
    with pytest.raises(TableError, match="no 'inducton' rows; metrics present"):
        top_heads(sweep, "inducton")
    with pytest.raises(TableError, match="model-level"):
        top_heads(sweep, "test_loss")
    with pytest.raises(TableError, match="run 'nope'"):
        top_heads(sweep, "induction", run_id="nope")
    with pytest.raises(TableError, match="at step 7; its steps"):
        top_heads(sweep, "induction", step=7)
    with pytest.raises(TableError, match="k = 0"):
        top_heads(sweep, "induction", k=0)
