"""The study's tables (repeatlens.study.tables): per run, per point, chance levels, circuits."""

from __future__ import annotations

import numpy as np
import pytest

from repeatlens.study import evaluate_targets, final_table, point_table, standard_chance_levels
from tests.study.sweeps import ABIL, PEAKED, sweep_tables


def test_tables_and_a_missing_control_is_an_error() -> None:
    scores, _ = sweep_tables(PEAKED, ABIL)
    final = final_table(scores)
    assert len(final) == 18 and set(final.step) == {100}
    pts = point_table(final)
    row = pts[(pts.repeat_count == 100)].iloc[0]
    assert row.seeds == 3 and row.test_loss == pytest.approx(3.0) and row.test_loss_spread == pytest.approx(0.02)
    assert set(pts.control) == {"full", "data_matched", "none"}
    with pytest.raises(ValueError, match="control"):
        evaluate_targets(scores[scores.repeated_fraction > 0])

def test_chance_levels_match_uniform_attention_by_hand() -> None:
    """Induction on [BOS, r, r] with L = len(r): second-copy query i (L+1..2L) gives 1/(i+1) to its target."""
    from repeatlens.scores import get_probes

    levels = standard_chance_levels(64, 64)
    L = get_probes(64, 64).copy_len
    expected = np.mean([1 / (i + 1) for i in range(L + 1, 2 * L + 1)])
    assert levels["induction"] == pytest.approx(expected, rel=1e-5)
    assert levels["duplicate_token"] == pytest.approx(expected, rel=1e-5)

def test_circuit_table_names_each_runs_circuit_and_when_it_formed() -> None:
    from repeatlens.study import circuit_table, circuits_markdown
    from tests.results.test_reduce import _rows, _table

    rows = []
    for step, (score, partner) in ((5, (0.1, 0.1)), (10, (0.8, 0.7)), (20, (0.9, 0.8))):
        for run, d in (("shifted", 6.0), ("canonical", 0.0)):
            rows += _rows("shifted_induction", {(1, 0): score}, probe="synthetic", L=30, step=step, run=run)
            rows += _rows("shifted_induction_shift", {(1, 0): d}, probe="synthetic", L=30, step=step, run=run)
            rows += _rows("offset_profile", {}, probe="synthetic", L=30, step=step, run=run, offsets={(0, 1): {int(d) + 1: partner}})
        rows += _rows("shifted_induction", {(1, 0): 0.05}, probe="synthetic", L=30, step=step, run="none")
        rows += _rows("shifted_induction_shift", {(1, 0): 3.0}, probe="synthetic", L=30, step=step, run="none")
        rows += _rows("offset_profile", {}, probe="synthetic", L=30, step=step, run="none", offsets={(0, 1): {4: 0.02}})
    table = circuit_table(_table(rows)).set_index("run_id")
    assert table.loc["shifted", ["kind", "d", "head", "partner", "formed_at"]].tolist() == ["shifted", 6, "L1.H0", "L0.H1", 10]
    assert table.loc["canonical", ["kind", "d", "formed_at"]].tolist() == ["canonical", 0, 10]
    assert table.loc["none", "kind"] == "none" and np.isnan(table.loc["none", "formed_at"])
    text = circuits_markdown(table.reset_index())
    assert "| shifted | induction shifted by 6 | L1.H0 | L0.H1 | 0.90 | 10 |" in text and "| none | none |" in text
