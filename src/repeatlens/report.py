"""A self-contained HTML report of a sweep, a run or a folder of other people's checkpoints:
every available figure, a run summary, what the probes and the x-axis are, and which
figures were left out and why (e.g. the f and E figures for checkpoints that have no
repetition coordinates).

The page embeds plotly.js once (no CDN, no MathJax), so it opens offline and can be
mailed as one file.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from repeatlens.plots import theme
from repeatlens.data.special import SpecialIds
from repeatlens.io import atomic_write_text
from repeatlens.results.metric_facts import metric_facts
from repeatlens.results.reduce import MissingDataError, check_scores, final_values, run_table
from repeatlens.plots.figures import build_figures, training_axis

CAPTIONS: dict[str, str] = {
    "loss_vs_repeat_count": "Final test loss against repeat count E per repeated fraction (mean ± std over "
    "seeds). A bump above the dashed control is the double descent over E.",
    "phase_diagram_test_loss": "Relative rise of the final test loss against the f = 0 control of the same size.",
    "phase_diagram_induction": "Relative drop of the strongest induction head's score against the control.",
    "phase_diagram_copying": "Relative rise of the copying loss (worse copying) against the control.",
    "disproportionate_damage": "Points above y = x: induction or copying is damaged more than the test loss.",
    "effective_model_size": "Degraded test loss mapped onto the full-data controls' law L = L∞ + (N_c/N)^a (4 or more "
    "control sizes): N_eff / N = 1 means undamaged; bars are 95% intervals, points outside the controls' N range are left out.",
    "displacement": "The most damaged run over training, against its control: where the repeated-subset loss "
    "keeps falling while test loss, induction and copying get worse.",
}

_CSS = """
body { font-family: Arial, Helvetica, 'Liberation Sans', 'DejaVu Sans', sans-serif; color: #222;
       margin: 0 auto; max-width: 1200px; padding: 16px 24px 48px; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #555; margin-top: 0; }
nav ol { columns: 2; font-size: 0.92em; }
table.summary { border-collapse: collapse; font-size: 0.9em; width: 100%; }
table.summary th, table.summary td { padding: 4px 8px; border-bottom: 1px solid #e5e5e5; text-align: right; }
table.summary th { background: #f5f5f5; position: sticky; top: 0; }
table.summary td:first-child, table.summary th:first-child { text-align: left; font-family: monospace; }
table.summary tr.control td { font-weight: bold; }
.figure { margin: 8px 0 24px; }
.caption { color: #444; font-size: 0.92em; margin: 4px 0 0; }
.scroll { max-height: 480px; overflow: auto; }
ul.skipped { font-size: 0.92em; color: #444; }
"""


def _final_metric(scores: pd.DataFrame, metric: str) -> pd.Series:
    """Final value per run (max over heads for per-head metrics), empty if absent."""
    try:
        return final_values(scores, metric).set_index("run_id")["value"]
    except MissingDataError:
        return pd.Series(dtype=float)


def summary_table(scores: pd.DataFrame, probe: str | None = None) -> pd.DataFrame:
    """One row per run: f, E, model, seed and the headline final scores.

    Args:
        scores: The long scores table.
        probe: The probe the attention and copying columns read; default the table's default.

    Returns:
        Columns ``run_id``, ``f``, ``E``, ``model``, ``params``, ``seed``, ``final test
        loss``, ``final repeated loss``, ``max induction`` and ``max shifted induction``
        (strongest head, last checkpoint), ``copying loss`` (last checkpoint); NaN where
        not scored. ``E``, ``params`` and ``seed`` are nullable integers: NA for other
        people's checkpoints, which have no repetition coordinates (f is NaN there).
    """
    s = check_scores(scores, probe)
    runs = run_table(s).set_index("run_id")
    sources = {rid: meta.get("source") for rid, meta in (scores.attrs.get("runs") or {}).items() if meta.get("source")}
    runs["model_preset"] = [sources.get(rid, p) if pd.isna(f) else p  # other people's: the kind of checkpoints
                            for rid, p, f in zip(runs.index, runs["model_preset"], runs["repeated_fraction"])]
    params = runs["n_params"].astype("Float64")
    out = pd.DataFrame(
        {
            "f": runs["repeated_fraction"].astype(float),
            "E": runs["repeat_count"].astype("Float64").astype("Int64"),
            "model": runs["model_preset"],
            "params": params.mask(params <= 0).astype("Int64"),  # 0: not known (other people's checkpoints)
            "seed": runs["seed"].astype("Float64").astype("Int64").mask(runs["repeated_fraction"].isna()),
        }
    )
    out["final test loss"] = _final_metric(s, "test_loss")
    out["final repeated loss"] = _final_metric(s, "repeated_loss")
    out["max induction"] = _final_metric(s, "induction")
    out["max shifted induction"] = _final_metric(s, "shifted_induction")
    out["copying loss"] = _final_metric(s, "copying_loss")
    return out.reset_index()


def _table_html(summary: pd.DataFrame) -> str:
    """The summary table as HTML, control rows marked."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in summary.columns)
    body = []
    for row in summary.itertuples(index=False):
        rec = dict(zip(summary.columns, row, strict=True))
        cells = []
        for col, value in rec.items():
            if pd.isna(value):
                text = "–"
            elif col == "f":
                text = theme.format_fraction(float(value))
            elif col == "params":
                text = theme.format_count(float(value))
            elif isinstance(value, float):
                text = f"{value:.4g}"
            else:
                text = str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        cls = ' class="control"' if float(rec["f"]) == 0 else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _probe_line(chosen: str | None, others: list[str]) -> str:
    """What the report's attention scores read, and which other probes the table holds (HTML)."""
    if chosen is None:
        return "No score in this table reads a probe."
    line = f"Attention and copying scores read the probe <code>{html.escape(chosen)}</code>."
    if others:
        keys = ", ".join(f"<code>{html.escape(k)}</code>" for k in others)
        line += f" The table also holds {keys}; <code>repeatlens report PATH --probe KEY</code> shows another."
    return line


def _ids_line(scores: pd.DataFrame) -> str:
    """The probes' BOS and excluded ids, and their source, as the tables recorded them: one
    line per distinct set of ids (naming the runs when they differ; HTML)."""
    recorded = {rid: SpecialIds.from_record(meta.get("probe_ids")) for rid, meta in (scores.attrs.get("runs") or {}).items()}
    groups: dict[tuple, list[tuple[str, SpecialIds]]] = {}
    for rid, ids in recorded.items():
        if ids is not None:
            groups.setdefault((ids.bos, ids.special, ids.kind), []).append((rid, ids))
    if not groups:
        return "The probes' special ids are not recorded in this table (analysed before they were; analyse again to record them)."
    lines = []
    for members in groups.values():
        line = members[0][1].describe()
        if len(members) > 1:
            line = line[:-1] + f", and {len(members) - 1} other run{'s' if len(members) > 2 else ''} alike)"
        lines.append(line if len(groups) == 1 else f"{members[0][0]}{' ...' if len(members) > 1 else ''}: {line}")
    return "Probes: " + "; ".join(html.escape(x) for x in lines) + "."


def _axis_line(s: pd.DataFrame) -> str:
    """What the figures over training put on their x axis, and how to change it (HTML)."""
    axis = training_axis(s)
    if axis.counts_tokens:
        return "Figures over training plot tokens seen."
    return ("Figures over training plot the <b>training step</b>: no token count is known for some of these checkpoints "
            "(<code>repeatlens analyze PATH --tokens-per-step N --force</code> records one).")


def _skipped_html(skipped: Mapping[str, str]) -> str:
    """The figures left out, each with its reason (HTML; empty when none)."""
    if not skipped:
        return ""
    by_reason: dict[str, list[str]] = {}
    for name, why in skipped.items():
        by_reason.setdefault(why, []).append(name.replace("_", " "))
    items = "".join(f"<li><b>{html.escape(', '.join(names))}</b>: {html.escape(why)}</li>" for why, names in by_reason.items())
    return f'<h2 id="skipped">Not shown ({len(skipped)})</h2><ul class="skipped">{items}</ul>'


def _caption(name: str, scores: pd.DataFrame | None = None) -> str:
    """The caption of a figure; a figure of one metric also says what the metric is, from its
    facts (:func:`repeatlens.results.metric_facts.metric_facts`, which ``scores`` may record)."""
    if name in CAPTIONS:
        return CAPTIONS[name]
    if name.startswith("score_trajectories_"):
        return ("One line per run, coloured by repeat count; the dashed black line is the f = 0 control. "
                + metric_facts(name.removeprefix("score_trajectories_"), scores).describe())
    if name.startswith("head_heatmap_"):
        return ("Per-head score of the most damaged run; drag the slider to move through checkpoints. "
                + metric_facts(name.removeprefix("head_heatmap_"), scores).describe())
    if name == "offset_profile":
        return ("Attention by query-key offset from the second copy of [BOS, r, r], per head of the most damaged run: "
                "a layer-0 head at offset d+1 and a later head at L-1-d form induction shifted by d.")
    return ""


def write_report(
    path: str | os.PathLike[str],
    scores: pd.DataFrame,
    metrics: pd.DataFrame | None = None,
    out: str | os.PathLike[str] = "report.html",
    *,
    figures: Mapping[str, go.Figure] | None = None,
    title: str | None = None,
    probe: str | None = None,
) -> Path:
    """Write a self-contained ``report.html`` for a sweep.

    Args:
        path: The sweep directory (named in the report; ``out`` is relative to it).
        scores: The sweep's long scores table.
        metrics: The sweep's training-metrics table, optional.
        out: Output file, relative to ``path`` unless absolute.
        figures: The figures to show; default every available figure
            (:func:`repeatlens.plots.available_figures`).
        title: Page title; default ``"repeatlens report: <folder name>"``.
        probe: The probe every figure and the summary read (see
            :func:`repeatlens.results.select_probe`); default the table's default probe.
            The report names it and the other probes the table holds.

    Returns:
        The path of the written report.
    """
    sweep_dir = Path(path)
    target = Path(out) if Path(out).is_absolute() else sweep_dir / out
    target.parent.mkdir(parents=True, exist_ok=True)
    from repeatlens.results.reduce import probe_keys

    s = check_scores(scores, probe)
    chosen, others = s.attrs.get("probe"), [k for k in probe_keys(scores) if k != s.attrs.get("probe")]
    if figures is not None:
        figures, skipped = dict(figures), {}
    else:
        figures, skipped = build_figures(s, metrics)
    summary = summary_table(s)
    runs = run_table(s)
    title = title or f"repeatlens report: {sweep_dir.resolve().name}"
    coordinates = runs[runs["repeat_count"].notna()]
    unknown = len(runs) - len(coordinates)
    fractions = ", ".join(theme.format_fraction(f) for f in sorted(coordinates["repeated_fraction"].unique()))
    counts = ", ".join(f"{e:g}" for e in sorted(coordinates["repeat_count"].unique()))
    sizes = ", ".join(
        f"{p} ({theme.format_count(n)})" if n > 0 else str(p)
        for p, n in coordinates[["model_preset", "n_params"]].drop_duplicates().sort_values("n_params").itertuples(index=False)
    )
    parts = [f"{len(runs)} run{'s' if len(runs) != 1 else ''}"]
    if len(coordinates):
        parts += [f"repeated fractions f: {html.escape(fractions)}", f"repeat counts E: {html.escape(counts)}",
                  f"models: {html.escape(sizes)}", f"seeds: {coordinates['seed'].nunique()}"]
    if unknown:
        parts.append(html.escape(f"{unknown} of other people's checkpoints (no repetition coordinates f, E)"))
    config = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "svg"}}
    sections, toc = [], []
    for k, (name, fig) in enumerate(figures.items()):
        div = pio.to_html(
            fig, full_html=False, include_plotlyjs=False, include_mathjax=False, div_id=f"fig-{k}",
            config=config, default_width="100%", auto_play=False,
        )
        label = html.escape(name.replace("_", " "))
        toc.append(f'<li><a href="#sec-{k}">{label}</a></li>')
        sections.append(
            f'<section class="figure" id="sec-{k}"><h2>{label}</h2>{div}'
            f'<p class="caption">{html.escape(_caption(name, s))}</p></section>'
        )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>{html.escape(title)}</h1>
<p class="meta">{' · '.join(parts)} ·
generated {stamp} from <code>{html.escape(str(sweep_dir))}</code></p>
<p class="meta">{_probe_line(chosen, others)} {_ids_line(scores)}</p>
<p class="meta">{_axis_line(s)}</p>
<nav><h2>Figures ({len(figures)})</h2><ol>{''.join(toc)}</ol></nav>
<h2 id="summary">Runs</h2>
<div class="scroll">{_table_html(summary)}</div>
{''.join(sections)}
{_skipped_html(skipped)}
</body></html>
"""
    atomic_write_text(target, page)  # a failed write leaves the previous report whole
    return target
