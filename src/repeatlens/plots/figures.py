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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from repeatlens.plots import theme
from repeatlens.results.reduce import (
    MissingDataError as UnsupportedFigureError,
    TableError as PlotDataError,
    check_scores,
    control_mask,
    default_run,
    final_values,
    get_quantity,
    is_per_head,
    matching_control,
    metric_rows,
    per_checkpoint,
    relative_damage,
    require_columns,
    run_table,
    seed_stats,
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

PHASE_QUANTITIES = ("test_loss", "induction", "copying")
"""The damage quantities with a phase diagram (``copying``: the copying loss)."""

PER_HEAD_ORDER = [
    "induction",
    "shifted_induction",
    "previous_token",
    "duplicate_token",
    "prefix_matching",
    "copying_ov",
    "copying_top1",
    "k_composition",
    "q_composition",
    "v_composition",
    "ablation_copying_loss",
]
ATTENTION_METRICS = {"previous_token", "duplicate_token", "induction", "prefix_matching", "shifted_induction"}
"""Per-head scores that are attention probabilities: heatmaps use the fixed range 0…1."""
SIGNED_UNIT_METRICS = {"copying_ov"}
"""Per-head scores in [−1, 1]: heatmaps use the fixed diverging range −1…1."""
NOT_A_LEVEL = {"offset_profile", "shifted_induction_shift", "copying_top1_se"}
"""Per-head rows that are not levels to take the best head of: a profile over offsets, a shift, a standard error."""
MODEL_LEVEL_ORDER = [
    "test_loss",
    "repeated_loss",
    "copying_loss",
    "copying_gain",
    "icl_score",
    "memorization",
]


# ----------------------------------------------------------------------------- helpers


def model_label(preset: str, n_params: float) -> str:
    """Label of a model size, e.g. ``"small (1.2M params)"``."""
    return f"{preset} ({theme.format_count(n_params)} params)" if n_params and n_params > 0 else str(preset)


@dataclass(frozen=True)
class TrainingAxis:
    """What a figure over training puts on its x axis: ``tokens_seen`` or ``step``.

    Attributes:
        column: the table column plotted.
        label: its axis title.
    """

    column: str
    label: str

    @property
    def counts_tokens(self) -> bool:
        return self.column == "tokens_seen"

    def text(self, step: int, tokens: int) -> str:
        """A checkpoint as the slider names it: ``12.8M`` tokens, or the step ``1,000``."""
        return theme.format_count(int(tokens)) if self.counts_tokens else f"{int(step):,}"

    def hover(self, step: int, tokens: int) -> str:
        """A checkpoint in hover text: ``step 100 (12.8M tokens)``, or ``step 100``."""
        return f"step {int(step)} ({theme.format_count(int(tokens))} tokens)" if self.counts_tokens else f"step {int(step)}"


TOKENS_AXIS = TrainingAxis("tokens_seen", theme.TOKENS_LABEL)
STEP_AXIS = TrainingAxis("step", theme.STEP_LABEL)


def training_axis(scores: pd.DataFrame, run_ids: Sequence[str] | None = None) -> TrainingAxis:
    """Tokens seen, when every run shown (``run_ids``, default all) counted its tokens; else the step.

    What a run counted is what its table's metadata records (``scores.attrs["runs"][run_id]
    ["axis"]["x"]``, see :func:`repeatlens.results.store.table_runs`): other people's
    checkpoints analysed without ``--tokens-per-step`` (nor a revision name or
    ``trainer_state.json`` giving tokens) record ``step``, and their ``tokens_seen`` holds
    the step. A run the metadata does not cover (a table assembled by hand) is taken as
    step-only when its ``tokens_seen`` equals its step at every checkpoint, as it does then.
    """
    runs = scores.attrs.get("runs") or {}
    ids = [str(r) for r in (run_ids if run_ids is not None else scores["run_id"].unique())]
    for rid in ids:
        axis = (runs.get(rid) or {}).get("axis")
        if isinstance(axis, dict) and "x" in axis:
            if axis["x"] != "tokens_seen":
                return STEP_AXIS
            continue
        rows = scores[scores["run_id"].astype(str) == rid]
        if len(rows) and (rows["step"] > 0).any() and (rows["tokens_seen"] == rows["step"]).all():
            return STEP_AXIS
    return TOKENS_AXIS


def _coords(run: pd.Series, *extra: str) -> str:
    """`` (f = 10%, E = 100)`` for a title, or only ``extra`` for a run of unknown f and E."""
    f, e = float(run["repeated_fraction"]), float(run["repeat_count"])
    parts = [] if math.isnan(f) and math.isnan(e) else [f"f = {theme.format_fraction(f)}", f"E = {theme.format_repeat_count(e)}"]
    parts += [x for x in extra if x]
    return f" ({', '.join(parts)})" if parts else ""


def _probe_title(s: pd.DataFrame, *metrics: str) -> str:
    """`` · <probe>`` for a title when any of ``metrics`` read the probe ``s`` was restricted to."""
    key = s.attrs.get("probe")
    if not key:
        return ""
    reads = s[s["metric"].isin(metrics) & (s["probe"].astype(str) != "")] if "probe" in s.columns else s.iloc[:0]
    return f" · {key.split(':')[0]} probe (L={key.split(':')[1][1:]})" if len(reads) else ""


def _finish(fig: go.Figure, name: str, rows: int = 1, cols: int = 1, *, title: str | None = None) -> go.Figure:
    """Apply the template, title and the export metadata."""
    fig.update_layout(
        template=theme.TEMPLATE_NAME,
        title={"text": title} if title else None,
        meta={"repeatlens": {"figure": name, "rows": rows, "cols": cols}},
    )
    fig.update_annotations(font_size=14)  # subplot titles: make_subplots sets 16 px
    return fig


def _models(table: pd.DataFrame) -> list[tuple[float, str]]:
    """Distinct (n_params, model_preset) pairs, smallest first."""
    pairs = table[["n_params", "model_preset"]].drop_duplicates("n_params").sort_values("n_params")
    return [(float(n), str(p)) for n, p in pairs.itertuples(index=False)]


def _repeated_counts(table: pd.DataFrame) -> list[float]:
    """Distinct known repeat counts of the repeated-data (f > 0) runs."""
    counts = table.loc[table["repeated_fraction"] > 0, "repeat_count"].astype(float).dropna()
    return sorted(counts.unique())


def _hover_lines(per_head: bool, y_name: str, x_name: str = f"{theme.TOKENS_LABEL} %{{x:.3s}}", coords: bool = True) -> str:
    """Hover template for customdata = [run, f, E, seed, layer, head] (``coords`` False: a run
    without repetition coordinates, whose f, E and seed are not shown)."""
    lines = ["<b>%{customdata[0]}</b>"]
    if coords:
        lines.append("f = %{customdata[1]}, E = %{customdata[2]}, seed %{customdata[3]}")
    if per_head:
        lines.append("layer %{customdata[4]}, head %{customdata[5]}")
    lines += [x_name, f"{y_name}: %{{y:.4g}}"]
    return "<br>".join(lines) + "<extra></extra>"


def _customdata(g: pd.DataFrame) -> np.ndarray:
    """customdata rows [run, f, E, seed, layer, head] for a run's rows."""

    def head_col(name: str) -> np.ndarray:
        if name not in g.columns:
            return np.full(len(g), "–", dtype=object)
        return g[name].astype("Int64").astype("string").fillna("–").to_numpy(dtype=object)

    return np.column_stack(
        [
            g["run_id"].astype(str).to_numpy(dtype=object),
            g["repeated_fraction"].astype(float).map(theme.format_fraction).to_numpy(dtype=object),
            g["repeat_count"].astype(float).map(theme.format_repeat_count).to_numpy(dtype=object),
            g["seed"].astype(int).to_numpy(dtype=object),
            head_col("layer"),
            head_col("head"),
        ]
    )


def _run_line(
    g: pd.DataFrame,
    custom: np.ndarray,
    *,
    x: str,
    limits: tuple[float, float],
    per_head: bool,
    y_name: str,
) -> dict[str, object]:
    """One run's line (as a trace dict): black dashed for the control, else coloured by E.

    Args:
        g: The run's rows, in x order.
        custom: Their customdata rows (see :func:`_customdata`).
        x: Column for the x values.
        limits: E colour-scale limits (log10).
        per_head: Whether hover names a layer and head.
        y_name: Name of the y value in hover.
    """
    first = g.iloc[0]
    control = float(first["repeated_fraction"]) == 0.0
    line = dict(theme.CONTROL_LINE) if control else {
        "color": theme.repeat_count_color(float(first["repeat_count"]), limits),
        "width": 1.8,
    }
    return {
        "type": "scatter",
        "x": g[x].to_numpy(dtype=float),
        "y": g["value"].to_numpy(dtype=float),
        "mode": "lines",
        "name": "control (f = 0)" if control else str(first["run_id"]),
        "legendgroup": "control" if control else f"E={float(first['repeat_count']):g}",
        "showlegend": False,
        "line": line,
        "customdata": custom,
        "hovertemplate": _hover_lines(per_head, y_name, f"{theme.TOKENS_LABEL if x == 'tokens_seen' else theme.STEP_LABEL} %{{x:.3s}}",
                                      coords=not math.isnan(float(first["repeated_fraction"]))),
    }


def _facet_grid(col_titles: list[str], row_titles: list[str]) -> go.Figure:
    """Subplots with column titles on top and, for several rows, row titles at the right.

    Row titles sit in a strip the x-domains leave free (as plotly express does), so
    they never collide with a colourbar or legend.

    Args:
        col_titles: One title per column.
        row_titles: One title per row (``[""]`` for a single untitled row).

    Returns:
        The empty figure with shared axes.
    """
    nrows, ncols = len(row_titles), len(col_titles)
    fig = make_subplots(
        rows=nrows, cols=ncols, shared_xaxes=True, shared_yaxes=True,
        subplot_titles=col_titles + [""] * (ncols * (nrows - 1)),
        horizontal_spacing=0.035, vertical_spacing=0.1 if nrows > 1 else 0.08,
    )
    if nrows > 1:
        shrink = 0.95
        fig.for_each_xaxis(lambda ax: ax.update(domain=[ax.domain[0] * shrink, ax.domain[1] * shrink]))
        for ann in fig.layout.annotations:
            ann.x = ann.x * shrink
        for r, title in enumerate(row_titles, start=1):
            dom = fig.get_subplot(r, 1).yaxis.domain
            fig.add_annotation(text=title, x=0.985, y=(dom[0] + dom[1]) / 2, xref="paper", yref="paper",
                               textangle=90, showarrow=False, xanchor="center", yanchor="middle")
    return fig


def _log_ticks_axis() -> dict[str, object]:
    """Axis settings for a log axis with compact tick labels (1k, 10k, 1M)."""
    return {"type": "log", "exponentformat": "SI", "dtick": 1, "minor": {"ticks": "outside", "ticklen": 2}}


def _repeat_count_axis(fig: go.Figure, repeat_counts: pd.Series) -> None:
    """A log x axis of repeat counts; up to 8 counts swept are labelled where they are (decade
    ticks leave E = 2, 8 unlabelled), with minor ticks at 2-9 of each decade (an array of
    major ticks otherwise draws a tick at every integer)."""
    fig.update_xaxes(**_log_ticks_axis(), title_text=theme.REPEAT_COUNT_LABEL)
    grid = sorted(float(e) for e in repeat_counts.unique())
    if len(grid) <= 8:
        fig.update_xaxes(tickmode="array", tickvals=grid, ticktext=[theme.format_count(e) for e in grid],
                         minor={"ticks": "outside", "ticklen": 2, "tickmode": "linear", "dtick": "D1"})


SLIDER_TICK_LABELS_MAX = 10
"""A checkpoint slider labels its ticks only up to this many checkpoints (they would collide);
the current checkpoint is always named above it (``currentvalue``, in the text colour)."""


def _checkpoint_slider(checkpoints: pd.DataFrame, trace: Callable[[int, int], go.BaseTraceType], axis: TrainingAxis) -> go.Figure:
    """A one-trace figure with a slider over ``checkpoints`` (``step``, ``tokens_seen``):
    each slider step is an animation frame of ``trace(step, tokens)``, labelled on ``axis``;
    it opens on the last. The current checkpoint's label is always shown, whatever the
    number of checkpoints (:data:`SLIDER_TICK_LABELS_MAX`)."""
    frames = [
        go.Frame(name=str(int(st)), data=[trace(int(st), int(tk))], traces=[0])
        for st, tk in checkpoints.itertuples(index=False)
    ]
    last_step, last_tokens = (int(v) for v in checkpoints.iloc[-1])
    fig = go.Figure(data=[trace(last_step, last_tokens)], frames=frames)
    n = len(frames)
    slider_steps = [
        {
            "label": axis.text(int(st), int(tk)),
            "method": "animate",
            "args": [
                [str(int(st))],
                {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}},
            ],
        }
        for st, tk in checkpoints.itertuples(index=False)
    ]
    fig.update_layout(
        sliders=[
            {
                "active": n - 1,
                "steps": slider_steps,
                # its own colour: it would inherit the tick labels' (transparent with many checkpoints)
                "currentvalue": {"prefix": f"{axis.label}: ", "visible": True, "font": {"size": 12, "color": theme.TEXT_COLOR}},
                "pad": {"t": 40, "b": 10},
                "len": 1.0,
                "x": 0.0,
                # a slider with many checkpoints hides its tick labels (they would collide)
                "font": {"size": 10, "color": "#444" if n <= SLIDER_TICK_LABELS_MAX else "rgba(0,0,0,0)"},
            }
        ],
    )
    return fig


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
    zmin, zmax = float(sub["value"].min()), float(sub["value"].max())
    if metric in SIGNED_UNIT_METRICS and -1.0 <= zmin and zmax <= 1.0:
        scale = {"colorscale": theme.DIVERGING_COLORSCALE, "zmin": -1.0, "zmax": 1.0}
    elif zmin < 0:
        bound = max(abs(zmin), abs(zmax))
        scale = {"colorscale": theme.DIVERGING_COLORSCALE, "zmin": -bound, "zmax": bound}
    elif metric in ATTENTION_METRICS and zmax <= 1.0:
        scale = {"colorscale": theme.HEAD_COLORSCALE, "zmin": 0.0, "zmax": 1.0}  # comparable across runs
    else:
        scale = {"colorscale": theme.HEAD_COLORSCALE, "zmin": 0.0, "zmax": max(zmax, 1e-9)}
    label = theme.metric_label(metric)
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
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(dtype=float), x=labels, y=order, xgap=1, ygap=1, colorscale=theme.DIVERGING_COLORSCALE, zmin=0.0, zmax=1.0,
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


# ----------------------------------------------------------------------------- 2. trajectories


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
    label = theme.metric_label(metric)
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
            members = controls + (list(in_model.loc[same_f, "run_id"]) if f else [])
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
    title = f"{label.split(' (')[0]} over training" + (f" ({reduction})" if reduction else "") + _probe_title(s, metric)
    return _finish(fig, f"score_trajectories_{metric}", len(models), len(fractions), title=title)


# ----------------------------------------------------------------------------- 3. double descent


def _final_loss(table: pd.DataFrame, loss: str = "test_loss") -> pd.DataFrame:
    """Final ``loss`` per run, as ``value``, from a scores table (the metric ``loss``) or a
    one-row-per-run table with a ``loss`` column (e.g. :func:`repeatlens.study.final_table`,
    whose ``test_text`` is the natural-text loss)."""
    if loss not in table.columns and "metric" in table.columns:
        return final_values(check_scores(table), loss)
    if loss in table.columns:
        require_columns(table, ["run_id", "repeated_fraction", "repeat_count", "model_preset", "n_params", "seed"],
                        "final table")
        out = table.rename(columns={loss: "value"}).copy()
        out["repeated_fraction"] = out["repeated_fraction"].astype(float)
        out["repeat_count"] = out["repeat_count"].astype(float)
        return out
    raise PlotDataError(f"expected a scores table (with 'metric') or a final table (with {loss!r})")


def loss_vs_repeat_count(scores_or_final_table: pd.DataFrame, loss: str = "test_loss", by: str = "fraction") -> go.Figure:
    """Final test loss against repeat count: the double-descent figure.

    ``by="fraction"``: one line per repeated fraction (mean over seeds, error bars =
    sample std over seeds), one panel per model size; the control's mean loss is a black
    dashed horizontal line with a grey ±1 std band. ``by="size"``: one panel, one curve
    per model size at the largest f, each size's control a dashed line of its colour:
    where the poor-performance region sits as models grow.

    Args:
        scores_or_final_table: The long scores table (the last ``loss`` of each run is
            used), or a one-row-per-run table with a ``loss`` column and the run columns.
        loss: The loss to show (``test_loss``; in a final table also ``test_text``, the
            natural-text loss).
        by: ``"fraction"`` or ``"size"``.

    Returns:
        The figure; traces ``"f = …"`` (or one per size) carry the means, ``"control (f = 0)"`` the line.
    """
    final = _final_loss(scores_or_final_table, loss)
    if by == "size":
        return _loss_vs_repeat_count_by_size(final, loss)
    if by != "fraction":
        raise PlotDataError(f"by must be 'fraction' or 'size', got {by!r}")
    repeated = final[final["repeated_fraction"] > 0]
    if repeated.empty:
        raise UnsupportedFigureError("loss_vs_repeat_count needs runs with repeated data (f > 0)")
    models = _models(final)
    fractions = sorted(repeated["repeated_fraction"].unique())
    e_lo, e_hi = float(repeated["repeat_count"].min()), float(repeated["repeat_count"].max())
    fig = make_subplots(
        rows=1, cols=len(models), shared_yaxes=True, horizontal_spacing=0.04,
        subplot_titles=[model_label(p, n) for n, p in models] if len(models) > 1 else None,
    )
    for c, (n, _p) in enumerate(models, start=1):
        in_model = final[final["n_params"] == n]
        ctrl = in_model[control_mask(in_model)]["value"]
        if not ctrl.empty:
            m, sd = float(ctrl.mean()), float(ctrl.std()) if len(ctrl) > 1 else 0.0
            if sd > 0:
                fig.add_trace(
                    go.Scatter(
                        x=[e_lo, e_hi, e_hi, e_lo], y=[m - sd, m - sd, m + sd, m + sd], fill="toself",
                        fillcolor="rgba(0,0,0,0.08)", line={"width": 0}, hoverinfo="skip", showlegend=False,
                        name="control ±1 std", mode="lines",
                    ),
                    row=1, col=c,
                )
            fig.add_trace(
                go.Scatter(
                    x=[e_lo, e_hi], y=[m, m], mode="lines", line=dict(theme.CONTROL_LINE),
                    name="control (f = 0)", legendgroup="control", showlegend=c == 1,
                    hovertemplate=(f"control (f = 0), {len(ctrl)} seed(s)<br>test loss {m:.4g} ± {sd:.2g}"
                                   "<extra></extra>"),
                ),
                row=1, col=c,
            )
        stats = seed_stats(in_model[in_model["repeated_fraction"] > 0], ["repeated_fraction", "repeat_count"])
        for k, f in enumerate(fractions):
            g = stats[stats["repeated_fraction"] == f].sort_values("repeat_count")
            if g.empty:
                continue
            color = theme.FRACTION_COLORS[k % len(theme.FRACTION_COLORS)]
            fig.add_trace(
                go.Scatter(
                    x=g["repeat_count"].to_numpy(dtype=float), y=g["mean"].to_numpy(dtype=float),
                    error_y={"type": "data", "array": g["std"].to_numpy(dtype=float), "thickness": 1.2, "width": 3},
                    mode="lines+markers", marker={"size": 7, "color": color}, line={"color": color, "width": 2},
                    name=f"f = {theme.format_fraction(f)}", legendgroup=f"f={f}", showlegend=c == 1,
                    customdata=g["count"].to_numpy(),
                    hovertemplate=(
                        f"f = {theme.format_fraction(f)}, E = %{{x:g}}<br>test loss %{{y:.4g}} ± %{{error_y.array:.2g}}"
                        "<br>%{customdata} seed(s)<extra></extra>"
                    ),
                ),
                row=1, col=c,
            )
    _repeat_count_axis(fig, repeated["repeat_count"])
    fig.update_yaxes(title_text=theme.two_line(f"final {_loss_label(loss)} (nats/token)"), col=1)
    return _finish(fig, "loss_vs_repeat_count", 1, len(models),
                   title=f"Final {_loss_label(loss)} vs repeat count (mean ± std over seeds)")


def _loss_label(loss: str) -> str:
    return {"test_loss": "test loss", "test_text": "natural-text test loss"}.get(loss, loss.replace("_", " "))


def _loss_vs_repeat_count_by_size(final: pd.DataFrame, loss: str) -> go.Figure:
    """One curve per model size at the largest f > 0, its control dashed in the same colour."""
    repeated = final[final["repeated_fraction"] > 0]
    if repeated.empty:
        raise UnsupportedFigureError("loss_vs_repeat_count needs runs with repeated data (f > 0)")
    f = float(repeated["repeated_fraction"].max())
    models = _models(final)
    e_lo, e_hi = float(repeated["repeat_count"].min()), float(repeated["repeat_count"].max())
    fig = go.Figure()
    for k, (n, p) in enumerate(models):
        color = theme.FRACTION_COLORS[k % len(theme.FRACTION_COLORS)]
        in_model = final[final["n_params"] == n]
        name = model_label(p, n)
        ctrl = in_model[control_mask(in_model)]["value"]
        if not ctrl.empty:
            m = float(ctrl.mean())
            fig.add_trace(go.Scatter(
                x=[e_lo, e_hi], y=[m, m], mode="lines", line={"color": color, "dash": "dash", "width": 1.5}, legendgroup=name,
                name=f"{p} control (f = 0)", hovertemplate=f"{name} control, {len(ctrl)} seed(s)<br>{_loss_label(loss)} {m:.4g}<extra></extra>"))
        g = seed_stats(in_model[np.isclose(in_model["repeated_fraction"], f)], ["repeat_count"]).sort_values("repeat_count")
        fig.add_trace(go.Scatter(
            x=g["repeat_count"].to_numpy(dtype=float), y=g["mean"].to_numpy(dtype=float),
            error_y={"type": "data", "array": g["std"].to_numpy(dtype=float), "thickness": 1.2, "width": 3},
            mode="lines+markers", marker={"size": 7, "color": color, "symbol": theme.MODEL_SYMBOLS[k % len(theme.MODEL_SYMBOLS)]},
            line={"color": color, "width": 2}, name=name, legendgroup=name, customdata=g["count"].to_numpy(),
            hovertemplate=f"{name}, E = %{{x:g}}<br>{_loss_label(loss)} %{{y:.4g}} ± %{{error_y.array:.2g}}<br>%{{customdata}} seed(s)<extra></extra>"))
    _repeat_count_axis(fig, repeated["repeat_count"])
    fig.update_yaxes(title_text=theme.two_line(f"final {_loss_label(loss)} (nats/token)"))
    return _finish(fig, "loss_vs_repeat_count_by_size", 1, 1,
                   title=f"Final {_loss_label(loss)} vs repeat count at f = {theme.format_fraction(f)}, one curve per model size")


# ----------------------------------------------------------------------------- 4. phase diagram


def phase_diagram(scores: pd.DataFrame, quantity: str, probe: str | None = None) -> go.Figure:
    """Repeated fraction × repeat count heatmap of damage relative to the control.

    Damage is the relative change of the final value against the mean of the f = 0
    control of the same model size, averaged over seeds, signed so that positive means
    worse than the control: ``test_loss`` → rise of test loss; ``induction`` → drop of
    the max-over-heads induction score; ``copying`` → rise of the copying loss (worse
    copying). One panel per model size, cells annotated in percent.

    Args:
        scores: The long scores table.
        quantity: ``"test_loss"``, ``"induction"`` or ``"copying"`` (any name of
            :data:`repeatlens.results.QUANTITIES`).
        probe: The probe to read; default the table's default probe, named in the title.

    Returns:
        The figure; heatmap x = E (categories), y = f (categories), z = mean damage.
    """
    s = check_scores(scores, probe)
    dmg = relative_damage(s, quantity)
    label = get_quantity(quantity).label
    models = _models(dmg)
    stats = seed_stats(dmg, ["n_params", "repeated_fraction", "repeat_count"], "damage")
    fractions = sorted(stats["repeated_fraction"].unique())
    counts = sorted(stats["repeat_count"].unique())
    xs = [f"{e:g}" for e in counts]
    ys = [theme.format_fraction(f) for f in fractions]
    # at least ±1 %: a sweep with no damage shows pale cells, not saturated ones, and the
    # colourbar's "+.0%" ticks stay distinct
    bound = max(float(stats["mean"].abs().max()), 0.01)
    fig = make_subplots(
        rows=1, cols=len(models), shared_yaxes=True, horizontal_spacing=0.04,
        subplot_titles=[model_label(p, n) for n, p in models] if len(models) > 1 else None,
    )
    for c, (n, p) in enumerate(models, start=1):
        g = stats[stats["n_params"] == n]
        z = g.pivot(index="repeated_fraction", columns="repeat_count", values="mean").reindex(
            index=fractions, columns=counts
        )
        seeds = g.pivot(index="repeated_fraction", columns="repeat_count", values="count").reindex(
            index=fractions, columns=counts
        )
        fig.add_trace(
            go.Heatmap(
                z=z.to_numpy(dtype=float), x=xs, y=ys, coloraxis="coloraxis", xgap=2, ygap=2,
                texttemplate="%{z:+.0%}", customdata=seeds.fillna(0).to_numpy(dtype=int),
                name=model_label(p, n),
                hovertemplate=(
                    f"{model_label(p, n)}<br>f = %{{y}}, E = %{{x}}<br>{label}: %{{z:+.1%}}"
                    "<br>mean of %{customdata} seed(s)<extra></extra>"
                ),
            ),
            row=1, col=c,
        )
    fig.update_layout(
        coloraxis={
            "colorscale": theme.DIVERGING_COLORSCALE, "cmin": -bound, "cmax": bound,
            "colorbar": {"title": {"text": "worse ↑<br>vs control", "side": "top"}, "tickformat": "+.1%" if bound < 0.05 else "+.0%",
                         "thickness": 12, "len": 0.8},
        }
    )
    fig.update_xaxes(title_text=theme.REPEAT_COUNT_LABEL, type="category", showgrid=False)
    fig.update_yaxes(title_text=theme.FRACTION_LABEL, col=1, type="category", showgrid=False)
    fig.update_yaxes(type="category", showgrid=False)
    return _finish(fig, f"phase_diagram_{quantity}", 1, len(models),
                   title=f"Phase diagram: {label} (mean over seeds){_probe_title(s, get_quantity(quantity).metric)}")


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

    panels: list[tuple[str, str, Callable[[str], pd.DataFrame | None]]] = [
        ("repeated-subset loss<br>(nats/token)", "repeated loss",
         lambda r: first(_metrics_series(metrics_table, r, "repeated"), _score_series(s, r, "repeated_loss"))),
        ("test loss<br>(nats/token)", "test loss",
         lambda r: first(_metrics_series(metrics_table, r, "test"), _score_series(s, r, "test_loss"))),
        ("induction score<br>(max over heads)", "induction", lambda r: _score_series(s, r, "induction")),
        ("copying loss<br>(nats/token)", "copying loss", lambda r: _score_series(s, r, "copying_loss")),
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


# ----------------------------------------------------------------------------- 6. damage


def disproportionate_damage(scores: pd.DataFrame, probe: str | None = None) -> go.Figure:
    """Relative drop in induction and copying against relative rise in test loss.

    One point per repeated-data run (all seeds), coloured by E on the log scale, marker
    symbol by repeated fraction; panels for induction drop and copying-loss rise (those
    the sweep has). Points above the dotted y = x line are damaged more than the test
    loss suggests: the paper's disproportionate damage to copying and induction.

    Args:
        scores: The long scores table.
        probe: The probe to read; default the table's default probe, named in the title.

    Returns:
        The figure; per panel, traces per fraction named ``"f = …"`` + a ``"y = x"`` line.
    """
    s = check_scores(scores, probe)
    loss = relative_damage(s, "test_loss")[["run_id", "damage"]].rename(columns={"damage": "loss_rise"})
    panels = []
    for q in ("induction", "copying"):
        try:
            panels.append((q, relative_damage(s, q).merge(loss, on="run_id")))
        except UnsupportedFigureError:
            continue
    panels = [(q, d) for q, d in panels if not d.empty]
    if not panels:
        raise UnsupportedFigureError("disproportionate_damage needs induction or copying_loss besides test_loss")
    counts = _repeated_counts(run_table(s))
    limits = theme.log_range(counts)
    fractions = sorted(f for f in run_table(s)["repeated_fraction"].unique() if f > 0)
    symbols = {f: theme.MODEL_SYMBOLS[k % len(theme.MODEL_SYMBOLS)] for k, f in enumerate(fractions)}
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.13,
                        subplot_titles=[get_quantity(q).label.replace(" vs control", "") for q, _ in panels])
    for c, (q, d) in enumerate(panels, start=1):
        lo = min(0.0, float(d["loss_rise"].min()), float(d["damage"].min()))
        hi = max(float(d["loss_rise"].max()), float(d["damage"].max()), 1e-6)
        fig.add_trace(
            go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"color": "#777", "dash": "dot", "width": 1.5},
                       name="y = x (proportional)", legendgroup="yx", showlegend=c == 1, hoverinfo="skip"),
            row=1, col=c,
        )
        for f in fractions:
            g = d[d["repeated_fraction"] == f].sort_values(["repeat_count", "seed"])
            if g.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=g["loss_rise"].to_numpy(dtype=float), y=g["damage"].to_numpy(dtype=float), mode="markers",
                    marker={"symbol": symbols[f], "size": 9, "line": {"width": 0.5, "color": "#333"},
                            "color": [theme.repeat_count_color(float(e), limits) for e in g["repeat_count"]]},
                    name=f"f = {theme.format_fraction(f)}", legendgroup=f"f={f}", showlegend=False,
                    customdata=_customdata(g.assign(layer=pd.NA, head=pd.NA)),
                    hovertemplate=_hover_lines(False, get_quantity(q).label, "test-loss rise %{x:+.1%}").replace(
                        "%{y:.4g}", "%{y:+.1%}"),
                ),
                row=1, col=c,
            )
    for f in fractions:  # legend of marker symbols in neutral grey
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"f = {theme.format_fraction(f)}",
                                 marker={"symbol": symbols[f], "size": 9, "color": "#888"}, legendgroup=f"f={f}"))
    if counts:
        fig.add_trace(theme.repeat_count_colorbar(counts, limits))
    fig.update_xaxes(title_text=get_quantity("test_loss").label, tickformat="+.0%")
    fig.update_yaxes(tickformat="+.0%")
    fig.update_yaxes(title_text="relative damage vs control", row=1, col=1)
    return _finish(fig, "disproportionate_damage", 1, len(panels),
                   title="Disproportionate damage: induction and copying vs test loss" + _probe_title(s, "induction", "copying_loss"))


# ----------------------------------------------------------------------------- 7. N_eff


def effective_model_size(scores: pd.DataFrame, loss: str = "test_loss", size: str = "n_params") -> go.Figure:
    """Degraded test loss mapped onto the full-data controls' loss law with an irreducible term.

    The controls' final losses (every seed) are fitted with L(N) = L_inf + (N_c / N)^a
    (:func:`repeatlens.results.fits.fit_control_law`: 4 or more control sizes, no lack of
    fit); every grid point's mean loss gives N_eff = N_c (L - L_inf)^(-1/a), shown as
    N_eff / N with its 95% interval, only inside the controls' N range
    (:func:`repeatlens.results.fits.effective_sizes`; points outside it are left out and
    counted in the title). Left: the law with the controls and the degraded runs; right:
    N_eff / N against E per fraction and size.

    Args:
        scores: The long scores table, or a one-row-per-run table with a ``loss`` column.
        loss: The loss (``test_loss``; in a final table also ``test_text``).
        size: The parameter count N: ``n_params`` or ``n_params_nonembedding`` (Kaplan
            et al. 2020's N, which Hernandez et al. 2022 fit).

    Returns:
        The figure; ``fig.layout.meta["repeatlens"]["fit"]`` holds ``loss_inf``, ``n_c``
        and ``exponent``.

    Raises:
        UnsupportedFigureError: controls at fewer than four sizes, or a law that does not
            fit them (the reason is in the message).
    """
    from repeatlens.results import fits

    final = _final_loss(scores, loss)
    require_columns(final, [size], "final table")
    final = final[final["repeated_fraction"].notna()]  # runs of unknown f (other people's checkpoints) have no place here
    table = final.assign(N=final[size].astype(float)).drop(columns=["N_total"], errors="ignore")
    if "control" in table.columns and (table["control"].astype(str) == "").any():
        table = table.drop(columns=["control"])
    laws, eff = fits.effective_sizes(table[[c for c in table.columns if c not in ("n_params", "n_params_nonembedding")]], "value")
    law = laws["N"]
    if not isinstance(law, fits.ControlLaw):
        raise UnsupportedFigureError(f"effective_model_size: {law}")
    ctrl = final[control_mask(final)]
    runs = final[final["repeated_fraction"] > 0]
    if runs.empty:
        raise UnsupportedFigureError("effective_model_size needs runs with repeated data (f > 0)")
    points = eff[(eff["control"] == "none")]
    shown = points[points["N_eff"].notna()]
    counts = _repeated_counts(final)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14,
                        subplot_titles=["controls' law L = L∞ + (N_c/N)^a", "effective size N_eff / N (95%)"])
    n_grid = np.geomspace(*law.n_range, 50)
    fig.add_trace(
        go.Scatter(x=n_grid, y=law.loss_at(n_grid), mode="lines", line={"color": "#777", "width": 1.5},
                   name=f"fit L = {law.loss_inf:.3g} + ({10 ** law.log10_n_c:.3g}/N)<sup>{law.exponent:.3g}</sup>", hoverinfo="skip"),
        row=1, col=1,
    )
    fig.add_trace(
        go.Scatter(x=ctrl[size].to_numpy(dtype=float), y=ctrl["value"].to_numpy(dtype=float), mode="markers",
                   marker={"color": theme.CONTROL_COLOR, "size": 9, "symbol": "circle-open", "line": {"width": 2}},
                   name="control (f = 0)", hovertemplate="control, N = %{x:.3s}<br>loss %{y:.4g}<extra></extra>"),
        row=1, col=1,
    )
    fractions = sorted(runs["repeated_fraction"].unique())
    colors = {f: theme.FRACTION_COLORS[k % len(theme.FRACTION_COLORS)] for k, f in enumerate(fractions)}
    for f in fractions:
        g = runs[runs["repeated_fraction"] == f]
        fig.add_trace(
            go.Scatter(
                x=g[size].to_numpy(dtype=float), y=g["value"].to_numpy(dtype=float), mode="markers",
                marker={"size": 7, "color": colors[f], "line": {"width": 0.5, "color": "#333"}},
                name=f"f = {theme.format_fraction(f)}", legendgroup=f"f={f}", showlegend=False,
                customdata=_customdata(g.assign(layer=pd.NA, head=pd.NA)),
                hovertemplate=_hover_lines(False, "loss", "N = %{x:.3s}"),
            ),
            row=1, col=1,
        )
    sizes = sorted(shown["N"].unique())
    for m, n in enumerate(sizes):
        for f in fractions:
            g = shown[(shown["N"] == n) & np.isclose(shown["repeated_fraction"], f)].sort_values("repeat_count")
            if g.empty:
                continue
            name = f"f = {theme.format_fraction(f)} · N = {theme.format_count(n)}"
            hi = (g["ratio_hi"] - g["ratio"]).to_numpy(dtype=float)
            lo = (g["ratio"] - g["ratio_lo"]).to_numpy(dtype=float)
            fig.add_trace(
                go.Scatter(
                    x=g["repeat_count"].to_numpy(dtype=float), y=g["ratio"].to_numpy(dtype=float),
                    error_y={"type": "data", "symmetric": False, "array": np.nan_to_num(hi), "arrayminus": np.nan_to_num(lo),
                             "thickness": 1, "width": 2},
                    mode="lines+markers", name=name, showlegend=False,
                    marker={"color": colors[f], "symbol": theme.MODEL_SYMBOLS[m % len(theme.MODEL_SYMBOLS)], "size": 7},
                    line={"color": colors[f], "dash": theme.MODEL_DASHES[m % len(theme.MODEL_DASHES)], "width": 1.8},
                    hovertemplate=f"{name}<br>E = %{{x:g}}<br>N_eff / N = %{{y:.3f}}<extra></extra>",
                ),
                row=1, col=2,
            )
    fig.add_trace(
        go.Scatter(x=[min(counts), max(counts)], y=[1.0, 1.0], mode="lines", line=dict(theme.CONTROL_LINE),
                   name="control (N_eff = N)", hoverinfo="skip", showlegend=False),
        row=1, col=2,
    )
    # legend: colour = fraction, marker and dash = model size (not their cross product)
    for f in fractions:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines+markers", name=f"f = {theme.format_fraction(f)}",
                                 line={"color": colors[f]}, marker={"color": colors[f]}, legendgroup=f"f={f}"))
    fig.update_xaxes(**_log_ticks_axis())
    fig.update_xaxes(title_text="non-embedding parameters N" if size == "n_params_nonembedding" else "parameters N", row=1, col=1)
    fig.update_xaxes(title_text=theme.REPEAT_COUNT_LABEL, row=1, col=2)
    fig.update_yaxes(title_text=theme.two_line(f"final {_loss_label(loss)} (nats/token)"), row=1, col=1)
    fig.update_yaxes(title_text="N_eff / N", row=1, col=2, rangemode="tozero")
    left_out = len(points) - len(shown)
    title = "Effective model size of the degraded runs" + (
        f" ({left_out} point{'s' if left_out != 1 else ''} outside the controls' N range left out)" if left_out else "")
    fig = _finish(fig, "effective_model_size", 1, 2, title=title)
    fig.layout.meta["repeatlens"]["fit"] = {"loss_inf": law.loss_inf, "n_c": 10**law.log10_n_c, "exponent": law.exponent}
    return fig


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
    ordered = [m for m in MODEL_LEVEL_ORDER + PER_HEAD_ORDER if m in present]
    ordered += sorted(present - set(ordered) - NOT_A_LEVEL)
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
