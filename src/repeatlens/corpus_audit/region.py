"""Where the damage is predicted: the poor-performance region E_left ≤ E ≤ E_right at size N.

Three sources, each giving the repeat counts E between which a model of N parameters is
predicted to learn worst from a repeated subset:

* ``published``: Hernandez et al. (2022)'s half-maximum edges, E_left = 4.2e6 · N^−0.56 and
  E_right = 5.1e7 · N^−0.50, fitted at a fixed D = 100B training tokens (as quoted by a
  secondary source; :data:`PUBLISHED`);
* a scaling-fit JSON written by ``repeatlens fit --json`` (format
  ``repeatlens-scaling-fit/1``, read by :func:`read_scaling_fit`): its power-law edges
  ``log10 E_edge = intercept + slope · log10 N`` when the exponent is identified, else the
  per-size peaks' edges (the nearest fitted size, or log-linear interpolation in N between
  the two sizes around N);
* ``study`` (the default): this project's own fit, :data:`STUDY_FIT`, once it identifies the
  exponent (its edges then scale to any N); until then (no fit committed, or too few sizes
  for an exponent) the published edges, saying why. A fit of a few sizes is still read
  when named by its path.

A request outside the fitted N range (or at another D) is answered with the fit's edges
all the same, and a note that it extrapolates, naming the range and D it was fitted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from repeatlens.errors import ConfigError
from repeatlens.plots.theme import format_count
from repeatlens.results.fits import ScalingDataError, ScalingFit

STUDY_FIT = Path(__file__).resolve().parents[3] / "analyses" / "repeated_data_scaling" / "results" / "scaling_fit.json"
"""This project's own study fit, in a source checkout (absent until the study writes it)."""


@dataclass(frozen=True)
class PowerLaw:
    """E = 10^intercept · N^slope."""

    intercept: float
    slope: float

    def at(self, n: float) -> float:
        return 10.0 ** (self.intercept + self.slope * math.log10(n))


PUBLISHED = {"left": PowerLaw(math.log10(4.2e6), -0.56), "right": PowerLaw(math.log10(5.1e7), -0.50)}
"""Hernandez et al. (2022)'s half-maximum edges of the poor-performance region, at D = 100B."""
PUBLISHED_D = 100e9
PUBLISHED_CAVEAT = ("Hernandez et al. (2022) fitted these edges at a fixed D = 100B training tokens "
                    "(quoted from a secondary source); they are not rescaled to other D")


# ----------------------------------------------------------------------------- the fit JSON


def read_scaling_fit(path: str | Path) -> ScalingFit:
    """Read and validate a scaling-fit JSON (:meth:`repeatlens.results.fits.ScalingFit.from_json`)
    that has a region to read.

    Raises:
        ConfigError: the file is missing or not JSON, or a field is missing or of the wrong
            type (one line naming the file and the field), or it has neither an identified
            exponent nor per-size peaks.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--region: no scaling-fit JSON at '{path}'; expected 'study', 'published' or a file written by repeatlens fit --json")
    try:
        fit = ScalingFit.from_json(path)
    except ScalingDataError as e:
        raise ConfigError(str(e)) from None
    if not fit.identified and not fit.peaks:
        raise ConfigError(f"{path}: the exponent is not identified ({fit.reason}) and there are no per-size 'peaks': no region to read")
    return fit


# ----------------------------------------------------------------------------- the region at N


@dataclass(frozen=True)
class Region:
    """The predicted poor-performance region for one model size.

    Attributes:
        n: the model size asked about (in the source's size column).
        left, right: the region's edges in E (None where the source cannot say).
        peak: the predicted worst E (None where the source has none).
        source: ``published`` or the fit JSON's path.
        description: one line naming where the numbers come from.
        notes: caveats the output repeats (fixed D, extrapolation, not identified, …).
        fitted: what the source was fitted on (D, N range, fraction, loss) for the JSON.
    """

    n: float
    left: Optional[float]
    right: Optional[float]
    peak: Optional[float]
    source: str
    description: str
    notes: tuple[str, ...] = ()
    fitted: dict = field(default_factory=dict)

    def label(self) -> str:
        """``E = 504–16,128`` (or the side that is known)."""
        def fmt(v: Optional[float]) -> str:
            return "?" if v is None else f"{v:,.0f}" if v >= 10 else f"{v:.3g}"
        return f"E = {fmt(self.left)}–{fmt(self.right)}"

    def as_dict(self) -> dict:
        return {"N": self.n, "e_left": self.left, "e_right": self.right, "e_star": self.peak, "source": self.source,
                "description": self.description, "notes": list(self.notes), "fitted": self.fitted}


def published_region(n: float, tokens: Optional[float] = None) -> Region:
    """Hernandez et al. (2022)'s edges at N, with the fixed-D caveat.

    >>> r = published_region(1e8)
    >>> round(r.left, 1), round(r.right)
    (139.1, 5100)
    """
    notes = [PUBLISHED_CAVEAT]
    if tokens is not None:
        notes.append(f"your planned D = {format_count(tokens)} tokens; the published edges are for D = 100B")
    return Region(n, PUBLISHED["left"].at(n), PUBLISHED["right"].at(n), None, "published",
                  "Hernandez et al. (2022) half-maximum edges: E_left = 4.2e6·N^-0.56, E_right = 5.1e7·N^-0.50",
                  tuple(notes), {"D": PUBLISHED_D})


def _interpolate(n: float, points: list[tuple[float, Optional[float]]]) -> Optional[float]:
    """Log-linear interpolation in N between the two sizes around n (their value at the
    nearest size outside the range); None where a needed value is None."""
    points = sorted(points)
    if n <= points[0][0]:
        return points[0][1]
    if n >= points[-1][0]:
        return points[-1][1]
    for (n0, v0), (n1, v1) in zip(points, points[1:]):
        if n0 <= n <= n1:
            if v0 is None or v1 is None:
                return None
            w = (math.log10(n) - math.log10(n0)) / (math.log10(n1) - math.log10(n0))
            return 10.0 ** ((1 - w) * math.log10(v0) + w * math.log10(v1))
    raise AssertionError("unreachable: n lies between the sorted sizes")


def fit_region(fit: ScalingFit, n: float, source: str, tokens: Optional[float] = None) -> Region:
    """The region at N from a scaling-fit JSON (power laws when identified, else the peaks)."""
    lo, hi = fit.n_range
    d = fit.total_tokens
    sizes_fitted = f"N = {format_count(lo)}–{format_count(hi)} ({fit.size_column})"
    where = f"{sizes_fitted}, D = {format_count(d)} tokens" if d else f"{sizes_fitted}, D not recorded"
    notes = []
    outside = not lo <= n <= hi
    if outside:
        notes.append(f"N = {format_count(n)} extrapolates beyond the fitted range {where}")
    if tokens is not None and d and not math.isclose(tokens, d, rel_tol=0.05):
        notes.append(f"your planned D = {format_count(tokens)} tokens differs from the fit's D = {format_count(d)}; "
                     "the edges are not rescaled")
    notes.append(f"fitted at repeated fraction f = {fit.repeated_fraction:g} on {fit.loss}")
    fitted = {"D": d, "n_range": [lo, hi], "size_column": fit.size_column, "repeated_fraction": fit.repeated_fraction,
              "loss": fit.loss, "alpha": fit.alpha, "alpha_ci95": fit.alpha_ci95, "identified": fit.identified}
    left_law, right_law = fit.edges.get("left"), fit.edges.get("right")
    if fit.identified and (left_law is not None or right_law is not None):
        left = PowerLaw(**left_law).at(n) if left_law else None
        right = PowerLaw(**right_law).at(n) if right_law else None
        peak = (PowerLaw(fit.log10_e_star_intercept, fit.alpha).at(n)
                if fit.log10_e_star_intercept is not None and fit.alpha is not None else None)
        ci = f" {list(fit.alpha_ci95)}" if fit.alpha_ci95 else ""
        desc = f"scaling fit {source}: power-law edges in N (alpha = {fit.alpha:.3g}{ci}), fitted on {where}" if fit.alpha is not None \
            else f"scaling fit {source}: power-law edges in N, fitted on {where}"
        return Region(n, left, right, peak, source, desc, tuple(notes), fitted)
    if not fit.peaks:
        raise ConfigError(f"{source}: identified, but with neither power-law edges nor per-size peaks: no region to read")
    sizes = sorted(p.N for p in fit.peaks)
    why = f"not identified ({fit.reason})" if not fit.identified else "identified, but without power-law edges"
    if n in sizes:
        how = f"the fitted size N = {format_count(n)}'s own edges"
    elif sizes[0] < n < sizes[-1]:
        below = max(s for s in sizes if s < n)
        above = min(s for s in sizes if s > n)
        how = f"interpolated in log N between the fitted sizes {format_count(below)} and {format_count(above)}"
    else:
        how = f"the nearest fitted size N = {format_count(min(sizes, key=lambda s: abs(math.log10(s / n))))}'s edges"
    left = _interpolate(n, [(p.N, p.e_left) for p in fit.peaks])
    right = _interpolate(n, [(p.N, p.e_right) for p in fit.peaks])
    peak = _interpolate(n, [(p.N, p.e_star) for p in fit.peaks])
    desc = f"scaling fit {source}: the exponent is {why}; per-size peaks, {how}; fitted on {where}"
    return Region(n, left, right, peak, source, desc, tuple(notes), fitted)


@dataclass(frozen=True)
class RegionSource:
    """Where the region comes from: the published edges (``fit`` None) or a scaling fit."""

    name: str
    fit: Optional[ScalingFit] = None
    note: Optional[str] = None

    def at(self, n: float, tokens: Optional[float] = None) -> Region:
        """The region for a model of ``n`` parameters trained on ``tokens`` (if known)."""
        base = published_region(n, tokens) if self.fit is None else fit_region(self.fit, n, self.name, tokens)
        if self.note is None:
            return base
        return Region(base.n, base.left, base.right, base.peak, base.source, base.description,
                      (self.note, *base.notes), base.fitted)


def region_source(region: str, study_fit: Path = STUDY_FIT) -> RegionSource:
    """Read ``--region`` (before any counting, so a bad file fails at once): ``study`` (this
    project's fit when committed, else the published edges, saying so), ``published``, or
    the path of a scaling-fit JSON."""
    if region == "published":
        return RegionSource("published")
    if region == "study":
        if not study_fit.is_file():
            return RegionSource("published", note=f"this project's own study fit ({study_fit.name}) has not been "
                                                  "committed yet; using the published edges")
        fit = read_scaling_fit(study_fit)
        if not fit.identified:  # per-size peaks only: a model of another size would read a fitted size's edges
            return RegionSource("published", note=f"this project's own study fit ({study_fit.name}) does not identify the "
                                                  f"exponent yet ({fit.reason}); using the published edges (name the file "
                                                  "with --region to read its per-size peaks)")
        return RegionSource(str(study_fit), fit)
    return RegionSource(region, read_scaling_fit(region))
