"""Every figure a sweep supports (:func:`build_figures`, :func:`available_figures`), and why the others were left out."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go

from repeatlens.results.reduce import (
    MissingDataError as UnsupportedFigureError,
    check_scores,
    default_run,
    is_per_head,
    run_table,
)
from repeatlens.plots.figures.common import MODEL_LEVEL_ORDER, PER_HEAD_ORDER, PHASE_QUANTITIES
from repeatlens.results.metric_facts import metric_facts
from repeatlens.plots.figures.per_head import head_attribution, head_heatmap, memorization_share_over_training, offset_profile
from repeatlens.plots.figures.repeats import disproportionate_damage, effective_model_size, loss_vs_repeat_count, phase_diagram
from repeatlens.plots.figures.training import displacement, score_trajectories


# ----------------------------------------------------------------------------- all


def _displacement_of_most_damaged(scores: pd.DataFrame, metrics: pd.DataFrame | None) -> go.Figure:
    """The displacement figure of the default run, if it has repeated data (f > 0)."""
    run_id = default_run(scores)
    if not float(run_table(scores).set_index("run_id").loc[run_id, "repeated_fraction"]) > 0:
        raise UnsupportedFigureError("displacement needs a run with repeated data (f > 0)")
    return displacement(scores, metrics, run_id)


NEEDS_COORDINATES = ("loss_vs_repeat_count", *[f"phase_diagram_{q}" for q in PHASE_QUANTITIES], "disproportionate_damage",
                     "effective_model_size", "displacement")
"""Figures that compare runs by their repetition coordinates (f, E, the f = 0 control):
left out for runs that have none (other people's checkpoints)."""


def build_figures(
    scores: pd.DataFrame, metrics: pd.DataFrame | None = None, probe: str | None = None
) -> tuple[dict[str, go.Figure], dict[str, str]]:
    """Every figure the data supports, and why each other one was left out (arguments as
    :func:`available_figures`).

    Returns:
        ``(figures, skipped)``: ordered ``{name: Figure}`` (see :func:`available_figures`)
        and ``{name: reason}`` for the figures whose data is missing (a metric not
        scored, no control, a single model size, no repetition coordinates at all: the
        :data:`NEEDS_COORDINATES` figures of a table of other people's checkpoints). Any
        other problem (a malformed table) raises.
    """
    s = check_scores(scores, probe)
    present = set(s["metric"].unique())
    builders: list[tuple[str, Callable[[], go.Figure]]] = [
        ("loss_vs_repeat_count", lambda: loss_vs_repeat_count(s)),
        *[(f"phase_diagram_{q}", lambda q=q: phase_diagram(s, q)) for q in PHASE_QUANTITIES],
        ("disproportionate_damage", lambda: disproportionate_damage(s)),
        ("effective_model_size", lambda: effective_model_size(s)),
        ("displacement", lambda: _displacement_of_most_damaged(s, metrics)),
    ]
    levels = {m for m in present if metric_facts(m, s).level}
    ordered = [m for m in MODEL_LEVEL_ORDER + PER_HEAD_ORDER if m in levels]
    ordered += sorted(levels - set(ordered))
    builders += [(f"score_trajectories_{m}", lambda m=m: score_trajectories(s, m)) for m in ordered]
    heads = [m for m in ordered if is_per_head(s[s["metric"] == m])]
    builders += [(f"head_heatmap_{m}", lambda m=m: head_heatmap(s, m)) for m in heads]
    builders += [("offset_profile", lambda: offset_profile(s))]
    builders += [("head_attribution", lambda: head_attribution(s)),
                 ("memorization_share_over_training", lambda: memorization_share_over_training(s))]
    no_coordinates = bool(run_table(s)["repeat_count"].isna().all())
    figures: dict[str, go.Figure] = {}
    skipped: dict[str, str] = {}
    for name, build in builders:
        if no_coordinates and name in NEEDS_COORDINATES:
            skipped[name] = ("needs the repetition coordinates f and E (and an f = 0 control), which this table's runs do not "
                             "have (other people's checkpoints)")
            continue
        try:
            figures[name] = build()
        except UnsupportedFigureError as e:
            skipped[name] = str(e)
    return figures, skipped


def available_figures(scores: pd.DataFrame, metrics: pd.DataFrame | None = None, probe: str | None = None) -> dict[str, go.Figure]:
    """Every figure the data supports, keyed by a stable name.

    Figures whose data is missing (a metric not scored, no control, a single model
    size, no repetition coordinates) are skipped (:func:`build_figures` says why); any
    other problem (a malformed table) raises.

    Args:
        scores: The long scores table.
        metrics: The training-metrics table, optional (used by ``displacement``).
        probe: The one probe every figure reads; default the table's default probe
            (:func:`repeatlens.results.select_probe`), named in the titles.

    Returns:
        Ordered ``{name: Figure}``: loss_vs_repeat_count, phase diagrams,
        disproportionate_damage, effective_model_size, displacement, score
        trajectories of every metric present, head heatmaps of the per-head
        metrics for the most damaged run, and its per-head attribution (heads as
        points, memorization share over training) when scored.
    """
    return build_figures(scores, metrics, probe)[0]
