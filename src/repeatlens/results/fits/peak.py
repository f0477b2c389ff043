"""The peak of one model size: a Gaussian bump in log10 E over a baseline, fitted to every run of that size (:func:`fit_peak`; see :mod:`repeatlens.results.fits`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np

from repeatlens.results.fits.common import (
    HALF_MAX,
    LACK_OF_FIT_LEVEL,
    ScalingDataError,
    _curve_fit,
    _edge,
    _fmt_e,
    _list,
    _num,
    _pair,
    _t,
)


# ------------------------------------------------------------------------------ the peak per size


def bump(log_e: Any, baseline: float, amplitude: float, centre: float, width: float) -> Any:
    """``baseline + amplitude · exp(-(log_e - centre)^2 / (2 width^2))``: the loss against log10 E.

    >>> round(float(bump(2.0, 3.0, 0.5, 2.0, 0.4)), 6), round(float(bump(2.0 + 0.4 * HALF_MAX, 3.0, 0.5, 2.0, 0.4)), 6)
    (3.5, 3.25)
    """
    return _bump(log_e, baseline, amplitude, centre, width)


# The model and Jacobian functions the optimiser calls thousands of times are left unannotated
# (the test suite type-checks every annotated call).
def _bump(log_e, baseline, amplitude, centre, width):
    return baseline + amplitude * np.exp(-0.5 * ((np.asarray(log_e, dtype=float) - centre) / width) ** 2)


def _bump_jac(log_e, baseline, amplitude, centre, width):
    """The Jacobian of :func:`bump` in its four parameters (rows: points)."""
    z = (np.asarray(log_e, dtype=float) - centre) / width
    g = np.exp(-0.5 * z**2)
    return np.stack([np.ones_like(z), g, amplitude * g * z / width, amplitude * g * z**2 / width], axis=1)


BASELINES = ("auto", "linear", "constant")
MIN_LINEAR_GRID = 6
"""``baseline="auto"`` fits a linear baseline from this many distinct repeat counts of a size on."""


@dataclass(frozen=True)
class _Model:
    """The bump over a constant (4 parameters: b, A, c, w) or a linear baseline (5: b, A, c,
    w, s with s the baseline's slope per decade of E around x0). A and c keep indices 1 and 2."""

    baseline: str
    x0: float = 0.0

    @property
    def k(self) -> int:
        return 5 if self.baseline == "linear" else 4

    def f(self, x, *p):
        y = _bump(x, *p[:4])
        return y + p[4] * (np.asarray(x, dtype=float) - self.x0) if self.baseline == "linear" else y

    def jac(self, x, *p):
        j = _bump_jac(x, *p[:4])
        if self.baseline == "linear":
            j = np.concatenate([j, (np.asarray(x, dtype=float) - self.x0)[:, None]], axis=1)
        return j

    def baseline_at(self, x: float, p: np.ndarray) -> float:
        return float(p[0] + (p[4] * (x - self.x0) if self.baseline == "linear" else 0.0))


@dataclass(frozen=True)
class LackOfFit:
    """The pure-error lack-of-fit F test of a curve fitted to replicated points (Draper & Smith,
    *Applied Regression Analysis*, 3rd ed., section 2.1): the residual sum of squares split into
    the scatter of the runs about their point's mean (pure error, ``n - G`` dof for n runs at G
    distinct repeat counts; here the seed-to-seed scatter) and the rest (lack of fit, ``G - k``
    dof for k parameters). ``F = (SS_lof / (G - k)) / (SS_pe / (n - G))``; a small p says the
    curve misses the points' means by more than the seeds scatter about them."""

    F: float
    dof_lack: int
    dof_pure: int
    p: float

    @property
    def fits(self) -> bool:
        """Whether the curve describes the points' means within the scatter (p at or above :data:`LACK_OF_FIT_LEVEL`)."""
        return self.p >= LACK_OF_FIT_LEVEL

    def text(self) -> str:
        """``lack of fit F = 8.62 on 2 and 7 dof, p = 0.013``."""
        return f"lack of fit F = {self.F:.2f} on {self.dof_lack} and {self.dof_pure} dof, p = {self.p:.2g}"


def lack_of_fit(x: Any, y: Any, fitted: Any, k: int) -> Optional[LackOfFit]:
    """:class:`LackOfFit` of ``fitted`` (the curve's values at ``x``) to ``y``, with ``k`` fitted
    parameters; None when there are no replicates (``n - G < 1``), no dof for lack of fit
    (``G - k < 1``) or the replicates do not scatter at all.

    >>> x = np.repeat([0.0, 1.0, 2.0], 2)
    >>> y = np.array([0.0, 0.2, 1.0, 1.2, 0.0, 0.2])  # means 0.1, 1.1, 0.1 (pure SS 0.06 on 3 dof) against a flat line: lack SS 4/3 on 2 dof
    >>> lof = lack_of_fit(x, y, np.full(6, y.mean()), 1)
    >>> (lof.dof_lack, lof.dof_pure, round(lof.F, 1), lof.fits)
    (2, 3, 33.3, False)
    """
    from scipy import stats

    x, y, fitted = (np.asarray(v, dtype=float) for v in (x, y, fitted))
    groups = np.unique(x)
    dof_pure, dof_lack = len(y) - len(groups), len(groups) - k
    if dof_pure < 1 or dof_lack < 1:
        return None
    pure = float(sum(((y[x == g] - y[x == g].mean()) ** 2).sum() for g in groups))
    lack = max(float(((y - fitted) ** 2).sum()) - pure, 0.0)
    if pure <= 0.0:  # identical replicates: no scatter to compare the misfit with
        return None
    f = (lack / dof_lack) / (pure / dof_pure)
    return LackOfFit(float(f), dof_lack, dof_pure, float(stats.f.sf(f, dof_lack, dof_pure)))


@dataclass(frozen=True)
class Peak:
    """Where one model size's loss-vs-E curve peaks: the fitted bump (:func:`fit_peak`).

    Attributes:
        N: the model size (in the fit's size convention).
        e_star: ``10^c``, the fitted centre.
        e_star_ci95: its 95% interval (None when the fit cannot give one: :attr:`note`).
        e_left, e_right: the half-maximum edges ``10^(c ∓ w·sqrt(2 ln 2))``; None when the
            edge lies outside the grid (not observed) or the bump is a dip.
        interior: ``amplitude > 0`` and the 95% interval of E* strictly inside the grid.
        amplitude: the bump's height above the baseline (nats), with its 95% interval.
        width, baseline: the Gaussian's standard deviation in decades of E, the baseline loss
            under the peak (at E*).
        runs, dof: runs fitted and residual degrees of freedom (runs - k).
        grid: the repeat counts of this size.
        method: ``"t"`` (the fit's covariance) or ``"bootstrap B"``.
        note: why there is no interval, or why the peak is not interior.
        baseline_slope: the linear baseline's slope (nats per decade of E); None for a constant one.
        lack_of_fit: whether the bump describes the means at each E within the seeds' scatter
            (:class:`LackOfFit`; None without replicates). When it does not, E* and its interval
            are this model's: the covariance behind the interval assumes the model, and E* can
            move when the grid reaches further.
    The fields after ``amplitude_ci95`` but ``lack_of_fit`` are not in the JSON form and are
    None after :meth:`ScalingFit.from_json`.
    """

    N: float
    e_star: float
    e_star_ci95: Optional[tuple[float, float]]
    e_left: Optional[float]
    e_right: Optional[float]
    interior: bool
    amplitude: float
    amplitude_ci95: Optional[tuple[float, float]]
    width: Optional[float] = None
    baseline: Optional[float] = None
    runs: Optional[int] = None
    dof: Optional[int] = None
    grid: Optional[tuple[float, ...]] = None
    method: Optional[str] = None
    note: Optional[str] = None
    baseline_slope: Optional[float] = None
    lack_of_fit: Optional[LackOfFit] = None

    @property
    def log10_half_width(self) -> Optional[float]:
        """Half the width of the 95% interval of E*, in decades (the weight of this size in alpha's fit)."""
        if self.e_star_ci95 is None:
            return None
        return (math.log10(self.e_star_ci95[1]) - math.log10(self.e_star_ci95[0])) / 2

    def to_json(self) -> dict[str, Any]:
        return {"N": float(self.N), "e_star": float(self.e_star), "e_star_ci95": _list(self.e_star_ci95),
                "e_left": _num(self.e_left), "e_right": _num(self.e_right), "interior": bool(self.interior),
                "amplitude": float(self.amplitude), "amplitude_ci95": _list(self.amplitude_ci95),
                "lack_of_fit": None if self.lack_of_fit is None else asdict(self.lack_of_fit)}

    def line(self) -> str:
        """One line: E*, its interval, the amplitude and its interval, the edges, interior or not."""
        ci = f" (95% {_fmt_e(self.e_star_ci95[0])}-{_fmt_e(self.e_star_ci95[1])})" if self.e_star_ci95 else " (no interval)"
        amp = (f"amplitude {self.amplitude:+.3f} nats" +
               (f" (95% {self.amplitude_ci95[0]:+.3f} to {self.amplitude_ci95[1]:+.3f})" if self.amplitude_ci95 else ""))
        edges = f"half-maximum edges {_edge(self.e_left)} and {_edge(self.e_right)}"
        where = "interior" if self.interior else "NOT interior"
        extra = []
        if self.width is not None:
            extra.append(f"width {self.width:.2f} decades")
        if self.runs is not None:
            extra.append(f"{self.runs} runs, {self.dof} dof")
        if self.method:
            extra.append(self.method)
        extra.append("constant baseline" if self.baseline_slope is None else f"baseline slope {self.baseline_slope:+.3f} nats/decade")
        if self.lack_of_fit is not None:
            extra.append(self.lack_of_fit.text() + ("" if self.lack_of_fit.fits else ": the bump misses the means beyond the seeds' scatter"))
        tail = f" [{'; '.join(extra)}]" if extra else ""
        note = f"; {self.note}" if self.note else ""
        return f"N = {self.N:,.0f}: E* = {_fmt_e(self.e_star)}{ci}, {amp}, {edges}; {where}{note}{tail}"


def _bump_limits(grid: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """Where a fitted centre and width are believed: the centre within half the grid's span of
    it, the width between a quarter of the finest grid step and twice the span."""
    span = float(grid[-1] - grid[0])
    step = float(np.diff(grid).min())
    return (grid[0] - span / 2, grid[-1] + span / 2), (step / 4, 2 * span)


def _fit_bump(x, y, grid, starts=None, bounded=True, model: Optional[_Model] = None):
    """The least-squares bump (Levenberg-Marquardt) over several starts: (params, cov, rss) or
    None; the width is returned positive (the model depends on its square). When no start
    converges, the bounded fit inside :func:`_bump_limits` (its optimum then sits on a limit,
    which :func:`fit_peak` reports as unresolved)."""
    model = model if model is not None else _Model("constant")
    if starts is None:
        means = np.array([y[x == g].mean() for g in grid])
        base, amp = float(means.min()), float(max(means.max() - means.min(), 1e-3))
        step, span = float(np.diff(grid).min()), float(grid[-1] - grid[0])
        top = grid[np.argsort(means)[::-1][:3]]
        starts = [np.array([base, amp, c, max(step, span / 6)]) for c in top]
        if model.baseline == "linear":
            slope = float((means[-1] - means[0]) / span) if span > 0 else 0.0
            starts = [np.append(p0, s) for p0 in starts for s in (0.0, slope)]
    best = None
    for p0 in starts:
        fitted = _curve_fit(model.f, x, y, p0, jac=model.jac)
        if fitted is None or not np.all(np.isfinite(fitted[0])):
            continue
        rss = float(np.sum((y - model.f(x, *fitted[0])) ** 2))
        if best is None or rss < best[2]:
            p = fitted[0].copy()
            p[3] = abs(p[3])
            best = (p, fitted[1], rss)
    if best is None and bounded:  # no interior optimum (e.g. a monotone curve): the best bump inside the believed limits
        (c_lo, c_hi), (w_lo, w_hi) = _bump_limits(grid)
        bounds = ([-np.inf, -np.inf, c_lo, w_lo] + [-np.inf] * (model.k - 4), [np.inf, np.inf, c_hi, w_hi] + [np.inf] * (model.k - 4))
        for p0 in starts:
            fitted = _curve_fit(model.f, x, y, p0, bounds, jac=model.jac)
            if fitted is not None:
                rss = float(np.sum((y - model.f(x, *fitted[0])) ** 2))
                if best is None or rss < best[2]:
                    best = (fitted[0], fitted[1], rss)
    return best


def fit_peak(repeat_count: Any, loss: Any, *, N: float = float("nan"), bootstrap: int = 0,
             rng: Optional[np.random.Generator] = None, baseline: str = "auto") -> Peak:
    """The :class:`Peak` of one model size, from every run of it (all seeds, all E) at one f.

    Args:
        repeat_count, loss: one value per run (array-likes of equal length).
        N: the model size, carried into the result.
        bootstrap: 0 for the interval from the fit's covariance (t at runs - k dof); B > 0 for
            the percentile interval of B refits to the fitted curve plus resampled residuals
            (scaled by sqrt(n / (n - k))).
        rng: the bootstrap's generator (default seed 0).
        baseline: ``"linear"`` (in log10 E, k = 5 parameters), ``"constant"`` (k = 4) or
            ``"auto"`` (linear from :data:`MIN_LINEAR_GRID` distinct E on, else constant).

    Raises:
        ScalingDataError: fewer than k - 1 distinct E or fewer than k + 1 runs, or no fit converged.

    >>> import numpy as np
    >>> e = np.repeat([1, 4, 16, 64, 256, 1024, 4096], 2)
    >>> y = bump(np.log10(e), 3.0, 0.4, np.log10(80), 0.5) + np.tile([0.01, -0.01], 7)
    >>> p = fit_peak(e, y, N=1e5)
    >>> round(p.e_star), p.interior, round(p.amplitude, 2)
    (80, True, 0.4)
    """
    if baseline not in BASELINES:
        raise ScalingDataError(f"baseline must be one of {', '.join(BASELINES)}; got {baseline!r}")
    e = np.asarray(repeat_count, dtype=float)
    y = np.asarray(loss, dtype=float)
    ok = np.isfinite(e) & np.isfinite(y) & (e > 0)
    x, y = np.log10(e[ok]), y[ok]
    grid = np.unique(x)
    if baseline == "auto":
        baseline = "linear" if len(grid) >= MIN_LINEAR_GRID else "constant"
    model = _Model(baseline, float(grid.mean()) if len(grid) else 0.0)
    where = f"N = {N:,.0f}: " if math.isfinite(N) else ""
    if len(grid) < model.k - 1 + (model.k == 5) or len(y) < model.k + 1 + (model.k == 5):
        raise ScalingDataError(f"{where}a peak fit over a {baseline} baseline needs runs at {model.k - 1 + (model.k == 5)} or more "
                               f"repeat counts and {model.k + 1 + (model.k == 5)} or more runs; got {len(grid)} and {len(y)}")
    best = _fit_bump(x, y, grid, model=model)
    if best is None:
        raise ScalingDataError(f"{where}the bump fit did not converge")
    p, cov, rss = best
    base, amp, c, w = (float(v) for v in p[:4])
    slope = float(p[4]) if model.k == 5 else 0.0
    n, dof = len(y), len(y) - model.k
    (c_lo, c_hi), (w_lo, w_hi) = _bump_limits(grid)
    notes = []
    tol = 1e-6 * (c_hi - c_lo)
    if not c_lo + tol < c < c_hi - tol:
        notes.append("the fitted centre lies half the grid's span or more beyond its end")
    if w < w_lo + tol:
        notes.append(f"the fitted width ({w:.2g} decades) is at most a quarter of the grid step: the grid does not resolve the peak")
    elif w > w_hi - tol:
        notes.append(f"the fitted width ({w:.2g} decades) exceeds twice the grid's span: no peak within it")
    unresolved = bool(notes)
    c_ci = a_ci = None
    method = "t"
    if bootstrap:
        method = f"bootstrap {bootstrap}"
        rng = rng if rng is not None else np.random.default_rng(0)
        fitted = model.f(x, *p)
        resid = (y - fitted) * math.sqrt(n / dof)
        draws = []
        for _ in range(bootstrap):
            refit = _fit_bump(x, fitted + rng.choice(resid, n, replace=True), grid, [p], bounded=False, model=model)
            draws.append(refit[0][[1, 2]] if refit is not None else (np.nan, np.nan))
        draws = np.asarray(draws)
        failed = int(np.isnan(draws[:, 0]).sum())
        if failed > 0.1 * bootstrap:
            notes.append(f"{failed} of {bootstrap} bootstrap refits did not converge")
        elif not unresolved:
            a_ci = _pair(*np.nanpercentile(draws[:, 0], [2.5, 97.5]))
            c_ci = _pair(*np.nanpercentile(draws[:, 1], [2.5, 97.5]))
    elif not unresolved and np.all(np.isfinite(cov[1:3, 1:3])):
        t = _t(dof)
        se_a, se_c = math.sqrt(cov[1, 1]), math.sqrt(cov[2, 2])
        a_ci, c_ci = _pair(amp - t * se_a, amp + t * se_a), _pair(c - t * se_c, c + t * se_c)
    elif not unresolved:
        notes.append("the fit's covariance is singular")
    if c_ci is not None and not (c_lo <= c_ci[0] and c_ci[1] <= c_hi):
        c_ci = None
        notes.append("the 95% interval of E* reaches more than half the grid's span beyond it")
    interior = bool(amp > 0 and c_ci is not None and grid[0] < c_ci[0] and c_ci[1] < grid[-1])
    if amp <= 0:
        notes.append("the fitted bump is a dip (amplitude <= 0)")
    elif c_ci is not None and not interior:
        notes.append("the 95% interval of E* reaches beyond the grid")
    left = c - HALF_MAX * w if amp > 0 and not unresolved else -np.inf
    right = c + HALF_MAX * w if amp > 0 and not unresolved else np.inf
    return Peak(
        N=float(N), e_star=float(10 ** min(max(c, -300.0), 300.0)), e_star_ci95=None if c_ci is None else _pair(10 ** c_ci[0], 10 ** c_ci[1]),
        e_left=float(10**left) if left >= grid[0] else None, e_right=float(10**right) if right <= grid[-1] else None,
        interior=interior, amplitude=amp, amplitude_ci95=a_ci, width=w, baseline=model.baseline_at(c, p), runs=n, dof=dof,
        grid=tuple(float(10**g) for g in grid), method=method, note="; ".join(notes) or None,
        baseline_slope=slope if model.k == 5 else None, lack_of_fit=lack_of_fit(x, y, model.f(x, *p), model.k),
    )
