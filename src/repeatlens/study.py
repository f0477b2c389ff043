"""The repeated-data study's targets T1-T6, evaluated on a sweep's tidy tables.

Hernandez et al. 2022, "Scaling Laws and Interpretability of Learning from Repeated Data",
report that at a fixed repeated fraction f, test loss against the repeat count E has an
interior maximum (the "poor performance region"), that near it induction heads and copying
degrade more than the loss does, that repeated-subset loss falls while test loss rises
(double descent over training), and, across model sizes, where that region sits and how
many parameters the damage costs (an 800M model performing like a 400M one).
:func:`evaluate_targets` checks T1-T4 at one model size and :func:`evaluate_scaling` T5-T6
across sizes, on any sweep with controls (f = 0), one f > 0 and several E and seeds; each
returns a :class:`Target` per statement with the numbers behind its verdict.
:func:`fit_sweep` is T5/T6's fits for any sweep (``repeatlens fit``).

The loss is the natural-text test loss (split ``test_text`` of the training metrics) when
the runs mix a corpus with the synthetic source, so that "repetition damages copying more
than loss" is not circular; the plain ``test_loss`` score otherwise. "Spread over seeds" is
the range (max - min) of a quantity across the seeds of one grid point; where two points
are compared, the larger of their two ranges. Induction, shifted induction and
prefix-matching are the best head's score (max over layers and heads) on one probe
(:func:`repeatlens.results.select_probe`); copying is the model's in-context copying gain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd

from repeatlens.errors import ConfigError, RepeatlensError
from repeatlens.results import reduce

__all__ = [
    "Target",
    "SweepFit",
    "final_table",
    "point_table",
    "chance_levels",
    "evaluate_targets",
    "evaluate_scaling",
    "fit_sweep",
    "targets_markdown",
    "circuit_table",
    "circuits_markdown",
]

STUDY_QUANTITIES = ("test_loss", "repeated_loss", "induction", "shifted_induction", "prefix_matching", "previous_token",
                    "copying_gain", "copying_loss")
"""Per-run quantities of :func:`final_table` from the scores (names of :data:`repeatlens.results.QUANTITIES`)."""
LOSS_SPLITS = ("test_text", "test_synthetic", "repeated_text", "repeated_synthetic")
"""Per-run final losses of :func:`final_table` from the training metrics, when the runs have them."""
ABILITIES = ("induction", "shifted_induction", "prefix_matching", "copying_gain")
SIZE = "n_params_nonembedding"
"""The model-size coordinate of the scaling targets: Kaplan et al. 2020's non-embedding N."""
LITERATURE_ALPHA = {
    "Chudnovsky et al. 2026 (peak repeat count, R_peak ~ N^-0.96; from notes on the paper, not checked against it)": -0.96,
    "a secondary summary of Hernandez et al. 2022 (edges E ~ N^-0.5; unverified)": -0.5,
}
"""How the poor-performance region moves with model size elsewhere, for T5's comparison.
Hernandez et al. 2022's own text, as far as it could be read here, gives no exponent."""


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


def final_table(scores: pd.DataFrame, metrics: Optional[pd.DataFrame] = None, probe: Optional[str] = None, at: str = "last") -> pd.DataFrame:
    """Per run, the final (or first) checkpoint's losses, best-head scores and copying on
    one probe (:func:`repeatlens.results.check_scores`), plus the split losses of
    :data:`LOSS_SPLITS` from ``metrics`` when it has them."""
    final = reduce.final_table(reduce.check_scores(scores, probe), STUDY_QUANTITIES, at)
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
    return reduce.seed_stats(final, keys, cols)


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


def _default_loss(final: pd.DataFrame) -> str:
    return "test_text" if "test_text" in final and final["test_text"].notna().all() else "test_loss"


def _one_size(final: pd.DataFrame, size: Optional[float]) -> tuple[pd.DataFrame, Optional[float]]:
    """``final`` restricted to one model size: ``size``, or the size with the most runs."""
    if SIZE not in final or final[SIZE].nunique() <= 1:
        return final, None
    if size is None:
        counts = final.groupby(SIZE).size()
        size = float(counts[counts == counts.max()].index[len(counts[counts == counts.max()]) // 2])
    return final[final[SIZE] == size], size


def _loss_name(loss: str) -> str:
    return {"test_text": "natural-text test loss", "test_loss": "test loss"}.get(loss, loss.replace("_", " "))


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
) -> list[Target]:
    """Check T1-T4 on a sweep's tables, at one model size.

    Args:
        scores: The sweep's tidy scores (``repeatlens.load_scores``) with a control (f = 0)
            and, at one f > 0, several repeat counts E; several seeds per point.
        metrics: The training-metrics table (``repeatlens.load_metrics``), for T4's
            trajectories and the natural-text loss; T4 is "not measured" without it.
        fraction: The f > 0 to study; default the only (or largest) one in ``scores``.
        chance: Uniform-attention levels (``repeatlens.scores.chance_levels`` of the probe)
            for T3's random-init check.
        chance_tolerance: How far (absolute) a step-0 best-head score may sit from chance.
        probe: The probe the attention and copying scores are read on
            (:func:`repeatlens.results.select_probe`); default the table's default probe.
            T2 names it.
        loss: The loss column: ``test_text`` (default when the runs have it) or ``test_loss``.
        size: The model size (non-embedding parameters) to evaluate at; default the only
            one, or the size with the most runs.

    Returns:
        ``[T1, T2, T3, T4]``.
    """
    scores = reduce.check_scores(scores, probe)
    final = final_table(scores, metrics)
    final, size = _one_size(final, size)
    if size is not None:
        scores = scores[scores[SIZE] == size]
    loss = loss or _default_loss(final)
    fs = sorted(x for x in final.repeated_fraction.unique() if x > 0)
    if not fs or not (final.repeated_fraction == 0).any():
        raise ValueError("the study needs a control (f = 0) and at least one f > 0 in the scores table")
    f = fraction if fraction is not None else fs[-1]
    pts = point_table(final)
    control = pts[pts.repeated_fraction == 0].iloc[0]
    curve = pts[np.isclose(pts.repeated_fraction, f)].sort_values("repeat_count").reset_index(drop=True)
    peak_i = int(curve[loss].idxmax())
    peak, lo, hi = curve.iloc[peak_i], curve.iloc[0], curve.iloc[-1]
    peak_E = float(peak.repeat_count)
    where = f"model of N = {size:,.0f} non-embedding parameters: " if size is not None else ""
    targets = [
        _t1(curve, peak_i, peak, lo, hi, control, f, loss),
        _t2(peak, control, f, scores.attrs.get("probe"), loss),
        _t3(curve, control, scores, f, chance, chance_tolerance, loss),
        _t4(final, metrics, f, peak_E, "test" if loss == "test_loss" else loss),
    ]
    for t in targets:
        t.detail = where + t.detail
    return targets


def _t1(curve: pd.DataFrame, peak_i: int, peak: pd.Series, lo: pd.Series, hi: pd.Series, control: pd.Series, f: float, loss: str) -> Target:
    margins = {
        f"E={lo.repeat_count:g}": (peak[loss] - lo[loss], _spread(peak, lo, col=loss)),
        f"E={hi.repeat_count:g}": (peak[loss] - hi[loss], _spread(peak, hi, col=loss)),
        "control": (peak[loss] - control[loss], _spread(peak, control, col=loss)),
    }
    interior = 0 < peak_i < len(curve) - 1
    held = interior and all(m > s for m, s in margins.values())
    parts = ", ".join(f"{k} by {m:+.3f} (seed spread {s:.3f})" for k, (m, s) in margins.items())
    where = "an interior" if interior else "an end-point (not interior)"
    detail = (f"at f = {f:g}, {_loss_name(loss)} peaks at {where} E = {peak.repeat_count:g} "
              f"({peak[loss]:.3f} nats, {_seeds(int(peak.seeds))}) and exceeds {parts}.")
    return Target("T1", f"interior maximum of {_loss_name(loss)} over E, above both ends and the control by more than the seed spread",
                  held, detail, {"loss": loss, "peak_E": float(peak.repeat_count), "peak_loss": float(peak[loss]),
                                 "margins": {k: [float(m), float(s)] for k, (m, s) in margins.items()}})


def _t2(peak: pd.Series, control: pd.Series, f: float, probe: Optional[str], loss: str) -> Target:
    rise = (peak[loss] - control[loss]) / control[loss]
    drops = {a: (control[a] - peak[a]) / abs(control[a]) if control[a] != 0 else float("nan") for a in ABILITIES if a in peak}
    held = all(d > 0 and d > rise for d in drops.values())
    parts = ", ".join(f"{a} {control[a]:.3f} -> {peak[a]:.3f} ({-d:+.0%})" for a, d in drops.items())
    detail = (f"at the peak (f = {f:g}, E = {peak.repeat_count:g}) against the control: {_loss_name(loss)} "
              f"{control[loss]:.3f} -> {peak[loss]:.3f} ({rise:+.1%}); {parts}. "
              f"Held means every ability dropped, by more than the {rise:.1%} rise in {_loss_name(loss)}."
              + (f" Attention and copying read the probe {probe}." if probe else ""))
    return Target("T2", f"near the peak, induction, shifted induction, prefix-matching and copying drop by more (relatively) "
                  f"than {_loss_name(loss)} rises", held, detail,
                  {"loss": loss, "loss_rise": float(rise), "drops": {k: float(v) for k, v in drops.items()}, "probe": probe})


def _t3(curve: pd.DataFrame, control: pd.Series, scores: pd.DataFrame, f: float, chance: Optional[dict[str, float]], tol: float,
        loss: str) -> Target:
    e1 = curve[curve.repeat_count == 1]
    parts, ok = [], []
    numbers: dict[str, Any] = {}
    if e1.empty:
        parts.append(f"no E = 1 point at f = {f:g}")
        ok.append(None)
    else:
        r = e1.iloc[0]
        diff = r[loss] - control[loss]
        spread = _spread(r, control, col=loss)
        match = abs(diff) <= max(spread, 0.01 * control[loss])
        ok.append(bool(match))
        numbers["E1_minus_control"] = float(diff)
        parts.append(f"E = 1 {_loss_name(loss)} {r[loss]:.3f} vs control {control[loss]:.3f} "
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


def _t4(final: pd.DataFrame, metrics: Optional[pd.DataFrame], f: float, peak_E: float, split: str = "test") -> Target:
    """Double descent over training at the peak, per seed.

    The memorization phase runs from the last checkpoint where repeated-subset loss is still
    above 3/4 of its start to the first where it is below 1/4. Held when, in every seed,
    test loss rises inside that phase (its largest increase between two checkpoints of the
    phase is positive) while the same-seed control's test loss falls over the same steps,
    and test loss then descends again (it ends below the top of that rise). ``split``: the
    metrics split read as test loss (``test``, or ``test_text`` for the natural text).
    """
    if metrics is None or metrics.empty:
        return Target("T4", "double descent over training near the peak", None, "no training metrics given.")

    def curves(run: str) -> pd.DataFrame:
        return metrics[metrics.run_id == run].pivot_table(index="step", columns="split", values="loss")

    at_peak = final[np.isclose(final.repeated_fraction, f) & (final.repeat_count == peak_E)]
    controls = final[final.repeated_fraction == 0].set_index("seed").run_id
    rows, held_runs, numbers = [], [], {}
    for run, seed in zip(at_peak.run_id, at_peak.seed):
        m = curves(run).dropna(subset=[split, "repeated"])
        phase = _memorization_phase(m.repeated)
        if phase is None:
            held_runs.append(False)
            rows.append(f"{run}: repeated loss never fell below a quarter of its start ({m.repeated.iloc[0]:.2f} -> {m.repeated.iloc[-1]:.2f})")
            continue
        i0, i1 = phase
        steps = m.index.to_numpy()
        test = m[split].to_numpy()
        rise, a, b = _largest_rise(test[i0 : i1 + 1])
        sa, sb = int(steps[i0 + a]), int(steps[i0 + b])
        again = bool(test[-1] < test[i0 + b])
        ctrl_change = None
        if seed in controls.index:
            c = curves(controls[seed])[split].dropna()
            if sa in c.index and sb in c.index:
                ctrl_change = float(c[sb] - c[sa])
        ok = rise > 0 and again and (ctrl_change is None or ctrl_change < 0)
        held_runs.append(ok)
        numbers[run] = {"phase_steps": [int(steps[i0]), int(steps[i1])], "rise": rise, "rise_steps": [sa, sb],
                        "control_change": ctrl_change, "final_test": float(test[-1])}
        ctrl = f"; same-seed control {ctrl_change:+.3f} over those steps" if ctrl_change is not None else ""
        rows.append(f"{run}: repeated loss {m.repeated.iloc[i0]:.2f} -> {m.repeated.iloc[i1]:.2f} over steps {steps[i0]}-{steps[i1]}, "
                    f"{_loss_name('test_text' if split == 'test_text' else 'test_loss')} {test[i0 + a]:.3f} -> {test[i0 + b]:.3f} "
                    f"({rise:+.3f}) over steps {sa}-{sb}{ctrl}, "
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


# ------------------------------------------------------------------------------- scaling: T5, T6


def _sizes_line(peaks: dict[float, reduce.Peak]) -> str:
    def edge(x: Optional[float]) -> str:
        return f"{x:.3g}" if x is not None else "beyond the grid"

    return "; ".join(
        f"N = {n:,.0f}: E* = {p.E:.3g} (grid {p.E_grid:g}{'' if p.interior else ', an end point'}, rise {p.rise:+.3f}, "
        f"half-maximum edges {edge(p.lower)} and {edge(p.upper)})"
        for n, p in peaks.items()
    )


def evaluate_scaling(
    final: pd.DataFrame, *, loss: Optional[str] = None, fraction: Optional[float] = None, bootstrap: int = 1000
) -> list[Target]:
    """T5 and T6 across model sizes, on a final table (:func:`final_table`).

    * **T5**, the poor-performance region moves with model size: per size, the repeat count
      ``E*`` of the peak of the mean loss (:func:`repeatlens.results.peak_scaling`), and a
      power law ``E* ∝ N^alpha`` in the non-embedding parameter count. Held when every peak
      is interior and the seed-bootstrap interval of alpha excludes 0; its sign and size
      are compared with :data:`LITERATURE_ALPHA`.
    * **T6**, effective model size: a power law fitted to the controls' loss against N,
      each repeated run's loss turned into the N a control would need for it, and
      ``N_eff / N`` at each size's peak (:func:`repeatlens.results.effective_sizes`). Held
      when the controls' loss falls with N at every step up in size and ``N_eff / N < 1``
      at every size's peak.
    """
    loss = loss or _default_loss(final)
    name = _loss_name(loss)
    try:
        peaks, law = reduce.peak_scaling(final, loss, fraction=fraction, size=SIZE, bootstrap=bootstrap)
    except reduce.MissingDataError as e:
        t5 = Target("T5", "the poor-performance region moves with model size", None, f"{e}.")
    else:
        lo, hi = law.slope_interval or (float("nan"), float("nan"))
        interior = all(p.interior for p in peaks.values())
        moves = lo > 0 or hi < 0
        sign = "fewer" if law.slope < 0 else "more"
        refs = "; ".join(f"{ref}: alpha = {a:+.2f}, {'same' if np.sign(a) == np.sign(law.slope) else 'opposite'} sign"
                         for ref, a in LITERATURE_ALPHA.items())
        detail = (f"{name} per size: {_sizes_line(peaks)}. Fit E* = {law.a:.3g} N^alpha with alpha = {law.slope:+.3f} "
                  f"(OLS standard error {law.slope_se:.3f}; seed-bootstrap 16-84% interval {lo:+.3f} to {hi:+.3f}): larger models "
                  f"peak at {sign} repeats. Compared: {refs}. Held means every peak is interior and the interval excludes 0.")
        t5 = Target("T5", "the poor-performance region moves with model size", interior and moves, detail,
                    {"loss": loss, "peaks": {str(n): vars(p) for n, p in peaks.items()}, "alpha": law.slope, "alpha_se": law.slope_se,
                     "alpha_interval": [lo, hi], "a": law.a})
    ctrl = final[final.repeated_fraction == 0].groupby(SIZE)[loss].mean().sort_index()
    if len(ctrl) < 2:
        return [t5, Target("T6", "effective model size", None, f"controls at {len(ctrl)} model size(s); the fit needs 2 or more.")]
    falls = bool((np.diff(ctrl.to_numpy()) < 0).all())
    controls = ", ".join(f"{v:.3f} at N = {n:,.0f}" for n, v in ctrl.items())
    try:
        ctrl_law, runs = reduce.effective_sizes(final, loss, size=SIZE)
    except reduce.MissingDataError as e:  # the fitted loss does not fall with N: no effective size
        return [t5, Target("T6", "effective model size", False, f"controls' {name} {controls}: {e}.")]
    at_peak = {}
    f = fraction if fraction is not None else float(final.loc[final.repeated_fraction > 0, "repeated_fraction"].max())
    for n, g in runs[np.isclose(runs.repeated_fraction, f)].groupby("N"):
        e_peak = float(g.groupby("repeat_count")[loss].mean().idxmax())
        at_peak[float(n)] = (e_peak, float(g[g.repeat_count == e_peak]["ratio"].mean()))
    held = falls and all(r < 1 for _, r in at_peak.values())
    detail = (f"controls' {name} {controls} ({'falls' if falls else 'does not fall'} with N); fit L = {ctrl_law.a:.3g} N^{ctrl_law.slope:+.3f}. At each size's peak, "
              + "; ".join(f"N = {n:,.0f}, E = {e:g}: N_eff / N = {r:.3f}" for n, (e, r) in at_peak.items())
              + ". Held means the controls' loss falls with N and N_eff / N < 1 at every peak "
              "(Hernandez et al. 2022: 800M performing like 400M is N_eff / N = 0.5).")
    t6 = Target("T6", "effective model size: the repeated runs perform like smaller controls", held, detail,
                {"loss": loss, "control_law": {"a": ctrl_law.a, "slope": ctrl_law.slope}, "at_peak": {str(n): list(v) for n, v in at_peak.items()},
                 "controls": {str(n): float(v) for n, v in ctrl.items()}})
    return [t5, t6]


@dataclass
class SweepFit:
    """:func:`fit_sweep`'s result: the targets and the per-run effective sizes."""

    targets: list[Target]
    runs: Optional[pd.DataFrame]
    loss: str

    def lines(self) -> list[str]:
        out = [t.line for t in self.targets]
        if self.runs is not None and len(self.runs):
            cols = ["run_id", "repeated_fraction", "repeat_count", "seed", "N", self.loss, "N_eff", "ratio"]
            out += ["", "per run (N: non-embedding parameters; N_eff: the N a control would need for this loss):",
                    self.runs[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")]
        return out


def fit_sweep(path, *, loss: Optional[str] = None, fraction: Optional[float] = None, probe: Optional[str] = None,
              bootstrap: int = 1000) -> SweepFit:
    """T5/T6's fits on any analysed sweep (``repeatlens fit SWEEP_DIR``): where the
    poor-performance region sits per model size and how it moves, and the effective model
    size of every repeated run on the controls' power law."""
    from repeatlens.results.store import load_metrics, load_scores

    scores = load_scores(path)
    try:
        metrics = load_metrics(path)
    except RepeatlensError:
        metrics = None
    final = final_table(scores, metrics, probe)
    loss = loss or _default_loss(final)
    if loss not in final:
        raise ConfigError(f"--loss {loss}: not in this sweep's tables; expected one of {', '.join(c for c in ('test_loss',) + LOSS_SPLITS if c in final)}")
    targets = evaluate_scaling(final, loss=loss, fraction=fraction, bootstrap=bootstrap)
    try:
        runs = reduce.effective_sizes(final, loss, size=SIZE)[1]
    except reduce.MissingDataError:
        runs = None
    return SweepFit(targets, runs, loss)


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
