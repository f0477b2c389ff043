"""Figures over the repeat count and the model size: loss against E (double descent), the phase diagram over (f, E), the disproportionate damage, the effective model size."""

from __future__ import annotations

import numpy as np
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
    final_values,
    get_quantity,
    relative_damage,
    require_columns,
    run_table,
    seed_stats,
)
from repeatlens.plots.figures.common import (
    _customdata,
    _finish,
    _hover_lines,
    _log_ticks_axis,
    _models,
    _probe_title,
    _repeat_count_axis,
    _repeated_counts,
    model_label,
)


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
    fig.update_yaxes(title_text=theme.two_line(f"final {theme.metric_label(loss)}"), col=1)
    return _finish(fig, "loss_vs_repeat_count", 1, len(models),
                   title=f"Final {_loss_label(loss)} vs repeat count (mean ± std over seeds)")


def _loss_label(loss: str) -> str:
    """The loss's label from its facts: ``"test loss"``, ``"natural-text test loss"`` (``test_text``)."""
    return metric_facts(loss).label


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
    fig.update_yaxes(title_text=theme.two_line(f"final {theme.metric_label(loss)}"))
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
    label = get_quantity(quantity, s).label
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
                   title=f"Phase diagram: {label} (mean over seeds){_probe_title(s, get_quantity(quantity, s).metric)}")


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
    for m, n in enumerate(sizes):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines+markers", name=f"N = {theme.format_count(n)}",
                                 line={"color": "#555", "dash": theme.MODEL_DASHES[m % len(theme.MODEL_DASHES)]},
                                 marker={"color": "#555", "symbol": theme.MODEL_SYMBOLS[m % len(theme.MODEL_SYMBOLS)]},
                                 legendgroup=f"N={n}"))
    fig.update_xaxes(**_log_ticks_axis())
    fig.update_xaxes(title_text="non-embedding parameters N" if size == "n_params_nonembedding" else "parameters N", row=1, col=1)
    fig.update_xaxes(title_text=theme.REPEAT_COUNT_LABEL, row=1, col=2)
    fig.update_yaxes(title_text=theme.two_line(f"final {theme.metric_label(loss)}"), row=1, col=1)
    fig.update_yaxes(title_text="N_eff / N", row=1, col=2, rangemode="tozero")
    left_out = len(points) - len(shown)
    title = "Effective model size of the degraded runs" + (
        f" ({left_out} point{'s' if left_out != 1 else ''} outside the controls' N range left out)" if left_out else "")
    fig = _finish(fig, "effective_model_size", 1, 2, title=title)
    fig.layout.meta["repeatlens"]["fit"] = {"loss_inf": law.loss_inf, "n_c": 10**law.log10_n_c, "exponent": law.exponent}
    return fig
