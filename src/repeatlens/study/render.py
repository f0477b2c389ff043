"""The study's prose: each target's paragraph rendered from its fields, and the markdown of
the targets and the circuit table. Nothing here decides a verdict or computes a number:
the verdicts and numbers are the targets' fields (:mod:`.targets`); this module only words
and formats them (a missing number is worded as missing, a count gets its plural).
"""

from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from repeatlens.results.fits.peak import LackOfFit
from repeatlens.study.targets import (
    FLAT_FRACTION,
    RISE_ALPHA,
    ZERO_FRACTION,
    AlphaTarget,
    DamageTarget,
    DoubleDescentTarget,
    EffectiveSizeTarget,
    FewRepeatsTarget,
    PeakTarget,
    Target,
    renders,
    rise_threshold,
)

__all__ = ["targets_markdown", "circuits_markdown", "loss_name", "size_where"]


def loss_name(loss: str) -> str:
    """How the prose names a loss column (``test_text``: the natural-text test loss)."""
    return {"test_text": "natural-text test loss", "test_loss": "test loss"}.get(loss, loss.replace("_", " "))


def size_where(size: float) -> str:
    """The :attr:`Target.where` prefix of a target read at one model size."""
    return f"model of N = {size:,.0f} non-embedding parameters: "


def too_few_control_sizes(k: int, need: int) -> str:
    """T2's reason for judging on relative drops: full-data controls at ``k`` sizes where the laws need ``need``."""
    return f"full-data controls at {k} model size{'s' if k != 1 else ''}; the laws need at least {need}"


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _span(lo: int, hi: int) -> str:
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _ci(pair: Optional[tuple[float, float]] | Optional[list[float]], fmt: str = "{:.3g}") -> str:
    return "no interval" if pair is None else f"95% {fmt.format(pair[0])} to {fmt.format(pair[1])}"


def _ratio(r: dict[str, Any]) -> str:
    if r.get("ratio") is None:
        return f"({r.get('note')})"
    lo = f"{r['ratio_lo']:.3g}" if r.get("ratio_lo") is not None else "<range"
    hi = f"{r['ratio_hi']:.3g}" if r.get("ratio_hi") is not None else ">range"
    return f"{r['ratio']:.3g} (95% {lo} to {hi})"


# ------------------------------------------------------------------------------ statements


def peak_statement(loss: str) -> str:
    return f"interior maximum of the {loss_name(loss)} over E, its amplitude above noise"


def damage_statement(loss: str) -> str:
    return (f"near the peak, copying is damaged more than the {loss_name(loss)} (effective model size lost on each, "
            "where the controls' laws allow; else relative drops)")


FEW_REPEATS_STATEMENT = ("a few repeats cost nothing beyond the seed spread against the data-matched control, and a randomly "
                         "initialised model scores at chance")
DOUBLE_DESCENT_STATEMENT = ("double descent in time: test loss rises beyond its evaluation noise after the control has "
                            "flattened, near the peak")
ALPHA_STATEMENT = "the poor-performance region moves with model size (E* ∝ N^alpha)"
EFFECTIVE_SIZE_STATEMENT = "effective model size: the runs at the peak perform like smaller controls"
ALPHA_STATEMENT_SHORT = "the poor-performance region moves with model size"
EFFECTIVE_SIZE_STATEMENT_SHORT = "effective model size"
"""T5's and T6's statements where no scaling fit could be made."""


# ------------------------------------------------------------------------------ T1-T6


@renders(PeakTarget)
def _peak(t: PeakTarget) -> str:
    if t.peak is None:
        return f"at f = {t.fraction:g}, no peak fit of the {loss_name(t.loss)}: {t.reason}."
    p = t.peak
    amp = f"{p['amplitude']:+.3f} nats ({_ci(p['amplitude_ci95'], '{:+.3f}')})"
    e_ci = _ci(p["e_star_ci95"], "{:,.0f}")
    where = {True: "interior", False: "not interior"}[p["interior"]]
    note = f" ({p['note']})" if p.get("note") else ""
    return (f"at f = {t.fraction:g}, the {loss_name(t.loss)} fitted as a bump in log10 E over a baseline "
            f"({t.runs} runs, {_span(*t.seeds)} seed{'' if t.seeds == (1, 1) else 's'} per point, t at {p['dof']} dof) peaks at E* = {p['e_star']:,.0f} ({e_ci}), "
            f"{where}{note}, amplitude {amp}.{_bump_fit(p.get('lack_of_fit'))} Held means the peak is interior (its interval "
            "inside the grid) and the amplitude's interval lies above 0.")


def _bump_fit(numbers: Optional[dict[str, Any]]) -> str:
    """T1's sentence on whether the bump describes the means at each E within the seeds' scatter."""
    if numbers is None:
        return " The bump's lack of fit is not tested (no replicated repeat count, or none left over)."
    lof = LackOfFit(**numbers)
    if not lof.fits:
        return (f" The bump misses the means at each E by more than the seeds scatter about them (pure-error {lof.text()}): "
                "E* and its interval are this model's, and E* can move when the grid reaches further.")
    return f" The bump describes the means at each E within the seeds' scatter (pure-error {lof.text()})."


@renders(DamageTarget)
def _damage(t: DamageTarget) -> str:
    changes = t.changes
    parts = ", ".join(f"{a} {c:.3f} -> {v:.3f} ({changes[a]:+.0%})" for a, (c, v) in t.abilities.items())
    text = (f"at {t.point} (f = {t.fraction:g}, E = {t.repeat_count:g}) against the "
            f"full-data control: {loss_name(t.loss)} {t.loss_control:.3f} -> {t.loss_at_peak:.3f} "
            f"({t.loss_rise:+.1%}); {parts}.")
    if t.yardstick is not None:
        y = t.yardstick
        text += (f" In the paper's yardstick (effective model size on the controls' laws L = L_inf + (N_c/N)^a): "
                 f"N_eff / N = {_ratio(y['copying'])} on the copying loss against {_ratio(y['loss'])} on the "
                 f"{loss_name(t.loss)} (Hernandez et al. 2022: up to 3x lost on copying, at most 1.15x on test loss). "
                 "Held means the copying ratio's interval lies wholly below the loss ratio's; overlapping intervals are "
                 "not identified.")
    else:
        text += (f" The paper's yardstick (effective size lost on copying against on the loss) cannot be applied: "
                 f"{t.yardstick_reason}. Judged on relative drops instead: held means every ability dropped, by more "
                 f"than the {t.loss_rise:.1%} rise in {loss_name(t.loss)}.")
    return text + (f" Attention and copying read the probe {t.probe}." if t.probe else "")


@renders(FewRepeatsTarget)
def _few_repeats(t: FewRepeatsTarget) -> str:
    name = loss_name(t.loss)
    parts = []
    if t.repeat_count is None:
        parts.append(f"no repeat count above 1 at f = {t.fraction:g}")
    else:
        few = f"E = {t.repeat_count:g} ({_seeds(t.seeds_few)}) {name} {t.loss_few:.3f}"
        if t.data_matched is not None:
            parts.append(f"{few} against the data-matched control ({_seeds(t.seeds_data_matched)}) "
                         f"{t.data_matched:.3f}: {t.minus_data_matched:+.3f} (seed spread {t.spread_data_matched:.3f})")
        else:
            parts.append(f"{few}: no data-matched control at this size, so a few repeats cannot be told from fewer unique "
                         "tokens")
        if t.minus_full is not None:
            parts.append(f"against the full-data control {t.minus_full:+.3f} (seed spread {t.spread_full:.3f})")
    if t.random_init_max_deviation is None:
        parts.append("random-init scores not measured (no step-0 checkpoint or no chance levels)")
    else:
        parts.append("step-0 (random init) best heads, " + ", ".join(
            f"{m} max {hi:.3f} vs chance {c:.3f}" for m, (hi, c) in (t.random_init_levels or {}).items())
            + f" (tolerance {t.chance_tolerance:g}) over {t.init_runs} runs")
    if t.e1_minus_control is not None:
        parts.append(f"consistency check, not a finding: E = 1 trains on the control's own data and differs from it by "
                     f"{t.e1_minus_control:+.4f}")
    return ("; ".join(parts) + ". Held means the smallest E > 1 costs no more than the seed spread against the "
            "data-matched control and the initial scores sit at chance.")


def _t4_run_text(run: str, r: dict[str, Any]) -> str:
    if r.get("reason"):
        return f"{run}: {r['reason']}"
    against = (f", against {r['threshold']:.2f} for {r['checkpoints_after']} checkpoints" if "threshold" in r else "")
    rise = (f"largest rise after the control flattened (step {r['flat_step']}): {r['rise']:+.3f} over steps "
            f"{r['rise_steps'][0]}-{r['rise_steps'][1]} ({r['rise_z']:.1f} standard errors{against})")
    zero = (f"repeated-subset loss approaches zero at step {r['zero_step']}" if r["zero_step"] is not None
            else "repeated-subset loss does not approach zero by the last checkpoint")
    same = ("the two cannot be compared" if r["coincide"] is None else
            f"they {'coincide' if r['coincide'] else 'do not coincide'} (within one checkpoint; chance {r['chance']:.2f})")
    return f"{run}: {rise}; damage against the control peaks at step {r['damage_step']} ({r['damage']:+.3f}), {zero}: {same}"


@renders(DoubleDescentTarget)
def _double_descent(t: DoubleDescentTarget) -> str:
    rule = (f" Held means in every seed the {loss_name(t.loss)} rose beyond the evaluation's noise between two "
            f"checkpoints after the same-seed control's loss had flattened: by more standard errors (sqrt(se_a^2 + "
            f"se_b^2), se over test sequences) than a {RISE_ALPHA:.1%} false-rise rate allows over all pairs of "
            f"those k checkpoints (Bonferroni: {rise_threshold(2):.2f} for k = 2, {rise_threshold(14):.2f} for k = 14); "
            f"the control has flattened at the first checkpoint after which it falls by at most {FLAT_FRACTION:.0%} of "
            f"its total fall; 'approaches zero' is the first checkpoint at which the repeated-subset loss is at most "
            f"{ZERO_FRACTION:.0%} of its first value.")
    if t.reason:
        return f"at f = {t.fraction:g}, E = {t.repeat_count:g}: {t.reason}." + rule
    rows = [_t4_run_text(run, r) for run, r in t.runs.items()]
    return f"at f = {t.fraction:g}, E = {t.repeat_count:g} ({_seeds(t.seeds)}): " + "; ".join(rows) + "." + rule


_NOT_INTERIOR = {True: "", False: ", not interior"}


@renders(AlphaTarget)
def _alpha(t: AlphaTarget) -> str:
    sizes = "; ".join(
        f"N = {p['N']:,.0f}: E* = {p['e_star']:,.0f} ({_ci(p['e_star_ci95'], '{:,.0f}')}{_NOT_INTERIOR[p['interior']]})"
        for p in t.peaks)
    if t.alpha is None and not t.peaks:
        return f"no peak of the {loss_name(t.loss)} is fitted: {t.reason}. No exponent is given."
    if t.alpha is None:
        return (f"{loss_name(t.loss)} per size: {sizes}. alpha is not identified by this design: {t.reason}. "
                "No exponent is given.")
    refs = "; ".join(f"{ref}: {a:+.2f}" for ref, a in t.literature.items())
    lo, hi = t.alpha_ci95
    return (f"{loss_name(t.loss)} per size: {sizes}. alpha = {t.alpha:+.3f} (95% {lo:+.3f} to {hi:+.3f}, weighted "
            f"least squares of log10 E* on log10 N, t at sizes - 2 dof). Elsewhere: {refs}. Held means the interval "
            "excludes 0.")


@renders(EffectiveSizeTarget)
def _effective_size(t: EffectiveSizeTarget) -> str:
    if t.reason:
        return f"no effective model size on the {loss_name(t.loss)}: {t.reason}."
    rows = "; ".join(f"N = {float(n):,.0f}, E = {r['repeat_count']:g}: N_eff / N = {_ratio(r)}" for n, r in t.at_peak.items())
    return (f"controls' law {t.law}. At each size's peak (the grid point nearest E*): {rows}. Held means the upper end "
            "of every interval lies below 1 (which follows from T1 where the law is monotone; Hernandez et al. 2022: 800M "
            "performing like 400M is N_eff / N = 0.5).")


# ------------------------------------------------------------------------------ markdown


def targets_markdown(targets: list[Target]) -> str:
    """One paragraph per target, each beginning ``T1 held:`` / ``T1 did not hold:`` / ``T1 not identified:`` ..."""
    return "\n\n".join(t.line for t in targets)


CIRCUIT_KINDS = {"none": "none", "canonical": "canonical induction"}


def circuits_markdown(table: pd.DataFrame) -> str:
    """:func:`repeatlens.study.circuit_table` as a markdown table (a missing number shown as ``–``)."""
    head = "| run | circuit at the end | later head | earlier head | score | formed by step |\n|---|---|---|---|---|---|\n"
    rows = []
    for r in table.itertuples(index=False):
        kind = CIRCUIT_KINDS.get(r.kind, f"induction shifted by {int(r.d) if pd.notna(r.d) else '?'}")
        formed = f"{int(r.formed_at)}" if pd.notna(r.formed_at) else "–"
        score = f"{r.score:.2f}" if pd.notna(r.score) else "–"
        rows.append(f"| {r.run_id} | {kind} | {r.head or '–'} | {r.partner or '–'} | {score} | {formed} |")
    return head + "\n".join(rows)
