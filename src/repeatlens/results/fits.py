"""Scaling statistics of a repeated-data sweep: where the damage peaks per model size, how
that moves with size, and how many parameters it costs (Hernandez et al. 2022).

Three fits, scipy as the engine (:func:`scipy.optimize.curve_fit`; the linear ones through
:func:`numpy.polyfit`), each with an interval that the tests show covers the truth on
simulated sweeps (``tests/results/test_fits.py``; the bootstrap's own coverage run is
``benchmarks/fit_coverage.py``):

* **The peak of one model size** (:func:`fit_peak`): a Gaussian bump in ``log10 E`` over a
  constant baseline, ``L(E) = b + A exp(-(log10 E - c)^2 / (2 w^2))``, fitted to EVERY run
  of that size at one repeated fraction f (all seeds, all E), never to the grid's argmax.
  ``E* = 10^c``; its 95% interval is ``c ± t·se(c)`` with t at ``n_runs - 4`` degrees of
  freedom (or, with ``bootstrap=B``, the 2.5-97.5% percentiles of ``B`` refits to the fitted
  curve plus resampled residuals of that size: with 2-3 seeds a point, resampling runs
  within a point gives only 3-10 distinct means). The half-maximum edges are
  ``c ± w·sqrt(2 ln 2)``, reported only where they fall inside the grid. A peak is
  *interior* when ``A > 0`` and the 95% interval of ``E*`` lies strictly inside the grid.
* **E* ∝ N^alpha** (:class:`ScalingFit`): weighted least squares of ``log10 E*`` on
  ``log10 N``, each size weighted by ``1 / h^2`` with ``h`` the half-width of its interval in
  decades, the covariance scaled by the residuals and the 95% interval of alpha from t at
  ``n_sizes - 2`` degrees of freedom. alpha is *identified* only when the design can pin
  it (:data:`MIN_SIZES` sizes or more, at least :data:`MIN_DECADES` decade of N, every
  peak interior, no grid step wider than the shift :data:`EXPECTED_ALPHA` predicts over the
  N range, an interval no wider than ±:data:`MAX_ALPHA_HALFWIDTH`); otherwise alpha is not
  given at all and :attr:`ScalingFit.reason` says why.
* **Effective model size** (:func:`fit_control_law`, :func:`effective_sizes`): the full-data
  controls' loss against N, ``L(N) = L_inf + (N_c / N)^a`` (:data:`MIN_CONTROL_SIZES` sizes
  or more; a lack-of-fit F test against the seeds' own scatter where sizes have replicates),
  inverted for every grid point: ``N_eff = N_c (L - L_inf)^(-1/a)``, only inside the trained
  N range (outside it: a bound, "below the smallest control"), with a delta-method
  interval, for both size conventions: ``N`` (non-embedding parameters, Kaplan et al.
  2020's N) and ``N_total`` (all parameters).

The input is a table with one row per run: ``N``, ``repeated_fraction``, ``repeat_count``,
``seed`` and the loss column, optionally ``N_total``, ``total_tokens``, ``unique_tokens`` and
``control`` (``none`` | ``full`` | ``data_matched``; without it f = 0 is ``full``). The sweep
tables' ``n_params_nonembedding`` and ``n_params`` are read as ``N`` and ``N_total``.
This module imports neither torch nor the rest of :mod:`repeatlens.results`.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from repeatlens.errors import RepeatlensError

__all__ = [
    "FORMAT",
    "ScalingDataError",
    "LawNotIdentified",
    "scaling_table",
    "read_runs_table",
    "default_loss",
    "bump",
    "Peak",
    "fit_peak",
    "LogLogLaw",
    "fit_loglog",
    "ControlLaw",
    "fit_control_law",
    "effective_sizes",
    "Region",
    "FittedOn",
    "ScalingFit",
    "fit_scaling",
]

FORMAT = "repeatlens-scaling-fit/1"
"""The ``format`` field of :meth:`ScalingFit.to_json` (read by ``repeatlens audit``)."""
HALF_MAX = math.sqrt(2.0 * math.log(2.0))
"""A Gaussian of standard deviation w falls to half its height at ``± w·HALF_MAX``."""
SIZE_COLUMNS = {"N": "non-embedding parameters", "N_total": "all parameters"}
COLUMN_ALIASES = {"N": "n_params_nonembedding", "N_total": "n_params"}
"""Sweep-table names read as the fit's size columns when the table lacks ``N`` / ``N_total``."""
CONTROL_KINDS = ("none", "full", "data_matched")
EXPECTED_ALPHA = -0.5
"""The exponent the literature leads one to expect (Hernandez et al. 2022's half-maximum edges
move as N^-0.56 and N^-0.50, as a secondary source quotes them); only used to ask whether the
design's E grid is fine enough to see the peak move over its N range."""
MIN_SIZES = 4
MIN_DECADES = 1.0
MAX_ALPHA_HALFWIDTH = 1.0
"""An alpha interval wider than ±1 spans every exponent anyone has proposed: not identified."""
MIN_CONTROL_SIZES = 4
LACK_OF_FIT_LEVEL = 0.05
LEVEL = 0.95


class ScalingDataError(RepeatlensError, ValueError):
    """A runs table lacks a column, a value or the runs a scaling fit needs."""


class LawNotIdentified(ScalingDataError):
    """The controls cannot pin their loss law (too few sizes, no convergence, lack of fit)."""


# ------------------------------------------------------------------------------ the runs table


def default_loss(table: pd.DataFrame) -> str:
    """``test_text`` (the natural-text loss of mixed runs) when every run has it, else ``test_loss``."""
    if "test_text" in table.columns and table["test_text"].notna().all():
        return "test_text"
    return "test_loss"


def scaling_table(runs: Any, loss: Optional[str] = None) -> tuple[pd.DataFrame, str]:
    """Validate a one-row-per-run table and return a normalised copy and the loss column.

    Adds ``N`` / ``N_total`` from ``n_params_nonembedding`` / ``n_params`` when absent and
    ``control`` from f when absent (f = 0: ``full``, else ``none``); drops runs whose loss is
    missing (their count is in ``attrs["dropped"]``). Raises :class:`ScalingDataError`
    naming the column or value at fault.
    """
    table = runs.copy() if isinstance(runs, pd.DataFrame) else pd.DataFrame(runs)
    for column, alias in COLUMN_ALIASES.items():
        if column not in table.columns and alias in table.columns:
            table[column] = table[alias]
    loss = loss or default_loss(table)
    need = ["N", "repeated_fraction", "repeat_count", "seed", loss]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ScalingDataError(f"the runs table lacks column(s) {missing} (N may be given as n_params_nonembedding); "
                               f"it has {list(table.columns)}")
    for column in ["N", "repeated_fraction", "repeat_count", loss] + [c for c in ("N_total", "total_tokens", "unique_tokens")
                                                                        if c in table.columns]:
        try:
            table[column] = pd.to_numeric(table[column]).astype(float)
        except (TypeError, ValueError):
            raise ScalingDataError(f"column {column!r} of the runs table is not numeric") from None
    derived = np.where(table["repeated_fraction"] == 0, "full", "none")
    if "control" not in table.columns:
        table["control"] = derived
    table["control"] = table["control"].fillna("").astype(str)
    table.loc[table["control"] == "", "control"] = derived[(table["control"] == "").to_numpy()]  # tables that did not record it
    bad = sorted(set(table["control"]) - set(CONTROL_KINDS))
    if bad:
        raise ScalingDataError(f"column 'control' holds {bad}; expected one of {', '.join(CONTROL_KINDS)}")
    f, kind = table["repeated_fraction"], table["control"]
    if not ((f >= 0) & (f < 1)).all():
        raise ScalingDataError(f"repeated_fraction must lie in [0, 1); got {sorted(set(f[~((f >= 0) & (f < 1))]))}")
    if ((kind == "none") & (f == 0)).any() or ((kind != "none") & (f > 0)).any():
        raise ScalingDataError("column 'control' contradicts repeated_fraction: a control ('full', 'data_matched') has f = 0, "
                               "a repeated run ('none') f > 0")
    if not (table["N"] > 0).all():
        raise ScalingDataError(f"N must be a positive parameter count; got {sorted(set(table.loc[~(table['N'] > 0), 'N']))}")
    if not (table.loc[kind == "none", "repeat_count"] >= 1).all():
        raise ScalingDataError("repeat_count must be at least 1 for every repeated run")
    keep = table[loss].notna() & np.isfinite(table[loss])
    out = table[keep].reset_index(drop=True)
    out.attrs["dropped"] = int((~keep).sum())
    return out, loss


def read_runs_table(path: str | Path) -> pd.DataFrame:
    """A per-run table from a ``.csv`` or ``.parquet`` file (one line naming the file when unreadable)."""
    p = Path(path)
    if not p.is_file():
        raise ScalingDataError(f"{p}: no such file")
    try:
        if p.suffix == ".csv":
            return pd.read_csv(p)
        if p.suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ScalingDataError(f"{p}: unreadable table ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    raise ScalingDataError(f"{p}: expected a .csv or .parquet table of runs, or a sweep directory")


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


@functools.lru_cache(maxsize=256)
def _t(dof, level=LEVEL):
    """The two-sided ``level`` quantile of Student's t at ``dof`` degrees of freedom."""
    return float(stats.t.ppf(0.5 + level / 2, dof))


def _pair(a: float, b: float) -> tuple[float, float]:
    return (float(a), float(b))


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
        width, baseline: the Gaussian's standard deviation in decades of E, the baseline loss.
        runs, dof: runs fitted and residual degrees of freedom (runs - 4).
        grid: the repeat counts of this size.
        method: ``"t"`` (the fit's covariance) or ``"bootstrap B"``.
        note: why there is no interval, or why the peak is not interior.
    The fields after ``amplitude_ci95`` are not in the JSON form and are None after
    :meth:`ScalingFit.from_json`.
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

    @property
    def log10_half_width(self) -> Optional[float]:
        """Half the width of the 95% interval of E*, in decades (the weight of this size in alpha's fit)."""
        if self.e_star_ci95 is None:
            return None
        return (math.log10(self.e_star_ci95[1]) - math.log10(self.e_star_ci95[0])) / 2

    def to_json(self) -> dict[str, Any]:
        return {"N": float(self.N), "e_star": float(self.e_star), "e_star_ci95": _list(self.e_star_ci95),
                "e_left": _num(self.e_left), "e_right": _num(self.e_right), "interior": bool(self.interior),
                "amplitude": float(self.amplitude), "amplitude_ci95": _list(self.amplitude_ci95)}

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
        tail = f" [{'; '.join(extra)}]" if extra else ""
        note = f"; {self.note}" if self.note else ""
        return f"N = {self.N:,.0f}: E* = {_fmt_e(self.e_star)}{ci}, {amp}, {edges}; {where}{note}{tail}"


def _fmt_e(e: float) -> str:
    return f"{e:,.0f}" if e >= 100 else f"{e:.3g}"


def _edge(e: Optional[float]) -> str:
    return _fmt_e(e) if e is not None else "not within the grid"


def _num(x: Optional[float]) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(x)


def _list(pair: Optional[tuple[float, float]]) -> Optional[list[float]]:
    return None if pair is None else [float(pair[0]), float(pair[1])]


def _bump_limits(grid: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """Where a fitted centre and width are believed: the centre within half the grid's span of
    it, the width between a quarter of the finest grid step and twice the span."""
    span = float(grid[-1] - grid[0])
    step = float(np.diff(grid).min())
    return (grid[0] - span / 2, grid[-1] + span / 2), (step / 4, 2 * span)


def _curve_fit(f, x, y, p0, bounds=None, **kw):
    """scipy's curve_fit (Levenberg-Marquardt without ``bounds``, else trust-region
    reflective inside them); None when it does not converge."""
    p0 = np.asarray(p0, float)
    if bounds is not None:
        lo, hi = np.asarray(bounds[0], float), np.asarray(bounds[1], float)
        margin = np.where(np.isfinite(lo) & np.isfinite(hi), 1e-9 * np.nan_to_num(hi - lo, posinf=0.0), 0.0)
        p0 = np.clip(p0, lo + margin, hi - margin)
        kw = {**kw, "bounds": bounds, "method": "trf"}
    else:
        kw = {**kw, "method": "lm"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            p, cov = optimize.curve_fit(f, x, y, p0=p0, maxfev=4000, **kw)
    except (RuntimeError, ValueError, np.linalg.LinAlgError):
        return None
    return p, cov


def _fit_bump(x, y, grid, starts=None, bounded=True):
    """The least-squares bump (Levenberg-Marquardt) over several starts: (params, cov, rss) or
    None; the width is returned positive (the model depends on its square). When no start
    converges, the bounded fit inside :func:`_bump_limits` (its optimum then sits on a limit,
    which :func:`fit_peak` reports as unresolved)."""
    if starts is None:
        means = np.array([y[x == g].mean() for g in grid])
        base, amp = float(means.min()), float(max(means.max() - means.min(), 1e-3))
        step, span = float(np.diff(grid).min()), float(grid[-1] - grid[0])
        top = grid[np.argsort(means)[::-1][:3]]
        starts = [np.array([base, amp, c, max(step, span / 6)]) for c in top]
    best = None
    for p0 in starts:
        fitted = _curve_fit(_bump, x, y, p0, jac=_bump_jac)
        if fitted is None or not np.all(np.isfinite(fitted[0])):
            continue
        rss = float(np.sum((y - _bump(x, *fitted[0])) ** 2))
        if best is None or rss < best[2]:
            p = fitted[0].copy()
            p[3] = abs(p[3])
            best = (p, fitted[1], rss)
    if best is None and bounded:  # no interior optimum (e.g. a monotone curve): the best bump inside the believed limits
        (c_lo, c_hi), (w_lo, w_hi) = _bump_limits(grid)
        bounds = ([-np.inf, -np.inf, c_lo, w_lo], [np.inf, np.inf, c_hi, w_hi])
        for p0 in starts:
            fitted = _curve_fit(_bump, x, y, p0, bounds, jac=_bump_jac)
            if fitted is not None:
                rss = float(np.sum((y - _bump(x, *fitted[0])) ** 2))
                if best is None or rss < best[2]:
                    best = (fitted[0], fitted[1], rss)
    return best


def fit_peak(repeat_count: Any, loss: Any, *, N: float = float("nan"), bootstrap: int = 0,
             rng: Optional[np.random.Generator] = None) -> Peak:
    """The :class:`Peak` of one model size, from every run of it (all seeds, all E) at one f.

    Args:
        repeat_count, loss: one value per run (array-likes of equal length).
        N: the model size, carried into the result.
        bootstrap: 0 for the interval from the fit's covariance (t at runs - 4 dof); B > 0 for
            the percentile interval of B refits to the fitted curve plus resampled residuals
            (scaled by sqrt(n / (n - 4))).
        rng: the bootstrap's generator (default seed 0).

    Raises:
        ScalingDataError: fewer than 3 distinct E or fewer than 5 runs, or no fit converged.

    >>> import numpy as np
    >>> e = np.repeat([1, 4, 16, 64, 256, 1024, 4096], 2)
    >>> y = bump(np.log10(e), 3.0, 0.4, np.log10(80), 0.5) + np.tile([0.01, -0.01], 7)
    >>> p = fit_peak(e, y, N=1e5)
    >>> round(p.e_star), p.interior, round(p.amplitude, 2)
    (80, True, 0.4)
    """
    e = np.asarray(repeat_count, dtype=float)
    y = np.asarray(loss, dtype=float)
    ok = np.isfinite(e) & np.isfinite(y) & (e > 0)
    x, y = np.log10(e[ok]), y[ok]
    grid = np.unique(x)
    where = f"N = {N:,.0f}: " if math.isfinite(N) else ""
    if len(grid) < 3 or len(y) < 5:
        raise ScalingDataError(f"{where}a peak fit needs runs at 3 or more repeat counts and 5 or more runs; "
                               f"got {len(grid)} and {len(y)}")
    best = _fit_bump(x, y, grid)
    if best is None:
        raise ScalingDataError(f"{where}the bump fit did not converge")
    p, cov, rss = best
    base, amp, c, w = (float(v) for v in p)
    n, dof = len(y), len(y) - 4
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
        fitted = _bump(x, *p)
        resid = (y - fitted) * math.sqrt(n / dof)
        draws = []
        for _ in range(bootstrap):
            refit = _fit_bump(x, fitted + rng.choice(resid, n, replace=True), grid, [p], bounded=False)
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
        interior=interior, amplitude=amp, amplitude_ci95=a_ci, width=w, baseline=base, runs=n, dof=dof,
        grid=tuple(float(10**g) for g in grid), method=method, note="; ".join(notes) or None,
    )


# ------------------------------------------------------------------------------ power laws in N


@dataclass(frozen=True)
class LogLogLaw:
    """``log10 y = intercept + slope · log10 N``, fitted by (weighted) least squares.

    ``cov`` is the covariance of ``(intercept, slope)`` scaled by the residuals (so a common
    factor in the weights cancels), ``dof = points - 2``; intervals use t at ``dof``.
    """

    intercept: float
    slope: float
    cov: tuple[tuple[float, float], tuple[float, float]]
    dof: int
    n_range: tuple[float, float]

    @property
    def slope_se(self) -> float:
        return math.sqrt(self.cov[1][1])

    @property
    def slope_ci95(self) -> tuple[float, float]:
        h = _t(self.dof) * self.slope_se
        return (self.slope - h, self.slope + h)

    def predict(self, n: float) -> tuple[float, tuple[float, float]]:
        """``10^(intercept + slope log10 n)`` and the 95% interval of that mean line at ``n``."""
        v = np.array([1.0, math.log10(n)])
        mean = float(self.intercept + self.slope * v[1])
        se = math.sqrt(max(float(v @ np.asarray(self.cov) @ v), 0.0))
        h = _t(self.dof) * se
        return 10**mean, (10 ** (mean - h), 10 ** (mean + h))

    def to_json(self) -> dict[str, float]:
        return {"intercept": float(self.intercept), "slope": float(self.slope)}


def fit_loglog(n: Any, y: Any, half_widths: Optional[Any] = None) -> LogLogLaw:
    """Least squares of ``log10 y`` on ``log10 n`` (weights ``1 / half_width^2`` when given), by
    :func:`numpy.polyfit` with its residual-scaled covariance; needs 3 or more points.

    >>> law = fit_loglog([1e3, 1e4, 1e5, 1e6], [300, 95, 30, 9.5])
    >>> round(law.slope, 2), law.dof
    (-0.5, 2)
    """
    ln, ly = np.log10(np.asarray(n, dtype=float)), np.log10(np.asarray(y, dtype=float))
    if len(ln) < 3 or len(np.unique(ln)) < 2:
        raise ScalingDataError(f"a power law with an interval needs 3 or more points at 2 or more sizes; got {len(ln)}")
    w = None if half_widths is None else 1.0 / np.asarray(half_widths, dtype=float)
    (slope, intercept), cov = np.polyfit(ln, ly, 1, w=w, cov=True)
    c = ((float(cov[1, 1]), float(cov[1, 0])), (float(cov[0, 1]), float(cov[0, 0])))
    return LogLogLaw(float(intercept), float(slope), c, len(ln) - 2, (float(10 ** ln.min()), float(10 ** ln.max())))


def _grid_step(grid: Sequence[float]) -> float:
    g = np.log10(np.asarray(sorted(grid), dtype=float))
    return float(np.diff(g).max()) if len(g) > 1 else float("inf")


def _assess_alpha(peaks: Sequence[Peak], grid: Sequence[float], unfitted: Sequence[str], expected_alpha: float,
                  max_halfwidth: float) -> tuple[Optional[LogLogLaw], Optional[str]]:
    """alpha's law, or None and every reason the design cannot identify it."""
    reasons = list(unfitted)
    sizes = [p.N for p in peaks]
    if len(sizes) < MIN_SIZES:
        reasons.append(f"{len(sizes)} model size{'s' if len(sizes) != 1 else ''} with a fitted peak; alpha needs at least {MIN_SIZES}")
    decades = math.log10(max(sizes) / min(sizes)) if sizes else 0.0
    if decades < MIN_DECADES:
        reasons.append(f"N spans {decades:.2f} decades (x{10**decades:.3g}); alpha needs at least {MIN_DECADES:g}")
    outside = [p for p in peaks if not p.interior]
    if outside:
        reasons.append("the peak is not interior (its 95% interval is not inside the grid) at "
                       + ", ".join(f"N = {p.N:,.0f}" for p in outside))
    step, shift = _grid_step(grid), abs(expected_alpha) * decades
    if step > shift:
        reasons.append(f"the E grid steps by up to {step:.2f} decades, more than the {shift:.2f} decades the peak would move over "
                       f"this N range at |alpha| = {abs(expected_alpha):g}")
    if reasons:
        return None, "; ".join(reasons)
    law = fit_loglog(sizes, [p.e_star for p in peaks], [p.log10_half_width for p in peaks])
    lo, hi = law.slope_ci95
    if not (math.isfinite(lo) and math.isfinite(hi)) or (hi - lo) / 2 > max_halfwidth:
        return None, f"the 95% interval of alpha ({lo:+.2f} to {hi:+.2f}) is wider than ±{max_halfwidth:g}"
    return law, None


def _edge_law(peaks: Sequence[Peak], side: str) -> Optional[LogLogLaw]:
    """The half-maximum edge on ``side`` ("left" | "right") against N, unweighted; None if an edge is missing."""
    edges = [getattr(p, f"e_{side}") for p in peaks]
    if len(peaks) < 3 or any(e is None for e in edges):
        return None
    return fit_loglog([p.N for p in peaks], edges)


# ------------------------------------------------------------------------------ effective size


def _control_law_curve(log_n, loss_inf, log10_n_c, exponent):
    return loss_inf + 10 ** (exponent * (log10_n_c - np.asarray(log_n, dtype=float)))


def _control_law_jac(log_n, loss_inf, log10_n_c, exponent):
    d = log10_n_c - np.asarray(log_n, dtype=float)
    p = 10 ** (exponent * d)
    return np.stack([np.ones_like(d), math.log(10) * exponent * p, math.log(10) * d * p], axis=1)


@dataclass(frozen=True)
class ControlLaw:
    """The full-data controls' loss against model size, ``L(N) = L_inf + (N_c / N)^a``.

    ``cov_unscaled`` is ``(J^T J)^-1`` of ``(L_inf, log10 N_c, a)``; times ``residual_sd^2`` it
    is the fit's covariance (``dof = runs - 3``). ``lack_of_fit_p``: the F test of the law's
    residual scatter between sizes against the seeds' scatter within a size (None without
    replicates).
    """

    size_column: str
    loss_inf: float
    log10_n_c: float
    exponent: float
    cov_unscaled: tuple[tuple[float, ...], ...]
    dof: int
    residual_sd: float
    sizes: tuple[float, ...]
    runs: int
    lack_of_fit_p: Optional[float]

    @property
    def n_range(self) -> tuple[float, float]:
        return (min(self.sizes), max(self.sizes))

    def loss_at(self, n: Any) -> Any:
        return _control_law_curve(np.log10(np.asarray(n, dtype=float)), self.loss_inf, self.log10_n_c, self.exponent)

    def n_eff(self, loss: float, noise_var: float, dof: float) -> tuple[float, Optional[float], Optional[float], str]:
        """The effective size of a mean loss: ``(N_eff, lo, hi, note)``.

        ``noise_var``: the variance of ``loss`` (pooled residual variance over its seeds);
        the interval is the delta method in log10 N_eff with t at ``dof``. Outside the
        trained range N_eff is NaN and ``note`` the bound; an interval end beyond it is None
        and named in ``note``.
        """
        lo_n, hi_n = self.n_range
        if loss > float(self.loss_at(lo_n)):
            return float("nan"), None, None, f"below the smallest control (N_eff < {lo_n:,.0f})"
        if loss < float(self.loss_at(hi_n)):
            return float("nan"), None, None, f"above the largest control (N_eff > {hi_n:,.0f})"
        a, u = self.exponent, loss - self.loss_inf
        log_n = self.log10_n_c - math.log10(u) / a
        g = np.array([1 / (a * u * math.log(10)), 1.0, math.log10(u) / a**2])
        d_loss = -1 / (a * u * math.log(10))
        var = self.residual_sd**2 * float(g @ np.asarray(self.cov_unscaled) @ g) + d_loss**2 * noise_var
        h = _t(dof) * math.sqrt(var)
        lo, hi = 10 ** (log_n - h), 10 ** (log_n + h)
        notes = []
        if lo < lo_n:
            lo, _ = None, notes.append("lower end below the smallest control")
        if hi > hi_n:
            hi, _ = None, notes.append("upper end above the largest control")
        return float(10**log_n), lo, hi, "; ".join(notes)

    def line(self) -> str:
        lof = f", lack-of-fit p = {self.lack_of_fit_p:.2f}" if self.lack_of_fit_p is not None else ""
        return (f"{self.size_column}: L = {self.loss_inf:.3f} + ({10 ** self.log10_n_c:.3g} / N)^{self.exponent:.3f} "
                f"over {len(self.sizes)} control sizes ({self.runs} runs, residual sd {self.residual_sd:.3f}, {self.dof} dof{lof})")


def fit_control_law(n: Any, loss: Any, *, size_column: str = "N") -> ControlLaw:
    """Fit ``L(N) = L_inf + (N_c / N)^a`` to the control runs (one value per run).

    Raises:
        LawNotIdentified: fewer than :data:`MIN_CONTROL_SIZES` sizes, no convergence, an
            exponent at its bound (0.01 or 3), or a lack of fit at the 5% level.

    >>> import numpy as np
    >>> n = np.repeat([1e4, 3e4, 1e5, 3e5, 1e6], 2)
    >>> law = fit_control_law(n, 3.0 + (2e3 / n) ** 0.3 + np.tile([0.005, -0.005], 5))
    >>> round(law.loss_inf, 2), round(law.exponent, 2)
    (3.0, 0.3)
    """
    ln, y = np.log10(np.asarray(n, dtype=float)), np.asarray(loss, dtype=float)
    sizes = np.unique(ln)
    if len(sizes) < MIN_CONTROL_SIZES:
        raise LawNotIdentified(f"controls at {len(sizes)} model size{'s' if len(sizes) != 1 else ''}; "
                               f"the law L = L_inf + (N_c/N)^a needs at least {MIN_CONTROL_SIZES}")
    bounds = ([0.0, -10.0, 0.01], [float(y.min()), 30.0, 3.0])
    best = None
    span = float(y.max() - y.min()) or 1e-3
    for a0 in (0.1, 0.3, 1.0):
        for inf0 in (max(float(y.min()) - span, 0.0),):
            top = y[ln == sizes[0]].mean() - inf0
            p0 = [inf0, sizes[0] + math.log10(max(top, 1e-6)) / a0, a0]
            fitted = _curve_fit(_control_law_curve, ln, y, p0, bounds, absolute_sigma=True, jac=_control_law_jac)
            if fitted is None:
                continue
            rss = float(np.sum((y - _control_law_curve(ln, *fitted[0])) ** 2))
            if best is None or rss < best[2]:
                best = (fitted[0], fitted[1], rss)
        if best is not None and bounds[0][2] + 1e-3 < best[0][2] < bounds[1][2] - 1e-3:
            break  # an interior optimum of a 3-parameter monotone law: the other starts only cost time
    if best is None:
        raise LawNotIdentified("the controls' law L = L_inf + (N_c/N)^a did not converge")
    p, cov, rss = best
    if min(p[2] - bounds[0][2], bounds[1][2] - p[2]) < 1e-6:
        raise LawNotIdentified(f"the controls' law has its exponent at a bound (a = {p[2]:.3g}): the loss does not fall as a "
                               "power law over these sizes")
    dof = len(y) - 3
    if dof < 1 or not np.all(np.isfinite(cov)):
        raise LawNotIdentified(f"the controls' law has {dof} residual degrees of freedom or a singular covariance")
    within = float(sum(((y[ln == s] - y[ln == s].mean()) ** 2).sum() for s in sizes))
    df_pe, df_lof = len(y) - len(sizes), len(sizes) - 3
    p_lof = None
    if df_pe >= 1 and within > 0:
        f_stat = ((rss - within) / df_lof) / (within / df_pe)
        p_lof = float(stats.f.sf(f_stat, df_lof, df_pe))
        if p_lof < LACK_OF_FIT_LEVEL:
            raise LawNotIdentified(f"the law L = L_inf + (N_c/N)^a does not fit the controls (lack-of-fit F test "
                                   f"p = {p_lof:.3g} against the seeds' scatter)")
    return ControlLaw(size_column, float(p[0]), float(p[1]), float(p[2]), tuple(tuple(float(v) for v in r) for r in cov), dof,
                      math.sqrt(rss / dof), tuple(float(10**s) for s in sizes), len(y), p_lof)


def effective_sizes(runs: Any, loss: Optional[str] = None) -> tuple[dict[str, ControlLaw | str], pd.DataFrame]:
    """Every grid point's effective model size on the full-data controls' law, per size convention.

    Args:
        runs: one row per run (:func:`scaling_table`'s columns).
        loss: the loss column (default :func:`default_loss`).

    Returns:
        ``({"N": ControlLaw or the reason there is none, "N_total": ...}, table)``; the table
        has one row per (size convention, size, f, E, control kind): ``size_column, N,
        repeated_fraction, repeat_count, control, seeds, loss, N_eff, N_eff_lo, N_eff_hi,
        ratio, ratio_lo, ratio_hi, note`` (``loss`` the mean over seeds; the noise of that
        mean is the residual variance pooled over the controls' law and the points' seeds).
    """
    table, loss = scaling_table(runs, loss)
    laws: dict[str, ControlLaw | str] = {}
    rows = []
    for size in [c for c in SIZE_COLUMNS if c in table.columns]:
        ctrl = table[table["control"] == "full"]
        try:
            law = fit_control_law(ctrl[size], ctrl[loss], size_column=size)
        except LawNotIdentified as e:
            laws[size] = str(e)
            continue
        laws[size] = law
        keys = [size, "repeated_fraction", "repeat_count", "control"]
        points = table.groupby(keys)[loss].agg(["mean", "count", "var"]).reset_index()
        others = points[(points["control"] != "full") & (points["count"] > 1)]
        ss = law.residual_sd**2 * law.dof + float(((others["count"] - 1) * others["var"]).sum())
        dof = law.dof + int((others["count"] - 1).sum())
        pooled = ss / dof
        for r in points.itertuples(index=False):
            n, mean, count = float(getattr(r, size)), float(r.mean), int(r.count)
            n_eff, lo, hi, note = law.n_eff(mean, pooled / count, dof)
            rows.append({"size_column": size, "N": n, "repeated_fraction": float(r.repeated_fraction),
                         "repeat_count": float(r.repeat_count), "control": r.control, "seeds": count, "loss": mean,
                         "N_eff": n_eff, "N_eff_lo": np.nan if lo is None else lo, "N_eff_hi": np.nan if hi is None else hi,
                         "ratio": n_eff / n, "ratio_lo": np.nan if lo is None else lo / n,
                         "ratio_hi": np.nan if hi is None else hi / n, "note": note})
    cols = ["size_column", "N", "repeated_fraction", "repeat_count", "control", "seeds", "loss", "N_eff", "N_eff_lo", "N_eff_hi",
            "ratio", "ratio_lo", "ratio_hi", "note"]
    return laws, pd.DataFrame(rows, columns=cols)


# ------------------------------------------------------------------------------ the result


@dataclass(frozen=True)
class Region:
    """The poor-performance region predicted for a model of ``N`` parameters (:meth:`ScalingFit.region`).

    ``extrapolated`` is True when ``N`` lies outside the fitted range; the numbers are then
    the fitted law carried beyond its data, and :meth:`line` says so.
    """

    N: float
    identified: bool
    reason: Optional[str]
    n_range: tuple[float, float]
    extrapolated: bool
    e_star: Optional[float] = None
    e_star_ci95: Optional[tuple[float, float]] = None
    e_left: Optional[float] = None
    e_left_ci95: Optional[tuple[float, float]] = None
    e_right: Optional[float] = None
    e_right_ci95: Optional[tuple[float, float]] = None

    def line(self) -> str:
        if not self.identified:
            return f"N = {self.N:,.0f}: the poor-performance region is not identified by this fit ({self.reason})"
        parts = [f"E* = {_fmt_e(self.e_star)} (95% {_fmt_e(self.e_star_ci95[0])}-{_fmt_e(self.e_star_ci95[1])})"]
        for side in ("left", "right"):
            e, ci = getattr(self, f"e_{side}"), getattr(self, f"e_{side}_ci95")
            if e is not None:
                parts.append(f"{side} half-maximum edge {_fmt_e(e)} (95% {_fmt_e(ci[0])}-{_fmt_e(ci[1])})")
        lo, hi = self.n_range
        where = (f"EXTRAPOLATED beyond the fitted N range {lo:,.0f}-{hi:,.0f}: the law is not tested there"
                 if self.extrapolated else f"inside the fitted N range {lo:,.0f}-{hi:,.0f}")
        return f"N = {self.N:,.0f}: " + ", ".join(parts) + f"; {where}"


@dataclass(frozen=True)
class FittedOn:
    """What a :class:`ScalingFit` was fitted on."""

    sizes: int
    runs: int
    seeds_per_point: tuple[int, int]
    grid: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class ScalingFit:
    """:func:`fit_scaling`'s result: the peaks per size, alpha (or why it is not identified),
    the half-maximum edges against N, and the effective-size table.

    ``laws``, ``effective`` and ``unfitted`` are not part of the JSON form
    (:meth:`to_json`); after :meth:`from_json` they are empty.
    """

    loss: str
    size_column: str
    repeated_fraction: float
    total_tokens: Optional[int]
    n_range: tuple[float, float]
    identified: bool
    reason: Optional[str]
    alpha: Optional[float]
    alpha_ci95: Optional[tuple[float, float]]
    log10_e_star_intercept: Optional[float]
    edges: dict[str, Optional[dict[str, float]]]
    peaks: tuple[Peak, ...]
    fitted_on: FittedOn
    laws: dict[str, Any] = field(default_factory=dict)
    effective: Optional[pd.DataFrame] = None
    unfitted: tuple[str, ...] = ()
    dropped: int = 0

    # -------------------------------------------------------------- the laws behind alpha and the edges
    def _alpha_law(self) -> Optional[LogLogLaw]:
        if not self.identified:
            return None
        return fit_loglog([p.N for p in self.peaks], [p.e_star for p in self.peaks], [p.log10_half_width for p in self.peaks])

    def region(self, n: float) -> Region:
        """The poor-performance region predicted for a model of size ``n`` (in :attr:`size_column`).

        E* and the half-maximum edges from their laws in N, each with the 95% interval of the
        fitted line at ``n`` (t at sizes - 2 dof). Outside :attr:`n_range` the result is
        flagged ``extrapolated`` (and says so); when alpha is not identified it carries the
        reason and no numbers.
        """
        if not (isinstance(n, (int, float)) and math.isfinite(n) and n > 0):
            raise ScalingDataError(f"a model size must be a positive number of parameters; got {n!r}")
        outside = not (self.n_range[0] <= n <= self.n_range[1])
        law = self._alpha_law()
        if law is None:
            return Region(float(n), False, self.reason, self.n_range, outside)
        e, ci = law.predict(n)
        out: dict[str, Any] = {"e_star": e, "e_star_ci95": ci}
        for side in ("left", "right"):
            edge = _edge_law(self.peaks, side)
            if edge is not None:
                out[f"e_{side}"], out[f"e_{side}_ci95"] = edge.predict(n)
        return Region(float(n), True, None, self.n_range, outside, **out)

    # -------------------------------------------------------------- text
    def lines(self) -> list[str]:
        """The fit as text: design, peaks, alpha (or why not), edges, effective sizes."""
        d = f", D = {self.total_tokens:,} tokens" if self.total_tokens else ""
        lo, hi = self.fitted_on.seeds_per_point
        seeds = f"{lo}" if lo == hi else f"{lo}-{hi}"
        grid = ", ".join(f"{e:g}" for e in self.fitted_on.grid)
        out = [f"Scaling fit of {self.loss} at f = {self.repeated_fraction:g}{d}: {self.fitted_on.sizes} model sizes "
               f"({self.size_column}: {SIZE_COLUMNS.get(self.size_column, self.size_column)}, {self.n_range[0]:,.0f} to "
               f"{self.n_range[1]:,.0f}), {self.fitted_on.runs} runs, {seeds} seeds per point, grid E = {grid}."]
        if self.dropped:
            out.append(f"({self.dropped} run(s) without a {self.loss} value left out.)")
        method = self.peaks[0].method if self.peaks and self.peaks[0].method else "t"
        basis = ("t at runs - 4 dof" if method == "t" else f"{method} refits to the fitted curve plus resampled residuals")
        out.append(f"Peak per size (a Gaussian bump in log10 E over a constant baseline, fitted to every run of the size; "
                   f"95% intervals: {basis}):")
        out += [f"  {p.line()}" for p in self.peaks]
        out += [f"  no peak: {u}" for u in self.unfitted]
        if self.identified:
            law = self._alpha_law()
            out.append(f"alpha = {self.alpha:+.3f} (95% {self.alpha_ci95[0]:+.3f} to {self.alpha_ci95[1]:+.3f}; weighted least "
                       f"squares of log10 E* on log10 N, t at {law.dof} dof): log10 E* = {self.log10_e_star_intercept:.3f} "
                       f"{self.alpha:+.3f} log10 N")
            for side in ("left", "right"):
                edge = _edge_law(self.peaks, side)
                if edge is not None:
                    a, b = edge.slope_ci95
                    out.append(f"{side} half-maximum edge: log10 E = {edge.intercept:.3f} {edge.slope:+.3f} log10 N "
                               f"(slope 95% {a:+.3f} to {b:+.3f}, t at {edge.dof} dof)")
                else:
                    out.append(f"{side} half-maximum edge: not fitted (outside the grid at some size)")
        else:
            out.append(f"alpha: not identified: {self.reason}.")
        if self.laws:
            out.append("Effective model size on the full-data controls' law L = L_inf + (N_c/N)^a:")
            for size, law in self.laws.items():
                out.append(f"  {law.line()}" if isinstance(law, ControlLaw) else f"  {size}: no N_eff: {law}.")
            if self.effective is not None and len(self.effective):
                out.append(_effective_text(self.effective))
        return out

    # -------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """The JSON object of format :data:`FORMAT`."""
        return {
            "format": FORMAT, "loss": self.loss, "size_column": self.size_column,
            "repeated_fraction": float(self.repeated_fraction),
            "total_tokens": None if self.total_tokens is None else int(self.total_tokens),
            "n_range": [float(self.n_range[0]), float(self.n_range[1])],
            "identified": bool(self.identified), "reason": self.reason,
            "alpha": _num(self.alpha), "alpha_ci95": _list(self.alpha_ci95),
            "log10_e_star_intercept": _num(self.log10_e_star_intercept),
            "edges": {side: self.edges.get(side) for side in ("left", "right")},
            "peaks": [p.to_json() for p in self.peaks],
            "fitted_on": {"sizes": int(self.fitted_on.sizes), "runs": int(self.fitted_on.runs),
                          "seeds_per_point": [int(v) for v in self.fitted_on.seeds_per_point],
                          "grid": [float(e) for e in self.fitted_on.grid]},
        }

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` to ``path`` (atomically); returns the path."""
        from repeatlens.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return Path(path)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "scaling fit") -> "ScalingFit":
        """The fit from its JSON object; :class:`ScalingDataError` naming the field at fault."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ScalingDataError(f"{where}: format {got!r}; expected {FORMAT!r}")
        try:
            peaks = tuple(Peak(N=float(p["N"]), e_star=float(p["e_star"]), e_star_ci95=_tuple(p["e_star_ci95"]),
                               e_left=_opt(p["e_left"]), e_right=_opt(p["e_right"]), interior=bool(p["interior"]),
                               amplitude=float(p["amplitude"]), amplitude_ci95=_tuple(p["amplitude_ci95"]))
                          for p in d["peaks"])
            on = d["fitted_on"]
            return cls(
                loss=str(d["loss"]), size_column=str(d["size_column"]), repeated_fraction=float(d["repeated_fraction"]),
                total_tokens=None if d["total_tokens"] is None else int(d["total_tokens"]),
                n_range=_tuple(d["n_range"]), identified=bool(d["identified"]), reason=d["reason"],
                alpha=_opt(d["alpha"]), alpha_ci95=_tuple(d["alpha_ci95"]),
                log10_e_star_intercept=_opt(d["log10_e_star_intercept"]),
                edges={side: (None if d["edges"][side] is None else {"intercept": float(d["edges"][side]["intercept"]),
                                                                     "slope": float(d["edges"][side]["slope"])})
                       for side in ("left", "right")},
                peaks=peaks,
                fitted_on=FittedOn(int(on["sizes"]), int(on["runs"]), _tuple(on["seeds_per_point"], int),
                                   tuple(float(e) for e in on["grid"])),
            )
        except KeyError as e:
            raise ScalingDataError(f"{where}: field {e.args[0]!r} missing") from None
        except (TypeError, ValueError) as e:
            raise ScalingDataError(f"{where}: a field has the wrong type ({e})") from None

    @classmethod
    def from_json(cls, path: str | Path) -> "ScalingFit":
        """Read a fit written by :meth:`to_json`."""
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except OSError as e:
            raise ScalingDataError(f"{p}: unreadable ({e.strerror or e})") from None
        except ValueError as e:
            raise ScalingDataError(f"{p}: not JSON ({e})") from None
        return cls.from_dict(d, str(p))


def _opt(x: Any) -> Optional[float]:
    return None if x is None else float(x)


def _tuple(x: Any, kind: type = float) -> Optional[tuple]:
    if x is None:
        return None
    if len(x) != 2:
        raise ValueError(f"expected a pair, got {x!r}")
    return (kind(x[0]), kind(x[1]))


def _effective_text(eff: pd.DataFrame) -> str:
    rows = []
    for r in eff.itertuples(index=False):
        if math.isfinite(r.N_eff):
            lo = f"{r.N_eff_lo:,.0f}" if math.isfinite(r.N_eff_lo) else "<range"
            hi = f"{r.N_eff_hi:,.0f}" if math.isfinite(r.N_eff_hi) else ">range"
            val = f"{r.N_eff:,.0f} (95% {lo}-{hi}), N_eff/N = {r.ratio:.3g}"
        else:
            val = r.note
        rows.append(f"  {r.size_column} = {r.N:,.0f}, f = {r.repeated_fraction:g}, E = {r.repeat_count:g} ({r.control}, "
                    f"{r.seeds} seed{'s' if r.seeds != 1 else ''}): loss {r.loss:.4f}, N_eff {val}"
                    + (f" [{r.note}]" if r.note and math.isfinite(r.N_eff) else ""))
    return "\n".join(rows)


def fit_scaling(
    runs: Any,
    loss: Optional[str] = None,
    *,
    fraction: Optional[float] = None,
    size: str = "N",
    total_tokens: Optional[int] = None,
    bootstrap: int = 0,
    seed: int = 0,
    expected_alpha: float = EXPECTED_ALPHA,
    max_alpha_halfwidth: float = MAX_ALPHA_HALFWIDTH,
) -> ScalingFit:
    """Where the damage peaks per model size, how that moves with N, and the effective sizes.

    Args:
        runs: one row per run: ``N``, ``repeated_fraction``, ``repeat_count``, ``seed`` and
            the loss column; optional ``N_total``, ``total_tokens``, ``unique_tokens``,
            ``control`` (see the module docstring). A pandas DataFrame or anything it takes.
        loss: the loss column (default ``test_text`` when every run has it, else ``test_loss``).
        fraction: the repeated fraction f whose curves are fitted (default the largest).
        size: the size convention of the peaks and alpha: ``"N"`` or ``"N_total"``.
        total_tokens: the D to fit when the table holds runs at several.
        bootstrap: 0 for the fits' t intervals; B > 0 for residual-bootstrap intervals of
            every peak (B refits per size), which then also weight alpha's fit.
        seed: the bootstrap's seed.
        expected_alpha: the exponent against which the grid's resolution is judged.
        max_alpha_halfwidth: alpha is "not identified" when its interval is wider than ±this.

    Returns:
        A :class:`ScalingFit`.

    Raises:
        ScalingDataError: a missing column, no repeated runs, an f or D not in the table.
    """
    table, loss = scaling_table(runs, loss)
    if size not in SIZE_COLUMNS:
        raise ScalingDataError(f"size must be one of {', '.join(SIZE_COLUMNS)}; got {size!r}")
    if size not in table.columns:
        raise ScalingDataError(f"the runs table has no {size!r} column (or {COLUMN_ALIASES[size]!r})")
    rep = table[table["control"] == "none"]
    if rep.empty:
        raise ScalingDataError("the runs table has no repeated-data runs (f > 0)")
    fractions = sorted(float(f) for f in rep["repeated_fraction"].unique())
    f = fractions[-1] if fraction is None else float(fraction)
    curve = rep[np.isclose(rep["repeated_fraction"], f)]
    if curve.empty:
        raise ScalingDataError(f"fraction {f:g}: no runs at it; the table has f = {', '.join(f'{x:g}' for x in fractions)}")
    d = None
    if "total_tokens" in curve.columns and curve["total_tokens"].notna().any():
        ds = sorted(curve["total_tokens"].dropna().unique())
        if total_tokens is not None:
            curve = curve[curve["total_tokens"] == total_tokens]
            if curve.empty:
                raise ScalingDataError(f"total_tokens {total_tokens}: no runs at f = {f:g} with it; the table has {ds}")
            ds = [total_tokens]
        if len(ds) > 1:
            raise ScalingDataError(f"the runs at f = {f:g} were trained on several D ({', '.join(f'{v:,.0f}' for v in ds)}); "
                                   "pass total_tokens= to fit one")
        d = int(ds[0])
    grid = tuple(float(e) for e in sorted(curve["repeat_count"].unique()))
    rng = np.random.default_rng(seed)
    peaks, unfitted = [], []
    for n, g in curve.groupby(size):
        try:
            peaks.append(fit_peak(g["repeat_count"].to_numpy(), g[loss].to_numpy(), N=float(n), bootstrap=bootstrap, rng=rng))
        except ScalingDataError as e:
            unfitted.append(str(e))
    law, reason = _assess_alpha(peaks, grid, unfitted, expected_alpha, max_alpha_halfwidth)
    sizes = [p.N for p in peaks] or sorted(float(n) for n in curve[size].unique())
    counts = curve.groupby([size, "repeat_count"]).size()
    edges = {side: (None if law is None or _edge_law(peaks, side) is None else _edge_law(peaks, side).to_json())
             for side in ("left", "right")}
    laws, eff = effective_sizes(table, loss)
    return ScalingFit(
        loss=loss, size_column=size, repeated_fraction=f, total_tokens=d, n_range=(min(sizes), max(sizes)),
        identified=law is not None, reason=reason, alpha=None if law is None else law.slope,
        alpha_ci95=None if law is None else law.slope_ci95, log10_e_star_intercept=None if law is None else law.intercept,
        edges=edges, peaks=tuple(peaks),
        fitted_on=FittedOn(len(peaks), int(len(curve)), (int(counts.min()), int(counts.max())), grid),
        laws=laws, effective=eff, unfitted=tuple(unfitted), dropped=int(table.attrs.get("dropped", 0)),
    )
