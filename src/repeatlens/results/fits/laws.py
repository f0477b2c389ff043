"""Laws in N: E* against N (:class:`LogLogLaw`, and whether the design identifies alpha), and the controls' loss law with the effective sizes it gives (:class:`ControlLaw`, :func:`effective_sizes`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from repeatlens.results.fits.common import (
    LACK_OF_FIT_LEVEL,
    LawNotIdentified,
    MIN_CONTROL_SIZES,
    MIN_DECADES,
    MIN_SIZES,
    SIZE_COLUMNS,
    ScalingDataError,
    _curve_fit,
    _t,
)
from repeatlens.results.fits.peak import Peak
from repeatlens.results.fits.table import scaling_table


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
    flat = [p for p in peaks if p.interior and (p.amplitude_ci95 is None or p.amplitude_ci95[0] <= 0)]
    if flat:
        reasons.append("the bump's amplitude is not above noise (its 95% interval reaches 0) at "
                       + ", ".join(f"N = {p.N:,.0f}" for p in flat))
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
    e_stars = [p.e_star for p in peaks]
    ses = [p.log10_half_width / _t(p.dof) if p.dof else p.log10_half_width / 1.96 for p in peaks]
    se_dof = min(p.dof or 10**6 for p in peaks)  # None: a bootstrap interval, taken as normal
    stat, dof, p_value = power_law_lack_of_fit(sizes, e_stars, ses, se_dof)
    if p_value < LACK_OF_FIT_LEVEL:
        x, y = np.log10(sizes), np.log10(e_stars)
        order = np.argsort(x)
        slopes = np.diff(y[order]) / np.diff(x[order])
        return None, (f"one power law does not fit the {len(peaks)} peaks within their errors (chi-square {stat:.1f} on {dof} "
                      f"dof, p = {p_value:.2g} against F({dof}, {se_dof}), each peak's standard error estimated by its "
                      f"bump fit on {se_dof}+ dof): the slope of log10 E* "
                      f"between neighbouring sizes runs from {slopes[0]:+.2f} to {slopes[-1]:+.2f}, so no single exponent "
                      f"describes this N range (the least-squares line's slope, {law.slope:+.3f}, is an average over it)")
    return law, None


def power_law_lack_of_fit(n: Any, y: Any, ses: Any, se_dof: int) -> tuple[float, int, float]:
    """Whether ``log10 y`` lies on one line in ``log10 n`` within its standard errors ``ses``.

    ``X = sum(((log10 y - line) / se)^2)`` over the weighted least-squares line; each ``se``
    is estimated on ``se_dof`` degrees of freedom (a peak's bump fit), so ``X / (k - 2)`` is
    referred to F(k - 2, se_dof) rather than chi-square (the estimated errors make the sum's
    tail heavier). Returns ``(X, k - 2, p)``; ``tests/results/test_fits.py`` simulates its
    false-rejection rate on exact power laws.

    >>> x, p = power_law_lack_of_fit([1e3, 1e4, 1e5, 1e6], [300, 95, 30, 9.5], [0.05] * 4, 9)[::2]
    >>> p > 0.5
    True
    """
    from scipy import stats

    line = fit_loglog(n, y, ses)  # weights 1/se: the weighted least-squares line the sum is taken over
    ln, ly = np.log10(np.asarray(n, dtype=float)), np.log10(np.asarray(y, dtype=float))
    stat = float(np.sum(((ly - line.intercept - line.slope * ln) / np.asarray(ses, dtype=float)) ** 2))
    return stat, line.dof, float(stats.f.sf(stat / line.dof, line.dof, se_dof))


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
        from scipy import stats

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
