"""Figure contents: the right runs, values, colours, facets and slider steps."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.colors as pcolors
import plotly.io as pio
import pytest

from repeatlens import plots
from repeatlens.plots import theme
from repeatlens.results.reduce import final_values
from tests.plots.plot_factories import INDUCTION_HEAD, make_scores

RUN = "tiny-f0.1-E100-s0"


def _final(scores: pd.DataFrame, metric: str) -> pd.Series:
    return final_values(plots.figures.check_scores(scores), metric).set_index("run_id")["value"]


def _traces(fig, **match):
    return [t for t in fig.data if all(getattr(t, k) == v for k, v in match.items())]


def _is_control_style(trace) -> bool:
    return trace.line.color == "black" and trace.line.dash == "dash"


# ----------------------------------------------------------------------------- theme


def test_template_registered_and_used(one_size):
    assert theme.TEMPLATE_NAME in pio.templates
    fig = plots.loss_vs_repeat_count(one_size)
    assert fig.layout.template.layout.font.family == theme.FONT_FAMILY


def test_repeat_count_colour_follows_log_scale():
    limits = theme.log_range([10, 100, 1000])
    assert limits == (1.0, 3.0)
    start, mid, end = (pcolors.sample_colorscale(theme.REPEAT_COUNT_COLORSCALE, [p])[0] for p in (0, 0.5, 1))
    assert theme.repeat_count_color(10, limits) == start
    assert theme.repeat_count_color(100, limits) == mid  # log-midpoint, not linear midpoint (505)
    assert theme.repeat_count_color(1000, limits) == end
    ticks, labels = theme.repeat_count_ticks([10, 100, 1000], limits)
    assert ticks == [1.0, 2.0, 3.0] and labels == ["10", "100", "1000"]


def test_axis_label_helpers():
    assert theme.metric_label("test_loss") == "test loss (nats/token)"
    assert theme.two_line("test loss (nats/token)", "max over heads") == "test loss<br>(nats/token; max over heads)"
    assert theme.format_fraction(0.001) == "0.1%" and theme.format_fraction(0) == "0 (control)"
    assert theme.format_count(3_276_800) == "3.28M"


# ----------------------------------------------------------------------------- 1. heatmap


def test_head_heatmap_slider_has_one_step_per_checkpoint(one_size):
    fig = plots.head_heatmap(one_size, "induction", run_id=RUN)
    checkpoints = sorted(one_size.loc[one_size["run_id"] == RUN, "step"].unique())
    steps = fig.layout.sliders[0].steps
    assert len(steps) == len(fig.frames) == len(checkpoints) == 8
    assert [f.name for f in fig.frames] == [str(s) for s in checkpoints]
    assert fig.layout.sliders[0].active == len(checkpoints) - 1
    assert list(steps[0].args[0]) == [fig.frames[0].name] and steps[0].method == "animate"


def test_head_heatmap_values_and_hover(one_size):
    fig = plots.head_heatmap(one_size, "induction", run_id=RUN)
    rows = one_size[(one_size["run_id"] == RUN) & (one_size["metric"] == "induction")]
    last = rows[rows["step"] == rows["step"].max()]
    z = np.asarray(fig.data[0].z)
    assert z.shape == (2, 4)  # layers × heads
    layer, head = INDUCTION_HEAD
    expected = last[(last["layer"] == layer) & (last["head"] == head)]["value"].item()
    assert z[layer, head] == pytest.approx(expected)
    assert np.unravel_index(np.argmax(z), z.shape) == INDUCTION_HEAD
    first = rows[rows["step"] == rows["step"].min()]
    z0 = np.asarray(fig.frames[0].data[0].z)
    assert z0[layer, head] == pytest.approx(first[(first["layer"] == layer) & (first["head"] == head)]["value"].item())
    hover = fig.data[0].hovertemplate
    assert RUN in hover and "layer %{y}" in hover and "head %{x}" in hover
    assert (fig.data[0].zmin, fig.data[0].zmax) == (0.0, 1.0)  # attention score: fixed range
    assert fig.layout.yaxis.autorange == "reversed" and fig.layout.xaxis.title.text == "head"


def test_head_heatmap_defaults_to_most_damaged_run_and_diverges_for_signed_scores(sweep):
    fig = plots.head_heatmap(sweep, "copying_ov")
    # the synthetic damage peaks near E = 100 at f = 10 %; the seed-1 noise makes it worst
    assert "f0.1-E100" in fig.layout.title.text
    assert fig.data[0].zmin == -fig.data[0].zmax  # copying_ov has negative values
    assert fig.data[0].colorscale[0][1] != fig.data[0].colorscale[-1][1]


def test_head_heatmap_rejects_model_level_metric_and_unknown_run(one_size):
    with pytest.raises(plots.UnsupportedFigureError, match="model-level"):
        plots.head_heatmap(one_size, "test_loss")
    with pytest.raises(plots.PlotDataError, match="no-such-run"):
        plots.head_heatmap(one_size, "induction", run_id="no-such-run")


# ----------------------------------------------------------------------------- 2. trajectories


def test_trajectories_facets_runs_and_max_over_heads(one_size):
    fig = plots.score_trajectories(one_size, "induction")
    lines = [t for t in fig.data if t.mode == "lines"]
    # two facets (f = 1 %, 10 %), each: the control + 3 repeat counts
    assert [a.text for a in fig.layout.annotations][:2] == ["f = 1%", "f = 10%"]
    by_axis = {}
    for t in lines:
        by_axis.setdefault(t.xaxis, []).append(t)
    assert sorted(by_axis) == ["x", "x2"]
    assert all(len(v) == 4 for v in by_axis.values())
    right = {t.name for t in by_axis["x2"]}
    assert right == {"control (f = 0)", "tiny-f0.1-E10-s0", "tiny-f0.1-E100-s0", "tiny-f0.1-E1000-s0"}
    run = next(t for t in lines if t.name == RUN)
    rows = one_size[(one_size["run_id"] == RUN) & (one_size["metric"] == "induction") & (one_size["tokens_seen"] > 0)]
    expected = rows.groupby("tokens_seen")["value"].max()
    np.testing.assert_allclose(run.x, expected.index.to_numpy(float))
    np.testing.assert_allclose(run.y, expected.to_numpy())
    assert min(run.x) > 0  # step 0 dropped on the log axis
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log"
    assert "max over heads" in fig.layout.yaxis.title.text and "tokens seen" == fig.layout.xaxis.title.text
    # hover names the run and the head that attained the max
    assert "layer %{customdata[4]}, head %{customdata[5]}" in run.hovertemplate
    assert tuple(run.customdata[-1][4:]) == tuple(str(v) for v in INDUCTION_HEAD)


def test_trajectories_colour_by_log_repeat_count_and_dashed_black_control(one_size):
    fig = plots.score_trajectories(one_size, "test_loss")
    named = {t.name: t for t in fig.data if t.mode == "lines" and t.xaxis == "x2"}
    scale = theme.REPEAT_COUNT_COLORSCALE
    ends = pcolors.sample_colorscale(scale, [0.0, 0.5, 1.0])
    assert [named[f"tiny-f0.1-E{e}-s0"].line.color for e in (10, 100, 1000)] == ends
    control = named["control (f = 0)"]
    assert _is_control_style(control)
    assert not any(_is_control_style(t) for n, t in named.items() if n != "control (f = 0)")
    legend = [t for t in fig.data if t.showlegend]
    assert [t.name for t in legend] == ["control (f = 0)"]
    bar = next(t for t in fig.data if t.marker.showscale)
    assert list(bar.marker.colorbar.ticktext) == ["10", "100", "1000"]
    assert (bar.marker.cmin, bar.marker.cmax) == (1.0, 3.0)
    assert "layer" not in named[RUN].hovertemplate  # model-level metric: no head in hover


def test_trajectories_rows_per_model_size_and_single_head(sweep):
    fig = plots.score_trajectories(sweep, "induction", layer=0, head=3)
    assert {t.yaxis for t in fig.data if t.mode == "lines"} == {"y", "y2", "y3", "y4"}
    assert "layer 0, head 3" in fig.layout.yaxis.title.text
    rows = [a.text for a in fig.layout.annotations if a.textangle == 90]
    assert rows == ["tiny (100k params)", "small (800k params)"]
    run = next(t for t in fig.data if t.name == "small-f0.01-E10-s1")
    sub = sweep[(sweep["run_id"] == "small-f0.01-E10-s1") & (sweep["metric"] == "induction")
                & (sweep["layer"] == 0) & (sweep["head"] == 3) & (sweep["tokens_seen"] > 0)]
    np.testing.assert_allclose(run.y, sub.sort_values("step")["value"])


# ----------------------------------------------------------------------------- 3. double descent


def test_loss_vs_repeat_count_means_spread_and_control(sweep):
    fig = plots.loss_vs_repeat_count(sweep)
    final = final_values(plots.figures.check_scores(sweep), "test_loss")
    tiny = final[final["model_preset"] == "tiny"]
    stats = tiny[tiny["repeated_fraction"] == 0.1].groupby("repeat_count")["value"].agg(["mean", "std"])
    trace = next(t for t in fig.data if t.name == "f = 10%" and t.xaxis == "x")
    np.testing.assert_allclose(trace.x, [10, 100, 1000])
    np.testing.assert_allclose(trace.y, stats["mean"])
    np.testing.assert_allclose(trace.error_y.array, stats["std"])
    assert trace.y[1] > trace.y[0] and trace.y[1] > trace.y[2]  # the double-descent bump at E = 100
    control = next(t for t in fig.data if t.name == "control (f = 0)" and t.xaxis == "x")
    assert _is_control_style(control)
    ctrl = tiny[tiny["repeated_fraction"] == 0]["value"].mean()
    assert list(control.y) == pytest.approx([ctrl, ctrl]) and list(control.x) == [10, 1000]
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.title.text == "repeat count E"
    assert list(fig.layout.xaxis.tickvals) == [10, 100, 1000] and list(fig.layout.xaxis.ticktext) == ["10", "100", "1k"]
    assert "nats/token" in fig.layout.yaxis.title.text
    assert [a.text for a in fig.layout.annotations] == ["tiny (100k params)", "small (800k params)"]


def test_loss_vs_repeat_count_accepts_final_table(sweep):
    final = final_values(plots.figures.check_scores(sweep), "test_loss").rename(columns={"value": "test_loss"})
    a, b = plots.loss_vs_repeat_count(final), plots.loss_vs_repeat_count(sweep)
    assert [list(t.y) for t in a.data] == [list(t.y) for t in b.data]


# ----------------------------------------------------------------------------- 4. phase diagram


@pytest.mark.parametrize(("quantity", "metric", "sign"), [
    ("test_loss", "test_loss", 1), ("induction", "induction", -1), ("copying", "copying_loss", 1)])
def test_phase_diagram_relative_change_vs_control(sweep, quantity, metric, sign):
    fig = plots.phase_diagram(sweep, quantity)
    final = _final(sweep, metric)
    runs = sweep.drop_duplicates("run_id").set_index("run_id")
    small = runs[runs["model_preset"] == "small"]
    control = final[small.index[small["repeated_fraction"] == 0]].mean()
    cell = small.index[(small["repeated_fraction"] == 0.1) & (small["repeat_count"] == 1000)]
    expected = (sign * (final[cell] - control) / abs(control)).mean()
    heat = fig.data[1]  # second panel: small
    assert list(heat.x) == ["10", "100", "1000"] and list(heat.y) == ["1%", "10%"]
    assert heat.z[1][2] == pytest.approx(expected)
    assert expected > 0  # repetition damages every quantity in the synthetic sweep
    assert fig.layout.coloraxis.cmin == -fig.layout.coloraxis.cmax


def test_phase_diagram_rejects_unknown_quantity(sweep):
    with pytest.raises(plots.PlotDataError, match="quantity"):
        plots.phase_diagram(sweep, "perplexity")


# ----------------------------------------------------------------------------- 5. displacement


def test_displacement_stacked_shared_log_x(sweep, sweep_metrics):
    fig = plots.displacement(sweep, sweep_metrics, RUN)
    assert [fig.layout[f"yaxis{'' if i == 1 else i}"].title.text.split("<br>")[0] for i in range(1, 5)] == [
        "repeated-subset loss", "test loss", "induction score", "copying loss"]
    assert all(fig.layout[f"xaxis{'' if i == 1 else i}"].type == "log" for i in range(1, 5))
    assert fig.layout.xaxis4.title.text == "tokens seen" and fig.layout.xaxis.matches == "x4"
    test = next(t for t in fig.data if t.name == RUN and t.yaxis == "y2")
    rows = sweep_metrics[(sweep_metrics["run_id"] == RUN) & (sweep_metrics["split"] == "test")]
    np.testing.assert_allclose(test.y, rows.sort_values("step")["loss"])  # from the metrics table
    control = [t for t in fig.data if t.name == "control (f = 0)"]
    assert len(control) == 4 and all(_is_control_style(t) for t in control)
    assert {t.customdata[0][0] for t in control} == {"tiny-f0-E1-s0"}  # same size, same seed
    best = rows.loc[rows["loss"].idxmin(), "tokens_seen"]
    assert [s.x0 for s in fig.layout.shapes] == [best] * 4
    assert [t.name for t in fig.data if t.showlegend is not False] == ["control (f = 0)", RUN]


def test_displacement_legend_names_the_control_when_it_has_no_repeated_loss(sweep, sweep_metrics):
    """A real control has no repeated subset, so it has no trace in the first panel."""
    control_runs = set(sweep.loc[sweep["repeated_fraction"] == 0, "run_id"])
    no_rep = sweep_metrics[~(sweep_metrics["run_id"].isin(control_runs) & (sweep_metrics["split"] == "repeated"))]
    no_rep_scores = sweep[~(sweep["run_id"].isin(control_runs) & (sweep["metric"] == "repeated_loss"))]
    fig = plots.displacement(no_rep_scores, no_rep, RUN)
    assert not [t for t in fig.data if t.name == "control (f = 0)" and t.yaxis == "y"]
    assert sorted(t.name for t in fig.data if t.showlegend is not False) == sorted(["control (f = 0)", RUN])


def test_displacement_falls_back_to_scores(one_size):
    fig = plots.displacement(one_size, None, RUN)
    test = next(t for t in fig.data if t.name == RUN and t.yaxis == "y2")
    rows = one_size[(one_size["run_id"] == RUN) & (one_size["metric"] == "test_loss") & (one_size["tokens_seen"] > 0)]
    np.testing.assert_allclose(test.y, rows.sort_values("step")["value"])


# ----------------------------------------------------------------------------- 6. damage


def test_disproportionate_damage_points_and_identity_line(sweep):
    fig = plots.disproportionate_damage(sweep)
    ident = [t for t in fig.data if t.name == "y = x (proportional)"]
    assert len(ident) == 2 and all(list(t.x) == list(t.y) for t in ident)
    pts = [t for t in fig.data if t.mode == "markers" and t.x[0] is not None and t.xaxis == "x"]
    n_runs = sweep.loc[sweep["repeated_fraction"] > 0, "run_id"].nunique()
    assert sum(len(t.x) for t in pts) == n_runs
    run = "small-f0.1-E100-s1"
    test = _final(sweep, "test_loss")
    ind = _final(sweep, "induction")
    ctrl = ["small-f0-E1-s0", "small-f0-E1-s1"]
    rise = (test[run] - test[ctrl].mean()) / test[ctrl].mean()
    drop = (ind[ctrl].mean() - ind[run]) / ind[ctrl].mean()
    trace = next(t for t in pts if run in [c[0] for c in t.customdata])
    i = [c[0] for c in trace.customdata].index(run)
    assert (trace.x[i], trace.y[i]) == pytest.approx((rise, drop))
    assert drop > rise  # the disproportionate damage
    limits = theme.log_range([10, 100, 1000])
    assert trace.marker.color[i] == theme.repeat_count_color(100, limits)


# ----------------------------------------------------------------------------- 7. N_eff


FOUR_SIZES = (("a", 100_000), ("b", 200_000), ("c", 400_000), ("d", 800_000))


def test_effective_model_size_inverts_the_controls_law() -> None:
    """Four sizes whose controls follow 5 (N / 1e5)^-0.1 (the factories' base loss): the law with an
    irreducible term fits it, and a point's N_eff / N is that law's inverse at its mean loss."""
    from repeatlens.results.fits import fit_control_law

    scores = make_scores(models=FOUR_SIZES, metrics=("test_loss",), steps=(0, 1600, 3200))
    fig = plots.effective_model_size(scores)
    fit = fig.layout.meta["repeatlens"]["fit"]
    test = _final(scores, "test_loss")
    runs = scores.drop_duplicates("run_id").set_index("run_id")
    ctrl = runs.index[runs["repeated_fraction"] == 0]
    law = fit_control_law(runs.loc[ctrl, "n_params"].to_numpy(float), test[ctrl].to_numpy())
    assert (fit["loss_inf"], fit["exponent"]) == pytest.approx((law.loss_inf, law.exponent))
    line = next(t for t in fig.data if t.name == "f = 10% · N = 400k")
    members = runs.index[(runs["n_params"] == 400_000) & (runs["repeated_fraction"] == 0.1) & (runs["repeat_count"] == 10)]
    n_eff = 10 ** (law.log10_n_c - math.log10(test[members].mean() - law.loss_inf) / law.exponent)
    k = list(line.x).index(10)
    assert line.y[k] == pytest.approx(n_eff / 400_000, rel=1e-6)
    assert 0 < line.y[k] < 1 and line.error_y.array[k] > 0  # a degraded run is worth fewer parameters, with its interval
    # E = 100 at f = 10% loses more than the smallest control has: a bound, not a point
    assert 100 not in list(line.x) and "outside the controls' N range left out" in fig.layout.title.text
    # the legend names both codes: colour = fraction, marker and dash = model size (one entry per size drawn)
    legend = {t.name: t for t in fig.data if t.showlegend is not False and len(t.x) == 1 and t.x[0] is None}
    drawn = {t.name.split(" · ")[1]: (t.marker.symbol, t.line.dash) for t in fig.data if " · N = " in (t.name or "")}
    assert {k for k in legend if k.startswith("N = ")} == set(drawn) and len(set(drawn.values())) == len(drawn) >= 2
    for n, style in drawn.items():
        assert (legend[n].marker.symbol, legend[n].line.dash) == style


def test_effective_model_size_needs_four_control_sizes(sweep, one_size):
    with pytest.raises(plots.UnsupportedFigureError, match=r"controls at 2 model sizes; the law L = L_inf \+ \(N_c/N\)\^a needs at least 4"):
        plots.effective_model_size(sweep)
    with pytest.raises(plots.UnsupportedFigureError, match="controls at 1 model size"):
        plots.effective_model_size(one_size)
    assert "effective_model_size" not in plots.available_figures(make_scores(
        models=(("tiny", 100_000),), seeds=(0,), metrics=("test_loss",)))


# ----------------------------------------------------------------------------- all


def test_available_figures_lists_what_the_data_supports(small_figures):
    figs = small_figures
    assert list(figs) == [
        "loss_vs_repeat_count", "phase_diagram_test_loss", "phase_diagram_induction", "phase_diagram_copying",
        "disproportionate_damage", "displacement",
        "score_trajectories_test_loss", "score_trajectories_repeated_loss", "score_trajectories_copying_loss",
        "score_trajectories_induction", "head_heatmap_induction"]
    assert all(f.layout.meta["repeatlens"]["figure"] == name for name, f in figs.items())
    only_loss = plots.available_figures(make_scores(fractions=(0.0,), metrics=("test_loss",)))
    assert list(only_loss) == ["score_trajectories_test_loss"]  # controls only: nothing to compare


def test_missing_columns_are_named():
    with pytest.raises(plots.PlotDataError, match="tokens_seen"):
        plots.score_trajectories(make_scores(metrics=("test_loss",)).drop(columns="tokens_seen"), "test_loss")


def test_foreign_table_without_sweep_columns():
    """A foreign checkpoint folder's scores have no f, E, size or seed: still plotted."""
    scores = make_scores(fractions=(0.1,), repeat_counts=(10,), models=(("tiny", 100_000),), seeds=(0,),
                         metrics=("test_loss", "induction"))
    foreign = scores.drop(columns=["repeated_fraction", "repeat_count", "total_tokens", "model_preset",
                                   "n_params", "seed"]).assign(run_id="pythia-70m")
    figs, skipped = plots.build_figures(foreign)
    assert list(figs) == ["score_trajectories_test_loss", "score_trajectories_induction", "head_heatmap_induction"]
    line = next(t for t in figs["score_trajectories_test_loss"].data if t.name == "pythia-70m")
    assert line.line.color == theme.UNKNOWN_COLOR and line.customdata[0][1] == "?"
    assert "f = " not in line.hovertemplate  # no made-up f, E or seed in the hover text
    assert figs["score_trajectories_test_loss"].layout.annotations == ()  # one panel, no "f = ?" facet title
    assert "f = " not in figs["head_heatmap_induction"].layout.title.text
    # the figures that compare f and E are named, with the reason, not silently dropped
    assert set(plots.figures.NEEDS_COORDINATES) <= set(skipped)
    assert all("repetition coordinates f and E" in skipped[n] for n in plots.figures.NEEDS_COORDINATES)
    assert "score them with -m ablation_test_loss" in skipped["head_attribution"]
    # beside a sweep, the foreign run gets its own facet
    both = pd.concat([scores, foreign], ignore_index=True)
    titles = [a.text for a in plots.score_trajectories(both, "test_loss").layout.annotations]
    assert titles[:2] == ["f = 10%", "f, E unknown"]  # (then the size rows: the foreign run in its own)


def _heatmap_slider(n_checkpoints: int, **attrs):
    steps = tuple(100 * (i + 1) for i in range(n_checkpoints))
    scores = make_scores(fractions=(0.1,), repeat_counts=(10,), models=(("tiny", 100_000),), seeds=(0,), metrics=("induction",), steps=steps)
    scores = scores[scores["repeated_fraction"] > 0]
    scores.attrs.update(attrs)
    fig = plots.head_heatmap(scores, "induction")
    return scores, fig, fig.layout.sliders[0]


@pytest.mark.parametrize("n", [3, 10, 11, 40])
def test_the_slider_always_names_the_checkpoint_shown(n):
    """The current checkpoint's label has its own opaque colour: with more checkpoints than
    SLIDER_TICK_LABELS_MAX the tick labels turn transparent, and the current value used to
    inherit that colour (so it was invisible in every default report)."""
    scores, fig, slider = _heatmap_slider(n)
    cur = slider.currentvalue
    assert cur.visible is not False and cur.prefix == "tokens seen: "
    assert cur.font.color == theme.TEXT_COLOR and "rgba" not in cur.font.color
    tokens = scores.drop_duplicates("step").sort_values("step")["tokens_seen"]
    assert [st.label for st in slider.steps] == [theme.format_count(int(t)) for t in tokens]  # what it shows
    assert slider.active == n - 1
    hidden = n > plots.figures.SLIDER_TICK_LABELS_MAX
    assert (slider.font.color == "rgba(0,0,0,0)") == hidden and cur.font.color != slider.font.color


def test_runs_without_token_counts_are_plotted_against_the_step():
    scores, _, _ = _heatmap_slider(4)
    run = scores["run_id"].iloc[0]
    # the table's metadata says this run's tokens_seen holds the step
    step_only = scores.copy()
    step_only.attrs["runs"] = {run: {"axis": {"x": "step", "tokens_from": "unknown"}}}
    heat = plots.head_heatmap(step_only, "induction")
    assert heat.layout.sliders[0].currentvalue.prefix == "training step: "
    assert [st.label for st in heat.layout.sliders[0].steps] == ["100", "200", "300", "400"]
    assert "tokens" not in heat.data[0].hovertemplate
    traj = plots.score_trajectories(step_only, "induction")
    assert traj.layout.xaxis.title.text == theme.STEP_LABEL
    np.testing.assert_array_equal(next(t for t in traj.data if t.name == run).x, [100, 200, 300, 400])
    assert plots.training_axis(step_only).column == "step"
    # recorded as tokens: tokens; not recorded, tokens_seen == step everywhere: the step
    step_only.attrs["runs"] = {run: {"axis": {"x": "tokens_seen", "tokens_from": "--tokens-per-step 512"}}}
    assert plots.training_axis(step_only).column == "tokens_seen"
    bare = scores.assign(tokens_seen=scores["step"])
    bare.attrs = {}
    assert plots.training_axis(bare).column == "step" and plots.training_axis(scores.copy()).column == "tokens_seen"
    # one step-only run among others: the whole figure goes to the step
    mixed = pd.concat([scores, bare.assign(run_id="other")], ignore_index=True)
    assert plots.training_axis(mixed).column == "step" and plots.training_axis(mixed, [run]).column == "tokens_seen"


# ------------------------------------------------------------------------------------ probes


def _two_probes(scores):
    """``scores`` with its probe-reading rows under the synthetic probe, plus a uniform probe
    that sees nothing (every attention score 0.01)."""
    reads = scores["metric"].isin(["induction", "previous_token", "duplicate_token", "prefix_matching", "copying_loss", "copying_gain"])
    base = scores.assign(probe="", probe_len=pd.NA, probe_batch=pd.NA, probe_seed=pd.NA, offset=pd.NA)
    syn = base[reads].assign(probe="synthetic", probe_len=30, probe_batch=16, probe_seed=0)
    uni = syn.assign(probe="uniform", value=0.01)
    out = pd.concat([base[~reads], syn, uni], ignore_index=True)
    return out.astype({"probe_len": "Int64", "probe_batch": "Int64", "probe_seed": "Int64", "offset": "Int64"})


def test_figures_read_one_probe_and_say_which(sweep_small) -> None:
    table = _two_probes(sweep_small)
    fig = plots.head_heatmap(table, "induction")
    assert "synthetic probe (L=30)" in fig.layout.title.text
    assert np.nanmax(np.asarray(fig.data[0].z, dtype=float)) > 0.3  # the synthetic rows (uniform reads 0.01 everywhere)
    uni = plots.head_heatmap(table, "induction", probe="uniform")
    assert "uniform probe" in uni.layout.title.text and np.nanmax(np.asarray(uni.data[0].z, dtype=float)) == pytest.approx(0.01)
    assert "probe" not in plots.loss_vs_repeat_count(table).layout.title.text  # test loss reads no probe
    figs = plots.available_figures(table, probe="uniform")
    assert "uniform probe" in figs["phase_diagram_induction"].layout.title.text
    from repeatlens.errors import ConfigError

    with pytest.raises(ConfigError, match="'text': not in this table; it holds synthetic:L30:B16:s0, uniform:L30:B16:s0"):
        plots.available_figures(table, probe="text")


def test_offset_profile_figure_shows_each_heads_offsets_over_checkpoints() -> None:
    rows = []
    for step in (0, 100, 200):
        for layer, head, peak in ((0, 0, 7), (1, 0, 23)):  # induction shifted by 6 at L = 30
            for o in range(31):
                v = (0.9 if o == peak else 0.1 / 30) if step else 1 / 31
                rows.append({"run_id": "r", "step": step, "tokens_seen": step * 64, "metric": "offset_profile", "layer": layer,
                             "head": head, "offset": o, "value": v, "probe": "synthetic", "probe_len": 30, "probe_batch": 16,
                             "probe_seed": 0, "repeated_fraction": 0.0, "repeat_count": 1, "n_params": 10, "seed": 0, "model_preset": "m"})
    table = pd.DataFrame(rows).astype({"layer": "Int64", "head": "Int64", "offset": "Int64"})
    fig = plots.offset_profile(table, "r")
    assert len(fig.frames) == 3 and list(fig.data[0].y) == ["L0.H0", "L1.H0"] and list(fig.data[0].x) == list(range(31))
    z = np.asarray(fig.data[0].z, dtype=float)  # the last checkpoint
    assert z[0].argmax() == 7 and z[1].argmax() == 23
    assert "L = 30" in fig.layout.title.text and "synthetic probe" in fig.layout.title.text
    with pytest.raises(plots.UnsupportedFigureError, match="offset_profile"):
        plots.head_heatmap(table, "offset_profile")


def test_loss_vs_repeat_count_by_size_and_effective_size_on_a_final_table(sweep):
    """A study's final table: one curve per size of the chosen loss; N_eff on the non-embedding count."""
    from repeatlens.study import final_table

    final = final_table(sweep).assign(n_params_nonembedding=lambda t: t.n_params // 2, test_text=lambda t: t.test_loss + 1.0)
    fig = plots.loss_vs_repeat_count(final, loss="test_text", by="size")
    assert fig.layout.meta["repeatlens"]["figure"] == "loss_vs_repeat_count_by_size" and "natural-text" in fig.layout.title.text
    curves = [t for t in fig.data if "control" not in t.name]
    assert [t.name for t in curves] == ["tiny (100k params)", "small (800k params)"]
    at_100 = final[(final.repeated_fraction == 0.1) & (final.repeat_count == 100) & (final.model_preset == "small")].test_text.mean()
    assert curves[1].y[list(curves[1].x).index(100)] == pytest.approx(at_100)
    with pytest.raises(plots.UnsupportedFigureError, match="controls at 2 model sizes"):  # N_eff needs 4 sizes
        plots.effective_model_size(final, loss="test_text", size="n_params_nonembedding")


def test_a_data_matched_control_is_drawn_as_itself_not_as_the_control(one_size):
    """f = 0 on fewer tokens (mixture.data_matched) is grey and dotted, named for its run; the
    black dashed "control (f = 0)" stays the full-data control alone."""
    table = one_size.assign(control=np.where(one_size["repeated_fraction"] == 0, "full", "none"),
                            unique_tokens=((1 - one_size["repeated_fraction"]) * 1_000_000).round())
    control_rows = table[table["repeated_fraction"] == 0]
    unique = table.loc[table["repeated_fraction"] == 0.1, "unique_tokens"].iloc[0]  # what a run at f = 0.1 trains on
    dm = control_rows.assign(run_id="tiny-dm0.1-s0", control="data_matched", unique_tokens=unique, value=control_rows["value"] + 0.1)
    fig = plots.score_trajectories(pd.concat([table, dm], ignore_index=True), "test_loss")
    named = {t.name: t for t in fig.data if t.mode == "lines" and t.xaxis == "x2"}
    assert _is_control_style(named["control (f = 0)"])
    matched = named["data-matched control (tiny-dm0.1-s0)"]
    assert (matched.line.color, matched.line.dash) == (theme.DATA_MATCHED_LINE["color"], "dot")
    assert sum(_is_control_style(t) for t in named.values()) == 1
