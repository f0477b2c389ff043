"""The repeated-data study's targets T1-T6, evaluated on a sweep's tidy tables.

Hernandez et al. 2022, "Scaling Laws and Interpretability of Learning from Repeated Data",
report that at a fixed repeated fraction f, test loss against the repeat count E has an
interior maximum (the "poor performance region"), that near it copying degrades more than
the loss does (in effective model size: up to 3x on copying against at most 1.15x on test
loss), that a few repeats cost nothing, that test loss can rise while the repeated subset is
memorized (double descent in time, "the peak performance hit coincides with where the train
loss on the repeated data approaches zero"), and, across model sizes, where that region
sits and how many parameters the damage costs (an 800M model performing like a 400M one).

Each target is a typed verdict first (a dataclass per target with its numbers and a
:class:`Verdict`: held / did not hold / not identified / cannot judge, decided by one rule
function of those numbers); its prose is rendered from those fields. The modules, in the
order the data flows through them:

* :mod:`.tables`: the per-run and per-point tables the targets read (:func:`final_table`,
  :func:`point_table`, :func:`circuit_table`) and the chance levels;
* :mod:`.targets`: :class:`Verdict`, the target dataclasses and each target's verdict rule;
* :mod:`.evaluate`: :func:`evaluate_targets`, T1-T4 at one model size from the tables;
* :mod:`.scaling`: :func:`evaluate_scaling` / :func:`scaling_targets`, T5-T6 across sizes
  from :func:`repeatlens.fit_scaling`, and :func:`fit_sweep`, that fit for any sweep or
  runs table (``repeatlens fit``);
* :mod:`.render`: the prose of every target and the markdown (:func:`targets_markdown`,
  :func:`circuits_markdown`), which words the fields and decides nothing.

* **T1** (a peak): the bump fitted to every run of the size (:func:`repeatlens.results.fits.fit_peak`)
  is interior and its amplitude's 95% interval lies above 0.
* **T2** (copying damaged more than the loss): at the grid point nearest the fitted E*, in the
  paper's yardstick where the controls' laws allow (N_eff / N on the copying loss against
  N_eff / N on the test loss, both on ``L = L_inf + (N_c/N)^a`` over 4 or more control
  sizes), else the relative drop of every ability against the relative rise of the loss.
* **T3** (a few repeats cost nothing): the smallest E > 1 of the grid against the
  data-matched control (same unique tokens): held when its loss exceeds that control's by no
  more than the seed spread; plus the random-init chance check. E = 1 uses the control's own
  data (same pool, slots and permutation seed), so it is reported as a consistency check.
* **T4** (double descent in time): at the grid point nearest E*, test loss rises beyond the
  evaluation's noise (standard errors over test sequences, ``loss_se`` in the metrics, at a
  family-wise :data:`RISE_ALPHA` over every pair of checkpoints: :func:`rise_threshold`)
  after the same-seed control's loss has flattened (:data:`FLAT_FRACTION`), in every seed;
  beside it whether the damage peak coincides with the repeated-subset loss approaching zero
  (:data:`ZERO_FRACTION`), with the chance level of that coincidence.
* **T5** (the region moves with N): alpha identified and its 95% interval excludes 0.
* **T6** (effective model size): at every size's peak, the upper end of N_eff / N's 95%
  interval below 1 (this follows from T1 wherever the law is monotone; the number to read is
  the ratio and its interval).

The loss is the natural-text test loss (split ``test_text`` of the training metrics) when
the runs mix a corpus with the synthetic source, so that "repetition damages copying more
than loss" is not circular; the plain ``test_loss`` score otherwise. "Seed spread" is the
range (max - min) of a quantity across the seeds of one grid point; where two points are
compared, the larger of their two ranges. Induction, shifted induction and prefix-matching
are the best head's score (max over layers and heads) on one probe
(:func:`repeatlens.results.select_probe`); copying is the model's in-context copying gain.
"""

from __future__ import annotations

from repeatlens.deprecation import renamed
from repeatlens.results import fits
from repeatlens.study import render  # noqa: F401  (registers every target's prose)
from repeatlens.study.evaluate import evaluate_targets
from repeatlens.study.render import circuits_markdown, targets_markdown
from repeatlens.study.scaling import evaluate_scaling, fit_sweep, scaling_targets
from repeatlens.study.tables import (
    ABILITIES,
    LOSS_SPLITS,
    SIZE,
    STUDY_QUANTITIES,
    circuit_table,
    final_table,
    point_table,
    standard_chance_levels,
)
from repeatlens.study.targets import (
    FLAT_FRACTION,
    LITERATURE_ALPHA,
    RISE_ALPHA,
    ZERO_FRACTION,
    AlphaTarget,
    DamageTarget,
    DoubleDescentTarget,
    EffectiveSizeTarget,
    FewRepeatsTarget,
    PeakTarget,
    Target,
    Verdict,
)

__all__ = [
    "Verdict",
    "Target",
    "PeakTarget",
    "DamageTarget",
    "FewRepeatsTarget",
    "DoubleDescentTarget",
    "AlphaTarget",
    "EffectiveSizeTarget",
    "final_table",
    "point_table",
    "standard_chance_levels",
    "evaluate_targets",
    "evaluate_scaling",
    "scaling_targets",
    "fit_sweep",
    "targets_markdown",
    "circuit_table",
    "circuits_markdown",
]

__getattr__ = renamed(__name__, {"chance_levels": "standard_chance_levels"})  # scores.chance_levels takes the probes

SweepFit = fits.ScalingFit
"""Deprecated: :func:`fit_sweep` now returns a :class:`repeatlens.results.fits.ScalingFit`."""
