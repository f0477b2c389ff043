"""The redesigned scaling study's figures (plotly, in the package's ``repeatlens`` template),
drawn from a :class:`report.Study`: the loss against E per size with the fitted bumps and the
two controls as bands, E* against N with the alpha fit (or why it is not identified), N_eff
against N on the controls' law, and the T4 arm's trajectories. The generic figure helpers
of :mod:`repeatlens.plots` are used where one exists (``effective_model_size``).
"""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import design
from repeatlens import study
from repeatlens.plots import effective_model_size, theme
from repeatlens.results import fits

if TYPE_CHECKING:
    from report import Study

LOSS_LABEL = "natural-text test loss (nats/token)"
FULL = {"name": "full-data control", "color": "black", "fill": "rgba(0,0,0,0.10)"}
MATCHED = {"name": "data-matched control", "color": "#1f78b4", "fill": "rgba(31,120,180,0.13)"}
SEED_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "cross")
LOG_AXIS = {"type": "log", "exponentformat": "SI", "dtick": 1, "minor": {"ticks": "outside", "ticklen": 2}}


def _finish(fig: go.Figure, name: str, title: str, rows: int = 1, cols: int = 1) -> go.Figure:
    fig.update_layout(template=theme.TEMPLATE_NAME, title={"text": title},
                      meta={"repeatlens": {"figure": name, "rows": rows, "cols": cols}})
    return fig


def bump_curve(peak: fits.Peak, e: np.ndarray) -> np.ndarray:
    """The fitted model of :func:`repeatlens.results.fits.fit_peak` at repeat counts ``e``:
    ``baseline(E*) + slope·(log10 E - log10 E*) + A·exp(-(log10 E - log10 E*)^2 / (2 w^2))``."""
    x, c = np.log10(np.asarray(e, dtype=float)), math.log10(peak.e_star)
    return peak.baseline + (peak.baseline_slope or 0.0) * (x - c) + peak.amplitude * np.exp(-0.5 * ((x - c) / peak.width) ** 2)


def _seeds(values: pd.Series) -> str:
    return ", ".join(str(int(v)) for v in sorted(values))


def _band(fig: go.Figure, values: pd.Series, seeds: pd.Series, x: tuple[float, float], style: dict[str, str], row: int, col: int,
          first: bool, label: str) -> None:
    """A control's mean (line) ± its seed range (band) across the panel."""
    if values.empty:
        return
    m, spread = float(values.mean()), float(values.max() - values.min())
    hover = f"{style['name']}, seeds {_seeds(seeds)}<br>mean {m:.4f} ± range {spread:.4f}<extra></extra>"
    fig.add_trace(go.Scatter(x=[x[0], x[1], x[1], x[0]], y=[m - spread, m - spread, m + spread, m + spread], fill="toself",
                             fillcolor=style["fill"], line={"width": 0}, mode="lines", hoverinfo="skip", showlegend=False,
                             legendgroup=style["name"]), row=row, col=col)
    fig.add_trace(go.Scatter(x=list(x), y=[m, m], mode="lines", line={"color": style["color"], "dash": "dash", "width": 1.5},
                             name=label, legendgroup=style["name"], showlegend=first, hovertemplate=hover), row=row, col=col)


def _peak_for(s: "Study", preset: str, n: float) -> tuple[Optional[fits.Peak], str]:
    if s.fit is not None:
        for p in s.fit.peaks:
            if p.N == n:
                return p, "fitted bump"
    sp = s.provisional.get(preset)
    if sp is not None and sp.peak is not None:
        return sp.peak, f"PROVISIONAL bump ({sp.runs} of {sp.expected} runs)"
    return None, ""


def loss_vs_repeat_count(s: "Study") -> go.Figure:
    """Per size (one panel each): every run's final loss against E, the fitted bump with E*
    and its 95% interval, and the full-data and data-matched controls as mean ± seed-range bands."""
    loss = s.loss
    f = s.final
    sizes = s.expected[s.expected["arm"] == "repeated"].drop_duplicates("preset").set_index("preset")["N"]
    presets = [p for p in design.SIZES if p in sizes.index]
    cols = 3
    rows = max(1, math.ceil(len(presets) / cols))
    titles = []
    for p in presets:
        state = "" if p in s.complete_sizes else (" · no runs yet" if not (f.model_preset == p).any() else " · incomplete")
        titles.append(f"{p} · N = {theme.format_count(float(sizes[p]))}{state}")
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.06, vertical_spacing=0.14)
    ctrl_seeds = {k: {_seeds(g["seed"]) for _, g in f[(f.arm == a)].groupby("model_preset")}
                  for k, a in (("full", "controls"), ("data_matched", "data-matched"))}
    labels = {k: (f"{style['name']}, mean ± seed range" + (f" (seeds {next(iter(v))})" if len(v) == 1 else " (seeds on hover)"))
              for (k, v), style in zip(ctrl_seeds.items(), (FULL, MATCHED))}
    for i, preset in enumerate(presets):
        r, c = i // cols + 1, i % cols + 1
        mine = f[f["model_preset"] == preset]
        rep = mine[(mine["arm"] == "repeated")]
        extra = mine[(mine["arm"] == "pilot") & (mine["control"] == "none")]
        n = float(sizes[preset])
        grid = sorted(design.WINDOWS[preset])
        shown = sorted(set(grid) | set(extra["repeat_count"]))
        x = (shown[0] / 1.4, shown[-1] * 1.4)
        for arm, style, key in (("controls", FULL, "full"), ("data-matched", MATCHED, "data_matched")):
            ctrl = mine[mine["arm"] == arm]
            _band(fig, ctrl[loss], ctrl["seed"], x, style, r, c, i == 0, labels[key])
        for k, (seed, g) in enumerate(rep.groupby("seed")):
            fig.add_trace(go.Scatter(
                x=g["repeat_count"], y=g[loss], mode="markers", name=f"f = {design.FRACTION:g}, seed {int(seed)}",
                legendgroup=f"seed{seed}", showlegend=i == 0,
                marker={"symbol": SEED_SYMBOLS[k % len(SEED_SYMBOLS)], "size": 7, "color": theme.FRACTION_COLORS[1],
                        "line": {"width": 0.5, "color": "#333"}},
                customdata=g[["run_id"]], hovertemplate="%{customdata[0]}<br>E = %{x:g}<br>loss %{y:.4f}<extra></extra>"),
                row=r, col=c)
        if len(extra):
            fig.add_trace(go.Scatter(
                x=extra["repeat_count"], y=extra[loss], mode="markers", name="pilot run outside the design's window (not fitted)",
                legendgroup="pilot", showlegend=not any(t.legendgroup == "pilot" for t in fig.data),
                marker={"symbol": "circle-open", "size": 8, "color": "#777"}, customdata=extra[["run_id"]],
                hovertemplate="%{customdata[0]} (pilot only)<br>E = %{x:g}<br>loss %{y:.4f}<extra></extra>"), row=r, col=c)
        peak, label = _peak_for(s, preset, n)
        if peak is None or peak.width is None:
            continue
        e = np.geomspace(grid[0], grid[-1], 120)
        dash = "solid" if label == "fitted bump" else "dot"
        fig.add_trace(go.Scatter(x=e, y=bump_curve(peak, e), mode="lines", line={"color": theme.FRACTION_COLORS[1], "dash": dash},
                                 name=label, showlegend=False, hoverinfo="skip"), row=r, col=c)
        if grid[0] <= peak.e_star <= grid[-1]:
            ci = peak.e_star_ci95
            err = ({"type": "data", "symmetric": False, "array": [ci[1] - peak.e_star], "arrayminus": [peak.e_star - ci[0]],
                    "thickness": 1.5, "width": 4} if ci else None)
            fig.add_trace(go.Scatter(
                x=[peak.e_star], y=[float(bump_curve(peak, np.array([peak.e_star]))[0])], mode="markers", error_x=err,
                marker={"symbol": "x", "size": 9, "color": "#333"}, name="E* (95%)", legendgroup="estar", showlegend=i == 0,
                hovertemplate=(f"{label}<br>E* = {peak.e_star:,.0f}" + (f" (95% {ci[0]:,.0f}–{ci[1]:,.0f})" if ci else " (no interval)")
                               + "<extra></extra>")), row=r, col=c)
    fig.update_xaxes(**LOG_AXIS, title_text=theme.REPEAT_COUNT_LABEL, row=rows)
    fig.update_xaxes(**LOG_AXIS)
    fig.update_yaxes(title_text=theme.two_line(LOSS_LABEL), col=1)
    return _finish(fig, "loss_vs_repeat_count", f"Final natural-text loss against E at f = {design.FRACTION:g}, per size: "
                   "runs, fitted bump, controls (mean ± seed range)", rows, cols)


def peak_vs_size(s: "Study") -> go.Figure:
    """E* against N: each complete size's fitted peak with its 95% interval and half-maximum
    edges, provisional peaks open, every size's E window as a grey bar; the alpha fit with the
    95% band of its line where alpha is identified, else the reasons it is not."""
    fig = go.Figure()
    for preset, window in design.WINDOWS.items():
        n = s.final.loc[s.final.model_preset == preset, study.SIZE]
        if len(n):
            fig.add_trace(go.Scatter(x=[float(n.iloc[0])] * 2, y=[min(window), max(window)], mode="lines",
                                     line={"color": "#bbb", "width": 6}, name="E window of the design", legendgroup="window",
                                     showlegend=preset == next(p for p in design.WINDOWS if (s.final.model_preset == p).any()),
                                     hovertemplate=f"{preset}: E = {min(window):g}–{max(window):g}<extra></extra>"))
    peaks = list(s.fit.peaks) if s.fit is not None else []
    if peaks:
        ci = [p.e_star_ci95 for p in peaks]
        fig.add_trace(go.Scatter(
            x=[p.N for p in peaks], y=[p.e_star for p in peaks], mode="markers", name="E* (complete size, 95%)",
            marker={"size": 9, "color": theme.FRACTION_COLORS[1], "symbol": ["circle" if p.interior else "circle-open" for p in peaks]},
            error_y={"type": "data", "symmetric": False, "array": [c[1] - p.e_star if c else 0 for c, p in zip(ci, peaks)],
                     "arrayminus": [p.e_star - c[0] if c else 0 for c, p in zip(ci, peaks)], "thickness": 1.5},
            hovertemplate="N = %{x:,.0f}<br>E* = %{y:,.0f}<extra></extra>"))
        for side, symbol in (("left", "triangle-left"), ("right", "triangle-right")):
            pts = [(p.N, getattr(p, f"e_{side}")) for p in peaks if getattr(p, f"e_{side}") is not None]
            if pts:
                fig.add_trace(go.Scatter(x=[a for a, _ in pts], y=[b for _, b in pts], mode="markers", name=f"{side} half-maximum edge",
                                         marker={"symbol": symbol, "size": 8, "color": "#666"}))
    prov = [sp for sp in s.provisional.values() if sp.peak is not None]
    if prov:
        fig.add_trace(go.Scatter(x=[sp.N for sp in prov], y=[sp.peak.e_star for sp in prov], mode="markers",
                                 name="E*, PROVISIONAL (incomplete grid)", marker={"size": 9, "symbol": "diamond-open", "color": "#888"},
                                 customdata=[[sp.runs, sp.expected] for sp in prov],
                                 hovertemplate="N = %{x:,.0f}<br>E* = %{y:,.0f}<br>%{customdata[0]} of %{customdata[1]} runs<extra></extra>"))
    if s.fit is not None and s.fit.identified:
        law = fits.fit_loglog([p.N for p in peaks], [p.e_star for p in peaks], [p.log10_half_width for p in peaks])
        n = np.geomspace(*s.fit.n_range, 60)
        mid, band = zip(*(law.predict(float(v)) for v in n))
        lo, hi = zip(*band)
        fig.add_trace(go.Scatter(x=np.r_[n, n[::-1]], y=np.r_[hi, lo[::-1]], fill="toself", fillcolor="rgba(217,95,2,0.15)",
                                 line={"width": 0}, mode="lines", hoverinfo="skip", name="95% band of the line"))
        fig.add_trace(go.Scatter(x=n, y=mid, mode="lines", line={"color": theme.FRACTION_COLORS[1]},
                                 name=f"E* ∝ N^{s.fit.alpha:+.2f} (95% {s.fit.alpha_ci95[0]:+.2f} to {s.fit.alpha_ci95[1]:+.2f})"))
        title = f"E* against N: alpha = {s.fit.alpha:+.3f}, fitted inside the trained N range only"
    else:
        why = s.fit.reason if s.fit is not None else "no size has its whole grid complete"
        fig.add_annotation(text="<br>".join(textwrap.wrap(f"alpha not identified: {why}", 90)), xref="paper", yref="paper",
                           x=0.0, y=-0.28, xanchor="left", yanchor="top", showarrow=False, align="left", font={"size": 11})
        fig.update_layout(margin={"b": 170})
        title = "E* against N per size (alpha not identified)"
    fig.update_xaxes(**LOG_AXIS, title_text="non-embedding parameters N")
    fig.update_yaxes(**LOG_AXIS, title_text="E* (repeat count at the peak)")
    return _finish(fig, "peak_vs_size", title)


def effective_size_vs_size(s: "Study") -> Optional[go.Figure]:
    """N_eff against N on the full-data controls' law, at each complete size's grid point
    nearest E* and for its data-matched control, inside the controls' N range only (points
    outside it are counted in the title, never drawn); None where the law does not hold."""
    fit = s.fit
    law = fit.laws.get("N") if fit is not None else None
    if not isinstance(law, fits.ControlLaw):
        return None
    eff = fit.effective[(fit.effective["size_column"] == "N")]
    fig = go.Figure()
    lo_n, hi_n = law.n_range
    fig.add_trace(go.Scatter(x=[lo_n, hi_n], y=[lo_n, hi_n], mode="lines", line={"color": "black", "dash": "dash"},
                             name="N_eff = N (the full-data control)"))
    at_peak = []
    for p in fit.peaks:
        mine = eff[(eff.N == p.N) & (eff.control == "none") & np.isclose(eff.repeated_fraction, fit.repeated_fraction)]
        if len(mine):
            at_peak.append(mine.iloc[int(np.argmin(np.abs(np.log10(mine.repeat_count.to_numpy(dtype=float)) - math.log10(p.e_star))))])
    left_out = 0
    for label, rows, style in (("repeated, at the grid point nearest E*", pd.DataFrame(at_peak), {"color": theme.FRACTION_COLORS[1], "symbol": "circle"}),
                               ("data-matched control", eff[eff.control == "data_matched"], {"color": MATCHED["color"], "symbol": "square"})):
        if rows.empty:
            continue
        shown = rows[np.isfinite(rows["N_eff"].astype(float))]
        left_out += len(rows) - len(shown)
        up = (shown["N_eff_hi"] - shown["N_eff"]).to_numpy(dtype=float)
        down = (shown["N_eff"] - shown["N_eff_lo"]).to_numpy(dtype=float)
        fig.add_trace(go.Scatter(
            x=shown["N"], y=shown["N_eff"], mode="markers", name=label, marker={"size": 9, **style},
            error_y={"type": "data", "symmetric": False, "array": np.nan_to_num(up), "arrayminus": np.nan_to_num(down)},
            customdata=shown[["repeat_count", "ratio"]],
            hovertemplate="N = %{x:,.0f}, E = %{customdata[0]:g}<br>N_eff = %{y:,.0f} (N_eff/N = %{customdata[1]:.3f})<extra></extra>"))
    fig.update_xaxes(**LOG_AXIS, title_text="non-embedding parameters N")
    fig.update_yaxes(**LOG_AXIS, title_text="effective size N_eff (95%)")
    note = f"; {left_out} outside the controls' N range left out" if left_out else ""
    return _finish(fig, "effective_size_vs_size", f"Effective model size on {law.line().split(' over ')[0]}{note}")


def t4_arm_trajectories(s: "Study") -> Optional[go.Figure]:
    """The T4 arm's natural-text loss over training (± one standard error over the test
    sequences), repeated runs beside the same-seed full-data and data-matched controls."""
    loss = s.loss
    arm = s.final[s.final["arm"] == "T4 arm"]
    m = s.metrics[s.metrics["run_id"].isin(arm["run_id"]) & (s.metrics["split"] == loss)].dropna(subset=["loss"])
    if m.empty:
        return None
    fig = go.Figure()
    colors = {("full", 1.0): "black", ("data_matched", 1.0): MATCHED["color"]}
    reps = sorted(arm.loc[arm["control"] == "none", "repeat_count"].unique())
    for k, e in enumerate(reps):
        colors[("none", float(e))] = theme.FRACTION_COLORS[(k + 1) % len(theme.FRACTION_COLORS)]
    for r in arm.sort_values(["control", "repeat_count", "seed"]).itertuples(index=False):
        g = m[m["run_id"] == r.run_id].sort_values("step")
        name = {"full": "full-data control", "data_matched": "data-matched control"}.get(r.control, f"f = {r.repeated_fraction:g}, E = {r.repeat_count:g}")
        fig.add_trace(go.Scatter(
            x=g["step"], y=g["loss"], mode="lines", name=f"{name}, seed {int(r.seed)}",
            line={"color": colors.get((r.control, float(r.repeat_count)), "#777"), "dash": theme.MODEL_DASHES[int(r.seed) % 4]},
            error_y={"type": "data", "array": g["loss_se"].fillna(0).to_numpy(dtype=float), "thickness": 0.8, "width": 0}))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text=theme.two_line(LOSS_LABEL))
    return _finish(fig, "t4_arm_trajectories", f"T4 arm ({design.T4_SIZE}, f = {design.T4_FRACTION:g}): natural-text loss over "
                   "training, ± 1 standard error over the test sequences")


def build_figures(s: "Study") -> dict[str, go.Figure]:
    """Every figure the study's state supports, by name."""
    figs: dict[str, Any] = {}
    if len(s.final):
        figs["loss_vs_repeat_count"] = loss_vs_repeat_count(s)
        figs["peak_vs_size"] = peak_vs_size(s)
    eff = effective_size_vs_size(s)
    if eff is not None:
        figs["effective_size_vs_size"] = eff
        main = s.final[s.final["arm"].isin(["controls", "repeated"]) & s.final["model_preset"].isin(s.complete_sizes)]
        figs["effective_model_size"] = effective_model_size(main, loss=s.loss, size=study.SIZE)
    t4 = t4_arm_trajectories(s)
    if t4 is not None:
        figs["t4_arm_trajectories"] = t4
    return figs
