"""Write figures to offline HTML and, through kaleido 1.x + Chromium, PNG/PDF/SVG.

Static export drives a headless Chromium. repeatlens never downloads one: it uses the
browser named by ``$REPEATLENS_CHROMIUM`` or ``$BROWSER_PATH``, else the first of
``chromium``, ``chromium-browser``, ``google-chrome``, ``chrome`` on ``PATH`` (Debian:
``apt-get install chromium``). One browser serves a whole batch
(``kaleido.start_sync_server``), so each extra figure costs a fraction of a second.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go

from repeatlens.errors import RepeatlensError, optional_import

STATIC_FORMATS = ("png", "pdf", "svg")
FORMATS = ("html", *STATIC_FORMATS)
_BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class ExportError(RepeatlensError):
    """Static export is impossible here (no kaleido, no Chromium) or was asked wrongly."""


@dataclass(frozen=True)
class FigureSize:
    """A target size for static export.

    Attributes:
        width: Layout width in CSS px (100 px = 1 inch for ``column``).
        height: Height in px of a one-row figure.
        row_height: Extra px per additional panel row.
        scale: Pixel multiplier for PNG (3 → 300 dpi at 100 px/inch).
        font: Base font size in px.
        title: Keep the figure title (slides) or drop it (papers carry captions).
        margin: Margins (l, r, t, b) in px.
    """

    width: int
    height: int
    row_height: int
    scale: float
    font: int
    title: bool
    margin: tuple[int, int, int, int]


SIZES: dict[str, FigureSize] = {
    # one paper column: 3.4 in wide at 100 px/in, PNG at 300 dpi; 10 px ≈ 7.2 pt
    "column": FigureSize(340, 280, 110, 3.0, 10, False, (48, 8, 22, 62)),
    # 16:9 slides, fonts readable from the back of a room
    "slides": FigureSize(1280, 720, 0, 1.0, 20, True, (100, 40, 90, 130)),
}


def find_chromium() -> str | None:
    """Locate a Chromium/Chrome executable without downloading anything.

    Returns:
        Its path, or None if there is none.
    """
    for var in ("REPEATLENS_CHROMIUM", "BROWSER_PATH"):
        path = os.environ.get(var)
        if path and os.access(path, os.X_OK):
            return path
    for name in _BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.access(path, os.X_OK):
            return path
    return None


def sized(fig: go.Figure, size: str | FigureSize = "column") -> go.Figure:
    """A static-export copy of a figure at a paper-column or slide size.

    Drops sliders and menus (meaningless on paper; a heatmap shows its last
    checkpoint), sets width, height (grown by the panel rows recorded in
    ``layout.meta``), margins and every font size. The input is not modified.

    Args:
        fig: A repeatlens figure (or any plotly figure).
        size: ``"column"``, ``"slides"`` or a :class:`FigureSize`.

    Returns:
        The resized copy.
    """
    spec = SIZES[size] if isinstance(size, str) else size
    out = go.Figure(fig)
    meta = (out.layout.meta or {}).get("repeatlens", {}) if isinstance(out.layout.meta, dict) else {}
    rows = int(meta.get("rows", 1))
    height = spec.height + spec.row_height * max(rows - 1, 0)
    f = spec.font
    left, right, top, bottom = spec.margin
    checkpoint = _slider_position(out)
    out.layout.sliders = ()
    out.layout.updatemenus = ()
    out.update_layout(
        width=spec.width,
        height=height,
        font={"size": f},
        margin={"l": left, "r": right, "t": top, "b": bottom, "autoexpand": True},
        legend={"font": {"size": f}, "itemwidth": 30, "tracegroupgap": 0},
        hoverlabel={"font": {"size": f}},
    )
    if spec.title and out.layout.title.text:
        out.update_layout(title={"font": {"size": round(f * 1.2)}})
    else:
        out.update_layout(title=None)
    out.for_each_annotation(lambda a: a.update(font={"size": f}))
    if checkpoint:
        out.add_annotation(text=checkpoint, x=1.0, y=1.0, xref="paper", yref="paper", xanchor="right",
                           yanchor="bottom", showarrow=False, font={"size": f - 1, "color": "#555"})
    out.update_xaxes(title_font_size=f, tickfont_size=f - 1 if f < 14 else f)
    out.update_yaxes(title_font_size=f, tickfont_size=f - 1 if f < 14 else f)
    colorbar = {"thickness": max(8, f), "tickfont": {"size": f - 1 if f < 14 else f}, "title": {"font": {"size": f}}}
    out.update_traces(colorbar=colorbar, selector={"type": "heatmap"})
    out.for_each_trace(
        lambda t: t.update(marker={"colorbar": colorbar}) if getattr(t.marker, "showscale", False) else None,
        selector={"type": "scatter"},
    )
    out.update_coloraxes(colorbar=colorbar)
    if spec.width < 500 and _many_cells(out):
        out.update_traces(texttemplate=None, selector={"type": "heatmap"})
    return out


def _slider_position(fig: go.Figure) -> str:
    """What the first slider shows (e.g. ``"tokens seen: 3.3M"``), or ``""``."""
    if not fig.layout.sliders:
        return ""
    slider = fig.layout.sliders[0]
    steps = slider.steps or ()
    if not steps:
        return ""
    active = slider.active if slider.active is not None else 0
    prefix = slider.currentvalue.prefix or "" if slider.currentvalue else ""
    return f"{prefix}{steps[min(int(active), len(steps) - 1)].label}"


def _many_cells(fig: go.Figure) -> bool:
    """Whether a heatmap grid is too fine to print values in a column-wide figure."""
    cells = [len(t.x or []) for t in fig.data if t.type == "heatmap"]
    return sum(cells) > 8


def _safe_name(name: str) -> str:
    """A file-name-safe version of a figure name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "figure"


def write_html(fig: go.Figure, path: Path, include_plotlyjs: bool | str = "directory") -> Path:
    """Write one interactive figure that works offline.

    Args:
        fig: The figure.
        path: Output ``.html`` path.
        include_plotlyjs: ``True`` embeds plotly.js (~4.7 MB per file);
            ``"directory"`` writes ``plotly.min.js`` once beside the files and
            references it relatively. Never a CDN.

    Returns:
        The path written.
    """
    if include_plotlyjs not in (True, "directory"):
        raise ExportError(f"include_plotlyjs must be True or 'directory' (offline), got {include_plotlyjs!r}")
    fig.write_html(
        path,
        include_plotlyjs=include_plotlyjs,
        include_mathjax=False,
        full_html=True,
        config={"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "svg"}},
    )
    return path


def _kaleido():  # noqa: ANN202 - module object
    """Import kaleido 1.x or explain how to get it."""
    kaleido = optional_import("kaleido", "PNG/PDF/SVG export", "export", error=ExportError)
    if not hasattr(kaleido, "start_sync_server"):
        raise ExportError("kaleido is older than 1.0; pip install -U 'kaleido>=1'")
    return kaleido


def write_static(
    jobs: Iterable[tuple[go.Figure, Path]], *, scale: float = 3.0, chromium: str | None = None
) -> list[Path]:
    """Render figures to PNG/PDF/SVG (format from each path's suffix) with one browser.

    Args:
        jobs: (already sized figure, output path) pairs.
        scale: PNG pixel multiplier (vector formats ignore it).
        chromium: Browser executable; default :func:`find_chromium`.

    Returns:
        The paths written.
    """
    jobs = list(jobs)
    if not jobs:
        return []
    kaleido = _kaleido()
    browser = chromium or find_chromium()
    if browser is None:
        raise ExportError(
            "PNG/PDF/SVG export needs Chromium: apt-get install chromium, or set BROWSER_PATH "
            "(HTML export works without it)"
        )
    server = getattr(kaleido, "_global_server", None)
    owned = not (server is not None and server.is_running())
    if owned:
        # mathjax=False: the default page would fetch MathJax from a CDN
        kaleido.start_sync_server(n=1, path=browser, mathjax=False, timeout=120, silence_warnings=True)
    written = []
    try:
        for fig, path in jobs:
            fmt = path.suffix.lstrip(".")
            opts = {"format": fmt, "width": fig.layout.width, "height": fig.layout.height,
                    "scale": scale if fmt == "png" else 1}
            kaleido.write_fig_sync(fig.to_dict(), path=path, opts=opts)
            written.append(path)
    finally:
        if owned:
            kaleido.stop_sync_server(silence_warnings=True)
    return written


def write_figures(
    figs: Mapping[str, go.Figure],
    out_dir: str | os.PathLike[str],
    formats: Iterable[str] = FORMATS,
    size: str | FigureSize = "column",
    *,
    include_plotlyjs: bool | str = "directory",
    chromium: str | None = None,
) -> dict[str, list[Path]]:
    """Write every figure in every format: ``<out_dir>/<name>.<format>``.

    HTML keeps the full interactive figure (sliders, hover) and works offline; PNG, PDF
    and SVG get the static layout of ``size`` (see :func:`sized`). PDF and SVG are
    vector (heatmap cells are an embedded image, as plotly.js draws them).

    Args:
        figs: ``{name: Figure}``, e.g. from ``available_figures``.
        out_dir: Output folder (created).
        formats: Any of ``"html"``, ``"png"``, ``"pdf"``, ``"svg"``.
        size: ``"column"`` (3.4 in, 300 dpi PNG) or ``"slides"`` (1280×720).
        include_plotlyjs: ``"directory"`` (one ``plotly.min.js`` beside the files) or
            ``True`` (embedded in each file).
        chromium: Browser for static export; default :func:`find_chromium`.

    Returns:
        ``{name: [paths written]}``.
    """
    formats = [f.lower().lstrip(".") for f in formats]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"unknown format(s) {unknown}; choose from {list(FORMATS)}")
    if isinstance(size, str) and size not in SIZES:
        raise ExportError(f"unknown size {size!r}; choose from {sorted(SIZES)}")
    spec = SIZES[size] if isinstance(size, str) else size
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {name: [] for name in figs}
    jobs = []
    for name, fig in figs.items():
        stem = _safe_name(name)
        if "html" in formats:
            written[name].append(write_html(fig, out / f"{stem}.html", include_plotlyjs))
        static = [f for f in formats if f in STATIC_FORMATS]
        if static:
            small = sized(fig, spec)
            jobs += [(small, out / f"{stem}.{fmt}") for fmt in static]
            written[name] += [out / f"{stem}.{fmt}" for fmt in static]
    write_static(jobs, scale=spec.scale, chromium=chromium)
    return written
