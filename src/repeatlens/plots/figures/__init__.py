"""Plotly figures built from the tidy scores and training-metrics tables.

Every function returns a :class:`plotly.graph_objects.Figure` in the ``"repeatlens"``
template, so a notebook can restyle it further. Conventions shared by all figures:

* colour encodes the repeat count E on a log10 scale (colourbar labelled in E);
* the f = 0 control is black and dashed;
* hover text names the run, and for per-head metrics the layer and head;
* ``fig.layout.meta["repeatlens"]`` records the figure's name and its panel grid, which
  :func:`repeatlens.plots.export.write_figures` uses to size static exports;
* figures over training plot against tokens seen when every run shown counted them, else
  against the training step (:func:`training_axis`: other people's checkpoints analysed
  without ``--tokens-per-step``); checkpoint sliders always name the checkpoint shown;
* runs without repetition coordinates (other people's checkpoints: f and E unknown) are
  drawn in grey, and the figures that compare f and E skip them (:func:`build_figures`
  says why a figure was left out).

The figures live by family: :mod:`.per_head` (heatmaps, attribution, offset profiles),
:mod:`.training` (trajectories, displacement), :mod:`.repeats` (loss against E, phase
diagrams, damage, effective size), :mod:`.common` (what they share) and :mod:`.build`
(every figure a sweep supports); every name is importable from here.
"""

from __future__ import annotations

from repeatlens.plots.figures import common as _common
from repeatlens.plots.figures.common import (
    MODEL_LEVEL_ORDER,
    PER_HEAD_ORDER,
    PHASE_QUANTITIES,
    SLIDER_TICK_LABELS_MAX,
    STEP_AXIS,
    TOKENS_AXIS,
    TrainingAxis,
    model_label,
    training_axis,
)
from repeatlens.plots.figures.per_head import head_attribution, head_heatmap, memorization_share_over_training, offset_profile
from repeatlens.plots.figures.training import displacement, score_trajectories
from repeatlens.plots.figures.repeats import disproportionate_damage, effective_model_size, loss_vs_repeat_count, phase_diagram
from repeatlens.plots.figures.build import NEEDS_COORDINATES, available_figures, build_figures
from repeatlens.results.reduce import (  # names this module has always offered
    MissingDataError as UnsupportedFigureError,
    TableError as PlotDataError,
    check_scores,
)

__all__ = [
    "available_figures",
    "build_figures",
    "training_axis",
    "TrainingAxis",
    "NEEDS_COORDINATES",
    "displacement",
    "disproportionate_damage",
    "effective_model_size",
    "head_heatmap",
    "head_attribution",
    "memorization_share_over_training",
    "loss_vs_repeat_count",
    "offset_profile",
    "phase_diagram",
    "score_trajectories",
    "model_label",
    "PHASE_QUANTITIES",
]


def __getattr__(name: str) -> object:
    """The deprecated metric sets of :mod:`.common` (``ATTENTION_METRICS``, ...), read off the facts."""
    return _common.__getattr__(name)
