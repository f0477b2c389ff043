"""Export: offline HTML everywhere; PNG/PDF/SVG through kaleido + a real Chromium."""

from __future__ import annotations

import re
import struct
import time
import zlib
from pathlib import Path

import pytest

from repeatlens import plots
from repeatlens.plots import export
from tests.plots.plot_factories import make_scores


@pytest.fixture(scope="module")
def figs() -> dict:
    scores = make_scores(models=(("tiny", 100_000),), seeds=(0, 1), metrics=("test_loss", "induction"))
    return {
        "loss_vs_repeat_count": plots.loss_vs_repeat_count(scores),
        "trajectories/induction": plots.score_trajectories(scores, "induction"),
        "head_heatmap_induction": plots.head_heatmap(scores, "induction"),
    }


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _pdf_content(data: bytes) -> bytes:
    """All decompressible streams of a PDF, concatenated."""
    out = []
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            out.append(zlib.decompress(m.group(1)))
        except zlib.error:
            out.append(m.group(1))
    return b"\n".join(out)


# ----------------------------------------------------------------------------- everywhere


def test_html_is_offline_with_plotlyjs_written_once(figs, tmp_path):
    written = plots.write_figures(figs, tmp_path, formats=("html",))
    assert sorted(p.name for ps in written.values() for p in ps) == [
        "head_heatmap_induction.html", "loss_vs_repeat_count.html", "trajectories_induction.html"]
    assert (tmp_path / "plotly.min.js").stat().st_size > 1_000_000  # one copy beside the files
    for paths in written.values():
        text = paths[0].read_text()
        assert re.search(r'<script[^>]* src="plotly.min.js"', text)
        assert not re.search(r'<script[^>]+src="https?:', text)  # no CDN
        assert "cdn" not in text.lower()
    embedded = plots.write_figures({"x": figs["loss_vs_repeat_count"]}, tmp_path / "emb", formats=("html",),
                                   include_plotlyjs=True)
    text = embedded["x"][0].read_text()
    assert len(text) > 3_000_000 and not re.search(r'<script[^>]+src=', text)


def test_sized_copy_for_paper_and_slides(figs):
    heat = figs["head_heatmap_induction"]
    col = plots.sized(heat, "column")
    assert (col.layout.width, col.layout.height) == (340, 280)
    assert not col.layout.sliders and heat.layout.sliders  # the original keeps its slider
    assert any(a.text == "tokens seen: 3.28M" for a in col.layout.annotations)
    assert col.layout.title.text is None and col.layout.font.size == 10
    slides = plots.sized(figs["trajectories/induction"], "slides")
    assert (slides.layout.width, slides.layout.height, slides.layout.font.size) == (1280, 720, 20)
    assert slides.layout.title.text  # slides keep the title


def test_bad_arguments_and_missing_browser_are_explained(figs, tmp_path, monkeypatch):
    with pytest.raises(plots.ExportError, match="unknown format"):
        plots.write_figures(figs, tmp_path, formats=("gif",))
    with pytest.raises(plots.ExportError, match="unknown size"):
        plots.write_figures(figs, tmp_path, size="poster")
    with pytest.raises(plots.ExportError, match="offline"):
        export.write_html(figs["loss_vs_repeat_count"], tmp_path / "a.html", include_plotlyjs="cdn")
    monkeypatch.setattr(export, "find_chromium", lambda: None)
    with pytest.raises(plots.ExportError, match="apt-get install chromium"):
        plots.write_figures(figs, tmp_path, formats=("png",))


# ----------------------------------------------------------------------------- real browser


@pytest.fixture(scope="module")
def browser(chromium):
    """One kaleido browser for the module's exports (write_figures reuses a running one)."""
    try:
        import kaleido
    except ImportError:
        pytest.fail("Chromium is installed but kaleido is not: pip install 'repeatlens[export]'")
    kaleido.start_sync_server(n=1, path=chromium, mathjax=False, silence_warnings=True)
    yield chromium
    kaleido.stop_sync_server(silence_warnings=True)


def test_static_export_png_pdf_svg(figs, tmp_path, browser):
    start = time.monotonic()
    line = {"loss_vs_repeat_count": figs["loss_vs_repeat_count"]}
    written = plots.write_figures(line, tmp_path, formats=("png", "pdf", "svg"), size="column")
    written |= plots.write_figures({"heat": figs["head_heatmap_induction"]}, tmp_path, formats=("png",))
    elapsed = time.monotonic() - start
    assert all(p.exists() and p.stat().st_size > 1000 for ps in written.values() for p in ps)
    # 3.4 in column at 300 dpi
    assert _png_size(tmp_path / "loss_vs_repeat_count.png") == (1020, 840)
    assert _png_size(tmp_path / "heat.png") == (1020, 840)
    svg = (tmp_path / "loss_vs_repeat_count.svg").read_text()
    assert svg.lstrip().startswith("<svg") and "repeat count E" in svg and "<path" in svg
    # vector PDF: path operators and embedded fonts, no raster image for the line plot
    pdf = (tmp_path / "loss_vs_repeat_count.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and len(pdf) > 2000
    assert b"/Subtype /Image" not in pdf
    content = _pdf_content(pdf)
    assert re.search(rb"[\d.]+ [\d.]+ l\n", content) and re.search(rb" re\n", content)
    assert b"/FontFile2" in pdf
    assert elapsed < 60, f"one browser for the batch should be quick, took {elapsed:.0f}s"


def test_slides_png_size(figs, tmp_path, browser):
    plots.write_figures({"loss": figs["trajectories/induction"]}, tmp_path, formats=("png",), size="slides")
    assert _png_size(tmp_path / "loss.png") == (1280, 720)
