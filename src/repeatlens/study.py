"""The repeated-data study's targets T1-T4, evaluated on a sweep's tidy tables.

Hernandez et al. 2022, "Scaling Laws and Interpretability of Learning from Repeated Data",
report that at a fixed repeated fraction f, test loss against the repeat count E has an
interior maximum (the "poor performance region"), that near it induction heads and copying
degrade more than the loss does, and that repeated-subset loss falls while test loss rises
(double descent over training). :func:`evaluate_targets` checks the four statements this
project's study targets on any sweep with a control (f = 0), one f > 0 and several E and
seeds, and returns a :class:`Target` per statement with the numbers behind its verdict.

"Spread over seeds" is the range (max - min) of a quantity across the seeds of one grid
point; where two points are compared, the larger of their two ranges. Induction and
prefix-matching are the best head's score (max over layers and heads); copying is the
model's in-context copying gain (loss on the first copy minus loss on the second copy of
repeated random tokens, :func:`repeatlens.scores.behaviour.copying_gain`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd

from repeatlens.results import reduce

__all__ = ["Target", "final_table", "point_table", "chance_levels", "evaluate_targets", "targets_markdown"]

STUDY_QUANTITIES = ("test_loss", "repeated_loss", "induction", "shifted_induction", "prefix_matching", "previous_token",
                    "copying_gain", "copying_loss")
"""Per-run quantities of :func:`final_table` (names of :data:`repeatlens.results.QUANTITIES`)."""
ABILITIES = ("induction", "prefix_matching", "copying_gain")


@dataclass
class Target:
    """One study target's verdict: ``held`` is True, False, or None (not measurable here)."""

    name: str
    statement: str
    held: Optional[bool]
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def line(self) -> str:
        verdict = {True: "held", False: "did not hold", None: "not measured"}[self.held]
        return f"{self.name} {verdict}: {self.detail}"


def final_table(scores: pd.DataFrame, probe: Optional[str] = None, at: str = "last") -> pd.DataFrame:
    """Per run, the final (or first) checkpoint's losses, best-head scores and copying,
    read on one probe (:func:`repeatlens.results.check_scores`)."""
    return reduce.final_table(reduce.check_scores(scores, probe), STUDY_QUANTITIES, at)


def point_table(final: pd.DataFrame) -> pd.DataFrame:
    """Per (f, E): mean, seed range (``*_spread``, max - min) and seed count of every quantity."""
    cols = [c for c in STUDY_QUANTITIES if c in final]
    return reduce.seed_stats(final, ["repeated_fraction", "repeat_count"], cols)


def chance_levels(d_vocab: int, n_ctx: int) -> dict[str, float]:
    """Each attention score of causal uniform attention on the standard probes.

    A randomly initialised model's attention is close to uniform, so its scores should sit
    near these values (query ``i`` gives ``1/(i+1)`` to each earlier key).
    """
    from repeatlens.scores import chance_levels as levels, get_probes

    return levels(get_probes(d_vocab, n_ctx))


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _spread(*rows: pd.Series, col: str) -> float:
    """The seed spread that two (or more) compared grid points must be told apart by: the larger range."""
    return float(max(r[f"{col}_spread"] for r in rows))


def evaluate_targets(
    scores: pd.DataFrame,
    metrics: Optional[pd.DataFrame] = None,
    *,
    fraction: Optional[float] = None,
    chance: Optional[dict[str, float]] = None,
    chance_tolerance: float = 0.05,
    probe: Optional[str] = None,
) -> list[Target]:
    """Check T1-T4 on a sweep's tables.

    Args:
        scores: The sweep's tidy scores (``repeatlens.load_scores``) with a control (f = 0)
            and, at one f > 0, several repeat counts E; several seeds per point.
        metrics: The training-metrics table (``repeatlens.load_metrics``), for T4's
            trajectories; T4 is "not measured" without it.
        fraction: The f > 0 to study; default the only (or largest) one in ``scores``.
        chance: Uniform-attention levels (:func:`chance_levels`) for T3's random-init check.
        chance_tolerance: How far (absolute) a step-0 best-head score may sit from chance.
        probe: The probe the attention and copying scores are read on
            (:func:`repeatlens.results.select_probe`); default the table's default probe.
            T2 names it.

    Returns:
        ``[T1, T2, T3, T4]``.
    """
    scores = reduce.check_scores(scores, probe)
    final = final_table(scores)
    fs = sorted(x for x in final.repeated_fraction.unique() if x > 0)
    if not fs or not (final.repeated_fraction == 0).any():
        raise ValueError("the study needs a control (f = 0) and at least one f > 0 in the scores table")
    f = fraction if fraction is not None else fs[-1]
    pts = point_table(final)
    control = pts[pts.repeated_fraction == 0].iloc[0]
    curve = pts[np.isclose(pts.repeated_fraction, f)].sort_values("repeat_count").reset_index(drop=True)
    peak_i = int(curve.test_loss.idxmax())
    peak, lo, hi = curve.iloc[peak_i], curve.iloc[0], curve.iloc[-1]
    peak_E = float(peak.repeat_count)
    return [
        _t1(curve, peak_i, peak, lo, hi, control, f),
        _t2(peak, control, f, scores.attrs.get("probe")),
        _t3(curve, control, scores, f, chance, chance_tolerance),
        _t4(final, metrics, f, peak_E),
    ]


def _t1(curve: pd.DataFrame, peak_i: int, peak: pd.Series, lo: pd.Series, hi: pd.Series, control: pd.Series, f: float) -> Target:
    margins = {
        f"E={lo.repeat_count:g}": (peak.test_loss - lo.test_loss, _spread(peak, lo, col="test_loss")),
        f"E={hi.repeat_count:g}": (peak.test_loss - hi.test_loss, _spread(peak, hi, col="test_loss")),
        "control": (peak.test_loss - control.test_loss, _spread(peak, control, col="test_loss")),
    }
    interior = 0 < peak_i < len(curve) - 1
    held = interior and all(m > s for m, s in margins.values())
    parts = ", ".join(f"{k} by {m:+.3f} (seed spread {s:.3f})" for k, (m, s) in margins.items())
    where = "an interior" if interior else "an end-point (not interior)"
    detail = (f"at f = {f:g}, test loss peaks at {where} E = {peak.repeat_count:g} "
              f"({peak.test_loss:.3f} nats, {_seeds(int(peak.seeds))}) and exceeds {parts}.")
    return Target("T1", "interior maximum of test loss over E, above both ends and the control by more than the seed spread",
                  held, detail, {"peak_E": float(peak.repeat_count), "peak_test_loss": float(peak.test_loss),
                                 "margins": {k: [float(m), float(s)] for k, (m, s) in margins.items()}})


def _t2(peak: pd.Series, control: pd.Series, f: float, probe: Optional[str]) -> Target:
    rise = (peak.test_loss - control.test_loss) / control.test_loss
    drops = {a: (control[a] - peak[a]) / abs(control[a]) if control[a] != 0 else float("nan") for a in ABILITIES if a in peak}
    held = all(d > 0 and d > rise for d in drops.values())
    parts = ", ".join(f"{a} {control[a]:.3f} -> {peak[a]:.3f} ({-d:+.0%})" for a, d in drops.items())
    detail = (f"at the peak (f = {f:g}, E = {peak.repeat_count:g}) against the control: test loss "
              f"{control.test_loss:.3f} -> {peak.test_loss:.3f} ({rise:+.1%}); {parts}. "
              f"Held means every ability dropped, by more than the {rise:.1%} rise in test loss."
              + (f" Attention and copying read the probe {probe}." if probe else ""))
    return Target("T2", "near the peak, induction, prefix-matching and copying drop by more (relatively) than test loss rises",
                  held, detail, {"test_loss_rise": float(rise), "drops": {k: float(v) for k, v in drops.items()}})


def _t3(curve: pd.DataFrame, control: pd.Series, scores: pd.DataFrame, f: float, chance: Optional[dict[str, float]], tol: float) -> Target:
    e1 = curve[curve.repeat_count == 1]
    parts, ok = [], []
    numbers: dict[str, Any] = {}
    if e1.empty:
        parts.append(f"no E = 1 point at f = {f:g}")
        ok.append(None)
    else:
        r = e1.iloc[0]
        diff = r.test_loss - control.test_loss
        spread = _spread(r, control, col="test_loss")
        match = abs(diff) <= max(spread, 0.01 * control.test_loss)
        ok.append(bool(match))
        numbers["E1_minus_control"] = float(diff)
        parts.append(f"E = 1 test loss {r.test_loss:.3f} vs control {control.test_loss:.3f} "
                     f"(difference {diff:+.3f}, seed spread {spread:.3f})")
    first = reduce.final_table(scores, STUDY_QUANTITIES, at="first")
    first = first[first.step == 0]
    if chance is None or first.empty:
        parts.append("random-init scores not measured (no step-0 checkpoint or no chance levels)")
        ok.append(None)
    else:
        devs = {m: float((first[m] - chance[m]).abs().max()) for m in ("induction", "prefix_matching") if m in first}
        ok.append(all(d <= tol for d in devs.values()))
        numbers["random_init_max_deviation"] = devs
        parts.append("step-0 (random init) best heads, " + ", ".join(
            f"{m} max {first[m].max():.3f} vs chance {chance[m]:.3f}" for m in devs) + f" (tolerance {tol:g}) over {len(first)} runs")
    held = None if any(o is None for o in ok) and not any(o is False for o in ok) else all(bool(o) for o in ok)
    return Target("T3", "controls: E = 1 matches f = 0, and a randomly initialised model scores at chance", held,
                  "; ".join(parts) + ".", numbers)


def _memorization_phase(rep: pd.Series) -> Optional[tuple[int, int]]:
    """Positions (into the checkpoint series) where repeated-subset loss falls from above 3/4
    of its start (last such checkpoint) to below 1/4 of it (first such one); None if it never does."""
    start = float(rep.iloc[0])
    below = np.flatnonzero(rep.to_numpy() <= 0.25 * start)
    if not len(below):
        return None
    b = int(below[0])
    above = np.flatnonzero(rep.to_numpy()[: b + 1] >= 0.75 * start)
    return (int(above[-1]) if len(above) else 0), b


def _largest_rise(x: np.ndarray) -> tuple[float, int, int]:
    """max over a < b of x[b] - x[a], with (a, b)."""
    best, pair, low = -np.inf, (0, 0), 0
    for b in range(1, len(x)):
        if x[b] - x[low] > best:
            best, pair = float(x[b] - x[low]), (low, b)
        if x[b] < x[low]:
            low = b
    return best, pair[0], pair[1]


def _t4(final: pd.DataFrame, metrics: Optional[pd.DataFrame], f: float, peak_E: float) -> Target:
    """Double descent over training at the peak, per seed.

    The memorization phase runs from the last checkpoint where repeated-subset loss is still
    above 3/4 of its start to the first where it is below 1/4. Held when, in every seed,
    test loss rises inside that phase (its largest increase between two checkpoints of the
    phase is positive) while the same-seed control's test loss falls over the same steps,
    and test loss then descends again (it ends below the top of that rise).
    """
    if metrics is None or metrics.empty:
        return Target("T4", "double descent over training near the peak", None, "no training metrics given.")

    def curves(run: str) -> pd.DataFrame:
        return metrics[metrics.run_id == run].pivot_table(index="step", columns="split", values="loss")

    at_peak = final[np.isclose(final.repeated_fraction, f) & (final.repeat_count == peak_E)]
    controls = final[final.repeated_fraction == 0].set_index("seed").run_id
    rows, held_runs, numbers = [], [], {}
    for run, seed in zip(at_peak.run_id, at_peak.seed):
        m = curves(run).dropna(subset=["test", "repeated"])
        phase = _memorization_phase(m.repeated)
        if phase is None:
            held_runs.append(False)
            rows.append(f"{run}: repeated loss never fell below a quarter of its start ({m.repeated.iloc[0]:.2f} -> {m.repeated.iloc[-1]:.2f})")
            continue
        i0, i1 = phase
        steps = m.index.to_numpy()
        test = m.test.to_numpy()
        rise, a, b = _largest_rise(test[i0 : i1 + 1])
        sa, sb = int(steps[i0 + a]), int(steps[i0 + b])
        again = bool(test[-1] < test[i0 + b])
        ctrl_change = None
        if seed in controls.index:
            c = curves(controls[seed]).test.dropna()
            if sa in c.index and sb in c.index:
                ctrl_change = float(c[sb] - c[sa])
        ok = rise > 0 and again and (ctrl_change is None or ctrl_change < 0)
        held_runs.append(ok)
        numbers[run] = {"phase_steps": [int(steps[i0]), int(steps[i1])], "rise": rise, "rise_steps": [sa, sb],
                        "control_change": ctrl_change, "final_test": float(test[-1])}
        ctrl = f"; same-seed control {ctrl_change:+.3f} over those steps" if ctrl_change is not None else ""
        rows.append(f"{run}: repeated loss {m.repeated.iloc[i0]:.2f} -> {m.repeated.iloc[i1]:.2f} over steps {steps[i0]}-{steps[i1]}, "
                    f"test loss {test[i0 + a]:.3f} -> {test[i0 + b]:.3f} ({rise:+.3f}) over steps {sa}-{sb}{ctrl}, "
                    f"then {test[-1]:.3f} at step {steps[-1]}")
    held = bool(held_runs) and all(held_runs)
    detail = (f"at f = {f:g}, E = {peak_E:g} ({_seeds(len(rows))}): " + "; ".join(rows) +
              ". Held means in every seed test loss rose while the repeated loss fell from 3/4 to 1/4 of its start, "
              "the control's fell over the same steps, and test loss then descended again.")
    return Target("T4", "near the peak, repeated-subset loss falls towards zero while test loss rises (double descent over training)",
                  held, detail, numbers)


def targets_markdown(targets: list[Target]) -> str:
    """One paragraph per target, each beginning ``T1 held:`` / ``T1 did not hold:``."""
    return "\n\n".join(t.line for t in targets)
