"""The audit figure: tokens by repeat count, one panel per unit, the region shaded.

The x-axis is E on a log scale (drawn as log10 E with ticks labelled in E, so each bucket is
a bar spanning exactly its range [repeat_count, repeat_count_max + epochs)); the y-axis is
the bucket's share f of the unit's tokens, on a log scale so that the small repeated
buckets show beside the unrepeated majority. Bars are coloured by E on the shared repeat
count scale (:mod:`repeatlens.plots.theme`); hovering one names its items, tokens and a few
example documents or spans.
"""

from __future__ import annotations

import html
import math
from typing import Optional

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from repeatlens.corpus_audit.region import Region
from repeatlens.corpus_audit.table import UNITS, items_label
from repeatlens.plots.theme import (
    FRACTION_LABEL,
    REPEAT_COUNT_LABEL,
    TEMPLATE_NAME,
    format_count,
    log_range,
    repeat_count_color,
)

REGION_FILL = "rgba(214, 39, 40, 0.22)"
REGION_LINE = "rgba(214, 39, 40, 0.9)"


def _hover(row: pd.Series, epochs: float, examples: list[str]) -> str:
    e = f"{row.repeat_count:,.4g}" if row.repeat_count == row.repeat_count_max else f"{row.repeat_count:,.4g}–{row.repeat_count_max:,.4g}"
    if row.repeat_count != row.repeat_count_max and "repeat_count_mean" in row:
        e += f" (its tokens' mean: {row.repeat_count_mean:,.3g})"
    lines = [f"<b>E = {e}</b>" + ("" if epochs == 1 else f" ({epochs:g} epochs)"),
             f"f = {100 * row.token_fraction:.3g}% of tokens ({int(row.tokens):,})",
             items_label(row.unit, int(row['items']))]
    if "region" in row:
        lines.append(f"region: {row.region}")
    lines += [html.escape(x) for x in examples]
    return "<br>".join(lines)


def audit_figure(table: pd.DataFrame, *, title: str, epochs: float = 1.0, region: Optional[Region] = None,
                 examples: Optional[dict[tuple[str, int], list[str]]] = None) -> go.Figure:
    """Histogram of tokens by repeat count per unit, with the predicted region shaded.

    Args:
        table: the audit table (:func:`~repeatlens.corpus_audit.table.audit_table`), with a
            ``region`` column when a region is given.
        title: the figure's title.
        epochs: the planned epochs (bars span [c_low, c_high + 1) × epochs).
        region: the predicted poor-performance region, or None.
        examples: ``{(unit, lowest copy count of the bucket): [descriptions]}`` for the hover.

    Returns:
        A figure in the ``repeatlens`` template, one row per unit present.
    """
    examples = examples or {}
    units = [u for u in UNITS if (table.unit == u).any()]
    fig = make_subplots(rows=max(len(units), 1), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[u.replace("_", " ") for u in units])
    limits = log_range(list(table.repeat_count) + list(table.repeat_count_max))
    lo_x = math.floor(math.log10(float(table.repeat_count.min()))) if len(table) else 0.0
    hi_x = math.log10(float(table.repeat_count_max.max()) + epochs) if len(table) else 1.0
    f_min = float(table.token_fraction[table.token_fraction > 0].min()) if (table.token_fraction > 0).any() else 1e-6
    for row_i, unit in enumerate(units, start=1):
        rows = table[table.unit == unit]
        x0 = [math.log10(v) for v in rows.repeat_count]
        x1 = [math.log10(v + epochs) for v in rows.repeat_count_max]
        fig.add_trace(go.Bar(
            x=[(a + b) / 2 for a, b in zip(x0, x1)],
            width=[b - a for a, b in zip(x0, x1)],
            y=list(100 * rows.token_fraction),
            marker={"color": [repeat_count_color(v, limits) for v in rows.repeat_count], "line": {"width": 0.5, "color": "#333"}},
            hovertext=[_hover(r, epochs, examples.get((unit, int(round(r.repeat_count / epochs))), [])) for _, r in rows.iterrows()],
            hoverinfo="text",
            name=unit.replace("_", " "),
            showlegend=False,
        ), row=row_i, col=1)
        fig.update_yaxes(type="log", range=[math.log10(100 * f_min) - 0.5, math.log10(100) + 0.15],
                         title_text="tokens (%)" if len(units) > 2 else f"{FRACTION_LABEL} (%)", row=row_i, col=1)
    if region is not None:
        _shade(fig, region, lo_x, hi_x, len(units))
        hi_x = max(hi_x, *(math.log10(v) + 0.2 for v in (region.left, region.right, region.peak) if v))
    ticks = list(range(int(math.floor(lo_x)), int(math.ceil(hi_x)) + 1))
    fig.update_xaxes(tickvals=ticks, ticktext=[f"{10**t:,}" for t in ticks], range=[lo_x - 0.05, hi_x + 0.05])
    fig.update_xaxes(title_text=f"{REPEAT_COUNT_LABEL} (copies × epochs)", row=len(units), col=1)
    fig.update_layout(template=TEMPLATE_NAME, title={"text": title}, bargap=0, height=200 + 170 * len(units),
                      meta={"repeatlens": {"rows": len(units)}})
    return fig


def _shade(fig: go.Figure, region: Region, lo_x: float, hi_x: float, rows: int) -> None:
    """The region as a shaded band (both edges known) or lines (one edge, or the peak)."""
    name = f"predicted region for N = {format_count(region.n)}: {region.label()}"
    if region.left is not None and region.right is not None:
        fig.add_vrect(x0=math.log10(region.left), x1=math.log10(region.right), fillcolor=REGION_FILL,
                      line_width=0, layer="below", row="all", col=1)
        # a legend entry for the band (shapes have none)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, hoverinfo="skip",
                                 marker={"symbol": "square", "size": 12, "color": REGION_FILL, "line": {"width": 0}}))
    else:
        for edge in (region.left, region.right):
            if edge is not None:
                fig.add_vline(x=math.log10(edge), line={"color": REGION_LINE, "width": 1.5}, row="all", col=1)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{name} (one edge only)", hoverinfo="skip",
                                 line={"color": REGION_LINE, "width": 1.5}))
    if region.peak is not None:
        fig.add_vline(x=math.log10(region.peak), line={"color": REGION_LINE, "dash": "dash", "width": 1.2}, row="all", col=1)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"predicted peak E* = {region.peak:,.0f}",
                                 hoverinfo="skip", line={"color": REGION_LINE, "dash": "dash", "width": 1.2}))
