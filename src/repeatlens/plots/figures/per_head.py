"""Figures per head: the layer x head heatmap with its checkpoint slider, the per-head attribution and memorization share, the attention-offset profile."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from repeatlens.plots import theme
from repeatlens.results.reduce import (
    MissingDataError as UnsupportedFigureError,
    TableError as PlotDataError,
    check_scores,
    default_run,
    is_per_head,
    metric_rows,
)
from repeatlens.results.metric_facts import metric_facts
from repeatlens.plots.figures.common import (
    _checkpoint_slider,
    _coords,
    _finish,
    _probe_title,
    training_axis,
)


# ----------------------------------------------------------------------------- 1. heatmap


def head_heatmap(scores: pd.DataFrame, metric: str, run_id: str | None = None, probe: str | None = None) -> go.Figure:
    """Layer × head heatmap of a per-head metric, with a slider over checkpoints.

    The figure opens on the last checkpoint; each slider step is one checkpoint
    (labelled by tokens seen) and is an animation frame, so all frames share one colour
    range. Layer 0 is at the top, as in TransformerLens attention plots.

    Args:
        scores: The long scores table.
        metric: A per-head metric, e.g. ``"induction"``.
        run_id: The run to show; default the most damaged run (largest relative
            test-loss rise against its control, see :func:`repeatlens.results.default_run`).
        probe: The probe to read (see :func:`repeatlens.results.select_probe`); default the
            table's default probe, named in the title.

    Returns:
        The figure, with ``len(fig.frames) == len(fig.layout.sliders[0].steps)`` = the
        number of checkpoints of that run.
    """
    s = check_scores(scores, probe)
    rows = metric_rows(s, metric)
    if not is_per_head(rows):
        raise UnsupportedFigureError(f"metric {metric!r} is model-level; head_heatmap needs a per-head metric")
    if metric == "offset_profile":
        raise UnsupportedFigureError("offset_profile has one value per head and offset; see plots.offset_profile")
    rows = rows[rows["head"].notna()]
    if run_id is None:
        run_id = default_run(s[s["run_id"].isin(rows["run_id"].unique())])
    sub = rows[rows["run_id"] == run_id]
    if sub.empty:
        known = sorted(rows["run_id"].unique())
        raise PlotDataError(f"run {run_id!r} has no {metric!r} rows; runs with it: {known[:8]}")
    run = sub.iloc[0]
    layers = sorted(int(v) for v in sub["layer"].unique())
    heads = sorted(int(v) for v in sub["head"].unique())
    checkpoints = sub[["step", "tokens_seen"]].drop_duplicates("step").sort_values("step")
    facts = metric_facts(metric, s)
    scale = _heatmap_scale(float(sub["value"].min()), float(sub["value"].max()), facts.range if facts.bounded else None)
    label = facts.axis_label
    short = metric.replace("_", "-")
    axis = training_axis(s, [run_id])

    def trace(step: int, tokens: int) -> go.Heatmap:
        grid = (
            sub[sub["step"] == step]
            .pivot_table(index="layer", columns="head", values="value", aggfunc="mean")
            .reindex(index=layers, columns=heads)
        )
        return go.Heatmap(
            z=grid.to_numpy(dtype=float),
            x=heads,
            y=layers,
            xgap=1,
            ygap=1,
            **scale,
            colorbar={"title": {"text": short, "side": "top"}, "thickness": 12, "len": 0.8},
            hovertemplate=(
                f"<b>{run_id}</b><br>{axis.hover(step, tokens)}"
                f"<br>layer %{{y}}, head %{{x}}<br>{short}: %{{z:.3f}}<extra></extra>"
            ),
            name=f"step {step}",
        )

    fig = _checkpoint_slider(checkpoints, trace, axis)
    fig.update_layout(
        xaxis={"title": {"text": "head"}, "dtick": 1, "showgrid": False, "constrain": "domain"},
        yaxis={"title": {"text": "layer"}, "dtick": 1, "autorange": "reversed", "showgrid": False},
        margin={"b": 120},
    )
    title = f"{label} per head · {run_id}{_coords(run)}{_probe_title(s, metric)}"
    return _finish(fig, f"head_heatmap_{metric}", title=title)


def _heatmap_scale(zmin: float, zmax: float, bounds: tuple[float, float] | None) -> dict[str, object]:
    """The colour scale of a heatmap of values in ``zmin..zmax``: the metric's own range
    ``bounds`` when it has one at both ends that holds them (so runs compare; diverging when it
    reaches below 0), else a range symmetric about 0 for signed values, else ``0..zmax``.

    >>> _heatmap_scale(0.1, 0.4, (0.0, 1.0))["zmax"], _heatmap_scale(-0.2, 0.4, None)["zmin"]
    (1.0, -0.4)
    """
    if bounds is not None and bounds[0] <= zmin and zmax <= bounds[1]:
        colours = theme.DIVERGING_COLORSCALE if bounds[0] < 0 else theme.HEAD_COLORSCALE
        return {"colorscale": colours, "zmin": bounds[0], "zmax": bounds[1]}
    if zmin < 0:
        bound = max(abs(zmin), abs(zmax))
        return {"colorscale": theme.DIVERGING_COLORSCALE, "zmin": -bound, "zmax": bound}
    return {"colorscale": theme.HEAD_COLORSCALE, "zmin": 0.0, "zmax": max(zmax, 1e-9)}


# ----------------------------------------------------------------------------- 1c. attribution


def _attribution_axes(s: pd.DataFrame) -> tuple[str, str]:
    """(test-cost metric, repeated-cost metric): the natural-text splits when the table has
    them (a run mixing a corpus with the synthetic source), else the whole sets."""
    present = set(s["metric"].unique())
    if {"ablation_test_text_loss", "ablation_repeated_text_loss"} <= present:
        return "ablation_test_text_loss", "ablation_repeated_text_loss"
    return "ablation_test_loss", "ablation_repeated_loss"


def _attribution_run(s: pd.DataFrame, metrics: list[str], run_id: str | None) -> tuple[str, pd.DataFrame]:
    rows = s[s["metric"].isin(metrics) & s["head"].notna()]
    missing = [m for m in metrics if m not in set(rows["metric"])]
    if missing:
        raise UnsupportedFigureError(f"no per-head rows of {', '.join(missing)}; score them with -m {' -m '.join(missing)}")
    if run_id is None:
        run_id = default_run(s[s["run_id"].isin(rows["run_id"].unique())])
    sub = rows[rows["run_id"] == run_id]
    if sub.empty:
        raise PlotDataError(f"run {run_id!r} has no {metrics[0]!r} rows; runs with it: {sorted(rows['run_id'].unique())[:8]}")
    return run_id, sub


def head_attribution(scores: pd.DataFrame, run_id: str | None = None, probe: str | None = None) -> go.Figure:
    """Heads as points: what ablating each costs on held-out data (x) against on the
    repeated subset (y), coloured by induction score, with a slider over checkpoints.

    x and y are the mean-ablation deltas (``ablation_test_loss`` / ``ablation_repeated_loss``,
    or their natural-text splits when the run has them); the dotted diagonal is
    ``memorization_share = 0.5``: heads above it carry the repeated subset more than held-out
    data. Colour: the head's ``induction`` score (grey when it was not scored).

    Args:
        scores: The long scores table.
        run_id: The run to show; default the most damaged run. Call it for the peak run
            and for its control to set them side by side.
        probe: The probe the induction colour reads; default the table's default probe.

    Returns:
        The figure; one frame per checkpoint of the run.
    """
    s = check_scores(scores, probe)
    x_metric, y_metric = _attribution_axes(s)
    run_id, sub = _attribution_run(s, [x_metric, y_metric], run_id)
    ind = s[(s["metric"] == "induction") & (s["run_id"] == run_id) & s["head"].notna()]
    wide = sub.pivot_table(index=["step", "layer", "head"], columns="metric", values="value", aggfunc="mean").reset_index()
    if len(ind):
        colour = ind.pivot_table(index=["step", "layer", "head"], values="value", aggfunc="max").rename(columns={"value": "induction"})
        wide = wide.merge(colour.reset_index(), on=["step", "layer", "head"], how="left")
    else:
        wide["induction"] = np.nan
    checkpoints = sub[["step", "tokens_seen"]].drop_duplicates("step").sort_values("step")
    lo = float(min(0.0, wide[x_metric].min(), wide[y_metric].min()))
    hi = float(max(wide[x_metric].max(), wide[y_metric].max(), 1e-6))
    pad = 0.08 * (hi - lo)  # room for the head labels above the highest point
    run = sub.iloc[0]
    axis = training_axis(s, [run_id])

    def trace(step: int, tokens: int) -> go.Scatter:
        w = wide[wide["step"] == step]
        labels = [f"L{int(a)}.H{int(b)}" for a, b in zip(w["layer"], w["head"])]
        has = w["induction"].notna().any()
        return go.Scatter(
            x=w[x_metric], y=w[y_metric], mode="markers+text", text=labels, textposition="top center",
            textfont={"size": 9, "color": "#555"},
            marker={"size": 11, "line": {"width": 0.5, "color": "#333"},
                    **({"color": w["induction"], "colorscale": theme.HEAD_COLORSCALE, "cmin": 0.0, "cmax": 1.0,
                        "colorbar": {"title": {"text": "induction", "side": "top"}, "thickness": 12, "len": 0.8}}
                       if has else {"color": "#999"})},
            customdata=np.stack([w["induction"].to_numpy(dtype=float)], axis=-1),
            hovertemplate=(f"<b>{run_id}</b><br>{axis.hover(step, tokens)}<br>%{{text}}"
                           "<br>test cost %{x:.3f} nats<br>repeated cost %{y:.3f} nats<br>induction %{customdata[0]:.2f}<extra></extra>"),
            name=f"step {step}",
        )

    fig = _checkpoint_slider(checkpoints, trace, axis)
    fig.add_shape(type="line", x0=lo - pad, y0=lo - pad, x1=hi + pad, y1=hi + pad, line={"color": "#777", "dash": "dot", "width": 1})
    split = " (natural text)" if x_metric.endswith("_text_loss") else ""
    fig.update_layout(
        xaxis={"title": {"text": theme.two_line(f"test-loss rise when ablated{split} (nats/token)")}, "range": [lo - pad, hi + pad],
               "zeroline": True},
        yaxis={"title": {"text": theme.two_line(f"repeated-loss rise when ablated{split} (nats/token)")}, "range": [lo - pad, hi + pad],
               "zeroline": True},
        margin={"b": 120},
    )
    title = f"Which heads memorize · {run_id}{_coords(run)}{_probe_title(s, 'induction')}"
    return _finish(fig, "head_attribution", title=title)


def memorization_share_over_training(scores: pd.DataFrame, run_id: str | None = None) -> go.Figure:
    """Heatmap of each head's ``memorization_share`` (rows: heads, columns: checkpoints):
    when a head switches between carrying held-out data (0) and the repeated subset (1).

    Args:
        scores: The long scores table with ``memorization_share`` rows.
        run_id: The run to show; default the most damaged run.

    Returns:
        The figure (cells without a row, heads that matter to neither set, are blank).
    """
    s = check_scores(scores, None)
    run_id, sub = _attribution_run(s, ["memorization_share"], run_id)
    sub = sub.copy()
    sub["head_id"] = [f"L{int(a)}.H{int(b)}" for a, b in zip(sub["layer"], sub["head"])]
    order = sub.drop_duplicates("head_id").sort_values(["layer", "head"])["head_id"].tolist()
    checkpoints = sub[["step", "tokens_seen"]].drop_duplicates("step").sort_values("step")
    grid = sub.pivot_table(index="head_id", columns="step", values="value", aggfunc="mean").reindex(index=order, columns=checkpoints["step"])
    axis = training_axis(s, [run_id])
    labels = [axis.text(int(st), int(t)) for st, t in checkpoints.itertuples(index=False)]
    lo, hi = metric_facts("memorization_share", s).range  # 0 (held-out data) to 1 (the repeated subset): diverging about 1/2
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(dtype=float), x=labels, y=order, xgap=1, ygap=1, colorscale=theme.DIVERGING_COLORSCALE, zmin=lo, zmax=hi,
        colorbar={"title": {"text": "share", "side": "top"}, "thickness": 12, "len": 0.8},
        hovertemplate=f"<b>{run_id}</b><br>%{{y}} at {axis.label} %{{x}}<br>memorization share %{{z:.2f}}<extra></extra>",
    ))
    run = sub.iloc[0]
    fig.update_layout(
        xaxis={"title": {"text": axis.label}, "type": "category", "showgrid": False},
        yaxis={"title": {"text": "head"}, "autorange": "reversed", "showgrid": False, "type": "category"},
        height=260 + 22 * len(order),
    )
    title = f"Memorization share per head over training · {run_id}{_coords(run)}"
    return _finish(fig, "memorization_share_over_training", title=title)


# ----------------------------------------------------------------------------- 1b. offset profile


def offset_profile(scores: pd.DataFrame, run_id: str | None = None, probe: str | None = None) -> go.Figure:
    """Attention by query-key offset per head, with a slider over checkpoints.

    Rows are heads (``L0.H0`` at the top), columns the offsets ``o = 0..L`` from the
    second-copy queries of ``[BOS, r, r]`` (the ``offset_profile`` score). A canonical
    induction circuit shows a layer-0 head at ``o = 1`` and a later head at ``o = L - 1``
    (dotted line); induction shifted by ``d`` shows a layer-0 head at ``o = d + 1`` and a
    later head at ``o = L - 1 - d``, which the induction score (offset ``L - 1`` only) misses.

    Args:
        scores: The long scores table with ``offset_profile`` rows.
        run_id: The run to show; default the most damaged run.
        probe: The probe to read; default the table's default probe, named in the title.

    Returns:
        The figure; one frame per checkpoint of the run.
    """
    s = check_scores(scores, probe)
    rows = metric_rows(s, "offset_profile")
    if run_id is None:
        run_id = default_run(s[s["run_id"].isin(rows["run_id"].unique())])
    sub = rows[rows["run_id"] == run_id].copy()
    if sub.empty:
        raise PlotDataError(f"run {run_id!r} has no 'offset_profile' rows; runs with it: {sorted(rows['run_id'].unique())[:8]}")
    sub["head_id"] = [f"L{int(layer)}.H{int(head)}" for layer, head in zip(sub["layer"], sub["head"])]
    order = sub.drop_duplicates("head_id").sort_values(["layer", "head"])["head_id"].tolist()
    offsets = sorted(int(o) for o in sub["offset"].unique())
    L = offsets[-1]
    run = sub.iloc[0]
    checkpoints = sub[["step", "tokens_seen"]].drop_duplicates("step").sort_values("step")
    axis = training_axis(s, [run_id])

    def trace(step: int, tokens: int) -> go.Heatmap:
        grid = sub[sub["step"] == step].pivot_table(index="head_id", columns="offset", values="value").reindex(index=order, columns=offsets)
        return go.Heatmap(
            z=grid.to_numpy(dtype=float), x=offsets, y=order, xgap=1, ygap=1, colorscale=theme.HEAD_COLORSCALE, zmin=0.0, zmax=1.0,
            colorbar={"title": {"text": "attention", "side": "top"}, "thickness": 12, "len": 0.8},
            hovertemplate=(f"<b>{run_id}</b><br>{axis.hover(step, tokens)}"
                           "<br>%{y}, offset %{x}<br>mean attention %{z:.3f}<extra></extra>"),
            name=f"step {step}",
        )

    fig = _checkpoint_slider(checkpoints, trace, axis)
    for x, text in ((1, "previous token"), (L - 1, "induction (L−1)")):
        fig.add_vline(x=x, line={"color": "#555", "dash": "dot", "width": 1})
        fig.add_annotation(x=x, y=1.0, yref="paper", yanchor="bottom", text=text, showarrow=False, font={"size": 10, "color": "#555"})
    fig.update_layout(
        xaxis={"title": {"text": "query − key offset o (second-copy queries of [BOS, r, r])"}, "showgrid": False},
        yaxis={"title": {"text": "head"}, "autorange": "reversed", "showgrid": False, "type": "category"},
        margin={"b": 120}, height=260 + 22 * len(order),
    )
    title = f"Attention by offset · {run_id}{_coords(run, f'L = {L}')}{_probe_title(s, 'offset_profile')}"
    return _finish(fig, "offset_profile", title=title)
