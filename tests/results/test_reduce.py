"""Reductions every consumer shares: probe selection, circuits, finals, seed statistics, fits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from repeatlens.errors import ConfigError
from repeatlens.results.reduce import (
    MissingDataError,
    check_scores,
    circuits,
    effective_size,
    effective_sizes,
    final_table,
    final_values,
    fit_power_law,
    peak_scaling,
    per_checkpoint,
    probe_keys,
    seed_stats,
    select_probe,
)


def _rows(metric: str, values: dict, *, probe: str = "", L=None, step: int = 10, run: str = "r", offsets: dict | None = None) -> list[dict]:
    """Rows of one metric: values {(layer, head): v} (or {None: v} model-level); offsets {(layer, head): {o: v}}."""
    base = {"run_id": run, "step": step, "tokens_seen": step * 100, "metric": metric, "probe": probe,
            "probe_len": L if probe else pd.NA, "probe_batch": 16 if probe else pd.NA, "probe_seed": 0 if probe else pd.NA,
            "offset": pd.NA, "repeated_fraction": 0.0, "repeat_count": 1, "n_params": 1000, "seed": 0, "model_preset": "m"}
    out = []
    if offsets is not None:
        for (layer, head), prof in offsets.items():
            out += [{**base, "layer": layer, "head": head, "offset": o, "value": v} for o, v in prof.items()]
        return out
    for key, v in values.items():
        layer, head = key if key is not None else (pd.NA, pd.NA)
        out.append({**base, "layer": layer, "head": head, "value": v})
    return out


def _table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    return df.astype({"layer": "Int64", "head": "Int64", "offset": "Int64", "probe_len": "Int64", "probe_batch": "Int64", "probe_seed": "Int64"})


def two_probe_table() -> pd.DataFrame:
    return _table(
        _rows("induction", {(1, 0): 0.8, (1, 1): 0.1}, probe="synthetic", L=30)
        + _rows("induction", {(1, 0): 0.01, (1, 1): 0.02}, probe="uniform", L=30)
        + _rows("induction", {(1, 0): 0.05, (1, 1): 0.03}, probe="uniform", L=20)
        + _rows("test_loss", {None: 3.0})
    )


def test_select_probe_defaults_to_the_family_that_sees_circuits_and_never_mixes() -> None:
    df = two_probe_table()
    assert probe_keys(df) == ["synthetic:L30:B16:s0", "uniform:L20:B16:s0", "uniform:L30:B16:s0"]
    rows, key = select_probe(df)
    assert key == "synthetic:L30:B16:s0" and set(rows.probe) == {"synthetic", ""}  # + the rows that read no probe
    s = check_scores(df)
    assert s.attrs["probe"] == key
    assert per_checkpoint(s, "induction")["value"].tolist() == [0.8]  # the best head of ONE probe
    assert select_probe(df, "uniform:L20")[1] == "uniform:L20:B16:s0"
    assert per_checkpoint(check_scores(df, "uniform:L20"), "induction")["value"].tolist() == [0.05]
    with pytest.raises(ConfigError, match=r"'uniform' matches 2 probes .*uniform:L20:B16:s0, uniform:L30:B16:s0"):
        select_probe(df, "uniform")
    with pytest.raises(ConfigError, match="'text': not in this table; it holds synthetic:L30"):
        select_probe(df, "text")
    assert select_probe(df[df.probe == ""])[1] is None  # a table of probe-free scores


def test_circuits_name_canonical_and_shifted_pairs() -> None:
    L = 30
    later_shift = {(1, 0): 6, (1, 1): 0, (1, 2): 13}
    rows = _rows("shifted_induction", {(1, 0): 0.9, (1, 1): 0.85, (1, 2): 0.6, (0, 0): 0.95}, probe="synthetic", L=L)
    rows += _rows("shifted_induction_shift", {**{k: float(d) for k, d in later_shift.items()}, (0, 0): 28.0}, probe="synthetic", L=L)
    # layer 0: head 0 attends 7 back (d + 1 for d = 6), head 1 is a previous-token head (offset 1); nobody attends 14 back
    rows += _rows("offset_profile", {}, probe="synthetic", L=L, offsets={(0, 0): {7: 0.92, 1: 0.02, 14: 0.01}, (0, 1): {7: 0.05, 1: 0.7, 14: 0.02}})
    got = circuits(_table(rows))
    assert got[["layer", "head", "d", "partner_layer", "partner_head", "kind"]].values.tolist() == [
        [1, 0, 6, 0, 0, "shifted"],  # induction shifted by 6: later head at L-7, partner 7 back
        [1, 1, 0, 0, 1, "canonical"],  # previous-token head + induction head
    ]  # (1, 2) has no partner 14 back; the layer-0 head (a previous-token-like offset) is never a later head
    assert got.partner_score.tolist() == pytest.approx([0.92, 0.7]) and (got.probe == "synthetic:L30:B16:s0").all()
    assert circuits(_table(rows), min_score=0.95).empty


def test_finals_and_seed_statistics() -> None:
    rows = []
    for seed, (first, last) in enumerate([(5.0, 3.0), (5.2, 3.4)]):
        for step, v in ((0, first), (10, last)):
            rows += [{**r, "seed": seed, "run_id": f"s{seed}"} for r in _rows("test_loss", {None: v}, step=step)]
    df = check_scores(_table(rows))
    assert final_values(df, "test_loss").value.tolist() == [3.0, 3.4]
    assert final_values(df, "test_loss", at="first").value.tolist() == [5.0, 5.2]
    wide = final_table(df, ["test_loss"])
    assert wide.set_index("run_id").test_loss.to_dict() == {"s0": 3.0, "s1": 3.4} and (wide.step == 10).all()
    st = seed_stats(wide, ["repeated_fraction", "repeat_count"], "test_loss")
    assert st[["mean", "spread", "count"]].values.tolist()[0] == pytest.approx([3.2, 0.4, 2])
    assert st["std"].iloc[0] == pytest.approx(np.std([3.0, 3.4], ddof=1))


def test_power_law_fit_recovers_a_known_exponent_and_effective_size_inverts_it() -> None:
    n = np.array([1e4, 3e4, 1e5, 3e5])
    law = fit_power_law(n, 7.0 * n ** -0.076)
    assert (law.a, law.slope) == pytest.approx((7.0, -0.076)) and law.slope_se == pytest.approx(0.0, abs=1e-9)
    assert effective_size(7.0 * 2e4 ** -0.076, law.a, -law.slope) == pytest.approx(2e4)


def _scaling_table(alpha: float = -0.5) -> pd.DataFrame:
    """Finals of a sweep whose poor-performance region sits at E* = 300 (N / 4e4)^alpha exactly:
    the rise above the control is 1 - 0.5 (log10 E - log10 E*)^2 (a parabola in log E, so
    its vertex is read back exactly; half at one decade either side); controls on
    L(N) = 5 N^-0.1; two seeds at +-0.01 around every mean."""
    rows = []
    for n in (1e4, 4e4, 1.6e5):
        control = 5 * n ** -0.1
        peak = np.log10(300 * (n / 4e4) ** alpha)
        for seed, noise in ((0, 0.01), (1, -0.01)):
            rows.append({"run_id": f"N{n:g}-c-s{seed}", "repeated_fraction": 0.0, "repeat_count": 1, "seed": seed,
                         "n_params_nonembedding": n, "test_loss": control + noise})
            for e in (1, 8, 64, 512, 4096, 32768):
                rise = max(0.0, 1 - 0.5 * (np.log10(e) - peak) ** 2)
                rows.append({"run_id": f"N{n:g}-E{e}-s{seed}", "repeated_fraction": 0.25, "repeat_count": e, "seed": seed,
                             "n_params_nonembedding": n, "test_loss": control + rise + noise})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("alpha", [-0.5, -0.96, 0.3])
def test_peak_scaling_recovers_the_exponent_of_a_hand_made_sweep(alpha: float) -> None:
    peaks, law = peak_scaling(_scaling_table(alpha), "test_loss", bootstrap=200)
    for n, p in peaks.items():
        assert p.E == pytest.approx(300 * (n / 4e4) ** alpha, rel=1e-6) and p.interior and p.rise == pytest.approx(1.0, abs=0.3)
        assert p.lower < p.E / 3 and p.upper > p.E * 3  # half-maximum edges, about a decade either side
    assert law.slope == pytest.approx(alpha, abs=1e-6) and law.slope_se == pytest.approx(0.0, abs=1e-6)
    lo, hi = law.slope_interval
    assert lo <= alpha + 1e-6 and hi >= alpha - 1e-6  # symmetric seed noise: the interval holds the truth


def test_effective_sizes_read_the_controls_power_law_back() -> None:
    table = _scaling_table()
    law, runs = effective_sizes(table, "test_loss")
    assert law.slope == pytest.approx(-0.1, abs=1e-9) and law.a == pytest.approx(5.0)
    ctrl = runs[runs.repeated_fraction == 0]
    assert ctrl.groupby("N").ratio.mean().to_numpy() == pytest.approx(1.0, abs=0.05)  # +-0.01 loss noise
    # a run at the controls' loss of a 4x smaller model has N_eff / N = 1/4
    worse = pd.DataFrame([{"run_id": "x", "repeated_fraction": 0.25, "n_params_nonembedding": 1.6e5, "test_loss": 5 * 4e4 ** -0.1}])
    assert effective_sizes(pd.concat([table, worse]), "test_loss")[1].set_index("run_id").loc["x", "ratio"] == pytest.approx(0.25, rel=0.02)
    flat = table.assign(test_loss=3.0)
    with pytest.raises(MissingDataError, match="does not fall with model size"):
        effective_sizes(flat, "test_loss")
