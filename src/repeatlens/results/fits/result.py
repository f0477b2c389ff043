"""The whole sweep's scaling fit: :func:`fit_scaling` and the :class:`ScalingFit` it returns, with its JSON form (:data:`~repeatlens.results.fits.FORMAT`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from repeatlens.errors import first_line
from repeatlens.results.fits.common import (
    COLUMN_ALIASES,
    EXPECTED_ALPHA,
    FORMAT,
    MAX_ALPHA_HALFWIDTH,
    SIZE_COLUMNS,
    ScalingDataError,
    _fmt_e,
    _list,
    _num,
)
from repeatlens.results.fits.laws import ControlLaw, LogLogLaw, _assess_alpha, _edge_law, effective_sizes, fit_loglog
from repeatlens.results.fits.peak import MIN_LINEAR_GRID, LackOfFit, Peak, fit_peak
from repeatlens.results.fits.table import scaling_table


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
    baseline: str = "constant"
    """The peak model's baseline as asked (``auto`` | ``linear`` | ``constant``; each peak's line
    says which it got); JSON written before it was recorded reads as constant."""


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
        basis = ("t at runs - k dof, k = 5 parameters over a linear baseline and 4 over a constant one" if method == "t"
                 else f"{method} refits to the fitted curve plus resampled residuals")
        base = {"linear": "a baseline linear in log10 E", "constant": "a constant baseline"}.get(
            self.fitted_on.baseline, f"a baseline linear in log10 E where the size has {MIN_LINEAR_GRID}+ repeat counts, else constant")
        out.append(f"Peak per size (a Gaussian bump in log10 E over {base}, fitted to every run of the size; "
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
                          "grid": [float(e) for e in self.fitted_on.grid], "baseline": self.fitted_on.baseline},
        }

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` to ``path`` (atomically); returns the path."""
        from repeatlens.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return Path(path)

    @classmethod
    def from_dict(cls, d: Any, where: str = "scaling fit") -> "ScalingFit":
        """The fit from its JSON object (:data:`FORMAT`), validated field by field:
        :class:`ScalingDataError`, one line naming ``where`` and the field at fault."""
        if not isinstance(d, dict):
            raise ScalingDataError(f"{where}: expected a JSON object with format '{FORMAT}', got a {type(d).__name__}")
        return cls._validated(json.dumps(d), where)

    @classmethod
    def from_json(cls, path: str | Path) -> "ScalingFit":
        """Read a fit written by :meth:`to_json` (or ``repeatlens fit --json``), validated as :meth:`from_dict`."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
            d = json.loads(text)
        except OSError as e:
            raise ScalingDataError(f"{p}: unreadable ({e.strerror or e})") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ScalingDataError(f"{p}: not a JSON file ({first_line(e)})") from None
        if not isinstance(d, dict):
            raise ScalingDataError(f"{p}: expected a JSON object with format '{FORMAT}', got a {type(d).__name__}")
        return cls._validated(text, str(p))

    @classmethod
    def _validated(cls, text: str, where: str) -> "ScalingFit":
        d = json.loads(text)
        if d.get("format") != FORMAT:
            raise ScalingDataError(f"{where}: field 'format' = {d.get('format')!r}; expected '{FORMAT}'")
        try:
            f = _FitFile.model_validate_json(text)
        except ValidationError as err:
            e = err.errors()[0]
            loc = ".".join(str(x) for x in e["loc"])
            if e["type"] == "missing":
                raise ScalingDataError(f"{where}: field '{loc}' missing") from None
            shown = "" if isinstance(e.get("input"), dict) else f" = {e.get('input')!r}"
            raise ScalingDataError(f"{where}: field '{loc}'{shown}: {e['msg']}") from None
        lo, hi = f.n_range
        if not 0 < lo <= hi:
            raise ScalingDataError(f"{where}: field 'n_range' = [{lo}, {hi}]; expected 0 < N_min <= N_max")
        on = f.fitted_on
        return cls(
            loss=f.loss, size_column=f.size_column, repeated_fraction=f.repeated_fraction, total_tokens=f.total_tokens,
            n_range=f.n_range, identified=f.identified, reason=f.reason, alpha=f.alpha, alpha_ci95=f.alpha_ci95,
            log10_e_star_intercept=f.log10_e_star_intercept,
            edges={side: None if e is None else {"intercept": e.intercept, "slope": e.slope}
                   for side, e in (("left", f.edges.left), ("right", f.edges.right))},
            peaks=tuple(Peak(N=p.N, e_star=p.e_star, e_star_ci95=p.e_star_ci95, e_left=p.e_left, e_right=p.e_right,
                             interior=p.interior, amplitude=p.amplitude, amplitude_ci95=p.amplitude_ci95,
                             lack_of_fit=None if p.lack_of_fit is None else LackOfFit(**p.lack_of_fit.model_dump()))
                        for p in f.peaks),
            fitted_on=FittedOn(on.sizes, on.runs, on.seeds_per_point, tuple(on.grid), on.baseline),
        )


# ------------------------------------------------------------------------------ the JSON schema

_STRICT = ConfigDict(extra="ignore", strict=True)


class _EdgeFile(BaseModel):
    model_config = _STRICT
    intercept: float = Field(allow_inf_nan=False)
    slope: float = Field(allow_inf_nan=False)


class _EdgesFile(BaseModel):
    model_config = _STRICT
    left: Optional[_EdgeFile]
    right: Optional[_EdgeFile]


class _LackOfFitFile(BaseModel):
    model_config = _STRICT
    F: float = Field(ge=0, allow_inf_nan=False)
    dof_lack: int = Field(ge=1)
    dof_pure: int = Field(ge=1)
    p: float = Field(ge=0, le=1)


class _PeakFile(BaseModel):
    model_config = _STRICT
    N: float = Field(gt=0, allow_inf_nan=False)
    e_star: float = Field(gt=0, allow_inf_nan=False)
    e_star_ci95: Optional[tuple[float, float]]
    e_left: Optional[float] = Field(gt=0, allow_inf_nan=False)
    e_right: Optional[float] = Field(gt=0, allow_inf_nan=False)
    interior: bool
    amplitude: float
    amplitude_ci95: Optional[tuple[float, float]]
    lack_of_fit: Optional[_LackOfFitFile] = None  # absent in files written before it was tested


class _FittedOnFile(BaseModel):
    model_config = _STRICT
    sizes: int
    runs: int
    seeds_per_point: tuple[int, int]
    grid: list[float]
    baseline: str = "constant"


class _FitFile(BaseModel):
    """The JSON form of :class:`ScalingFit` (format :data:`FORMAT`), field by field."""

    model_config = _STRICT
    loss: str
    size_column: Literal["N", "N_total"]
    repeated_fraction: float
    total_tokens: Optional[int]
    n_range: tuple[float, float]
    identified: bool
    reason: Optional[str]
    alpha: Optional[float]
    alpha_ci95: Optional[tuple[float, float]]
    log10_e_star_intercept: Optional[float]
    edges: _EdgesFile
    peaks: list[_PeakFile]
    fitted_on: _FittedOnFile


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
    baseline: str = "auto",
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
        baseline: the peak model's baseline: ``"auto"``, ``"linear"`` in log10 E or ``"constant"`` (:func:`fit_peak`).
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
            peaks.append(fit_peak(g["repeat_count"].to_numpy(), g[loss].to_numpy(), N=float(n), bootstrap=bootstrap, rng=rng,
                                  baseline=baseline))
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
        fitted_on=FittedOn(len(peaks), int(len(curve)), (int(counts.min()), int(counts.max())), grid, baseline),
        laws=laws, effective=eff, unfitted=tuple(unfitted), dropped=int(table.attrs.get("dropped", 0)),
    )
