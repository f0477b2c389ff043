"""Figures over training: score trajectories per run, and the displacement of the most damaged quantity over tokens seen."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from repeatlens.plots import theme
from repeatlens.results.metric_facts import metric_facts
from repeatlens.results.reduce import (
    MissingDataError as UnsupportedFigureError,
    TableError as PlotDataError,
    check_scores,
    control_mask,
    is_per_head,
    matching_control,
    metric_rows,
    per_checkpoint,
    require_columns,
    run_table,
)
from repeatlens.plots.figures.common import (
    _customdata,
    _facet_grid,
    _finish,
    _hover_lines,
    _log_ticks_axis,
    _models,
    _probe_title,
    _repeated_counts,
    _run_line,
    model_label,
    training_axis,
)


# ----------------------------------------------------------------------------- 2. trajectories


def _data_matched(runs: pd.DataFrame, same_f: pd.Series) -> list[str]:
    """The data-matched controls (``control == "data_matched"``) of the facet whose repeated
    runs are ``same_f``: those trained on as many unique tokens as those runs."""
    if "control" not in runs.columns or "unique_tokens" not in runs.columns:
        return []
    matched = runs["control"].astype(str) == "data_matched"
    unique = set(runs.loc[same_f & ~matched, "unique_tokens"].dropna())
    return list(runs.loc[matched & runs["unique_tokens"].isin(unique), "run_id"])


def score_trajectories(
    scores: pd.DataFrame, metric: str, layer: int | None = None, head: int | None = None, probe: str | None = None
) -> go.Figure:
    """A score over training: one line per run, coloured by E, faceted by f.

    Columns are the repeated fractions f > 0, rows the model sizes; the f = 0 control of
    the same size is drawn in every panel as the black dashed reference. Per-head
    metrics default to the max over all heads at each checkpoint (``layer`` restricts
    to one layer, ``layer`` + ``head`` picks one head); the y-axis title says which.
    Checkpoints with 0 tokens seen are left out (log x-axis).

    Args:
        scores: The long scores table.
        metric: Any metric, per-head or model-level.
        layer: Optional layer for per-head metrics.
        head: Optional head (with ``layer``).
        probe: The probe to read; default the table's default probe, named in the title.

    Returns:
        The figure; its traces are named by run_id (the control: ``"control (f = 0)"``).
    """
    s = check_scores(scores, probe)
    per_head = is_per_head(metric_rows(s, metric))
    pc = per_checkpoint(s, metric, layer, head)
    axis = training_axis(s, list(pc["run_id"].unique()))
    pc = pc[pc[axis.column] > 0]
    if pc.empty:
        raise UnsupportedFigureError(f"score_trajectories: no checkpoint of {metric!r} after {axis.label} 0 (a log axis)")
    models = _models(pc)
    fractions = sorted(f for f in pc["repeated_fraction"].unique() if f > 0)
    if pc["repeated_fraction"].isna().any():
        fractions.append(math.nan)  # runs of unknown f (foreign checkpoints): their own facet
    fractions = fractions or [0.0]
    counts = _repeated_counts(pc)
    limits = theme.log_range(counts)
    only_unknown = len(fractions) == 1 and math.isnan(fractions[0])
    fig = _facet_grid(
        [""] if only_unknown else [f"f = {theme.format_fraction(f)}" if not math.isnan(f) else "f, E unknown" for f in fractions],
        [model_label(p, n) for n, p in models] if len(models) > 1 else [""],
    )
    facts = metric_facts(metric, s)
    label = facts.axis_label
    short = metric.replace("_", "-")
    pc = pc.sort_values(["run_id", "step"]).reset_index(drop=True)
    custom = _customdata(pc)
    lines = {rid: _run_line(g, custom[g.index], x=axis.column, limits=limits, per_head=per_head, y_name=short)
             for rid, g in pc.groupby("run_id", sort=False)}
    traces, rows, cols = [], [], []
    for r, (n, _p) in enumerate(models, start=1):
        in_model = run_table(pc[pc["n_params"] == n])
        controls = list(in_model.loc[control_mask(in_model), "run_id"])
        for c, f in enumerate(fractions, start=1):
            same_f = in_model["repeated_fraction"].isna() if math.isnan(f) else in_model["repeated_fraction"] == f
            members = controls + (list(in_model.loc[same_f, "run_id"]) if f else []) + _data_matched(in_model, same_f)
            for rid in members:
                trace = {**lines[rid], "showlegend": bool(rid in controls and not traces)}
                traces.append(trace)
                rows.append(r)
                cols.append(c)
    fig.add_traces(traces, rows=rows, cols=cols)
    if counts:
        fig.add_trace(theme.repeat_count_colorbar(counts, limits))
    if per_head and head is not None:
        reduction = f"layer {layer}, head {head}"
    elif per_head and layer is not None:
        reduction = f"max over heads of layer {layer}"
    elif per_head:
        reduction = "max over heads"
    else:
        reduction = ""
    ytitle = theme.two_line(label, reduction)
    fig.update_layout(height=160 + 250 * len(models))
    fig.update_xaxes(**_log_ticks_axis())
    fig.update_xaxes(title_text=axis.label, row=len(models))
    fig.update_yaxes(title_text=ytitle, col=1)
    title = f"{facts.label} over training" + (f" ({reduction})" if reduction else "") + _probe_title(s, metric)
    return _finish(fig, f"score_trajectories_{metric}", len(models), len(fractions), title=title)


# ----------------------------------------------------------------------------- 5. displacement


def _metrics_series(metrics: pd.DataFrame | None, run_id: str, split: str) -> pd.DataFrame | None:
    """A run's loss curve of one split from the training-metrics table, if present."""
    if metrics is None or metrics.empty:
        return None
    require_columns(metrics, ["step", "tokens_seen", "split", "loss"], "metrics table")
    rows = metrics[metrics["split"] == split]
    if "run_id" in metrics.columns:
        rows = rows[rows["run_id"].astype(str) == run_id]
    rows = rows[rows["tokens_seen"] > 0].dropna(subset=["loss"]).sort_values("step")
    if rows.empty:
        return None
    return rows.rename(columns={"loss": "value"})[["step", "tokens_seen", "value"]]


def _score_series(scores: pd.DataFrame, run_id: str, metric: str) -> pd.DataFrame | None:
    """A run's per-checkpoint series of a metric (max over heads), if present."""
    try:
        pc = per_checkpoint(scores, metric)
    except UnsupportedFigureError:
        return None
    pc = pc[(pc["run_id"] == run_id) & (pc["tokens_seen"] > 0)]
    return None if pc.empty else pc[["step", "tokens_seen", "layer", "head", "value"]]


def displacement(scores: pd.DataFrame, metrics_table: pd.DataFrame | None, run_id: str, probe: str | None = None) -> go.Figure:
    """Where memorization displaces generalization, for one run.

    Stacked panels on a shared log x-axis (tokens seen): repeated-subset loss, test
    loss, induction score (max over heads) and copying loss. Losses come from the
    training-metrics table (splits ``"repeated"``/``"test"``) when it has them, else
    from the ``repeated_loss``/``test_loss`` scores. The control of the same model size
    (same seed where possible) is overlaid black dashed, and a dotted vertical line
    marks the checkpoint where this run's test loss was lowest, if that is before the
    end (from there on, the repeated data wins over generalization).

    Args:
        scores: The long scores table.
        metrics_table: The training-metrics table (``step``, ``tokens_seen``,
            ``split``, ``loss``, optionally ``run_id``), or None.
        run_id: The run to show.
        probe: The probe the induction and copying panels read; default the table's default.

    Returns:
        The figure with one row per panel that has data.
    """
    s = check_scores(scores, probe)
    runs = run_table(s)
    if run_id not in set(runs["run_id"]):
        raise PlotDataError(f"run {run_id!r} is not in the scores table; runs: {list(runs['run_id'])[:8]}")
    control = matching_control(s, run_id)
    def first(*candidates: pd.DataFrame | None) -> pd.DataFrame | None:
        return next((c for c in candidates if c is not None), None)

    def ylab(metric: str, note: str = "") -> str:
        return theme.two_line(metric_facts(metric).label, note) if note else theme.two_line(theme.metric_label(metric))

    panels: list[tuple[str, str, Callable[[str], pd.DataFrame | None]]] = [
        (ylab("repeated_loss"), "repeated loss",
         lambda r: first(_metrics_series(metrics_table, r, "repeated"), _score_series(s, r, "repeated_loss"))),
        (ylab("test_loss"), "test loss",
         lambda r: first(_metrics_series(metrics_table, r, "test"), _score_series(s, r, "test_loss"))),
        (ylab("induction", "max over heads"), "induction", lambda r: _score_series(s, r, "induction")),
        (ylab("copying_loss"), "copying loss", lambda r: _score_series(s, r, "copying_loss")),
    ]
    series = [(ylab, short, get(run_id), get(control) if control else None) for ylab, short, get in panels]
    series = [p for p in series if p[2] is not None]
    if not series:
        raise UnsupportedFigureError(f"run {run_id!r} has no repeated/test loss, induction or copying data")
    by_id = runs.set_index("run_id")
    info = by_id.loc[run_id]
    counts = _repeated_counts(runs)
    limits = theme.log_range(counts or [float(info["repeat_count"])])
    color = theme.repeat_count_color(float(info["repeat_count"]), limits)
    fig = make_subplots(rows=len(series), cols=1, shared_xaxes=True, vertical_spacing=0.035)
    in_legend: set[str] = set()  # first trace of each group; the control has no repeated-loss panel
    for r, (ylab, short, mine, ctrl) in enumerate(series, start=1):
        for data, rid in ((ctrl, control), (mine, run_id)):
            if data is None or rid is None:
                continue
            is_ctrl = rid == control
            d = data.assign(run_id=rid, **{k: by_id.loc[rid, k] for k in ("repeated_fraction", "repeat_count", "seed")})
            per_head = "head" in d.columns and bool(d["head"].notna().any())
            fig.add_trace(
                go.Scatter(
                    x=d["tokens_seen"].to_numpy(dtype=float), y=d["value"].to_numpy(dtype=float),
                    mode="lines+markers" if len(d) < 30 else "lines",
                    marker={"size": 4}, line=dict(theme.CONTROL_LINE) if is_ctrl else {"color": color, "width": 2},
                    name="control (f = 0)" if is_ctrl else run_id, legendgroup="control" if is_ctrl else "run",
                    showlegend=("control" if is_ctrl else "run") not in in_legend, customdata=_customdata(d),
                    hovertemplate=_hover_lines(per_head, short),
                ),
                row=r, col=1,
            )
            in_legend.add("control" if is_ctrl else "run")
        fig.update_yaxes(title_text=ylab, row=r, col=1)
    test = next((p[2] for p in series if p[1] == "test loss"), None)
    if test is not None and len(test) > 2:
        best = test.loc[test["value"].idxmin()]
        if int(best["step"]) < int(test["step"].max()):
            for r in range(1, len(series) + 1):  # shapes take data coordinates on log axes
                fig.add_shape(
                    type="line", x0=float(best["tokens_seen"]), x1=float(best["tokens_seen"]),
                    y0=0, y1=1, xref=f"x{'' if r == 1 else r}", yref=f"y{'' if r == 1 else r} domain",
                    line={"color": "#999", "dash": "dot", "width": 1.5}, opacity=1.0,
                )
            fig.add_annotation(
                x=math.log10(float(best["tokens_seen"])), y=1, xref="x", yref="y domain", yanchor="bottom",
                text="test-loss minimum", showarrow=False, font={"color": "#666", "size": 11},
            )
    fig.update_xaxes(**_log_ticks_axis())
    fig.update_xaxes(title_text=theme.TOKENS_LABEL, row=len(series))
    title = (f"Memorization vs generalization · {run_id} "
             f"(f = {theme.format_fraction(float(info['repeated_fraction']))}, E = {float(info['repeat_count']):g})"
             f"{_probe_title(s, 'induction', 'copying_loss')}")
    fig = _finish(fig, "displacement", len(series), 1, title=title)
    fig.update_layout(height=170 * len(series) + 150)
    return fig
