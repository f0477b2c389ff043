"""T1-T4 at one model size: each target's numbers computed from a sweep's tables, its verdict
from the rule in :mod:`.targets` (:func:`evaluate_targets`)."""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import pandas as pd

from repeatlens.errors import ConfigError
from repeatlens.results import fits, reduce
from repeatlens.study import render
from repeatlens.study.tables import ABILITIES, SIZE, STUDY_QUANTITIES, final_table
from repeatlens.study.targets import (
    FLAT_FRACTION,
    ZERO_FRACTION,
    DamageTarget,
    DoubleDescentTarget,
    FewRepeatsTarget,
    PeakTarget,
    Target,
    Verdict,
    damage_verdict,
    double_descent_verdict,
    few_repeats_verdict,
    peak_verdict,
    rise_is_significant,
    rise_threshold,
)

__all__ = ["evaluate_targets"]


def _one_size(final: pd.DataFrame, size: Optional[float]) -> tuple[pd.DataFrame, Optional[float]]:
    """``final`` restricted to one model size: ``size``, or the size with the most runs."""
    if SIZE not in final or final[SIZE].nunique() <= 1:
        return final, None
    if size is None:
        counts = final.groupby(SIZE).size()
        size = float(counts[counts == counts.max()].index[len(counts[counts == counts.max()]) // 2])
    return final[final[SIZE] == size], size


def _with_control(final: pd.DataFrame) -> pd.DataFrame:
    """``final`` with a ``control`` column (tables written before data-matched controls: f = 0 is ``full``)."""
    if "control" in final.columns and (final["control"].astype(str) != "").all():
        return final
    f = final["repeated_fraction"].astype(float)
    return final.assign(control=np.where(f == 0, "full", "none"))


def nearest(grid: Any, e: float) -> float:
    """The value of ``grid`` nearest ``e`` in log10."""
    g = np.asarray(sorted(set(float(x) for x in grid)))
    return float(g[np.argmin(np.abs(np.log10(g) - math.log10(e)))])


def effective_row(r: pd.Series) -> dict[str, Any]:
    """One row of an effective-size table as T2's and T6's numbers (non-finite values as None)."""
    fin = lambda v: float(v) if math.isfinite(v) else None  # noqa: E731
    return {"ratio": fin(r["ratio"]), "ratio_lo": fin(r["ratio_lo"]), "ratio_hi": fin(r["ratio_hi"]), "note": r["note"]}


# ------------------------------------------------------------------------------ T1


def _t1(runs: pd.DataFrame, f: float, loss: str) -> tuple[PeakTarget, Optional[fits.Peak]]:
    curve = runs[(runs["control"] == "none") & np.isclose(runs["repeated_fraction"], f)]
    counts = curve.groupby("repeat_count").size()
    base = dict(name="T1", statement=render.peak_statement(loss), loss=loss, fraction=f, runs=len(curve),
                seeds=(int(counts.min()), int(counts.max())) if len(counts) else (0, 0))
    try:
        peak = fits.fit_peak(curve["repeat_count"].to_numpy(), curve[loss].to_numpy())
    except fits.ScalingDataError as e:
        return PeakTarget(verdict=Verdict.NOT_IDENTIFIED, reason=str(e), **base), None
    numbers = {**peak.to_json(), "width": peak.width, "dof": peak.dof, "note": peak.note}
    return PeakTarget(verdict=peak_verdict(peak), peak=numbers, **base), peak


# ------------------------------------------------------------------------------ T2


def _effective_row(final: pd.DataFrame, loss: str, n: Optional[float], f: float, e: float) -> tuple[Optional[dict], Optional[str]]:
    """The effective-size row of the point (n, f, E) on the controls' law of ``loss`` (N convention), or the reason there is none."""
    if n is None:
        return None, "one model size"
    if loss not in final.columns or final[loss].isna().all():
        return None, f"no {loss} values"
    laws, eff = fits.effective_sizes(final.dropna(subset=[loss]), loss)
    law = laws.get("N")
    if not isinstance(law, fits.ControlLaw):
        return None, f"{loss}: {law}"
    rows = eff[(eff["size_column"] == "N") & (eff["N"] == n) & np.isclose(eff["repeated_fraction"], f) & (eff["repeat_count"] == e)
               & (eff["control"] == "none")]
    if rows.empty:
        return None, f"no {loss} point at N = {n:,.0f}, f = {f:g}, E = {e:g}"
    return effective_row(rows.iloc[0]), None


def _t2(runs: pd.DataFrame, all_sizes: pd.DataFrame, n: Optional[float], f: float, e: float, probe: Optional[str], loss: str,
        point: str = "the grid point nearest the fitted peak") -> DamageTarget:
    ctrl = runs[runs["control"] == "full"]
    at = runs[(runs["control"] == "none") & np.isclose(runs["repeated_fraction"], f) & (runs["repeat_count"] == e)]
    c_loss, p_loss = float(ctrl[loss].mean()), float(at[loss].mean())
    rise = (p_loss - c_loss) / c_loss
    abilities, drops = {}, {}
    for a in ABILITIES:
        if a in runs.columns and runs[a].notna().any():
            c, v = float(ctrl[a].mean()), float(at[a].mean())
            abilities[a] = (c, v)
            drops[a] = (c - v) / abs(c) if c != 0 else float("nan")
    size_col = SIZE if SIZE in all_sizes.columns else "N"
    k = all_sizes.loc[all_sizes["control"] == "full", size_col].nunique() if size_col in all_sizes.columns else 1
    if k < fits.MIN_CONTROL_SIZES:
        copy_row = loss_row = None
        why_loss = render.too_few_control_sizes(k, fits.MIN_CONTROL_SIZES)
    else:
        copy_row, why = _effective_row(all_sizes, "copying_loss", n, f, e)
        loss_row, why_loss = _effective_row(all_sizes, loss, n, f, e) if copy_row is not None else (None, why)
    base = dict(name="T2", statement=render.damage_statement(loss), loss=loss, fraction=f, repeat_count=e, loss_control=c_loss,
                loss_at_peak=p_loss, loss_rise=rise, abilities=abilities, drops=drops, probe=probe, point=point)
    verdict = damage_verdict(copy_row, loss_row, drops, rise)
    if copy_row is not None and loss_row is not None:
        return DamageTarget(verdict=verdict, basis="effective size", yardstick={"copying": copy_row, "loss": loss_row}, **base)
    return DamageTarget(verdict=verdict, yardstick_reason=why_loss, **base)


# ------------------------------------------------------------------------------ T3


def _spread(*groups: pd.Series) -> float:
    return float(max(g.max() - g.min() for g in groups))


def _t3(runs: pd.DataFrame, scores: pd.DataFrame, f: float, chance: Optional[dict[str, float]], tol: float, loss: str) -> FewRepeatsTarget:
    curve = runs[(runs["control"] == "none") & np.isclose(runs["repeated_fraction"], f)]
    full = runs[runs["control"] == "full"][loss]
    out: dict[str, Any] = dict(name="T3", statement=render.FEW_REPEATS_STATEMENT, loss=loss, fraction=f, chance_tolerance=tol)
    e1 = curve[curve["repeat_count"] == 1][loss]
    if len(e1) and len(full):
        out["e1_minus_control"] = float(e1.mean() - full.mean())
    grid = sorted(e for e in curve["repeat_count"].unique() if e > 1)
    if grid:
        few = curve[curve["repeat_count"] == grid[0]][loss]
        out.update(repeat_count=float(grid[0]), loss_few=float(few.mean()), seeds_few=len(few))
        if len(full):
            out.update(minus_full=float(few.mean() - full.mean()), spread_full=_spread(few, full))
        dm = runs[runs["control"] == "data_matched"]
        if "unique_tokens" in runs.columns and len(dm) and curve["unique_tokens"].notna().any():
            want = float(curve["unique_tokens"].median())
            dm = dm[np.isclose(dm["unique_tokens"], want, rtol=0.02)]
        if len(dm):
            out.update(data_matched=float(dm[loss].mean()), seeds_data_matched=len(dm),
                       minus_data_matched=float(few.mean() - dm[loss].mean()), spread_data_matched=_spread(few, dm[loss]))
    first = reduce.quantities_table(scores, STUDY_QUANTITIES, at="first")
    first = first[first.step == 0]
    if chance is not None and len(first):
        ms = [m for m in ("induction", "prefix_matching") if m in first]
        out["random_init_max_deviation"] = {m: float((first[m] - chance[m]).abs().max()) for m in ms}
        out["random_init_levels"] = {m: (float(first[m].max()), float(chance[m])) for m in ms}
        out["init_runs"] = len(first)
    verdict = few_repeats_verdict(out.get("minus_data_matched"), out.get("spread_data_matched"),
                                  out.get("random_init_max_deviation"), tol)
    return FewRepeatsTarget(verdict=verdict, **out)


# ------------------------------------------------------------------------------ T4


def _flat_index(values: np.ndarray) -> int:
    """The first index after which ``values`` falls by at most FLAT_FRACTION of its total fall."""
    later_min = np.minimum.accumulate(values[::-1])[::-1]
    fall = values[0] - values.min()
    return int(np.flatnonzero(values - later_min <= FLAT_FRACTION * fall)[0])


def _largest_z_rise(x: np.ndarray, se: np.ndarray) -> tuple[float, float, int, int]:
    """(rise, z, a, b) over a < b maximising z = (x[b] - x[a]) / sqrt(se[a]^2 + se[b]^2)."""
    best = (-np.inf, -np.inf, 0, 0)
    for a in range(len(x)):
        for b in range(a + 1, len(x)):
            z = (x[b] - x[a]) / math.sqrt(se[a] ** 2 + se[b] ** 2)
            if z > best[1]:
                best = (float(x[b] - x[a]), float(z), a, b)
    return best


def _t4_run(m: pd.DataFrame, c: pd.DataFrame, split: str) -> dict[str, Any]:
    """T4's numbers for one repeated run (``m``: its metrics) against its control (``c``)."""
    if "loss_se" not in m.columns or m.loc[m["split"] == split, "loss_se"].isna().all():
        return {"reason": "its metrics have no loss_se (evaluation standard error; runs trained before it was recorded)"}
    test = m[m["split"] == split].dropna(subset=["loss"]).set_index("step").sort_index()
    ctrl = c[c["split"] == split].dropna(subset=["loss"]).set_index("step")["loss"].sort_index()
    if len(ctrl) < 3:
        return {"reason": "its control has fewer than 3 evaluations"}
    flat = int(ctrl.index[_flat_index(ctrl.to_numpy())])
    after = test[test.index >= flat]
    if len(after) < 2:
        return {"reason": f"the control flattened at step {flat}, with fewer than 2 checkpoints of this run after it", "flat_step": flat}
    rise, z, a, b = _largest_z_rise(after["loss"].to_numpy(), after["loss_se"].to_numpy())
    common = test.index.intersection(ctrl.index)
    damage = test.loc[common, "loss"] - ctrl.loc[common]
    d_step = int(damage.idxmax())
    rep = m[m["split"] == "repeated"].dropna(subset=["loss"]).set_index("step")["loss"].sort_index()
    zero = rep[rep <= ZERO_FRACTION * rep.iloc[0]] if len(rep) else rep
    z_step = int(zero.index[0]) if len(zero) else None
    coincide, chance = None, float("nan")
    if z_step is not None and z_step in common:
        steps = list(common)
        i, j = steps.index(d_step), steps.index(z_step)
        coincide = abs(i - j) <= 1
        chance = len([k for k in range(len(steps)) if abs(k - j) <= 1]) / len(steps)
    return {"flat_step": flat, "rise": rise, "rise_z": z, "rise_steps": [int(after.index[a]), int(after.index[b])],
            "checkpoints_after": len(after), "threshold": rise_threshold(len(after)),
            "significant": rise_is_significant(z, len(after)), "damage_step": d_step, "damage": float(damage.max()),
            "zero_step": z_step, "coincide": coincide, "chance": chance}


def _t4(runs: pd.DataFrame, metrics: Optional[pd.DataFrame], f: float, e: float, loss: str) -> DoubleDescentTarget:
    split = "test" if loss == "test_loss" else loss
    base = dict(name="T4", statement=render.DOUBLE_DESCENT_STATEMENT, loss=loss, fraction=f, repeat_count=e)
    if metrics is None or metrics.empty:
        return DoubleDescentTarget(verdict=Verdict.CANNOT_JUDGE, reason="no training metrics given", **base)
    at = runs[(runs["control"] == "none") & np.isclose(runs["repeated_fraction"], f) & (runs["repeat_count"] == e)]
    controls = runs[runs["control"] == "full"]
    out = {}
    for run, seed in zip(at["run_id"], at["seed"]):
        same = controls[controls["seed"] == seed]
        ctrl = (same if len(same) else controls)["run_id"]
        if ctrl.empty:
            out[run] = {"reason": "no full-data control"}
            continue
        out[run] = _t4_run(metrics[metrics["run_id"] == run], metrics[metrics["run_id"] == ctrl.iloc[0]], split)
    if not out:
        return DoubleDescentTarget(verdict=Verdict.CANNOT_JUDGE, reason="no runs at this point", **base)
    return DoubleDescentTarget(verdict=double_descent_verdict(out), runs=out, **base)


# ------------------------------------------------------------------------------ T1-T4


def evaluate_targets(
    scores: pd.DataFrame,
    metrics: Optional[pd.DataFrame] = None,
    *,
    fraction: Optional[float] = None,
    chance: Optional[dict[str, float]] = None,
    chance_tolerance: float = 0.05,
    probe: Optional[str] = None,
    loss: Optional[str] = None,
    size: Optional[float] = None,
    repeat_count: Optional[float] = None,
) -> list[Target]:
    """Check T1-T4 on a sweep's tables, at one model size.

    Args:
        scores: The sweep's tidy scores (``repeatlens.load_scores``) with a full-data control
            (f = 0), ideally a data-matched one, and at one f > 0 several repeat counts E;
            several seeds per point.
        metrics: The training-metrics table (``repeatlens.load_metrics``), for T4's
            trajectories (with ``loss_se``) and the natural-text loss; T4 cannot judge without it.
        fraction: The f > 0 to study; default the only (or largest) one in ``scores``.
        chance: Uniform-attention levels (``repeatlens.scores.chance_levels`` of the probe)
            for T3's random-init check.
        chance_tolerance: How far (absolute) a step-0 best-head score may sit from chance.
        probe: The probe the attention and copying scores are read on
            (:func:`repeatlens.results.select_probe`); default the table's default probe.
        loss: The loss column: ``test_text`` (default when the runs have it) or ``test_loss``.
        size: The model size (non-embedding parameters) to evaluate at; default the only
            one, or the size with the most runs.
        repeat_count: The grid point (at ``fraction``) that T2 and T4 read, e.g. an arm
            designed below and at a peak located elsewhere; default the grid point nearest
            the fitted E* (the largest E when no peak is fitted).

    Returns:
        ``[T1, T2, T3, T4]``.
    """
    scores = reduce.check_scores(scores, probe)
    all_sizes = _with_control(final_table(scores, metrics))
    final, size = _one_size(all_sizes, size)
    if size is not None:
        scores = scores[scores[SIZE] == size]
    loss = loss or fits.default_loss(final)
    fs = sorted(x for x in final.loc[final["control"] == "none", "repeated_fraction"].unique() if x > 0)
    if not fs or not (final["control"] == "full").any():
        raise ValueError("the study needs a full-data control (f = 0) and at least one f > 0 in the scores table")
    f = fraction if fraction is not None else fs[-1]
    t1, peak = _t1(final, f, loss)
    grid = final.loc[(final["control"] == "none") & np.isclose(final["repeated_fraction"], f), "repeat_count"]
    if repeat_count is not None:
        if not np.isclose(grid.astype(float), repeat_count).any():
            raise ConfigError(f"repeat_count {repeat_count:g}: no runs at it with f = {f:g}; the grid has E = "
                              f"{', '.join(f'{e:g}' for e in sorted(grid.unique()))}")
        e, point = float(repeat_count), "the grid point asked for"
    elif peak is not None:
        e, point = nearest(grid, peak.e_star), "the grid point nearest the fitted peak"
    else:
        e, point = float(grid.max()), "the largest repeat count (no peak fitted)"
    n = size if size is not None else (float(final[SIZE].iloc[0]) if SIZE in final else None)
    t2 = _t2(final, all_sizes, n, f, e, scores.attrs.get("probe"), loss, point)
    targets = [t1, t2, _t3(final, scores, f, chance, chance_tolerance, loss), _t4(final, metrics, f, e, loss)]
    where = render.size_where(size) if size is not None else ""
    for t in targets:
        t.where = where
    return targets
