"""The study's target checks (repeatlens.study) on hand-built sweep tables with known verdicts."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from repeatlens.study import chance_levels, evaluate_targets, final_table, point_table, targets_markdown


def _tables(test_loss: dict[int, float], abilities: dict[int, float], noise: float = 0.01, seeds: int = 3,
            step0_induction: float = 0.03, rising: bool = True):
    """A sweep: control (E=0 key) + f=0.1 at the given E; final checkpoint values per point.

    ``test_loss[E]`` / ``abilities[E]`` give each point's mean; seeds add +-noise. Key 0 is the control.
    """
    rows, mrows = [], []
    for (e, base), s in itertools.product(test_loss.items(), range(seeds)):
        f, E = (0.0, 1) if e == 0 else (0.1, e)
        run = f"f{f}_E{E}_s{s}"
        eps = noise * (s - (seeds - 1) / 2)
        common = dict(run_id=run, repeated_fraction=f, repeat_count=E, seed=s, total_tokens=1000, model_preset="t", n_params=10)
        for step, scale in ((0, None), (100, 1.0)):
            vals = {
                "test_loss": (4.2 if scale is None else base + eps, None),
                "repeated_loss": (4.2 if scale is None else 0.05, None),
                "copying_gain": (0.0 if scale is None else abilities[e] + eps, None),
            }
            for m, (v, _) in vals.items():
                rows.append(dict(common, step=step, tokens_seen=step * 10, metric=m, layer=np.nan, head=np.nan, value=v))
            for layer, head in itertools.product(range(2), range(2)):
                best = layer == 1 and head == 0
                ind = step0_induction if scale is None else (abilities[e] if best else 0.01)
                pm = step0_induction if scale is None else (abilities[e] if best else 0.01)
                for m, v in (("induction", ind), ("prefix_matching", pm), ("previous_token", 0.05)):
                    rows.append(dict(common, step=step, tokens_seen=step * 10, metric=m, layer=layer, head=head, value=v))
        bump = {0: 0.3, 20: 0.1, 40: 0.0, 60: 0.2, 80: 0.15, 100: 0.0}  # up from 40 to 60, down again after
        for step in range(0, 101, 20):
            t = base + eps
            test = t + (bump[step] if rising and f > 0 else 0.3 * (1 - step / 100))
            rep = 4.2 * (1 - step / 100) + 0.05  # 3/4 of the start last at step 20, 1/4 first at step 80
            mrows += [dict(common, step=step, tokens_seen=step * 10, split="test", loss=test),
                      dict(common, step=step, tokens_seen=step * 10, split="repeated", loss=rep)]
    return pd.DataFrame(rows), pd.DataFrame(mrows)


CHANCE = {"induction": 0.03, "prefix_matching": 0.03, "previous_token": 0.05, "duplicate_token": 0.03}
PEAKED = {0: 2.50, 1: 2.50, 10: 2.70, 100: 3.00, 1000: 2.60}
ABIL = {0: 0.80, 1: 0.80, 10: 0.50, 100: 0.10, 1000: 0.70}


def test_all_targets_hold_on_a_paper_like_sweep() -> None:
    scores, metrics = _tables(PEAKED, ABIL)
    t1, t2, t3, t4 = evaluate_targets(scores, metrics, chance=CHANCE)
    assert [t.name for t in (t1, t2, t3, t4)] == ["T1", "T2", "T3", "T4"]
    assert t1.held and t1.numbers["peak_E"] == 100
    assert t1.numbers["peak_loss"] == pytest.approx(3.0) and t1.numbers["loss"] == "test_loss"  # no natural-text split here
    # relative rise in test loss 0.5/2.5 = 20%; induction drops (0.8-0.1)/0.8 = 87.5%
    assert t2.held and t2.numbers["loss_rise"] == pytest.approx(0.2)
    assert t2.numbers["drops"]["induction"] == pytest.approx(0.875)
    assert t3.held and t3.numbers["E1_minus_control"] == pytest.approx(0.0)
    assert t4.held and t4.numbers["f0.1_E100_s0"]["rise"] == pytest.approx(0.2)
    assert t4.numbers["f0.1_E100_s0"]["rise_steps"] == [40, 60] and t4.numbers["f0.1_E100_s0"]["phase_steps"] == [20, 80]
    assert t4.numbers["f0.1_E100_s0"]["control_change"] == pytest.approx(-0.06)
    text = targets_markdown([t1, t2, t3, t4])
    assert [line.split(":")[0] for line in text.split("\n\n")] == ["T1 held", "T2 held", "T3 held", "T4 held"]


def test_t1_fails_when_the_maximum_is_at_an_end_or_within_seed_spread() -> None:
    monotone = {0: 2.5, 1: 2.5, 10: 2.6, 100: 2.7, 1000: 2.9}
    t1 = evaluate_targets(*_tables(monotone, ABIL), chance=CHANCE)[0]
    assert t1.held is False and "end-point" in t1.detail and t1.numbers["peak_E"] == 1000
    # an interior peak 0.02 above the ends, but seeds spread 0.2: not significant
    flat = {0: 2.5, 1: 2.5, 10: 2.5, 100: 2.52, 1000: 2.5}
    t1 = evaluate_targets(*_tables(flat, ABIL, noise=0.1), chance=CHANCE)[0]
    assert t1.held is False and t1.numbers["peak_E"] == 100
    assert t1.numbers["margins"]["control"][1] == pytest.approx(0.2)


def test_t2_fails_when_abilities_drop_less_than_the_loss_rises() -> None:
    mild = {0: 0.80, 1: 0.80, 10: 0.79, 100: 0.75, 1000: 0.8}  # 6% drop against a 20% loss rise
    t2 = evaluate_targets(*_tables(PEAKED, mild), chance=CHANCE)[1]
    assert t2.held is False and t2.numbers["drops"]["induction"] == pytest.approx(0.0625)


def test_t3_fails_on_e1_mismatch_and_on_a_non_random_init() -> None:
    off = {**PEAKED, 1: 2.9}
    t3 = evaluate_targets(*_tables(off, ABIL), chance=CHANCE)[2]
    assert t3.held is False and t3.numbers["E1_minus_control"] == pytest.approx(0.4)
    t3 = evaluate_targets(*_tables(PEAKED, ABIL, step0_induction=0.5), chance=CHANCE)[2]
    assert t3.held is False and t3.numbers["random_init_max_deviation"]["induction"] == pytest.approx(0.47)


def test_t4_fails_when_test_loss_never_rises_and_is_unmeasured_without_metrics() -> None:
    scores, metrics = _tables(PEAKED, ABIL, rising=False)
    assert evaluate_targets(scores, metrics, chance=CHANCE)[3].held is False
    t4 = evaluate_targets(scores, None, chance=CHANCE)[3]
    assert t4.held is None and t4.line.startswith("T4 not measured")


def test_tables_and_a_missing_control_is_an_error() -> None:
    scores, _ = _tables(PEAKED, ABIL)
    final = final_table(scores)
    assert len(final) == 15 and set(final.step) == {100}
    pts = point_table(final)
    row = pts[(pts.repeat_count == 100)].iloc[0]
    assert row.seeds == 3 and row.test_loss == pytest.approx(3.0) and row.test_loss_spread == pytest.approx(0.02)
    with pytest.raises(ValueError, match="control"):
        evaluate_targets(scores[scores.repeated_fraction > 0])


def test_chance_levels_match_uniform_attention_by_hand() -> None:
    """Induction on [BOS, r, r] with L = len(r): second-copy query i (L+1..2L) gives 1/(i+1) to its target."""
    from repeatlens.scores import get_probes

    levels = chance_levels(64, 64)
    L = get_probes(64, 64).copy_len
    expected = np.mean([1 / (i + 1) for i in range(L + 1, 2 * L + 1)])
    assert levels["induction"] == pytest.approx(expected, rel=1e-5)
    assert levels["duplicate_token"] == pytest.approx(expected, rel=1e-5)


def test_memorization_phase_and_largest_rise_by_hand() -> None:
    from repeatlens.study import _largest_rise, _memorization_phase

    rep = pd.Series([4.0, 3.9, 3.1, 2.0, 0.9, 0.5])  # >= 3.0 last at index 2, <= 1.0 first at index 4
    assert _memorization_phase(rep) == (2, 4)
    assert _memorization_phase(pd.Series([4.0, 3.0, 2.0])) is None  # never below a quarter
    assert _largest_rise(np.array([4.2, 4.1, 4.3, 4.0, 4.25])) == (pytest.approx(0.25), 3, 4)
    rise, _, _ = _largest_rise(np.array([4.2, 4.1, 4.0]))
    assert rise < 0  # monotone fall: no rise


def test_the_natural_text_loss_is_the_loss_when_the_runs_have_it() -> None:
    """Mixed runs: T1-T4 read split test_text, which here peaks where the mixed test loss does not."""
    scores, metrics = _tables(PEAKED, ABIL)
    flat = {0: 2.5, 1: 2.5, 10: 2.5, 100: 2.5, 1000: 2.5}
    text_scores, text_metrics = _tables(flat, ABIL)
    text_metrics = text_metrics.assign(split=text_metrics.split.map({"test": "test_text", "repeated": "repeated_text"}))
    t1 = evaluate_targets(text_scores, pd.concat([metrics, text_metrics]), chance=CHANCE)[0]
    assert t1.numbers["loss"] == "test_text" and not t1.held and "natural-text test loss" in t1.detail
    assert evaluate_targets(text_scores, pd.concat([metrics, text_metrics]), chance=CHANCE, loss="test_loss")[0].numbers["loss"] == "test_loss"


def test_scaling_targets_on_a_sweep_whose_region_moves() -> None:
    from repeatlens.study import evaluate_scaling
    from tests.results.test_reduce import _scaling_table

    t5, t6 = evaluate_scaling(_scaling_table(-0.5), loss="test_loss", bootstrap=100)
    assert t5.held and t5.numbers["alpha"] == pytest.approx(-0.5, abs=1e-6) and "fewer repeats" in t5.detail
    assert t6.held and t6.numbers["control_law"]["slope"] == pytest.approx(-0.1, abs=1e-6)
    assert all(r < 1 for _, r in t6.numbers["at_peak"].values())
    still = _scaling_table(0.0)  # the peak stays at E* = 300 for every size
    assert evaluate_scaling(still, loss="test_loss", bootstrap=100)[0].held is False
    worse_big = _scaling_table(-0.5)
    worse_big.loc[(worse_big.repeated_fraction == 0) & (worse_big.n_params_nonembedding == 1.6e5), "test_loss"] += 1.0
    assert evaluate_scaling(worse_big, loss="test_loss", bootstrap=100)[1].held is False


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
