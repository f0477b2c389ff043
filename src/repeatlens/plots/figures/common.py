"""What every figure shares: the order of the metrics' figures, the training axis, run lines, facets, the checkpoint slider (see :mod:`repeatlens.plots.figures` for the conventions)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from repeatlens.plots import theme
from repeatlens.results.metric_facts import known


PHASE_QUANTITIES = ("test_loss", "induction", "copying")
"""The damage quantities with a phase diagram (``copying``: the copying loss)."""

MODEL_LEVEL_ORDER = [
    "test_loss",
    "repeated_loss",
    "copying_loss",
    "copying_gain",
    "icl_score",
    "memorization",
]
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
"""The order the figures of the built-in metrics come in (model-level, then per head); every
other metric that is a level (``MetricFacts.level``) follows by name. What a figure says about
a metric (label, range, ...) comes from its facts
(:func:`repeatlens.results.metric_facts.metric_facts`)."""

_DERIVED = {
    "ATTENTION_METRICS": lambda: {m for m, f in known().items() if f.level and f.range == (0.0, 1.0) and f.unit.startswith("attention")},
    "SIGNED_UNIT_METRICS": lambda: {m for m, f in known().items() if f.range == (-1.0, 1.0)},
    "NOT_A_LEVEL": lambda: {m for m, f in known().items() if not f.level},
}


def __getattr__(name: str) -> object:
    """The sets of metrics this module once listed by hand, now read off their facts (deprecated)."""
    if name in _DERIVED:
        warnings.warn(f"{__name__}.{name} is deprecated: read each metric's range and level off "
                      "repeatlens.results.metric_facts.metric_facts(name)", DeprecationWarning, stacklevel=2)
        return _DERIVED[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    if not len(reads):
        return ""
    from repeatlens.results.schema import parse_key

    family, settings = parse_key(key)
    return f" · {family} probe (L={settings['copy_len']})"


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
    """One run's line (as a trace dict): black dashed for the full-data control, grey dotted
    for a data-matched control (``control == "data_matched"``: f = 0 on fewer tokens, not the
    control), else coloured by E.

    Args:
        g: The run's rows, in x order.
        custom: Their customdata rows (see :func:`_customdata`).
        x: Column for the x values.
        limits: E colour-scale limits (log10).
        per_head: Whether hover names a layer and head.
        y_name: Name of the y value in hover.
    """
    first = g.iloc[0]
    data_matched = str(first.get("control", "")) == "data_matched"
    control = float(first["repeated_fraction"]) == 0.0 and not data_matched
    if data_matched:
        line, name, group = dict(theme.DATA_MATCHED_LINE), f"data-matched control ({first['run_id']})", "data-matched"
    elif control:
        line, name, group = dict(theme.CONTROL_LINE), "control (f = 0)", "control"
    else:
        line = {"color": theme.repeat_count_color(float(first["repeat_count"]), limits), "width": 1.8}
        name, group = str(first["run_id"]), f"E={float(first['repeat_count']):g}"
    return {
        "type": "scatter",
        "x": g[x].to_numpy(dtype=float),
        "y": g["value"].to_numpy(dtype=float),
        "mode": "lines",
        "name": name,
        "legendgroup": group,
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
