"""The repeated-data study, end to end: train the sweep, score it, write tables, figures, RESULTS.md.

    python analyses/repeated_data/run_study.py                       # the study (sweep.yaml)
    python analyses/repeated_data/run_study.py --workers 2 --out runs/repeated_data
    python analyses/repeated_data/run_study.py --sweep my_sweep.yaml --results /tmp/res

Runs already complete and scored under ``--out`` are not redone, so an interrupted study
resumes by running the same command. The committed results (``results/``: small CSV
tables, PNG/SVG figures, ``targets.json``) and ``RESULTS.md`` are rewritten from the run
directories on every call; the run directories themselves (checkpoints) stay out of git.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import repeatlens  # noqa: E402
from repeatlens.plots import available_figures, offset_profile, write_figures  # noqa: E402
from repeatlens.results.reduce import check_scores  # noqa: E402
from repeatlens.study import standard_chance_levels, circuit_table, circuits_markdown, evaluate_targets, final_table, point_table, targets_markdown  # noqa: E402
from repeatlens.sweep import available_cores, load_sweep  # noqa: E402

HERE = Path(__file__).resolve().parent
FIGURES = ("loss_vs_repeat_count", "disproportionate_damage", "displacement",
           "score_trajectories_induction", "score_trajectories_shifted_induction", "score_trajectories_test_loss",
           "head_heatmap_induction")
PROBE = "synthetic"  # a synthetic-only run: the source's ids are the vocabulary less BOS, as for the uniform probe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", type=Path, default=HERE / "sweep.yaml", help="sweep file (default: the study's)")
    p.add_argument("--out", type=Path, default=Path("runs/repeated_data"), help="run directories (not committed)")
    p.add_argument("--results", type=Path, default=HERE, help="where results/ and RESULTS.md go")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: one per core)")
    p.add_argument("--formats", default="png,svg", help="static figure formats (kaleido + Chromium)")
    args = p.parse_args()

    t0 = time.perf_counter()
    spec = load_sweep(args.sweep)
    sweep = repeatlens.run_sweep(spec, args.out, workers=args.workers, progress=True)
    if sweep.errors:
        raise SystemExit(f"{len(sweep.errors)} run(s) failed: {sweep.errors}")
    scores, metrics = repeatlens.load_scores(args.out), repeatlens.load_metrics(args.out)
    base = spec.base
    vocab = base["data"]["synthetic"]["vocab_size"] if base["data"]["source"] == "synthetic" else base["data"]["vocab_size"]
    chance = standard_chance_levels(vocab, base["model"]["n_ctx"])
    targets = evaluate_targets(scores, metrics, chance=chance, probe=PROBE)

    res = args.results / "results"
    res.mkdir(parents=True, exist_ok=True)
    final = final_table(scores, metrics, probe=PROBE)
    points = point_table(final)
    named = circuit_table(scores, PROBE)
    named.to_csv(res / "circuits.csv", index=False, float_format="%.4g")
    final.to_csv(res / "final_runs.csv", index=False, float_format="%.5g")
    points.to_csv(res / "points.csv", index=False, float_format="%.5g")
    traj = metrics[metrics.split.isin(["test", "repeated"])].dropna(subset=["loss"])
    traj[["run_id", "repeated_fraction", "repeat_count", "seed", "step", "tokens_seen", "split", "loss"]].to_csv(
        res / "loss_trajectories.csv", index=False, float_format="%.5g")
    s = check_scores(scores, PROBE)
    best = s[s.metric.isin(["induction", "shifted_induction", "prefix_matching", "previous_token"])]
    best = best.groupby(["run_id", "repeated_fraction", "repeat_count", "seed", "step", "metric"]).value.max().reset_index()
    best.to_csv(res / "best_head_trajectories.csv", index=False, float_format="%.5g")
    (res / "targets.json").write_text(json.dumps(
        [{"name": t.name, "held": t.held, "statement": t.statement, "detail": t.detail, "numbers": t.numbers} for t in targets],
        indent=2) + "\n")

    figs = available_figures(s, metrics)
    chosen = {k: figs[k] for k in FIGURES if k in figs}
    control0 = next((r for r in named.run_id if r.startswith("f0_") and r.endswith("_s0")), None)
    if control0 is not None:  # the control whose circuit is shifted (NOTES.md): its attention by offset
        chosen["offset_profile_control_s0"] = offset_profile(s, control0)
        prof = s[(s.run_id == control0) & (s.metric == "offset_profile") & (s.step == s.step.max())]
        prof.to_csv(res / "offset_profile_control_s0.csv", index=False, float_format="%.4g")
    formats = [f for f in args.formats.split(",") if f]
    written = write_figures(chosen, res / "figures", formats=formats) if formats else {}
    elapsed = time.perf_counter() - t0
    write_results_md(args, spec, sweep, targets, points, chance, written, elapsed, named)
    print(targets_markdown(targets))
    print(f"\nwrote {args.results / 'RESULTS.md'} and {res} in {elapsed / 60:.1f} min")


def _machine() -> str:
    return (f"{platform.system()} {platform.machine()}, {available_cores()} cores, torch {torch.__version__}, "
            f"Python {platform.python_version()}, repeatlens {_version()}")


def _version() -> str:
    from importlib.metadata import version

    return version("repeatlens")


def _call_line(sweep, elapsed: float) -> str:
    if not sweep.done:
        return (f"This call found all {len(sweep.skipped)} runs already trained and scored and only rewrote the tables, "
                f"figures and this file ({elapsed / 60:.1f} min); the first full call's time is under Reproduce below.")
    return (f"Wall time of this call: **{elapsed / 60:.1f} min** (sweep part {sweep.seconds / 60:.1f} min: "
            f"{len(sweep.done)} runs trained or scored now, {len(sweep.skipped)} already done).")


def _train_seconds(out: Path) -> float:
    return sum(json.loads(p.read_text())["seconds"] for p in Path(out).glob("*/complete.json"))


def _points_markdown(points: pd.DataFrame) -> str:
    cols = ["test_loss", "repeated_loss", "induction", "shifted_induction", "prefix_matching", "copying_gain"]
    head = "| f | E | seeds | " + " | ".join(cols) + " |\n|" + "---|" * (3 + len(cols)) + "\n"
    rows = []
    for r in points.itertuples(index=False):
        cells = [f"{getattr(r, c):.3f} ± {getattr(r, c + '_spread') / 2:.3f}" if pd.notna(getattr(r, c)) else "–" for c in cols]
        rows.append(f"| {r.repeated_fraction:g} | {r.repeat_count:g} | {r.seeds} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows)


def write_results_md(args, spec, sweep, targets, points, chance, written, elapsed: float, named=None) -> None:
    rel = lambda p: os.path.relpath(p, args.results)  # noqa: E731
    figs = "\n".join(f"![{name}]({rel(paths[0])})" for name, paths in written.items() if paths and paths[0].suffix == ".png")
    notes = (HERE / "NOTES.md").read_text() if (args.results == HERE and (HERE / "NOTES.md").exists()) else ""
    text = f"""# Results: the repeated-data study at CPU scale

Generated by `python {os.path.relpath(Path(__file__), Path.cwd())} --sweep {os.path.relpath(args.sweep)}` on
{datetime.now(timezone.utc):%Y-%m-%d} ({_machine()}).
{_call_line(sweep, elapsed)} Training loops of all {len(spec.points)} runs, summed over runs:
**{_train_seconds(args.out) / 60:.1f} min** of one core each. {len(points)} grid points; the table gives the
mean ± half the seed range at the final checkpoint.

## Targets

{targets_markdown(targets)}

## Final checkpoint, per grid point

{_points_markdown(points)}

## Which copying circuit each run formed, and when

Named from the offset profile (`repeatlens.results.circuits`) on the `{PROBE}` probe: a later
head attending at offset L-1-d from the second copy of [BOS, r, r] paired with an earlier
head attending d+1 back; d = 0 is canonical induction.

{circuits_markdown(named) if named is not None else ""}

Chance levels (uniform causal attention on the same probes): induction {chance['induction']:.3f},
prefix-matching {chance['prefix_matching']:.3f}, previous-token {chance['previous_token']:.3f}.
Losses in nats per token; induction and prefix-matching are the best head's score; copying
gain is the loss on the first copy minus the loss on the second copy of repeated random tokens.

## Figures

{figs}

{notes}
"""
    (args.results / "RESULTS.md").write_text(text)


if __name__ == "__main__":
    main()
