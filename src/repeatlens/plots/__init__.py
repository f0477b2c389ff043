"""Interactive plotly figures of a repetition sweep, and their export.

Every figure function takes the tidy tables (reduced through :mod:`repeatlens.results`) and
returns a :class:`plotly.graph_objects.Figure` in the registered ``"repeatlens"``
template. :func:`available_figures` builds all that a sweep supports (:func:`build_figures`
also says why the others were left out);
:func:`write_figures` writes them as offline HTML and, with kaleido + Chromium, as
PNG/PDF/SVG at paper-column or slide size.
"""

from repeatlens.plots.export import SIZES, ExportError, find_chromium, sized, write_figures
from repeatlens.plots.figures import (
    available_figures,
    build_figures,
    displacement,
    disproportionate_damage,
    effective_model_size,
    head_attribution,
    head_heatmap,
    loss_vs_repeat_count,
    memorization_share_over_training,
    offset_profile,
    phase_diagram,
    score_trajectories,
    training_axis,
)
from repeatlens.plots.theme import TEMPLATE_NAME, register_template
from repeatlens.results.reduce import MissingDataError as UnsupportedFigureError, TableError as PlotDataError

__all__ = [
    "SIZES",
    "TEMPLATE_NAME",
    "ExportError",
    "PlotDataError",
    "UnsupportedFigureError",
    "available_figures",
    "build_figures",
    "displacement",
    "disproportionate_damage",
    "effective_model_size",
    "find_chromium",
    "head_attribution",
    "head_heatmap",
    "loss_vs_repeat_count",
    "memorization_share_over_training",
    "offset_profile",
    "phase_diagram",
    "register_template",
    "score_trajectories",
    "sized",
    "training_axis",
    "write_figures",
]
