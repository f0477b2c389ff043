"""Scaling statistics of a repeated-data sweep: where the damage peaks per model size, how
that moves with size, and how many parameters it costs (Hernandez et al. 2022).

Three fits, scipy as the engine (:func:`scipy.optimize.curve_fit`; the linear ones through
:func:`numpy.polyfit`), each with an interval that the tests show covers the truth on
simulated sweeps (``tests/results/test_fits.py``; the bootstrap's own coverage run is
``benchmarks/fit_coverage.py``):

* **The peak of one model size** (:func:`fit_peak`): a Gaussian bump in ``log10 E`` over a
  baseline, ``L(E) = b + s (log10 E - x0) + A exp(-(log10 E - c)^2 / (2 w^2))``, fitted to
  EVERY run of that size at one repeated fraction f (all seeds, all E), never to the grid's
  argmax. The baseline is linear in ``log10 E`` (``baseline="linear"``; x0 the grid's mean
  log10 E): the two ends of a repeat-count sweep need not sit at one level (a few repeats
  see the control's data, many repeats of a tiny subset leave (1-f)·D unique tokens);
  ``baseline="constant"`` fixes s = 0; the default ``"auto"`` takes the linear baseline
  where the size has runs at :data:`MIN_LINEAR_GRID` or more repeat counts (five
  parameters need more distinct E than that to leave the curve's shape any test) and the
  constant one otherwise. ``E* = 10^c``; its 95% interval is
  ``c ± t·se(c)`` with t at ``n_runs - k`` degrees of freedom (k = 5 parameters, or 4 with a
  constant baseline) (or, with ``bootstrap=B``, the 2.5-97.5% percentiles of ``B`` refits to the fitted
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
  N range, every bump's amplitude interval above 0, an interval no wider than
  ±:data:`MAX_ALPHA_HALFWIDTH`); otherwise alpha is not
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
The package imports neither torch nor the rest of :mod:`repeatlens.results`. Its modules, by
concern: :mod:`.table` (the runs table), :mod:`.peak` (the peak per size), :mod:`.laws` (E*
against N, the controls' loss law, effective sizes), :mod:`.result` (:func:`fit_scaling`,
:class:`ScalingFit` and its JSON form) and :mod:`.common` (format, thresholds, errors); every
public name is importable from here.
"""

from __future__ import annotations

from repeatlens.results.fits.common import (
    COLUMN_ALIASES,
    CONTROL_KINDS,
    EXPECTED_ALPHA,
    FORMAT,
    HALF_MAX,
    LACK_OF_FIT_LEVEL,
    LEVEL,
    LawNotIdentified,
    MAX_ALPHA_HALFWIDTH,
    MIN_CONTROL_SIZES,
    MIN_DECADES,
    MIN_SIZES,
    SIZE_COLUMNS,
    ScalingDataError,
)
from repeatlens.results.fits.table import default_loss, read_runs_table, scaling_table
from repeatlens.results.fits.peak import BASELINES, MIN_LINEAR_GRID, LackOfFit, Peak, bump, fit_peak, lack_of_fit
from repeatlens.results.fits.laws import ControlLaw, LogLogLaw, effective_sizes, fit_control_law, fit_loglog
from repeatlens.results.fits.result import FittedOn, Region, ScalingFit, fit_scaling

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
    "LackOfFit",
    "lack_of_fit",
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
