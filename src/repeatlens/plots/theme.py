"""The look shared by every repeatlens figure.

One registered plotly template (``"repeatlens"``), one continuous colour scale for the
repeat count E mapped on a log10 scale, one style for the f = 0 control (black, dashed),
and the axis labels with units. Figures set ``template="repeatlens"`` explicitly, so
importing this module never changes plotly's global default.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.colors as pcolors
import plotly.graph_objects as go
import plotly.io as pio

from repeatlens.results.metric_facts import FactsView, metric_facts

TEMPLATE_NAME = "repeatlens"
FONT_FAMILY = "Arial, Helvetica, 'Liberation Sans', 'DejaVu Sans Condensed', sans-serif"

# Plasma cut to 0.08…0.85 so the largest repeat count (orange) stays visible on white and the
# smallest (violet-blue) stays distinct from the black control.
_E_STOPS = np.linspace(0.08, 0.85, 9)
REPEAT_COUNT_COLORSCALE: list[list[float | str]] = [
    [float(i) / (len(_E_STOPS) - 1), c]
    for i, c in enumerate(pcolors.sample_colorscale("Plasma", list(_E_STOPS)))
]
"""Continuous colour scale for log10(repeat count), low E first."""

UNKNOWN_COLOR = "#777"
"""Runs whose repeat count is unknown (e.g. foreign checkpoints)."""

CONTROL_COLOR = "black"
CONTROL_LINE = {"color": CONTROL_COLOR, "dash": "dash", "width": 2.0}
DATA_MATCHED_LINE = {"color": "#737373", "dash": "dot", "width": 2.0}
"""Line style of a data-matched control (f = 0 on the unique tokens of a run at f > 0: fewer tokens than the control)."""
"""Line style of the f = 0 control, in every figure."""

FRACTION_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]
"""Discrete colours for repeated fractions, where the x-axis already shows E."""

MODEL_SYMBOLS = ["circle", "diamond", "square", "triangle-up", "cross", "star"]
MODEL_DASHES = ["solid", "dot", "dashdot", "longdash"]
HEAD_COLORSCALE = "Viridis"
DIVERGING_COLORSCALE = "RdBu_r"

METRIC_LABELS: Mapping[str, str] = FactsView(lambda facts: facts.axis_label)
"""Axis label, with unit, of every known metric: a read-only view of their facts
(:func:`repeatlens.results.metric_facts.metric_facts`), where each score declares them."""

TOKENS_LABEL = "tokens seen"
STEP_LABEL = "training step"
"""The x-axis over training when tokens seen are not known (other people's checkpoints
analysed without ``--tokens-per-step``)."""
REPEAT_COUNT_LABEL = "repeat count E"
TEXT_COLOR = "#222"
FRACTION_LABEL = "repeated fraction f"


def metric_label(metric: str, table: Any = None) -> str:
    """Return the axis label (with unit) of a metric, from its facts; unknown names read as
    themselves (``my_score``: ``"my score"``).

    Args:
        metric: Metric name from the scores table.
        table: The scores table it came from: the facts it recorded name a metric this
            process does not know (a score registered elsewhere).

    Returns:
        A human-readable label such as ``"test loss (nats/token)"``.
    """
    return metric_facts(metric, table).axis_label


def two_line(label: str, note: str = "") -> str:
    """Break an axis label before its unit, adding an optional note to the unit line.

    Args:
        label: e.g. ``"test loss (nats/token)"``.
        note: e.g. ``"max over heads"``.

    Returns:
        e.g. ``"test loss<br>(nats/token; max over heads)"``: short enough for a
        vertical axis title in a small panel.
    """
    name, sep, unit = label.rpartition(" (")
    if not sep:
        return f"{label}<br>({note})" if note else label
    unit = unit.rstrip(")")
    return f"{name}<br>({unit}{'; ' + note if note else ''})"


def _template() -> go.layout.Template:
    """Build the repeatlens template: plotly's ``simple_white`` layout, restyled.

    Only the scatter and heatmap trace defaults are kept: a template carrying defaults
    for every trace type makes each figure several times slower to build.
    """
    white = pio.templates["simple_white"]
    base = go.layout.Template(layout=white.layout)
    base.data.scatter = white.data.scatter
    base.data.heatmap = white.data.heatmap
    axis = {
        "showline": True,
        "linecolor": "#444",
        "linewidth": 1,
        "ticks": "outside",
        "ticklen": 4,
        "showgrid": True,
        "gridcolor": "#ececec",
        "zeroline": False,
        "automargin": True,
        "title": {"standoff": 6},
    }
    base.layout.update(
        font={"family": FONT_FAMILY, "size": 13, "color": TEXT_COLOR},
        title={"x": 0.0, "xanchor": "left", "xref": "paper", "font": {"size": 15}},
        colorway=FRACTION_COLORS,
        xaxis=axis,
        yaxis=axis,
        legend={
            "bgcolor": "rgba(255,255,255,0.85)",
            "orientation": "h",
            "x": 0.0,
            "xanchor": "left",
            "y": 0.0,
            "yanchor": "bottom",
            "yref": "container",
            "font": {"size": 12},
        },
        hoverlabel={"font": {"family": FONT_FAMILY, "size": 12}},
        margin={"l": 70, "r": 20, "t": 60, "b": 95},
        height=440,
    )
    return base


def register_template() -> str:
    """Register (or refresh) the ``"repeatlens"`` plotly template.

    Returns:
        The template name, for ``fig.update_layout(template=...)``.
    """
    pio.templates[TEMPLATE_NAME] = _template()
    return TEMPLATE_NAME


def log_range(values: Iterable[float]) -> tuple[float, float]:
    """Return (log10 min, log10 max) of positive values, widened if they coincide.

    Args:
        values: Repeat counts (positive).

    Returns:
        The colour-scale limits in log10 units.
    """
    logs = [math.log10(v) for v in values if v > 0]
    if not logs:
        return 0.0, 1.0
    lo, hi = min(logs), max(logs)
    if hi - lo < 1e-9:
        return lo - 0.5, hi + 0.5
    return lo, hi


def repeat_count_color(repeat_count: float, limits: tuple[float, float]) -> str:
    """Colour of a repeat count on the shared log scale.

    Args:
        repeat_count: E (≥ 1).
        limits: (log10 E_min, log10 E_max) from :func:`log_range`.

    Returns:
        An ``rgb(...)`` colour string from :data:`REPEAT_COUNT_COLORSCALE`
        (:data:`UNKNOWN_COLOR` for NaN).
    """
    if not repeat_count > 0:  # NaN: unknown
        return UNKNOWN_COLOR
    lo, hi = limits
    pos = (math.log10(repeat_count) - lo) / (hi - lo)
    return pcolors.sample_colorscale(REPEAT_COUNT_COLORSCALE, [min(max(pos, 0.0), 1.0)])[0]


def repeat_count_ticks(values: Sequence[float], limits: tuple[float, float]) -> tuple[list[float], list[str]]:
    """Colourbar ticks labelled in E (not log10 E).

    Args:
        values: The repeat counts present.
        limits: (log10 min, log10 max) of the colour scale.

    Returns:
        Tick positions in log10 units and their E labels.
    """
    distinct = sorted({float(v) for v in values if v > 0})
    if len(distinct) > 7:
        lo, hi = limits
        distinct = [10.0**k for k in range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1)]
    return [math.log10(v) for v in distinct], [f"{v:g}" for v in distinct]


def repeat_count_colorbar(values: Sequence[float], limits: tuple[float, float], **trace_kwargs: object) -> go.Scatter:
    """An invisible trace whose only job is the E colourbar.

    Args:
        values: The repeat counts present (tick labels).
        limits: (log10 min, log10 max) of the colour scale.
        **trace_kwargs: Extra trace properties (e.g. ``xaxis``/``yaxis``).

    Returns:
        A scatter trace with no visible points and a colourbar labelled in E.
    """
    tickvals, ticktext = repeat_count_ticks(values, limits)
    return go.Scatter(
        x=[None],
        y=[None],
        mode="markers",
        name="repeat count E",
        showlegend=False,
        hoverinfo="skip",
        marker={
            "color": [limits[0]],
            "colorscale": REPEAT_COUNT_COLORSCALE,
            "cmin": limits[0],
            "cmax": limits[1],
            "showscale": True,
            "colorbar": {
                "title": {"text": "repeat<br>count E", "side": "top"},
                "tickvals": tickvals,
                "ticktext": ticktext,
                "thickness": 12,
                "len": 0.8,
                "outlinewidth": 0,
            },
        },
        **trace_kwargs,
    )


def format_fraction(f: float) -> str:
    """Format a repeated fraction as a percentage (0 is the control).

    Args:
        f: Repeated fraction in [0, 1].

    Returns:
        e.g. ``"10%"``, ``"0.1%"``, ``"0 (control)"``, or ``"?"`` if unknown (NaN).
    """
    if math.isnan(f):
        return "?"
    if f == 0:
        return "0 (control)"
    return f"{100 * f:.3g}%"


def format_repeat_count(e: float) -> str:
    """A repeat count E for hover text and titles: ``100``, or ``"?"`` if unknown (NaN)."""
    return "?" if math.isnan(e) else f"{e:g}"


def format_count(n: float) -> str:
    """Compact number: 1200 -> '1.2k', 3.4e6 -> '3.4M'.

    Args:
        n: A count (tokens, parameters).

    Returns:
        A short string with an SI-like suffix.
    """
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.3g}"


register_template()
