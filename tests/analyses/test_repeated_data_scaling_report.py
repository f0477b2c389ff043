"""analyses/repeated_data_scaling/report.py on simulated tables of the study's own design, with
known answers: a bump at a known E* per size (E* = 400 (N / 2,272)^-0.5), controls on a
known law, copying circuits in the controls of the larger sizes only, and a T4 arm whose loss
rises after the control flattens at E = 512 and not at E = 128. No training."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repeatlens.results.fits import ScalingFit

STUDY = Path(__file__).resolve().parents[2] / "analyses" / "repeated_data_scaling"
ALPHA, E0, N0 = -0.5, 400.0, 2272.0
AMPLITUDE, WIDTH, SLOPE, SIGMA = 0.3, 0.3, 0.05, 0.01
CIRCUIT_FROM = 8000
"""Controls (and the runs repeated too little to lose it) of sizes above this N form a canonical circuit, L1.H0 + L0.H1."""
FINAL, SE = 1465, 0.01
CHANCE = {"induction": 0.03, "prefix_matching": 0.03, "previous_token": 0.05}


def true_e_star(n: float) -> float:
    return E0 * (n / N0) ** ALPHA


def control_loss(n: float) -> float:
    return 3.0 + (2e3 / n) ** 0.3


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("repeated_data_scaling_report", STUDY / "report.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses resolve their annotations through it
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def expected(report) -> pd.DataFrame:
    return report.expected_runs()


def _final_loss(r, rng: np.random.Generator) -> float:
    base = control_loss(r.N)
    if r.control == "full":
        return base + rng.normal(0, SIGMA)
    if r.control == "data_matched":
        return base + 0.05 / 0.25 * (0.25 if r.arm != "T4 arm" else 0.5) + rng.normal(0, SIGMA)
    if r.arm == "T4 arm":
        return base + 0.1 + (0.25 if r.repeat_count == 512 else 0.0) + rng.normal(0, SIGMA)
    x, c = math.log10(r.repeat_count), math.log10(true_e_star(r.N))
    return base + 0.04 + SLOPE * (x - c) + AMPLITUDE * math.exp(-0.5 * ((x - c) / WIDTH) ** 2) + rng.normal(0, SIGMA)


def _circuit(r) -> bool:
    return r.N > CIRCUIT_FROM and (r.control != "none" or r.repeat_count < true_e_star(r.N) / 2)


def tables(expected: pd.DataFrame, seed: int = 0, drop: tuple[str, ...] = ()) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Scores, metrics and per-run info of every expected run but ``drop`` (pilot-only runs included)."""
    rng = np.random.default_rng(seed)
    srows, mrows, info = [], [], []
    for r in expected.itertuples(index=False):
        if r.run_id in drop:
            continue
        run = dict(run_id=r.run_id, repeated_fraction=r.repeated_fraction, repeat_count=r.repeat_count, total_tokens=6_000_000,
                   unique_tokens=int(6_000_000 * (1 - r.repeated_fraction)) if r.control == "none" else
                   (4_500_000 if r.control == "data_matched" else 6_000_000),
                   control=r.control, model_preset=r.preset, n_params=r.N_total, n_params_nonembedding=r.N, seed=r.seed)
        final, circuit = _final_loss(r, rng), _circuit(r)
        probe = dict(probe="synthetic", probe_len=30, probe_batch=16, probe_seed=0)
        none = dict(probe="", probe_len=pd.NA, probe_batch=pd.NA, probe_seed=pd.NA)
        for step in (0, FINAL):
            end = step == FINAL
            at = dict(run, step=step, tokens_seen=step * 4096)
            srows.append(dict(at, metric="test_loss", layer=pd.NA, head=pd.NA, offset=pd.NA, value=final if end else 7.2, **none))
            gain = (4.0 if circuit else 0.06) if end else 0.0
            for metric, v in (("copying_gain", gain), ("copying_loss", 4.2 - gain)):
                srows.append(dict(at, metric=metric, layer=pd.NA, head=pd.NA, offset=pd.NA, value=v, **probe))
            for layer, head in itertools.product(range(2), range(4)):
                best = end and circuit and (layer, head) == (1, 0)
                ind = 0.9 if best else (0.02 if end else 0.03)
                for metric, v in (("induction", ind), ("prefix_matching", ind), ("shifted_induction", ind),
                                  ("shifted_induction_shift", 0.0), ("previous_token", 0.05)):
                    srows.append(dict(at, metric=metric, layer=layer, head=head, offset=pd.NA, value=v, **probe))
                if layer == 0:
                    prev = 0.8 if end and circuit and head == 1 else 0.05
                    for offset in (1, 2, 3):
                        srows.append(dict(at, metric="offset_profile", layer=layer, head=head, offset=offset,
                                          value=prev if offset == 1 else 0.05, **probe))
        every = 50 if r.arm == "T4 arm" else 100
        for step in list(range(0, FINAL, every)) + [FINAL]:
            rise = 0.25 * min(max((step - 700) / 300, 0.0), 1.0) if r.arm == "T4 arm" and r.repeat_count == 512 else 0.0
            text = final - (0.25 if rise or (r.arm == "T4 arm" and r.repeat_count == 512) else 0.0) + rise + 3.5 * math.exp(-step / 250)
            at = dict(run, step=step, tokens_seen=step * 4096)
            mrows += [dict(at, split="test_text", loss=text, loss_se=SE), dict(at, split="test", loss=text - 1.0, loss_se=SE)]
            if r.control == "none":
                mrows.append(dict(at, split="repeated", loss=4.0 * math.exp(-step / 200) + 0.01, loss_se=SE))
        info.append(dict(run_id=r.run_id, train_seconds=100.0, synthetic_share=0.75 * (1 - r.repeated_fraction),
                         unique_synthetic_share=0.75, repeated_synthetic_share=0.0 if r.control == "none" else np.nan))
    scores = pd.DataFrame(srows).astype({"layer": "Int64", "head": "Int64", "offset": "Int64", "probe_len": "Int64",
                                         "probe_batch": "Int64", "probe_seed": "Int64", "value": float})
    return scores, pd.DataFrame(mrows), pd.DataFrame(info)


def test_same_head_chance_against_enumeration(report) -> None:
    for k, n, heads in [(2, 2, 4), (2, 3, 4), (3, 3, 4), (2, 4, 3), (3, 5, 4), (4, 6, 8), (2, 3, 1), (5, 5, 2)]:
        hits = sum(max(np.bincount(choice, minlength=heads)) >= k for choice in itertools.product(range(heads), repeat=n))
        assert report.same_head_chance(k, n, heads) == pytest.approx(float(Fraction(hits, heads**n)), abs=1e-12), (k, n, heads)
    assert report.same_head_chance(4, 3, 4) == 0.0 and report.same_head_chance(1, 3, 4) == 1.0
    with pytest.raises(ValueError, match="need k, n, heads >= 1"):
        report.same_head_chance(2, 0, 4)


def test_the_expected_runs_are_the_design_and_the_pilots(report, expected) -> None:
    arms = expected.groupby("arm").size().to_dict()
    assert arms == {"controls": 18, "data-matched": 18, "repeated": 84, "T4 arm": 8, "pilot": 7}
    d64 = expected[(expected.preset == "rot2-d64") & (expected.arm == "repeated")]
    assert sorted(d64.repeat_count.unique()) == [16, 32, 64, 128, 256, 512, 1024] and set(d64.N) == {33664}
    assert expected.set_index("run_id").loc["rot2-d64_f0.25_E4_s0", "arm"] == "pilot"
    assert expected.set_index("run_id").loc["rot2-d64_f0.25_E64_s0", ["arm", "pilot"]].tolist() == ["repeated", True]
    assert set(expected.loc[expected.arm == "data-matched", "control"]) == {"data_matched"}
    # run_study.py trains the design as one queue: every run once, in the sweeps' order
    specs = report.design.sweeps()
    q = report.design.queue(specs)
    assert [p.name for p in q.points] == [p.name for s in specs.values() for p in s.points]
    assert sorted(p.name for p in q.points) == sorted(expected.loc[expected.arm != "pilot", "run_id"])
    assert q.points[0].config == specs["rot2-d16 controls"].points[0].config and q.grid == {"sweeps": list(specs)}
    # --score-device moves the scoring, not what is scored; the design's options are left as they were
    assert report.design.queue(specs, "cpu").analyze == {**report.design.ANALYZE, "device": "cpu"} != q.analyze
    assert "device" not in report.design.ANALYZE and q.analyze == report.design.ANALYZE


SIZES = ("rot2-d16", "rot2-d32", "rot2-d64", "rot2-d128")
"""Four of the design's six widths (58x in N, as the six span), so that the test stays a few seconds."""


def test_the_study_recovers_every_peak_and_writes_its_results(report, expected, tmp_path) -> None:
    from repeatlens.study import DamageTarget, Verdict

    mine = expected[expected.preset.isin(SIZES)]
    scores, metrics, info = tables(mine)
    s = report.analyse(scores, metrics, mine, chance=CHANCE, info=info)
    assert s.complete_sizes == list(SIZES) and s.t4_status == (8, 8)
    # the peaks: every size's E* within 0.1 decade of the truth, its 95% interval covering it
    assert s.fit is not None and len(s.fit.peaks) == 4
    for p in s.fit.peaks:
        truth = true_e_star(p.N)
        assert abs(math.log10(p.e_star / truth)) < 0.1 and p.e_star_ci95[0] < truth < p.e_star_ci95[1] and p.interior, p.line()
    assert s.fit.identified and s.fit.alpha_ci95[0] < ALPHA < s.fit.alpha_ci95[1]
    assert s.fit.fitted_on.runs == 56 and s.fit.fitted_on.seeds_per_point == (2, 2)
    # the targets, as typed objects
    t5, t6 = s.scaling
    assert t5.verdict == Verdict.HELD and t5.numbers["alpha"] == pytest.approx(s.fit.alpha)
    assert t6.name == "T6" and t6.verdict in (Verdict.HELD, Verdict.NOT_IDENTIFIED)
    for preset, (t1, t2, t3) in s.per_size.items():  # T4 is read on the T4 arm only
        n = float(mine.loc[mine.preset == preset, "N"].iloc[0])
        assert t1.verdict == Verdict.HELD, t1.line
        assert t3.verdict == Verdict.HELD, t3.line  # the few-repeat end sits on the data-matched control
        if n > CIRCUIT_FROM:  # T2 read where the controls form a copying circuit
            assert isinstance(t2, DamageTarget) and not isinstance(t2, report.NotRead), t2.line
            assert t2.numbers["repeat_count"] == min(report.design.WINDOWS[preset], key=lambda e: abs(math.log10(e / t1.numbers["peak"]["e_star"])))
            assert t2.numbers["drops"]["copying_gain"] == pytest.approx((4.0 - 0.06) / 4.0)  # the circuit is gone at the peak
        else:
            assert isinstance(t2, report.NotRead) and t2.verdict == Verdict.CANNOT_JUDGE and (t2.with_circuit, t2.seeds) == (0, 3)
    below, at = s.t4
    assert (below.numbers["repeat_count"], at.numbers["repeat_count"]) == (128.0, 512.0)
    assert below.verdict == Verdict.DID_NOT_HOLD and at.verdict == Verdict.HELD, at.line
    # the coincidence: every d32 control seed picks L1.H0, one of 4 later-layer heads
    cc = s.controls_circuits.set_index(["preset", "control"])
    row = cc.loc[("rot2-d32", "full")]
    assert (row.with_circuit, row.top_head, row.top_count, row.heads) == (3, "L1.H0", 3, 4)
    assert row.chance == pytest.approx(report.same_head_chance(3, 3, 4)) == pytest.approx(1 / 16)
    assert cc.loc[("rot2-d16", "full"), "with_circuit"] == 0

    written = report.write_outputs(s, tmp_path, command="python report.py --out RUNS", elapsed=12.0, formats=("html",))
    runs = pd.read_csv(written["final_runs"])
    assert len(runs) == len(mine) and runs.run_id.is_unique
    assert {"N", "N_total", "test_text", "test_text_se", "control", "circuit", "probe", "copying_gain"} <= set(runs.columns)
    assert set(runs.probe) == {"synthetic:L30:B16:s0"}
    fit = ScalingFit.from_json(written["scaling_fit"])
    assert [p.e_star for p in fit.peaks] == pytest.approx([p.e_star for p in s.fit.peaks]) and fit.alpha == pytest.approx(s.fit.alpha)
    targets = json.loads(written["targets"].read_text())
    assert [t["line"] for t in targets["scaling"]] == [t.line for t in s.scaling]
    assert [t["verdict"] for t in targets["t4_arm"]] == ["did not hold", "held"]
    md = written["RESULTS"].read_text()
    for t in s.all_targets():  # every verdict line is the object's own rendering
        assert t.line in md
    assert "88 of 88 runs of `design.py` are complete" in md and "0.062 (≥ 3 of 3 seeds on one of 4" in md
    for p in s.fit.peaks:  # S* = f·D/E* per parameter beside the paper's 0.125
        assert f"{0.25 * 6e6 / p.e_star / p.N:.3g} (" in md
    assert "S/N = 0.125" in md and "E = 4.2e6·N^−0.56" in md
    # the bump's lack of fit per size (a column and a count), and the grid's own argmax beside it
    missed = sum(not p.lack_of_fit.fits for p in s.fit.peaks)
    assert "| bump fits the means |" in md and (f"It does not fit at {missed} of 4 sizes" if missed else "It fits at all 4 sizes") in md
    rep = s.points[(s.points.arm == "repeated") & (s.points.control == "none")]
    tops = rep.loc[rep.groupby("model_preset", sort=False)["test_text"].idxmax(), "repeat_count"]
    assert "Without the model, the grid's mean loss peaks at E = " + ", ".join(f"{e:g}" for e in tops) + " (size by size; interior" in md
    figures = {p.stem for p in (tmp_path / "results" / "figures").glob("*.html")}
    assert figures == {"loss_vs_repeat_count", "peak_vs_size", "effective_size_vs_size", "effective_model_size", "t4_arm_trajectories"}


def test_an_incomplete_size_is_provisional_and_left_out_of_the_fit(report, expected) -> None:
    """A design of two sizes and the T4 arm (the test's own), one run of the larger size and one of the arm missing."""
    from repeatlens.study import Verdict

    mine = expected[expected.preset.isin(["rot2-d32", "rot2-d128"]) & (expected.arm != "pilot")]
    drop = ("rot2-d128_f0.25_E8_s1", "rot2-d32_eval_every50_f0.5_E512_s1")
    scores, metrics, info = tables(mine, seed=1, drop=drop)
    s = report.analyse(scores, metrics, mine, chance=CHANCE, info=info)
    assert s.complete_sizes == ["rot2-d32"] and list(s.per_size) == ["rot2-d32"]
    assert s.fit.fitted_on.sizes == 1 and [p.N for p in s.fit.peaks] == [8640]
    assert s.scaling[0].verdict == Verdict.NOT_IDENTIFIED and "1 model size with a fitted peak" in s.scaling[0].line
    prov = s.provisional["rot2-d128"]
    assert (prov.runs, prov.expected) == (13, 14) and prov.peak is not None
    assert prov.peak.e_star_ci95[0] < true_e_star(132864) < prov.peak.e_star_ci95[1]
    assert s.t4 == [] and s.t4_status == (7, 8)
    md = report.markdown(s, command="python report.py", elapsed=1.0, started=False, figures="", notes="", skipped=list(drop))
    assert "PROVISIONAL: 13 of 14 repeated runs" in md and "T4 cannot judge yet: 7 of 8 runs of the T4 arm are complete." in md
    assert "| rot2-d128 | 132,864 | 3 / 3 | 3 / 3 | 13 / 14 |  | incomplete |" in md
    assert "rot2-d128_f0.25_E8_s1" in md  # named among the runs not complete


def test_no_complete_size_is_said_not_fitted(report, expected) -> None:
    keep = expected[expected.preset.isin(["rot2-d64"]) & (expected.arm != "data-matched")]
    scores, metrics, info = tables(keep)
    s = report.analyse(scores, metrics, expected, chance=None, info=info)
    assert s.fit is None and s.complete_sizes == [] and s.per_size == {}
    assert [t.line for t in s.scaling][0] == ("T5 cannot judge: no peak of the natural-text test loss is fitted: no model size has its "
                                              "whole grid (controls, data-matched controls, repeated runs) complete yet. No exponent is given.")
    assert s.provisional["rot2-d64"].peak is not None


# ------------------------------------------------------------------------------ the archive


def stored(scores: pd.DataFrame, metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The simulated tables in the stored schema (what ``join_run_tables`` returns), runs' ``attrs`` included."""
    from repeatlens.results.keys import derive_keys
    from repeatlens.results.schema import METRIC_DTYPES, RUN_COLUMNS, RUN_DTYPES, SCORE_COLUMNS, SCORE_DTYPES
    from repeatlens.scores import SCORE_VERSION

    s = scores.assign(score_version=scores["metric"].map(SCORE_VERSION).fillna(1), duplicate_of=pd.NA)
    s = s.assign(probe_key=derive_keys(s)).astype({**SCORE_DTYPES, **RUN_DTYPES})[SCORE_COLUMNS + RUN_COLUMNS]
    s.attrs["runs"] = {r: {"axis": {"x": "tokens_seen"}} for r in s["run_id"].unique()}
    m = metrics.astype({"run_id": "str", **METRIC_DTYPES, **RUN_DTYPES})[["run_id", *METRIC_DTYPES, *RUN_COLUMNS]]
    return s, m


def _same_study(a, b) -> None:
    assert [p.e_star for p in a.fit.peaks] == pytest.approx([p.e_star for p in b.fit.peaks], rel=1e-12)
    assert [t.line for t in a.all_targets()] == [t.line for t in b.all_targets()]
    pd.testing.assert_frame_equal(a.points, b.points)


def test_the_archive_holds_what_the_report_reads(report, expected, tmp_path) -> None:
    """Written and read back, the archive gives the same study as the tables it was written from."""
    mine = expected[expected.preset.isin(["rot2-d32", "rot2-d64"]) & (expected.arm != "pilot")]
    scores, metrics, info = tables(mine)
    scores, metrics = stored(scores, metrics)
    on_gpu = info.run_id.str.contains("rot2-d64")  # where each run trained travels with it (runs.csv's device)
    info = info.assign(torch=np.where(on_gpu, "2.11.0+cu130", "2.13.0+cpu"), device=np.where(on_gpu, "cuda: NVIDIA H200", "cpu, 1 thread"))
    chance = {"synthetic:L30:B16:s0": CHANCE}
    written = report.write_archive(tmp_path / "a", report.Collected(scores, metrics, info, []), chance)
    assert {p.name for p in written} == {"scores.parquet", "metrics.parquet", "runs.csv", "chance.json"}
    back = report.read_archive(tmp_path / "a")
    assert sorted(back.info.run_id) == sorted(mine.run_id) and back.scores.attrs["chance"] == chance
    assert set(back.scores.attrs["runs"]) == set(mine.run_id)
    assert len(back.scores) == len(scores) and len(back.metrics) == len(metrics)
    pd.testing.assert_frame_equal(back.info.sort_values("run_id").reset_index(drop=True),
                                  info[list(back.info.columns)].sort_values("run_id").reset_index(drop=True), check_dtype=False)
    _same_study(report.analyse(back.scores, back.metrics, mine, chance=CHANCE, info=back.info),
                report.analyse(scores, metrics, mine, chance=CHANCE, info=info))
    assert report.read_archive(tmp_path / "nothing") is None
    n_gpu = int(on_gpu.sum())
    assert report.trained_on(back.info) == (f"cpu, 1 thread, torch 2.13.0+cpu ({len(info) - n_gpu} runs); "
                                            f"cuda: NVIDIA H200, torch 2.11.0+cu130 ({n_gpu} runs)")
    # an archive written before runs.csv had a device column still reads, and says so
    (tmp_path / "a" / "runs.csv").write_text(back.info.drop(columns="device").to_csv(index=False))
    assert report.trained_on(report.read_archive(tmp_path / "a").info).startswith(f"device not recorded, torch 2.13.0+cpu ({len(info) - n_gpu} runs)")


def test_a_run_directory_wins_over_its_archived_copy_and_nothing_archived_is_dropped(report, expected, tmp_path) -> None:
    mine = expected[expected.preset.isin(["rot2-d32"]) & (expected.arm != "pilot")]
    scores, metrics, info = tables(mine)
    scores, metrics = stored(scores, metrics)
    old_ids = sorted(mine.run_id)[:20]
    new_ids = sorted(mine.run_id)[15:]  # 5 runs in both
    pick = lambda df, ids: df[df.run_id.isin(ids)].reset_index(drop=True)  # noqa: E731
    old = report.Collected(pick(scores, old_ids), pick(metrics, old_ids), pick(info, old_ids), [])
    old.scores.attrs = {"runs": {r: {"from": "old"} for r in old_ids}, "chance": {"p": {"induction": 0.1}}}
    changed = pick(scores, new_ids).assign(value=lambda d: d.value + 1.0)  # the new copies differ
    changed.attrs = {"runs": {r: {"from": "new"} for r in new_ids}}
    new = report.Collected(changed, pick(metrics, new_ids), pick(info, new_ids), ["a_run_still_training", old_ids[0]])
    both = report.merge_collected(new, old)
    assert sorted(both.info.run_id) == sorted(mine.run_id) and both.info.run_id.is_unique
    assert len(both.scores) == len(scores) and len(both.metrics) == len(metrics)
    overlap = set(old_ids) & set(new_ids)
    got = both.scores[both.scores.run_id.isin(overlap)].value.to_numpy()
    want = scores[scores.run_id.isin(overlap)].value.to_numpy() + 1.0
    assert sorted(got) == pytest.approx(sorted(want))
    assert {r: v["from"] for r, v in both.scores.attrs["runs"].items()} == {**{r: "old" for r in old_ids}, **{r: "new" for r in new_ids}}
    assert both.scores.attrs["chance"] == {"p": {"induction": 0.1}}
    assert both.skipped == ["a_run_still_training"]  # a run the archive holds is not "not complete"

    # collect(): an empty study folder reads the archive; with neither, one error that names both
    report.write_archive(tmp_path / "a", old)
    (tmp_path / "runs").mkdir()
    got = report.collect(tmp_path / "runs", [tmp_path / "a"])
    assert sorted(got.info.run_id) == old_ids
    with pytest.raises(report.RepeatlensError, match="no complete, scored run of the study yet .* or an archive"):
        report.collect(tmp_path / "runs", [tmp_path / "nothing"])

    # write_results keeps every run its destination's archive held, whatever --archive says
    report.write_archive(tmp_path / "b", report.Collected(pick(scores, new_ids), pick(metrics, new_ids), pick(info, new_ids), []))
    report.write_results(tmp_path / "runs", tmp_path / "dest", archive=tmp_path / "a", archive_only=True)
    report.write_results(tmp_path / "runs", tmp_path / "dest", archive=tmp_path / "b", archive_only=True)
    kept = report.read_archive(tmp_path / "dest" / "results" / "runs")
    assert sorted(kept.info.run_id) == sorted(mine.run_id)


def test_no_chance_level_is_given_where_no_two_seeds_share_a_head(report) -> None:
    from types import SimpleNamespace

    cc = pd.DataFrame([
        dict(preset="rot2-d64", N=33664.0, control="full", seeds=3, seed_list="0, 1, 2", with_circuit=3, kinds="canonical (3)",
             top_head="L1.H0", top_count=1, heads=4, chance=report.same_head_chance(1, 3, 4)),
        dict(preset="rot2-d48", N=19104.0, control="full", seeds=3, seed_list="0, 1, 2", with_circuit=3, kinds="canonical (3)",
             top_head="L1.H3", top_count=2, heads=4, chance=report.same_head_chance(2, 3, 4)),
        dict(preset="rot2-d24", N=4944.0, control="full", seeds=3, seed_list="0, 1, 2", with_circuit=1, kinds="canonical (1)",
             top_head="", top_count=0, heads=4, chance=np.nan)])
    rows = report._circuits_md(SimpleNamespace(controls_circuits=cc, complete_sizes=[])).splitlines()[2:5]
    assert rows[0].endswith("| canonical (3) | none: each seed on its own head | – |")
    assert rows[1].endswith("| L1.H3 in 2 of 3 | 0.625 (≥ 2 of 3 seeds on one of 4 later-layer heads, each uniform) |")
    assert rows[2].endswith("| canonical (1) | – | – |")


def test_reproduce_reports_where_a_rerun_departs_from_the_archive() -> None:
    """reproduce.py's comparison on the committed archive: a run against itself differs nowhere;
    one loss changed at one checkpoint and one score at another are found there, by that much."""
    spec = importlib.util.spec_from_file_location("repeated_data_scaling_reproduce", STUDY / "reproduce.py")
    rp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rp)  # puts the study's folder on sys.path: `report` is the module it reads with
    report_mod = sys.modules["report"]
    old = report_mod.read_archive(report_mod.ARCHIVE)
    runs = ["rot2-d16_f0_E1_s0", "rot2-d16_f0.25_E512_s0"]
    mine = lambda t: t[t["run_id"].astype(str).isin(runs)].reset_index(drop=True)  # noqa: E731
    same = report_mod.Collected(mine(old.scores), mine(old.metrics), mine(old.info), [])
    d = rp.differences(same, old)
    assert set(d.run_id) == set(runs) and (d.max_abs_diff == 0).all() and d.first_step.isna().all() and (d.unmatched == 0).all()
    assert set(d[d.table == "metrics"].name) == {"train", "test", "test_text", "test_synthetic", "repeated", "repeated_text"}

    metrics, scores = same.metrics.copy(), same.scores.copy()
    hit = (metrics.run_id == runs[1]) & (metrics.split == "test_text") & (metrics.step == 750)
    assert hit.sum() == 1
    metrics.loc[hit, "loss"] += 0.25
    shot = scores.index[(scores.run_id == runs[0]) & (scores.metric == "induction") & (scores.step == 1000)][0]
    scores.loc[shot, "value"] -= 0.125
    d = rp.differences(report_mod.Collected(scores, metrics, same.info, []), old).set_index(["run_id", "name"])
    assert d.loc[(runs[1], "test_text"), "max_abs_diff"] == pytest.approx(0.25) and d.loc[(runs[1], "test_text"), "first_step"] == 750
    assert d.loc[(runs[0], "induction"), "max_abs_diff"] == pytest.approx(0.125) and d.loc[(runs[0], "induction"), "first_step"] == 1000
    assert (d.drop([(runs[1], "test_text"), (runs[0], "induction")]).max_abs_diff == 0).all()
    final = rp.final_losses(report_mod.Collected(scores, metrics, same.info, []), old)
    assert len(final) == 10 and (final["diff"] == 0).all()  # the last checkpoint (step 1465) was not touched
