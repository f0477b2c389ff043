"""T5 and T6 across model sizes, from :func:`repeatlens.fit_scaling` (:func:`scaling_targets`,
:func:`evaluate_scaling`), and that fit for any analysed sweep or runs table (:func:`fit_sweep`,
``repeatlens fit``)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from repeatlens.errors import ConfigError, RepeatlensError
from repeatlens.results import fits
from repeatlens.study import render
from repeatlens.study.evaluate import effective_row, nearest
from repeatlens.study.tables import LOSS_SPLITS, final_table
from repeatlens.study.targets import (
    LITERATURE_ALPHA,
    AlphaTarget,
    EffectiveSizeTarget,
    Target,
    Verdict,
    alpha_verdict,
    effective_size_state,
    effective_size_verdict,
)

__all__ = ["scaling_targets", "evaluate_scaling", "fit_sweep"]


def scaling_targets(fit: fits.ScalingFit) -> list[Target]:
    """T5 and T6 from a :class:`repeatlens.results.fits.ScalingFit` (N convention of ``fit.size_column``)."""
    t5 = AlphaTarget(name="T5", statement=render.ALPHA_STATEMENT, verdict=alpha_verdict(fit.identified, fit.alpha_ci95),
                     loss=fit.loss, alpha=fit.alpha, alpha_ci95=fit.alpha_ci95, reason=fit.reason,
                     peaks=[p.to_json() for p in fit.peaks], literature=dict(LITERATURE_ALPHA))
    law = fit.laws.get(fit.size_column)
    if not isinstance(law, fits.ControlLaw):
        return [t5, EffectiveSizeTarget(name="T6", statement=render.EFFECTIVE_SIZE_STATEMENT, verdict=Verdict.NOT_IDENTIFIED,
                                        loss=fit.loss, reason=str(law) if law else "no controls' law")]
    eff = fit.effective[(fit.effective["size_column"] == fit.size_column) & (fit.effective["control"] == "none")
                        & np.isclose(fit.effective["repeated_fraction"], fit.repeated_fraction)]
    at_peak, states = {}, []
    for p in fit.peaks:
        g = eff[eff["N"] == p.N]
        if g.empty:
            continue
        e = nearest(g["repeat_count"], p.e_star)
        row = {"repeat_count": e, **effective_row(g[g["repeat_count"] == e].iloc[0])}
        at_peak[str(p.N)] = row
        states.append(effective_size_state(row, p.N, law.n_range[0]))
    return [t5, EffectiveSizeTarget(name="T6", statement=render.EFFECTIVE_SIZE_STATEMENT, verdict=effective_size_verdict(states),
                                    loss=fit.loss, law=law.line(), at_peak=at_peak)]


def evaluate_scaling(final: pd.DataFrame, *, loss: Optional[str] = None, fraction: Optional[float] = None,
                     bootstrap: int = 0, baseline: str = "auto") -> list[Target]:
    """T5 and T6 across model sizes on a one-row-per-run table (:func:`repeatlens.study.final_table`),
    through :func:`repeatlens.fit_scaling` (N: non-embedding parameters)."""
    try:
        fit = fits.fit_scaling(final, loss, fraction=fraction, bootstrap=bootstrap, baseline=baseline)
    except fits.ScalingDataError as e:
        loss = loss or fits.default_loss(final)
        return [AlphaTarget(name="T5", statement=render.ALPHA_STATEMENT_SHORT, verdict=Verdict.CANNOT_JUDGE, loss=loss,
                            reason=str(e)),
                EffectiveSizeTarget(name="T6", statement=render.EFFECTIVE_SIZE_STATEMENT_SHORT, verdict=Verdict.CANNOT_JUDGE,
                                    loss=loss, reason=str(e))]
    return scaling_targets(fit)


def fit_sweep(path, *, loss: Optional[str] = None, fraction: Optional[float] = None, probe: Optional[str] = None,
              bootstrap: int = 0, size: str = "N", baseline: str = "auto") -> fits.ScalingFit:
    """:func:`repeatlens.fit_scaling` on an analysed sweep directory, or on a per-run table
    (``.csv`` / ``.parquet``, e.g. a study's committed ``results/final_runs.csv``):
    ``repeatlens fit PATH``."""
    from pathlib import Path

    from repeatlens.results.store import load_metrics, load_scores

    if Path(path).is_dir():
        scores = load_scores(path)
        try:
            metrics = load_metrics(path)
        except RepeatlensError:
            metrics = None
        final = final_table(scores, metrics, probe)
    else:
        final = fits.read_runs_table(path)
    loss = loss or fits.default_loss(final)
    if loss not in final:
        present = [c for c in ("test_loss",) + LOSS_SPLITS if c in final]
        raise ConfigError(f"--loss {loss}: not in {path}'s tables; expected one of {', '.join(present) or '(none)'}")
    return fits.fit_scaling(final, loss, fraction=fraction, bootstrap=bootstrap, size=size, baseline=baseline)
