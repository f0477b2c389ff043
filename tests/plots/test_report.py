"""The HTML report: self-contained, complete, and rendered by a real headless Chromium."""

from __future__ import annotations

import re

import numpy as np
import pytest

from repeatlens.report import summary_table, write_report


@pytest.fixture(scope="module")
def report(sweep_small, small_figures, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    return write_report(folder, sweep_small, figures=small_figures), small_figures


def test_summary_table_one_row_per_run(sweep_small):
    table = summary_table(sweep_small)
    assert len(table) == sweep_small["run_id"].nunique() == 14
    assert list(table.columns) == ["run_id", "f", "E", "model", "params", "seed", "final test loss",
                                   "final repeated loss", "max induction", "max shifted induction", "copying loss"]
    row = table.set_index("run_id").loc["small-f0.1-E100-s0"]
    runs = sweep_small[(sweep_small["run_id"] == "small-f0.1-E100-s0")]
    last = runs[runs["step"] == runs["step"].max()]
    assert row["final test loss"] == pytest.approx(last[last["metric"] == "test_loss"]["value"].item())
    assert row["max induction"] == pytest.approx(last[last["metric"] == "induction"]["value"].max())
    assert (row["f"], row["E"], row["model"], row["seed"]) == (0.1, 100, "small", 0)


def test_report_is_self_contained(report, sweep_small):
    path, figs = report
    assert path.name == "report.html" and path.parent.name.startswith("sweep")
    text = path.read_text()
    assert text.count("plotly.js v") == 1  # plotly.js embedded exactly once
    assert not re.search(r'<script[^>]+src=', text)  # nothing fetched: no CDN, no MathJax
    assert text.count('class="plotly-graph-div"') == len(figs) == 11  # no N_eff figure: the two sizes cannot fit its law
    for name in figs:
        assert name.replace("_", " ") in text
    assert text.count("<tr") == 1 + sweep_small["run_id"].nunique()


# Move the head heatmap's slider to the first checkpoint, as its first step does.
SLIDER_JS = """
const done = arguments[arguments.length - 1];
const gd = document.getElementById(arguments[0]);
const step = gd.layout.sliders[0].steps[0];
const grid = () => gd.calcdata[0][0].z.map(r => Array.from(r));  // as drawn
const before = grid();
Plotly.animate(gd, step.args[0], step.args[1]).then(() => done({
    steps: gd.layout.sliders[0].steps.length, before: before,
    after: grid(), active: gd.layout.sliders[0].active,
    svg_cells: gd.querySelectorAll('.heatmaplayer image').length}));
"""


def test_report_renders_in_headless_chromium(report, chromium, chromedriver, tmp_path):
    from tests.plots.plot_browser import open_page

    path, figs = report
    shot = tmp_path / "report.png"
    heat = list(figs).index("head_heatmap_induction")
    result = open_page(path, chromium=chromium, chromedriver=chromedriver, screenshot=shot, clip_height=4000,
                       script=SLIDER_JS, script_args=(f"fig-{heat}",))
    assert result.plots == len(figs)
    assert result.rendered == len(figs), "every figure has its SVG drawn"
    assert result.errors == [], f"console errors: {result.errors}"
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    # the checkpoint slider works in the browser: the heatmap shows the first frame's values
    slider = result.script_result
    fig = figs["head_heatmap_induction"]
    assert slider["steps"] == len(fig.frames) == 5
    np.testing.assert_allclose(slider["before"], np.asarray(fig.data[0].z, dtype=float))
    np.testing.assert_allclose(slider["after"], np.asarray(fig.frames[0].data[0].z, dtype=float))
    assert slider["after"] != slider["before"] and slider["svg_cells"] == 1
