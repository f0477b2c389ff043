"""The study's targets as data: a :class:`Verdict`, one dataclass per target holding the
numbers it was judged on, and the rule that turns those numbers into the verdict.

Every verdict is decided here, by a rule function of numbers already computed
(:mod:`.evaluate`, :mod:`.scaling` compute them from the tables); the prose of a target is
rendered from its fields by :mod:`.render`, which decides nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from statistics import NormalDist
from typing import Any, Callable, Iterable, Optional

import numpy as np

from repeatlens.results import fits

__all__ = [
    "Verdict", "Target", "PeakTarget", "DamageTarget", "FewRepeatsTarget", "DoubleDescentTarget", "AlphaTarget",
    "EffectiveSizeTarget", "FLAT_FRACTION", "ZERO_FRACTION", "RISE_ALPHA", "LITERATURE_ALPHA", "peak_verdict",
    "damage_verdict", "few_repeats_verdict", "rise_threshold", "rise_is_significant", "double_descent_verdict", "alpha_verdict",
    "effective_size_state", "effective_size_verdict",
]

FLAT_FRACTION = 0.1
"""T4: the control's loss has *flattened* at the first checkpoint after which it falls by no
more than this fraction of its total fall (its first checkpoint's loss minus its minimum)."""
ZERO_FRACTION = 0.1
"""T4: the repeated-subset loss *approaches zero* at the first checkpoint where it is at most
this fraction of its value at the first checkpoint."""
RISE_ALPHA = 0.025
"""T4: the family-wise false-positive rate of the rise test (one-sided), over every pair of
checkpoints after the control flattened (:func:`rise_threshold`)."""
LITERATURE_ALPHA = {
    "Chudnovsky et al. 2026 (peak repeat count at a fixed overtraining ratio, R_peak ~ N^-0.96; from notes on the paper, "
    "not checked against it)": -0.96,
    "Hernandez et al. 2022 (half-maximum edges at D = 100B, E ~ N^-0.56 and N^-0.50, as a secondary source quotes them)": -0.5,
}
"""How the poor-performance region moves with model size elsewhere, for T5's comparison."""


class Verdict(str, Enum):
    """A target's outcome."""

    HELD = "held"
    DID_NOT_HOLD = "did not hold"
    NOT_IDENTIFIED = "not identified"
    CANNOT_JUDGE = "cannot judge"


RENDERERS: dict[type, Callable[[Any], str]] = {}
"""Each target class's prose, registered by :mod:`repeatlens.study.render` (which the package imports)."""


def renders(cls: type) -> Callable[[Callable[[Any], str]], Callable[[Any], str]]:
    """Register the decorated function as the prose of targets of class ``cls``."""

    def register(fn: Callable[[Any], str]) -> Callable[[Any], str]:
        RENDERERS[cls] = fn
        return fn

    return register


@dataclass
class Target:
    """A target's verdict and numbers; subclasses add their fields, and their prose is the
    function :mod:`repeatlens.study.render` registers for the class (a subclass may instead
    override :meth:`render`).

    ``held`` is True / False for held / did not hold and None otherwise; ``detail`` and
    ``line`` are rendered from the fields; ``numbers`` is the fields as JSON-able data.
    """

    name: str
    statement: str
    verdict: Verdict
    where: str = ""

    def render(self) -> str:
        """The prose of the numbers (without the verdict or :attr:`where`)."""
        for cls in type(self).__mro__:
            if cls in RENDERERS:
                return RENDERERS[cls](self)
        raise NotImplementedError(f"{type(self).__name__}: no prose registered for it (repeatlens.study.render)")

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


def peak_verdict(peak: fits.Peak) -> Verdict:
    """T1: held when the fitted bump is interior (E*'s 95% interval inside the grid) and its
    amplitude's 95% interval lies above 0; did not hold for a dip, a maximum beyond the
    grid's ends, or either interval failing; not identified when the fit gives no interval."""
    if peak.amplitude <= 0 or not peak.grid[0] < peak.e_star < peak.grid[-1]:
        return Verdict.DID_NOT_HOLD  # a dip, or a maximum beyond the grid's ends
    if peak.e_star_ci95 is None or peak.amplitude_ci95 is None:
        return Verdict.NOT_IDENTIFIED
    if peak.interior and peak.amplitude_ci95[0] > 0:
        return Verdict.HELD
    return Verdict.DID_NOT_HOLD


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

    @property
    def changes(self) -> dict[str, float]:
        """Each ability's relative change at the point against the control (minus its drop)."""
        return {a: -d for a, d in self.drops.items()}


def damage_verdict(copying: Optional[dict[str, Any]], loss: Optional[dict[str, Any]], drops: dict[str, float],
                   loss_rise: float) -> Verdict:
    """T2. In the paper's yardstick (both effective-size rows given: ``ratio``, ``ratio_lo``,
    ``ratio_hi`` of N_eff / N on the copying loss and on the loss): held when the copying
    ratio's interval lies wholly below the loss ratio's, did not hold when the copying ratio
    is at least the loss ratio, else not identified. Otherwise on relative drops: held when
    every ability dropped, each by more than the loss's relative rise."""
    if copying is not None and loss is not None:
        if copying["ratio_hi"] is not None and loss["ratio_lo"] is not None and copying["ratio_hi"] < loss["ratio_lo"]:
            return Verdict.HELD
        if copying["ratio"] is not None and loss["ratio"] is not None and copying["ratio"] >= loss["ratio"]:
            return Verdict.DID_NOT_HOLD
        return Verdict.NOT_IDENTIFIED
    held = bool(drops) and all(d > 0 and d > loss_rise for d in drops.values())
    return Verdict.HELD if held else Verdict.DID_NOT_HOLD


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


def few_repeats_verdict(minus_data_matched: Optional[float], spread_data_matched: Optional[float],
                        init_deviation: Optional[dict[str, float]], tolerance: float) -> Verdict:
    """T3: two checks, each None when it cannot be made: the smallest E > 1 costs no more than
    the seed spread against the data-matched control, and every step-0 best-head score sits
    within ``tolerance`` of chance. Did not hold when either fails, held when both pass,
    else cannot judge."""
    checks = [None if minus_data_matched is None else minus_data_matched <= spread_data_matched,
              None if init_deviation is None else all(d <= tolerance for d in init_deviation.values())]
    if any(c is False for c in checks):
        return Verdict.DID_NOT_HOLD
    if all(c is True for c in checks):
        return Verdict.HELD
    return Verdict.CANNOT_JUDGE


# ------------------------------------------------------------------------------ T4


@dataclass
class DoubleDescentTarget(Target):
    """T4: test loss rising beyond its evaluation noise after the control has flattened."""

    loss: str = "test_loss"
    fraction: float = float("nan")
    repeat_count: float = float("nan")
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    reason: Optional[str] = None

    @property
    def seeds(self) -> int:
        """How many seeds (runs) of the grid point were read."""
        return len(self.runs)


def rise_threshold(checkpoints: int) -> float:
    """T4: how many standard errors the largest rise among ``checkpoints`` evaluations must
    exceed: Bonferroni over their m = k(k-1)/2 ordered pairs, z = Φ⁻¹(1 - :data:`RISE_ALPHA` / m).

    The rise T4 reads is the largest z = (x_b - x_a) / sqrt(se_a² + se_b²) over every a < b,
    so a fixed 2 SE would fire on flat noise most of the time once there are a dozen
    checkpoints (``tests/study/test_targets.py`` simulates it); this keeps the chance of a
    false rise at or below RISE_ALPHA whatever the evaluations' correlation.

    >>> round(rise_threshold(2), 2), round(rise_threshold(14), 2)
    (1.96, 3.46)
    """
    if checkpoints < 2:
        raise ValueError(f"a rise needs 2 or more checkpoints; got {checkpoints}")
    pairs = checkpoints * (checkpoints - 1) / 2
    return float(NormalDist().inv_cdf(1 - RISE_ALPHA / pairs))


def rise_is_significant(z: float, checkpoints: int) -> bool:
    """T4: whether a largest rise of ``z`` standard errors among ``checkpoints`` evaluations
    exceeds :func:`rise_threshold`."""
    return bool(z > rise_threshold(checkpoints))


def double_descent_verdict(runs: dict[str, dict[str, Any]]) -> Verdict:
    """T4 over the seeds of one grid point (each run's numbers, or a ``reason`` it has none):
    cannot judge when any run cannot be read, held when the rise is significant in every
    seed, else did not hold."""
    if not runs or any("reason" in r for r in runs.values()):
        return Verdict.CANNOT_JUDGE
    return Verdict.HELD if all(r["significant"] for r in runs.values()) else Verdict.DID_NOT_HOLD


# ------------------------------------------------------------------------------ T5, T6


@dataclass
class AlphaTarget(Target):
    """T5: E* ∝ N^alpha, from :func:`repeatlens.fit_scaling`."""

    loss: str = "test_loss"
    alpha: Optional[float] = None
    alpha_ci95: Optional[tuple[float, float]] = None
    reason: Optional[str] = None
    peaks: list[dict[str, Any]] = field(default_factory=list)
    literature: dict[str, float] = field(default_factory=dict)


def alpha_verdict(identified: bool, alpha_ci95: Optional[tuple[float, float]]) -> Verdict:
    """T5: not identified unless the fit identifies alpha; held when its 95% interval excludes 0."""
    if not identified:
        return Verdict.NOT_IDENTIFIED
    return Verdict.HELD if alpha_ci95[0] > 0 or alpha_ci95[1] < 0 else Verdict.DID_NOT_HOLD


@dataclass
class EffectiveSizeTarget(Target):
    """T6: N_eff / N at each size's peak, on the full-data controls' law."""

    loss: str = "test_loss"
    law: Optional[str] = None
    reason: Optional[str] = None
    at_peak: dict[str, dict[str, Any]] = field(default_factory=dict)


def effective_size_state(row: dict[str, Any], n: float, smallest_control: float) -> Optional[bool]:
    """T6 at one size ``n``: whether N_eff / N's 95% interval lies below 1 (``ratio_hi < 1``);
    True too when N_eff falls below the smallest control (``note``) and that control is no
    larger than ``n``; None when the interval does not say."""
    if row["ratio_hi"] is not None:
        return row["ratio_hi"] < 1
    if row["note"].startswith("below the smallest control") and smallest_control <= n:
        return True  # N_eff < the smallest control <= N
    return None


def effective_size_verdict(states: Iterable[Optional[bool]]) -> Verdict:
    """T6 over the sizes: held when every size's state is True, did not hold when every size
    has a state and some is False, else (or with no size) not identified."""
    states = list(states)
    if states and all(s is True for s in states):
        return Verdict.HELD
    if states and all(s is not None for s in states):
        return Verdict.DID_NOT_HOLD
    return Verdict.NOT_IDENTIFIED
