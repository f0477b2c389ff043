"""What every scaling fit shares: the output format, the design's thresholds, the errors, and small numeric helpers (no torch)."""

from __future__ import annotations

import functools
import math
import warnings
from typing import Optional

import numpy as np

from repeatlens.errors import RepeatlensError


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


@functools.lru_cache(maxsize=256)
def _t(dof, level=LEVEL):
    """The two-sided ``level`` quantile of Student's t at ``dof`` degrees of freedom."""
    from scipy import stats  # here, not at the top: reading a fit's JSON needs no scipy

    return float(stats.t.ppf(0.5 + level / 2, dof))


def _pair(a: float, b: float) -> tuple[float, float]:
    return (float(a), float(b))


def _fmt_e(e: float) -> str:
    return f"{e:,.0f}" if e >= 100 else f"{e:.3g}"


def _edge(e: Optional[float]) -> str:
    return _fmt_e(e) if e is not None else "not within the grid"


def _num(x: Optional[float]) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(x)


def _list(pair: Optional[tuple[float, float]]) -> Optional[list[float]]:
    return None if pair is None else [float(pair[0]), float(pair[1])]


def _curve_fit(f, x, y, p0, bounds=None, **kw):
    """scipy's curve_fit (Levenberg-Marquardt without ``bounds``, else trust-region
    reflective inside them); None when it does not converge."""
    from scipy import optimize

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
