"""T1-T4 (repeatlens.study.evaluate) on hand-built sweep tables with known verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from repeatlens.study import evaluate_targets, targets_markdown
from tests.study.sweeps import ABIL, CHANCE, DM, PEAKED, sweep_tables


def test_all_targets_hold_on_a_paper_like_sweep() -> None:
    from repeatlens.study import Verdict

    scores, metrics = sweep_tables(PEAKED, ABIL)
    t1, t2, t3, t4 = evaluate_targets(scores, metrics, chance=CHANCE)
    assert [t.name for t in (t1, t2, t3, t4)] == ["T1", "T2", "T3", "T4"]
    assert [t.verdict for t in (t1, t2, t3, t4)] == [Verdict.HELD] * 4
    # T1: the bump fitted to all 12 runs, centred between the grid points 10 and 1000, its amplitude above 0
    p = t1.numbers["peak"]
    assert 10 < p["e_star"] < 1000 and p["interior"] and p["amplitude_ci95"][0] > 0 and p["dof"] == 8
    assert t1.numbers["loss"] == "test_loss" and t1.numbers["runs"] == 12
    # T2 at the grid point nearest E* (100): relative rise in test loss 0.5/2.5 = 20%; induction drops (0.8-0.1)/0.8
    assert t2.numbers["repeat_count"] == 100 and t2.numbers["loss_rise"] == pytest.approx(0.2)
    assert t2.numbers["drops"]["induction"] == pytest.approx(0.875) and t2.numbers["basis"] == "relative drops"
    assert "cannot be applied: full-data controls at 1 model size; the laws need at least 4" in t2.detail
    # T3: E = 10 against the data-matched control, 2.70 - 2.69 within the seed spread 0.02; E = 1 is a consistency check
    assert t3.numbers["repeat_count"] == 10 and t3.numbers["minus_data_matched"] == pytest.approx(0.01)
    assert t3.numbers["spread_data_matched"] == pytest.approx(0.02) and t3.numbers["minus_full"] == pytest.approx(0.2)
    assert t3.numbers["e1_minus_control"] == pytest.approx(0.0) and "consistency check, not a finding" in t3.detail
    # T4: the controls flattened at step 40; the rise 40 -> 60 is 0.2 over se 0.02 each (z = 0.2 / sqrt(2 * 0.02^2) = 7.1)
    r = t4.numbers["runs"]["f0.1_E100_s0"]
    assert r["flat_step"] == 40 and r["rise_steps"] == [40, 60] and r["rise"] == pytest.approx(0.2)
    assert r["rise_z"] == pytest.approx(0.2 / np.sqrt(2 * 0.02**2)) and r["significant"]
    assert r["damage_step"] == 60 and r["zero_step"] == 60 and r["coincide"] and r["chance"] == pytest.approx(3 / 6)
    text = targets_markdown([t1, t2, t3, t4])
    assert [line.split(":")[0] for line in text.split("\n\n")] == ["T1 held", "T2 held", "T3 held", "T4 held"]

def test_t1_fails_when_the_maximum_is_at_an_end_or_within_noise() -> None:
    from repeatlens.study import Verdict

    monotone = {0: 2.5, 1: 2.5, 10: 2.6, 100: 2.7, 1000: 2.9}
    t1 = evaluate_targets(*sweep_tables(monotone, ABIL), chance=CHANCE)[0]
    assert t1.verdict == Verdict.DID_NOT_HOLD and not t1.numbers["peak"]["interior"]
    # an interior bump 0.02 high under seed noise of +-0.1: its amplitude's interval reaches 0
    flat = {0: 2.5, 1: 2.5, 10: 2.5, 100: 2.52, 1000: 2.5}
    t1 = evaluate_targets(*sweep_tables(flat, ABIL, noise=0.1), chance=CHANCE)[0]
    assert t1.held is not True
    assert t1.numbers["peak"]["amplitude_ci95"] is None or t1.numbers["peak"]["amplitude_ci95"][0] <= 0

def test_t2_fails_when_abilities_drop_less_than_the_loss_rises() -> None:
    mild = {0: 0.80, 1: 0.80, 10: 0.79, 100: 0.75, 1000: 0.8}  # 6% drop against a 20% loss rise
    t2 = evaluate_targets(*sweep_tables(PEAKED, mild), chance=CHANCE)[1]
    assert t2.held is False and t2.numbers["drops"]["induction"] == pytest.approx(0.0625)

def test_t2_in_the_papers_yardstick_across_four_sizes() -> None:
    """Four sizes whose controls follow L = 3 + (2e3/N)^0.3 (test) and 1 + (1e4/N)^0.5 (copying):
    at the peak the copying loss is that of a control 5x smaller, the test loss that of one 2x smaller."""
    from repeatlens.study import Verdict
    from repeatlens.study.evaluate import _t2

    rows = []
    for n in (1e4, 3e4, 1e5, 3e5):
        test = lambda m: 3 + (2e3 / m) ** 0.3  # noqa: E731
        copy = lambda m: 1 + (1e4 / m) ** 0.5  # noqa: E731
        for s, eps in enumerate((0.002, -0.002)):
            rows.append(dict(run_id=f"c{n:g}{s}", N=n, repeated_fraction=0.0, repeat_count=1, seed=s, control="full",
                             test_loss=test(n) + eps, copying_loss=copy(n) + eps))
            rows.append(dict(run_id=f"p{n:g}{s}", N=n, repeated_fraction=0.1, repeat_count=100, seed=s, control="none",
                             test_loss=test(n / 2) + eps, copying_loss=copy(n / 5) + eps))
    table = pd.DataFrame(rows)
    at = table[table.N == 1e5]
    t2 = _t2(at, table, 1e5, 0.1, 100.0, None, "test_loss")
    y = t2.numbers["yardstick"]
    # N = 1e5: copying like a control of 2e4, the loss like one of 5e4
    assert y["copying"]["ratio"] == pytest.approx(0.2, rel=0.05) and y["loss"]["ratio"] == pytest.approx(0.5, rel=0.05)
    assert t2.verdict == Verdict.HELD and t2.numbers["basis"] == "effective size" and "paper's yardstick" in t2.detail

def test_t3_against_the_data_matched_control_and_a_non_random_init() -> None:
    from repeatlens.study import Verdict

    off = {**PEAKED, DM: 2.5}  # the data-matched control sits 0.2 below E = 10: a few repeats cost more than the spread
    t3 = evaluate_targets(*sweep_tables(off, ABIL), chance=CHANCE)[2]
    assert t3.verdict == Verdict.DID_NOT_HOLD and t3.numbers["minus_data_matched"] == pytest.approx(0.2)
    t3 = evaluate_targets(*sweep_tables(PEAKED, ABIL, step0_induction=0.5), chance=CHANCE)[2]
    assert t3.held is False and t3.numbers["random_init_max_deviation"]["induction"] == pytest.approx(0.47)
    no_dm = {k: v for k, v in PEAKED.items() if k != DM}
    t3 = evaluate_targets(*sweep_tables(no_dm, ABIL), chance=CHANCE)[2]
    assert t3.verdict == Verdict.CANNOT_JUDGE and "no data-matched control" in t3.detail
    assert t3.line.startswith("T3 cannot judge: ")

def test_t4_needs_a_rise_beyond_noise_and_says_when_it_cannot_judge() -> None:
    from repeatlens.study import Verdict

    scores, metrics = sweep_tables(PEAKED, ABIL, rising=False)
    assert evaluate_targets(scores, metrics, chance=CHANCE)[3].verdict == Verdict.DID_NOT_HOLD
    scores, metrics = sweep_tables(PEAKED, ABIL, loss_se=0.2)  # the same rise, now within 2 standard errors
    t4 = evaluate_targets(scores, metrics, chance=CHANCE)[3]
    assert t4.verdict == Verdict.DID_NOT_HOLD and not t4.numbers["runs"]["f0.1_E100_s0"]["significant"]
    scores, metrics = sweep_tables(PEAKED, ABIL, zero_at=100)  # held, but the repeated loss approaches zero 2 checkpoints later
    r = evaluate_targets(scores, metrics, chance=CHANCE)[3].numbers["runs"]["f0.1_E100_s0"]
    assert r["significant"] and r["zero_step"] == 100 and r["coincide"] is False
    old_scores, old_metrics = sweep_tables(PEAKED, ABIL, loss_se=None)  # metrics from before loss_se
    t4 = evaluate_targets(old_scores, old_metrics, chance=CHANCE)[3]
    assert t4.verdict == Verdict.CANNOT_JUDGE and "no loss_se" in t4.detail
    t4 = evaluate_targets(scores, None, chance=CHANCE)[3]
    assert t4.held is None and t4.line.startswith("T4 cannot judge: ")

def test_t2_and_t4_read_a_named_grid_point() -> None:
    """repeat_count= moves T2 and T4 off the point nearest E* (100) to a named one; T1 keeps its fit."""
    from repeatlens.errors import ConfigError

    scores, metrics = sweep_tables(PEAKED, ABIL)
    nearest = evaluate_targets(scores, metrics, chance=CHANCE)
    t1, t2, _, t4 = evaluate_targets(scores, metrics, chance=CHANCE, repeat_count=10)
    assert t1.numbers == nearest[0].numbers
    assert t2.numbers["repeat_count"] == 10 and t2.numbers["loss_rise"] == pytest.approx(0.2 / 2.5)
    assert t4.numbers["repeat_count"] == 10 and set(t4.numbers["runs"]) == {f"f0.1_E10_s{s}" for s in range(3)}
    assert nearest[3].numbers["repeat_count"] == 100
    assert "at the grid point nearest the fitted peak (f = 0.1, E = 100)" in nearest[1].line
    assert "at the grid point asked for (f = 0.1, E = 10)" in t2.line
    two = {k: v for k, v in PEAKED.items() if k in (0, DM, 10, 100)}  # two repeat counts: no peak can be fitted
    t1, t2 = evaluate_targets(*sweep_tables(two, ABIL), chance=CHANCE)[:2]
    assert t1.numbers["peak"] is None and "at the largest repeat count (no peak fitted) (f = 0.1, E = 100)" in t2.line
    with pytest.raises(ConfigError, match="repeat_count 30: no runs at it with f = 0.1; the grid has E = 1, 10, 100, 1000"):
        evaluate_targets(scores, metrics, chance=CHANCE, repeat_count=30)

def test_flattening_and_the_largest_rise_by_hand() -> None:
    from repeatlens.study.evaluate import _flat_index, _largest_z_rise

    # total fall 1.0; from index 2 on it falls by at most 0.1 more
    assert _flat_index(np.array([4.0, 3.5, 3.08, 3.05, 3.0, 3.02])) == 2
    rise, z, a, b = _largest_z_rise(np.array([4.2, 4.1, 4.3, 4.0, 4.25]), np.array([0.1, 0.1, 0.1, 0.1, 0.01]))
    assert (a, b) == (3, 4) and rise == pytest.approx(0.25) and z == pytest.approx(0.25 / np.sqrt(0.1**2 + 0.01**2))

def test_the_natural_text_loss_is_the_loss_when_the_runs_have_it() -> None:
    """Mixed runs: T1-T4 read split test_text, which here peaks where the mixed test loss does not."""
    scores, metrics = sweep_tables(PEAKED, ABIL)
    flat = {0: 2.5, 1: 2.5, 10: 2.5, 100: 2.5, 1000: 2.5}
    text_scores, text_metrics = sweep_tables(flat, ABIL)
    text_metrics = text_metrics.assign(split=text_metrics.split.map({"test": "test_text", "repeated": "repeated_text"}))
    t1 = evaluate_targets(text_scores, pd.concat([metrics, text_metrics]), chance=CHANCE)[0]
    assert t1.numbers["loss"] == "test_text" and t1.held is not True and "natural-text test loss" in t1.detail
    assert evaluate_targets(text_scores, pd.concat([metrics, text_metrics]), chance=CHANCE, loss="test_loss")[0].numbers["loss"] == "test_loss"
