"""The repeated-data study's targets T1-T6, evaluated on a sweep's tidy tables.

Hernandez et al. 2022, "Scaling Laws and Interpretability of Learning from Repeated Data",
report that at a fixed repeated fraction f, test loss against the repeat count E has an
interior maximum (the "poor performance region"), that near it copying degrades more than
the loss does (in effective model size: up to 3x on copying against at most 1.15x on test
loss), that a few repeats cost nothing, that test loss can rise while the repeated subset is
memorized (double descent in time, "the peak performance hit coincides with where the train
loss on the repeated data approaches zero"), and, across model sizes, where that region
sits and how many parameters the damage costs (an 800M model performing like a 400M one).

Each target is a typed verdict first (a dataclass per target with its numbers and a
:class:`Verdict`: held / did not hold / not identified / cannot judge); its prose is rendered
from those fields. :func:`evaluate_targets` checks T1-T4 at one model size,
:func:`evaluate_scaling` T5-T6 across sizes from :func:`repeatlens.fit_scaling`, and
:func:`fit_sweep` is that fit for any sweep or runs table (``repeatlens fit``).

* **T1** (a peak): the bump fitted to every run of the size (:func:`repeatlens.results.fits.fit_peak`)
  is interior and its amplitude's 95% interval lies above 0.
* **T2** (copying damaged more than the loss): at the grid point nearest the fitted E*, in the
  paper's yardstick where the controls' laws allow (N_eff / N on the copying loss against
  N_eff / N on the test loss, both on ``L = L_inf + (N_c/N)^a`` over 4 or more control
  sizes), else the relative drop of every ability against the relative rise of the loss.
* **T3** (a few repeats cost nothing): the smallest E > 1 of the grid against the
  data-matched control (same unique tokens): held when its loss exceeds that control's by no
  more than the seed spread; plus the random-init chance check. E = 1 uses the control's own
  data (same pool, slots and permutation seed), so it is reported as a consistency check.
* **T4** (double descent in time): at the grid point nearest E*, test loss rises by more than
  two standard errors of the evaluation (over test sequences, ``loss_se`` in the metrics)
  after the same-seed control's loss has flattened (:data:`FLAT_FRACTION`), in every seed;
  beside it whether the damage peak coincides with the repeated-subset loss approaching zero
  (:data:`ZERO_FRACTION`), with the chance level of that coincidence.
* **T5** (the region moves with N): alpha identified and its 95% interval excludes 0.
* **T6** (effective model size): at every size's peak, the upper end of N_eff / N's 95%
  interval below 1 (this follows from T1 wherever the law is monotone; the number to read is
  the ratio and its interval).

The loss is the natural-text test loss (split ``test_text`` of the training metrics) when
the runs mix a corpus with the synthetic source, so that "repetition damages copying more
than loss" is not circular; the plain ``test_loss`` score otherwise. "Seed spread" is the
range (max - min) of a quantity across the seeds of one grid point; where two points are
compared, the larger of their two ranges. Induction, shifted induction and prefix-matching
are the best head's score (max over layers and heads) on one probe
(:func:`repeatlens.results.select_probe`); copying is the model's in-context copying gain.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Optional

import numpy as np
import pandas as pd

from repeatlens.deprecation import renamed
from repeatlens.errors import ConfigError, RepeatlensError
from repeatlens.results import fits, reduce

__all__ = [
    "Verdict",
    "Target",
    "PeakTarget",
    "DamageTarget",
    "FewRepeatsTarget",
    "DoubleDescentTarget",
    "AlphaTarget",
    "EffectiveSizeTarget",
    "final_table",
    "point_table",
    "standard_chance_levels",
    "evaluate_targets",
    "evaluate_scaling",
    "scaling_targets",
    "fit_sweep",
    "targets_markdown",
    "circuit_table",
    "circuits_markdown",
]

__getattr__ = renamed(__name__, {"chance_levels": "standard_chance_levels"})  # scores.chance_levels takes the probes

STUDY_QUANTITIES = ("test_loss", "repeated_loss", "induction", "shifted_induction", "prefix_matching", "previous_token",
                    "copying_gain", "copying_loss")
"""Per-run quantities of :func:`final_table` from the scores (names of :data:`repeatlens.results.QUANTITIES`)."""
LOSS_SPLITS = ("test_text", "test_synthetic", "repeated_text", "repeated_synthetic")
"""Per-run final losses of :func:`final_table` from the training metrics, when the runs have them."""
ABILITIES = ("induction", "shifted_induction", "prefix_matching", "copying_gain")
SIZE = "n_params_nonembedding"
"""The model-size coordinate of the scaling targets: Kaplan et al. 2020's non-embedding N."""
LITERATURE_ALPHA = {
    "Chudnovsky et al. 2026 (peak repeat count at a fixed overtraining ratio, R_peak ~ N^-0.96; from notes on the paper, "
    "not checked against it)": -0.96,
    "Hernandez et al. 2022 (half-maximum edges at D = 100B, E ~ N^-0.56 and N^-0.50, as a secondary source quotes them)": -0.5,
}
"""How the poor-performance region moves with model size elsewhere, for T5's comparison."""
FLAT_FRACTION = 0.1
"""T4: the control's loss has *flattened* at the first checkpoint after which it falls by no
more than this fraction of its total fall (its first checkpoint's loss minus its minimum)."""
ZERO_FRACTION = 0.1
"""T4: the repeated-subset loss *approaches zero* at the first checkpoint where it is at most
this fraction of its value at the first checkpoint."""
RISE_SE = 2.0
"""T4: a rise counts when it exceeds this many standard errors of the difference of two
evaluations, sqrt(se_a^2 + se_b^2) (conservative: both read the same test sequences)."""


class Verdict(str, Enum):
    """A target's outcome."""

    HELD = "held"
    DID_NOT_HOLD = "did not hold"
    NOT_IDENTIFIED = "not identified"
    CANNOT_JUDGE = "cannot judge"


@dataclass
class Target:
    """A target's verdict and numbers; subclasses add their fields and :meth:`render` the prose.

    ``held`` is True / False for held / did not hold and None otherwise; ``detail`` and
    ``line`` are rendered from the fields; ``numbers`` is the fields as JSON-able data.
    """

    name: str
    statement: str
    verdict: Verdict
    where: str = ""

    def render(self) -> str:  # pragma: no cover - every target overrides it
        raise NotImplementedError

    @property
    def held(self) -> Optional[bool]:
        return {Verdict.HELD: True, Verdict.DID_NOT_HOLD: False}.get(self.verdict)

    @property
    def detail(self) -> str:
        return self.where + self.render()

    @property
    def line(self) -> str:
        return f"{self.name} {self.verdict.value}: {self.detail}"

    @property
    def numbers(self) -> dict[str, Any]:
        skip = {"name", "statement", "verdict", "where"}
        return {k: _jsonable(v) for k, v in asdict(self).items() if k not in skip}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, Enum):
        return v.value
    return v


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _loss_name(loss: str) -> str:
    return {"test_text": "natural-text test loss", "test_loss": "test loss"}.get(loss, loss.replace("_", " "))


def _ci(pair: Optional[tuple[float, float]] | Optional[list[float]], fmt: str = "{:.3g}") -> str:
    return "no interval" if pair is None else f"95% {fmt.format(pair[0])} to {fmt.format(pair[1])}"


# ------------------------------------------------------------------------------ the tables


def final_table(scores: pd.DataFrame, metrics: Optional[pd.DataFrame] = None, probe: Optional[str] = None, at: str = "last") -> pd.DataFrame:
    """Per run, the final (or first) checkpoint's losses, best-head scores and copying on
    one probe (:func:`repeatlens.results.check_scores`), plus the split losses of
    :data:`LOSS_SPLITS` from ``metrics`` when it has them."""
    final = reduce.quantities_table(reduce.check_scores(scores, probe), STUDY_QUANTITIES, at)
    if metrics is not None and len(metrics) and "split" in metrics.columns:
        splits = [s for s in LOSS_SPLITS if s in set(metrics["split"])]
        for split in splits:
            m = metrics[metrics["split"] == split].dropna(subset=["loss"])
            pick = m.groupby("run_id")["step"].idxmax() if at == "last" else m.groupby("run_id")["step"].idxmin()
            final[split] = final["run_id"].map(m.loc[pick].set_index("run_id")["loss"])
    return final


def point_table(final: pd.DataFrame, by_size: bool = False) -> pd.DataFrame:
    """Per (f, E) (and model size with ``by_size``): mean, seed range (``*_spread``,
    max - min) and seed count of every quantity."""
    cols = [c for c in STUDY_QUANTITIES + LOSS_SPLITS if c in final]
    keys = ([SIZE] if by_size else []) + ["repeated_fraction", "repeat_count"]
    if "control" in final.columns:
        keys.append("control")
    return reduce.seed_stats(final, keys, cols)


def standard_chance_levels(d_vocab: int, n_ctx: int) -> dict[str, float]:
    """Each attention score of causal uniform attention on the standard probes
    (:func:`repeatlens.scores.chance_levels` of ``get_probes(d_vocab, n_ctx)``).

    A randomly initialised model's attention is close to uniform, so its scores should sit
    near these values (query ``i`` gives ``1/(i+1)`` to each earlier key).
    """
    from repeatlens.scores import chance_levels as levels, get_probes

    return levels(get_probes(d_vocab, n_ctx))


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


def _nearest(grid: Any, e: float) -> float:
    g = np.asarray(sorted(set(float(x) for x in grid)))
    return float(g[np.argmin(np.abs(np.log10(g) - math.log10(e)))])


# ------------------------------------------------------------------------------ T1


@dataclass
class PeakTarget(Target):
    """T1: the peak of one size's loss-vs-E curve, from the bump fitted to every run."""

    loss: str = "test_loss"
    fraction: float = float("nan")
    peak: Optional[dict[str, Any]] = None
    runs: int = 0
    seeds: tuple[int, int] = (0, 0)
    reason: Optional[str] = None

    def render(self) -> str:
        if self.peak is None:
            return f"at f = {self.fraction:g}, no peak fit of the {_loss_name(self.loss)}: {self.reason}."
        p = self.peak
        lo, hi = self.seeds
        seeds = f"{lo}" if lo == hi else f"{lo}-{hi}"
        amp = f"{p['amplitude']:+.3f} nats ({_ci(p['amplitude_ci95'], '{:+.3f}')})"
        e_ci = _ci(p["e_star_ci95"], "{:,.0f}")
        where = "interior" if p["interior"] else "not interior"
        note = f" ({p['note']})" if p.get("note") else ""
        return (f"at f = {self.fraction:g}, the {_loss_name(self.loss)} fitted as a bump in log10 E over a baseline "
                f"({self.runs} runs, {seeds} seeds per point, t at {p['dof']} dof) peaks at E* = {p['e_star']:,.0f} ({e_ci}), "
                f"{where}{note}, amplitude {amp}. Held means the peak is interior (its interval inside the grid) and the "
                "amplitude's interval lies above 0.")


def _t1(runs: pd.DataFrame, f: float, loss: str) -> tuple[PeakTarget, Optional[fits.Peak]]:
    curve = runs[(runs["control"] == "none") & np.isclose(runs["repeated_fraction"], f)]
    counts = curve.groupby("repeat_count").size()
    statement = f"interior maximum of the {_loss_name(loss)} over E, its amplitude above noise"
    base = dict(name="T1", statement=statement, loss=loss, fraction=f, runs=len(curve),
                seeds=(int(counts.min()), int(counts.max())) if len(counts) else (0, 0))
    try:
        peak = fits.fit_peak(curve["repeat_count"].to_numpy(), curve[loss].to_numpy())
    except fits.ScalingDataError as e:
        return PeakTarget(verdict=Verdict.NOT_IDENTIFIED, reason=str(e), **base), None
    numbers = {**peak.to_json(), "width": peak.width, "dof": peak.dof, "note": peak.note}
    if peak.amplitude <= 0 or not peak.grid[0] < peak.e_star < peak.grid[-1]:
        verdict = Verdict.DID_NOT_HOLD  # a dip, or a maximum beyond the grid's ends
    elif peak.e_star_ci95 is None or peak.amplitude_ci95 is None:
        verdict = Verdict.NOT_IDENTIFIED
    elif peak.interior and peak.amplitude_ci95[0] > 0:
        verdict = Verdict.HELD
    else:
        verdict = Verdict.DID_NOT_HOLD
    return PeakTarget(verdict=verdict, peak=numbers, **base), peak


# ------------------------------------------------------------------------------ T2


@dataclass
class DamageTarget(Target):
    """T2: damage to copying against damage to the loss at the grid point nearest E*."""

    loss: str = "test_loss"
    fraction: float = float("nan")
    repeat_count: float = float("nan")
    point: str = "the grid point nearest the fitted peak"
    """Which grid point T2 reads and why (the largest E when no peak is fitted; a named one with ``repeat_count=``)."""
    loss_control: float = float("nan")
    loss_at_peak: float = float("nan")
    loss_rise: float = float("nan")
    abilities: dict[str, tuple[float, float]] = field(default_factory=dict)
    drops: dict[str, float] = field(default_factory=dict)
    probe: Optional[str] = None
    basis: str = "relative drops"
    yardstick: Optional[dict[str, Any]] = None
    yardstick_reason: Optional[str] = None

    def render(self) -> str:
        parts = ", ".join(f"{a} {c:.3f} -> {v:.3f} ({-self.drops[a]:+.0%})" for a, (c, v) in self.abilities.items())
        text = (f"at {self.point} (f = {self.fraction:g}, E = {self.repeat_count:g}) against the "
                f"full-data control: {_loss_name(self.loss)} {self.loss_control:.3f} -> {self.loss_at_peak:.3f} "
                f"({self.loss_rise:+.1%}); {parts}.")
        if self.yardstick is not None:
            y = self.yardstick
            text += (f" In the paper's yardstick (effective model size on the controls' laws L = L_inf + (N_c/N)^a): "
                     f"N_eff / N = {_ratio(y['copying'])} on the copying loss against {_ratio(y['loss'])} on the "
                     f"{_loss_name(self.loss)} (Hernandez et al. 2022: up to 3x lost on copying, at most 1.15x on test loss). "
                     "Held means the copying ratio's interval lies wholly below the loss ratio's; overlapping intervals are "
                     "not identified.")
        else:
            text += (f" The paper's yardstick (effective size lost on copying against on the loss) cannot be applied: "
                     f"{self.yardstick_reason}. Judged on relative drops instead: held means every ability dropped, by more "
                     f"than the {self.loss_rise:.1%} rise in {_loss_name(self.loss)}.")
        return text + (f" Attention and copying read the probe {self.probe}." if self.probe else "")


def _ratio(r: dict[str, Any]) -> str:
    if r.get("ratio") is None:
        return f"({r.get('note')})"
    lo = f"{r['ratio_lo']:.3g}" if r.get("ratio_lo") is not None else "<range"
    hi = f"{r['ratio_hi']:.3g}" if r.get("ratio_hi") is not None else ">range"
    return f"{r['ratio']:.3g} (95% {lo} to {hi})"


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
    r = rows.iloc[0]
    fin = lambda v: float(v) if math.isfinite(v) else None  # noqa: E731
    return {"ratio": fin(r["ratio"]), "ratio_lo": fin(r["ratio_lo"]), "ratio_hi": fin(r["ratio_hi"]), "note": r["note"]}, None


def _t2(runs: pd.DataFrame, all_sizes: pd.DataFrame, n: Optional[float], f: float, e: float, probe: Optional[str], loss: str) -> DamageTarget:
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
    statement = (f"near the peak, copying is damaged more than the {_loss_name(loss)} (effective model size lost on each, "
                 "where the controls' laws allow; else relative drops)")
    size_col = SIZE if SIZE in all_sizes.columns else "N"
    k = all_sizes.loc[all_sizes["control"] == "full", size_col].nunique() if size_col in all_sizes.columns else 1
    if k < fits.MIN_CONTROL_SIZES:
        copy_row = loss_row = None
        why_loss = f"full-data controls at {k} model size{'s' if k != 1 else ''}; the laws need at least {fits.MIN_CONTROL_SIZES}"
    else:
        copy_row, why = _effective_row(all_sizes, "copying_loss", n, f, e)
        loss_row, why_loss = _effective_row(all_sizes, loss, n, f, e) if copy_row is not None else (None, why)
    base = dict(name="T2", statement=statement, loss=loss, fraction=f, repeat_count=e, loss_control=c_loss, loss_at_peak=p_loss,
                loss_rise=rise, abilities=abilities, drops=drops, probe=probe)
    if copy_row is not None and loss_row is not None:
        y = {"copying": copy_row, "loss": loss_row}
        if copy_row["ratio_hi"] is not None and loss_row["ratio_lo"] is not None and copy_row["ratio_hi"] < loss_row["ratio_lo"]:
            verdict = Verdict.HELD
        elif copy_row["ratio"] is not None and loss_row["ratio"] is not None and copy_row["ratio"] >= loss_row["ratio"]:
            verdict = Verdict.DID_NOT_HOLD
        else:
            verdict = Verdict.NOT_IDENTIFIED
        return DamageTarget(verdict=verdict, basis="effective size", yardstick=y, **base)
    held = bool(drops) and all(d > 0 and d > rise for d in drops.values())
    return DamageTarget(verdict=Verdict.HELD if held else Verdict.DID_NOT_HOLD, yardstick_reason=why_loss, **base)


# ------------------------------------------------------------------------------ T3


@dataclass
class FewRepeatsTarget(Target):
    """T3: a few repeats cost no more than the seed spread against the data-matched control."""

    loss: str = "test_loss"
    fraction: float = float("nan")
    repeat_count: Optional[float] = None
    loss_few: Optional[float] = None
    seeds_few: int = 0
    data_matched: Optional[float] = None
    seeds_data_matched: int = 0
    minus_data_matched: Optional[float] = None
    spread_data_matched: Optional[float] = None
    minus_full: Optional[float] = None
    spread_full: Optional[float] = None
    e1_minus_control: Optional[float] = None
    random_init_max_deviation: Optional[dict[str, float]] = None
    random_init_levels: Optional[dict[str, tuple[float, float]]] = None
    chance_tolerance: float = 0.05
    init_runs: int = 0
    reason: Optional[str] = None

    def render(self) -> str:
        name = _loss_name(self.loss)
        parts = []
        if self.repeat_count is None:
            parts.append(f"no repeat count above 1 at f = {self.fraction:g}")
        else:
            few = f"E = {self.repeat_count:g} ({_seeds(self.seeds_few)}) {name} {self.loss_few:.3f}"
            if self.data_matched is not None:
                parts.append(f"{few} against the data-matched control ({_seeds(self.seeds_data_matched)}) "
                             f"{self.data_matched:.3f}: {self.minus_data_matched:+.3f} (seed spread {self.spread_data_matched:.3f})")
            else:
                parts.append(f"{few}: no data-matched control at this size, so a few repeats cannot be told from fewer unique "
                             "tokens")
            if self.minus_full is not None:
                parts.append(f"against the full-data control {self.minus_full:+.3f} (seed spread {self.spread_full:.3f})")
        if self.random_init_max_deviation is None:
            parts.append("random-init scores not measured (no step-0 checkpoint or no chance levels)")
        else:
            parts.append("step-0 (random init) best heads, " + ", ".join(
                f"{m} max {hi:.3f} vs chance {c:.3f}" for m, (hi, c) in (self.random_init_levels or {}).items())
                + f" (tolerance {self.chance_tolerance:g}) over {self.init_runs} runs")
        if self.e1_minus_control is not None:
            parts.append(f"consistency check, not a finding: E = 1 trains on the control's own data and differs from it by "
                         f"{self.e1_minus_control:+.4f}")
        return ("; ".join(parts) + ". Held means the smallest E > 1 costs no more than the seed spread against the "
                "data-matched control and the initial scores sit at chance.")


def _spread(*groups: pd.Series) -> float:
    return float(max(g.max() - g.min() for g in groups))


def _t3(runs: pd.DataFrame, scores: pd.DataFrame, f: float, chance: Optional[dict[str, float]], tol: float, loss: str) -> FewRepeatsTarget:
    curve = runs[(runs["control"] == "none") & np.isclose(runs["repeated_fraction"], f)]
    full = runs[runs["control"] == "full"][loss]
    out: dict[str, Any] = dict(name="T3", statement="a few repeats cost nothing beyond the seed spread against the data-matched "
                               "control, and a randomly initialised model scores at chance", loss=loss, fraction=f,
                               chance_tolerance=tol)
    checks: list[Optional[bool]] = []
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
            checks.append(out["minus_data_matched"] <= out["spread_data_matched"])
        else:
            checks.append(None)
    else:
        checks.append(None)
    first = reduce.quantities_table(scores, STUDY_QUANTITIES, at="first")
    first = first[first.step == 0]
    if chance is not None and len(first):
        ms = [m for m in ("induction", "prefix_matching") if m in first]
        out["random_init_max_deviation"] = {m: float((first[m] - chance[m]).abs().max()) for m in ms}
        out["random_init_levels"] = {m: (float(first[m].max()), float(chance[m])) for m in ms}
        out["init_runs"] = len(first)
        checks.append(all(d <= tol for d in out["random_init_max_deviation"].values()))
    else:
        checks.append(None)
    if any(c is False for c in checks):
        verdict = Verdict.DID_NOT_HOLD
    elif all(c is True for c in checks):
        verdict = Verdict.HELD
    else:
        verdict = Verdict.CANNOT_JUDGE
    return FewRepeatsTarget(verdict=verdict, **out)


# ------------------------------------------------------------------------------ T4


@dataclass
class DoubleDescentTarget(Target):
    """T4: test loss rising beyond its evaluation noise after the control has flattened."""

    loss: str = "test_loss"
    fraction: float = float("nan")
    repeat_count: float = float("nan")
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    reason: Optional[str] = None

    def render(self) -> str:
        rule = (f" Held means in every seed the {_loss_name(self.loss)} rose by more than {RISE_SE:g} standard errors of the "
                f"evaluation (sqrt(se_a^2 + se_b^2), se over test sequences) between two checkpoints after the same-seed "
                f"control's loss had flattened (the first checkpoint after which it falls by at most {FLAT_FRACTION:.0%} of "
                f"its total fall); 'approaches zero' is the first checkpoint at which the repeated-subset loss is at most "
                f"{ZERO_FRACTION:.0%} of its first value.")
        if self.reason:
            return f"at f = {self.fraction:g}, E = {self.repeat_count:g}: {self.reason}." + rule
        rows = []
        for run, r in self.runs.items():
            if r.get("reason"):
                rows.append(f"{run}: {r['reason']}")
                continue
            rise = (f"largest rise after the control flattened (step {r['flat_step']}): {r['rise']:+.3f} over steps "
                    f"{r['rise_steps'][0]}-{r['rise_steps'][1]} ({r['rise_z']:.1f} standard errors)")
            zero = (f"repeated-subset loss approaches zero at step {r['zero_step']}" if r["zero_step"] is not None
                    else "repeated-subset loss never approaches zero")
            same = ("coincide" if r["coincide"] else "do not coincide") if r["coincide"] is not None else "cannot be compared"
            rows.append(f"{run}: {rise}; damage against the control peaks at step {r['damage_step']} ({r['damage']:+.3f}), "
                        f"{zero}: they {same} (within one checkpoint; chance {r['chance']:.2f})")
        return f"at f = {self.fraction:g}, E = {self.repeat_count:g} ({_seeds(len(rows))}): " + "; ".join(rows) + "." + rule


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
            "significant": bool(z > RISE_SE), "damage_step": d_step, "damage": float(damage.max()), "zero_step": z_step,
            "coincide": coincide, "chance": chance}


def _t4(runs: pd.DataFrame, metrics: Optional[pd.DataFrame], f: float, e: float, loss: str) -> DoubleDescentTarget:
    split = "test" if loss == "test_loss" else loss
    base = dict(name="T4", statement="double descent in time: test loss rises beyond its evaluation noise after the control has "
                "flattened, near the peak", loss=loss, fraction=f, repeat_count=e)
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
    if any("reason" in r for r in out.values()):
        verdict = Verdict.CANNOT_JUDGE
    else:
        verdict = Verdict.HELD if all(r["significant"] for r in out.values()) else Verdict.DID_NOT_HOLD
    return DoubleDescentTarget(verdict=verdict, runs=out, **base)


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
        e, point = _nearest(grid, peak.e_star), "the grid point nearest the fitted peak"
    else:
        e, point = float(grid.max()), "the largest repeat count (no peak fitted)"
    n = size if size is not None else (float(final[SIZE].iloc[0]) if SIZE in final else None)
    t2 = _t2(final, all_sizes, n, f, e, scores.attrs.get("probe"), loss)
    t2.point = point
    targets = [t1, t2, _t3(final, scores, f, chance, chance_tolerance, loss), _t4(final, metrics, f, e, loss)]
    where = f"model of N = {size:,.0f} non-embedding parameters: " if size is not None else ""
    for t in targets:
        t.where = where
    return targets


def targets_markdown(targets: list[Target]) -> str:
    """One paragraph per target, each beginning ``T1 held:`` / ``T1 did not hold:`` / ``T1 not identified:`` ..."""
    return "\n\n".join(t.line for t in targets)


# ------------------------------------------------------------------------------- scaling: T5, T6


@dataclass
class AlphaTarget(Target):
    """T5: E* ∝ N^alpha, from :func:`repeatlens.fit_scaling`."""

    loss: str = "test_loss"
    alpha: Optional[float] = None
    alpha_ci95: Optional[tuple[float, float]] = None
    reason: Optional[str] = None
    peaks: list[dict[str, Any]] = field(default_factory=list)
    literature: dict[str, float] = field(default_factory=dict)

    def render(self) -> str:
        sizes = "; ".join(
            f"N = {p['N']:,.0f}: E* = {p['e_star']:,.0f} ({_ci(p['e_star_ci95'], '{:,.0f}')}{'' if p['interior'] else ', not interior'})"
            for p in self.peaks)
        if self.alpha is None and not self.peaks:
            return f"no peak of the {_loss_name(self.loss)} is fitted: {self.reason}. No exponent is given."
        if self.alpha is None:
            return (f"{_loss_name(self.loss)} per size: {sizes}. alpha is not identified by this design: {self.reason}. "
                    "No exponent is given.")
        refs = "; ".join(f"{ref}: {a:+.2f}" for ref, a in self.literature.items())
        lo, hi = self.alpha_ci95
        return (f"{_loss_name(self.loss)} per size: {sizes}. alpha = {self.alpha:+.3f} (95% {lo:+.3f} to {hi:+.3f}, weighted "
                f"least squares of log10 E* on log10 N, t at sizes - 2 dof). Elsewhere: {refs}. Held means the interval "
                "excludes 0.")


@dataclass
class EffectiveSizeTarget(Target):
    """T6: N_eff / N at each size's peak, on the full-data controls' law."""

    loss: str = "test_loss"
    law: Optional[str] = None
    reason: Optional[str] = None
    at_peak: dict[str, dict[str, Any]] = field(default_factory=dict)

    def render(self) -> str:
        if self.reason:
            return f"no effective model size on the {_loss_name(self.loss)}: {self.reason}."
        rows = "; ".join(f"N = {float(n):,.0f}, E = {r['repeat_count']:g}: N_eff / N = {_ratio(r)}" for n, r in self.at_peak.items())
        return (f"controls' law {self.law}. At each size's peak (the grid point nearest E*): {rows}. Held means the upper end "
                "of every interval lies below 1 (which follows from T1 where the law is monotone; Hernandez et al. 2022: 800M "
                "performing like 400M is N_eff / N = 0.5).")


def scaling_targets(fit: fits.ScalingFit) -> list[Target]:
    """T5 and T6 from a :class:`repeatlens.results.fits.ScalingFit` (N convention of ``fit.size_column``)."""
    t5 = AlphaTarget(
        name="T5", statement="the poor-performance region moves with model size (E* ∝ N^alpha)",
        verdict=(Verdict.NOT_IDENTIFIED if not fit.identified else
                 Verdict.HELD if fit.alpha_ci95[0] > 0 or fit.alpha_ci95[1] < 0 else Verdict.DID_NOT_HOLD),
        loss=fit.loss, alpha=fit.alpha, alpha_ci95=fit.alpha_ci95, reason=fit.reason,
        peaks=[p.to_json() for p in fit.peaks], literature=dict(LITERATURE_ALPHA))
    statement = "effective model size: the runs at the peak perform like smaller controls"
    law = fit.laws.get(fit.size_column)
    if not isinstance(law, fits.ControlLaw):
        return [t5, EffectiveSizeTarget(name="T6", statement=statement, verdict=Verdict.NOT_IDENTIFIED, loss=fit.loss,
                                        reason=str(law) if law else "no controls' law")]
    eff = fit.effective[(fit.effective["size_column"] == fit.size_column) & (fit.effective["control"] == "none")
                        & np.isclose(fit.effective["repeated_fraction"], fit.repeated_fraction)]
    at_peak, states = {}, []
    for p in fit.peaks:
        g = eff[eff["N"] == p.N]
        if g.empty:
            continue
        e = _nearest(g["repeat_count"], p.e_star)
        r = g[g["repeat_count"] == e].iloc[0]
        fin = lambda v: float(v) if math.isfinite(v) else None  # noqa: E731
        row = {"repeat_count": e, "ratio": fin(r["ratio"]), "ratio_lo": fin(r["ratio_lo"]), "ratio_hi": fin(r["ratio_hi"]),
               "note": r["note"]}
        at_peak[str(p.N)] = row
        if row["ratio_hi"] is not None:
            states.append(row["ratio_hi"] < 1)
        elif r["note"].startswith("below the smallest control") and law.n_range[0] <= p.N:
            states.append(True)  # N_eff < the smallest control <= N
        else:
            states.append(None)
    verdict = (Verdict.HELD if states and all(s is True for s in states) else
               Verdict.DID_NOT_HOLD if states and all(s is not None for s in states) else Verdict.NOT_IDENTIFIED)
    return [t5, EffectiveSizeTarget(name="T6", statement=statement, verdict=verdict, loss=fit.loss, law=law.line(),
                                    at_peak=at_peak)]


def evaluate_scaling(final: pd.DataFrame, *, loss: Optional[str] = None, fraction: Optional[float] = None,
                     bootstrap: int = 0, baseline: str = "auto") -> list[Target]:
    """T5 and T6 across model sizes on a one-row-per-run table (:func:`final_table`), through
    :func:`repeatlens.fit_scaling` (N: non-embedding parameters)."""
    try:
        fit = fits.fit_scaling(final, loss, fraction=fraction, bootstrap=bootstrap, baseline=baseline)
    except fits.ScalingDataError as e:
        loss = loss or fits.default_loss(final)
        return [AlphaTarget(name="T5", statement="the poor-performance region moves with model size", verdict=Verdict.CANNOT_JUDGE,
                            loss=loss, reason=str(e)),
                EffectiveSizeTarget(name="T6", statement="effective model size", verdict=Verdict.CANNOT_JUDGE, loss=loss,
                                    reason=str(e))]
    return scaling_targets(fit)


def fit_sweep(path, *, loss: Optional[str] = None, fraction: Optional[float] = None, probe: Optional[str] = None,
              bootstrap: int = 0, size: str = "N", baseline: str = "auto") -> fits.ScalingFit:
    """:func:`repeatlens.fit_scaling` on an analysed sweep directory, or on a per-run table
    (``.csv`` / ``.parquet``, e.g. a study's committed ``results/final_runs.csv``):
    ``repeatlens fit PATH``."""
    from pathlib import Path

    from repeatlens.results.store import load_metrics, load_scores

    if Path(path).is_dir():
        scores = load_scores(path)
        try:
            metrics = load_metrics(path)
        except RepeatlensError:
            metrics = None
        final = final_table(scores, metrics, probe)
    else:
        final = fits.read_runs_table(path)
    loss = loss or fits.default_loss(final)
    if loss not in final:
        present = [c for c in ("test_loss",) + LOSS_SPLITS if c in final]
        raise ConfigError(f"--loss {loss}: not in {path}'s tables; expected one of {', '.join(present) or '(none)'}")
    return fits.fit_scaling(final, loss, fraction=fraction, bootstrap=bootstrap, size=size, baseline=baseline)


SweepFit = fits.ScalingFit
"""Deprecated: :func:`fit_sweep` now returns a :class:`repeatlens.results.fits.ScalingFit`."""


# --------------------------------------------------------------------------------- circuits


def circuit_table(scores: pd.DataFrame, probe: Optional[str] = None) -> pd.DataFrame:
    """Per run: the copying circuit at its last checkpoint and when it formed.

    ``kind`` is ``canonical`` (induction: a later head at offset L-1, an earlier head one
    back), ``shifted`` (by ``d``: offset L-1-d and d+1 back) or ``none``, read off the
    offset profile by :func:`repeatlens.results.circuits` on one probe; ``head`` and
    ``partner`` name the pair with the highest later-head score, ``formed_at`` is the first
    scored checkpoint with the same circuit. Counting these per seed tells which circuit a
    regime forms: the offset-(L-1) induction score alone misses the shifted ones.
    """
    s = reduce.check_scores(scores, probe)
    found = reduce.circuits(s)
    cols = [c for c in ("run_id", "model_preset", SIZE, "repeated_fraction", "repeat_count", "seed") if c in s.columns]
    runs = s[cols].drop_duplicates("run_id")
    rows = []
    for r in runs.to_dict("records"):
        mine = found[found.run_id == r["run_id"]]
        last = s.loc[s.run_id == r["run_id"], "step"].max()
        at_end = mine[mine.step == last].sort_values("score", ascending=False)
        row = {**r, "kind": "none", "d": np.nan, "head": "", "partner": "", "score": np.nan, "formed_at": np.nan}
        if len(at_end):
            best = at_end.iloc[0]
            same = mine[(mine.kind == best.kind) & (mine.d == best.d)]
            row.update(kind=best.kind, d=int(best.d), head=f"L{int(best.layer)}.H{int(best['head'])}",
                       partner=f"L{int(best.partner_layer)}.H{int(best.partner_head)}", score=float(best.score),
                       formed_at=int(same.step.min()))
        rows.append(row)
    order = [c for c in (SIZE, "repeated_fraction", "repeat_count", "seed") if c in cols]
    return pd.DataFrame(rows).sort_values(order).reset_index(drop=True)


def circuits_markdown(table: pd.DataFrame) -> str:
    """:func:`circuit_table` as a markdown table."""
    head = "| run | circuit at the end | later head | earlier head | score | formed by step |\n|---|---|---|---|---|---|\n"
    rows = []
    for r in table.itertuples(index=False):
        kind = {"none": "none", "canonical": "canonical induction"}.get(r.kind, f"induction shifted by {int(r.d) if pd.notna(r.d) else '?'}")
        formed = f"{int(r.formed_at)}" if pd.notna(r.formed_at) else "–"
        score = f"{r.score:.2f}" if pd.notna(r.score) else "–"
        rows.append(f"| {r.run_id} | {kind} | {r.head or '–'} | {r.partner or '–'} | {score} | {formed} |")
    return head + "\n".join(rows)
