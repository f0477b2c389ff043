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
                       script=SLIDER_JS, script_args=(f"fig-{heat}",), expect_plots=len(figs))
    assert result.plots == len(figs), result.state
    assert result.rendered == len(figs), f"every figure has its SVG drawn ({result.state})"
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


# ------------------------------------------------------------- other people's checkpoints, end to end

FOREIGN_METRICS = ["induction", "previous_token", "copying_loss", "copying_ov", "ablation_copying_loss"]


@pytest.fixture(scope="module")
def foreign_reports(tmp_path_factory):
    """`repeatlens analyze` then `repeatlens report` on a folder of 12 transformers-built GPT-2
    revisions (no token count: the step axis, and more checkpoints than the slider labels) and
    on a nanoGPT out_dir of three ckpt_*.pt files (with --tokens-per-step: tokens seen)."""
    import torch

    from repeatlens.cli import main
    from tests.model.nanogpt_ref import nanogpt_checkpoint
    from tests.model.tiny_hf import save_tiny

    root = tmp_path_factory.mktemp("foreign")
    for step in range(0, 1200, 100):
        save_tiny(root / "gpt2" / f"step{step}", "gpt2", seed=step)
    (root / "nano").mkdir()
    for it in (250, 500, 750):
        torch.save(nanogpt_checkpoint(seed=it, iter_num=it, compiled=True)[1], root / "nano" / f"ckpt_{it}.pt")
    metrics = [a for m in FOREIGN_METRICS for a in ("-m", m)]
    main(["analyze", str(root / "gpt2"), "-q", *metrics])
    main(["analyze", str(root / "nano"), "-q", "--tokens-per-step", "12288", *metrics])
    for name in ("gpt2", "nano"):
        main(["report", str(root / name)])  # returns: exit 0
    return {name: root / name / "report.html" for name in ("gpt2", "nano")}


def test_reports_of_other_peoples_checkpoints(foreign_reports):
    from repeatlens import load_scores
    from repeatlens.plots.figures import NEEDS_COORDINATES

    for name, path in foreign_reports.items():
        text = path.read_text()
        n_figs = text.count('class="plotly-graph-div"')
        # a trajectory and a heatmap per per-head score, the copying loss' trajectory, the offset-free rest
        assert n_figs == len(FOREIGN_METRICS) + 4, name
        assert "of other people&#x27;s checkpoints (no repetition coordinates f, E)" in text
        skipped = text[text.index('id="skipped"'):]
        assert all(n.replace("_", " ") in skipped for n in NEEDS_COORDINATES) and "repetition coordinates f and E" in skipped
        assert "Probes: probe BOS 0, special ids excluded [0] (from " in text
        table = summary_table(load_scores(path.parent))
        assert table[["f", "E", "params", "seed"]].isna().all().all() and table["max induction"].notna().all()
    gpt2, nano = (foreign_reports[n].read_text() for n in ("gpt2", "nano"))
    assert "plot the <b>training step</b>" in gpt2 and "--tokens-per-step N" in gpt2 and "(from the config: " in gpt2
    assert "Figures over training plot tokens seen." in nano and "no tokenizer.json beside it names a BOS: id 0" in nano
    assert '"prefix":"training step: "' in gpt2 and '"prefix":"tokens seen: "' in nano


# Every checkpoint slider: what its current-value label says and in which colour it is drawn.
SLIDERS_JS = """
const done = arguments[arguments.length - 1];
const out = [];
for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    // plotly.js draws the current value as the one slider label outside the tick labels' group
    const labels = Array.from(gd.querySelectorAll('.slider-container text.slider-label'));
    const cur = labels.find(t => !t.closest('.slider-labels'));
    if (!cur) continue;
    const tick = labels.find(t => t.closest('.slider-labels'));
    const style = getComputedStyle(cur);
    out.push({text: cur.textContent, fill: style.fill, alpha: style.fillOpacity, opacity: style.opacity,
              tick: tick ? getComputedStyle(tick).fillOpacity : null, steps: gd.layout.sliders[0].steps.length});
}
done(out);
"""


@pytest.mark.parametrize("name, current, ticks", [("gpt2", "training step: 1,100", "0"), ("nano", "tokens seen: 9.22M", "1")])
def test_foreign_reports_render_with_readable_sliders(foreign_reports, chromium, chromedriver, name, current, ticks):
    """Every figure draws in headless Chromium without a console error, and every slider
    names the checkpoint shown in the text colour, also where its 12 tick labels are hidden."""
    from tests.plots.plot_browser import open_page

    path = foreign_reports[name]
    n_figs = path.read_text().count('class="plotly-graph-div"')
    result = open_page(path, chromium=chromium, chromedriver=chromedriver, script=SLIDERS_JS, expect_plots=n_figs)
    assert result.plots == result.rendered == n_figs, result.state
    assert result.errors == [], f"console errors: {result.errors}"
    sliders = result.script_result
    assert len(sliders) == 4  # the heatmaps of the four per-head scores
    for s in sliders:
        assert s["text"] == current and s["fill"] == "rgb(34, 34, 34)" and s["alpha"] == s["opacity"] == "1", s
        assert s["tick"] == ticks and s["steps"] == (12 if name == "gpt2" else 3)  # tick labels hidden past 10


def test_a_failed_write_leaves_the_previous_report_whole(sweep_small, small_figures, tmp_path, monkeypatch):
    import errno

    import repeatlens.io as io_mod
    from repeatlens.errors import DiskFullError

    (tmp_path / "report.html").write_text("the previous report")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_mod.os, "fsync", full)
    with pytest.raises(DiskFullError, match="report.html: the disk is full"):
        write_report(tmp_path, sweep_small, figures=small_figures)
    assert (tmp_path / "report.html").read_text() == "the previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
