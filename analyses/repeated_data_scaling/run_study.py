"""The natural-text scaling study, end to end: train both sweeps, score them, write tables,
figures and RESULTS.md (T1-T6).

    python analyses/repeated_data_scaling/run_study.py --workers 2          # the study
    python analyses/repeated_data_scaling/run_study.py --out runs/repeated_data_scaling

Two sweep files share ``base.yaml``: ``sweep_middle.yaml`` (the middle size, d_model 64,
three seeds) and ``sweep_ends.yaml`` (d_model 32 and 128, two seeds), each a control and
f = 0.25 at E = 1, 8, 64, 512, 4096. Runs already complete and scored under ``--out`` are
not redone, so an interrupted study resumes by running the same command. The committed
results (``results/``: CSV tables, PNG/SVG figures, ``targets.json``) and ``RESULTS.md``
are rewritten from the run directories on every call; the run directories (checkpoints)
stay out of git.
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

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import repeatlens  # noqa: E402
from repeatlens.analysis import run_probe_source  # noqa: E402
from repeatlens.checkpoints import RunDir  # noqa: E402
from repeatlens.plots import available_figures, effective_model_size, loss_vs_repeat_count, offset_profile, write_figures  # noqa: E402
from repeatlens.results.reduce import check_scores  # noqa: E402
from repeatlens.results.store import write_sweep_tables  # noqa: E402
from repeatlens.scores import ProbeSpec, build_probes, chance_levels  # noqa: E402
from repeatlens.plots import UnsupportedFigureError  # noqa: E402
from repeatlens.results.fits import fit_scaling  # noqa: E402
from repeatlens.study import SIZE, circuit_table, circuits_markdown, evaluate_targets, final_table, point_table, scaling_targets, targets_markdown  # noqa: E402
from repeatlens.sweep import available_cores, load_sweep  # noqa: E402

HERE = Path(__file__).resolve().parent
SWEEPS = ("sweep_middle.yaml", "sweep_ends.yaml")
PROBE = "synthetic:L30"
LOSS = "test_text"
FIGURES = ("score_trajectories_induction", "score_trajectories_shifted_induction", "score_trajectories_copying_gain")
"""Of the generic figures, those that read no loss (the generic loss figures read the mixed test loss;
this study's loss is the natural-text one, drawn below)."""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/repeated_data_scaling"), help="run directories (not committed)")
    p.add_argument("--results", type=Path, default=HERE, help="where results/ and RESULTS.md go")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: one per core)")
    p.add_argument("--formats", default="png,svg", help="static figure formats (kaleido + Chromium)")
    p.add_argument("--bootstrap", type=int, default=0, help="residual-bootstrap refits per size for the peaks' intervals "
                   "(0: the fits' t intervals, whose coverage tests/results/test_fits.py checks)")
    args = p.parse_args()

    t0 = time.perf_counter()
    sweeps = [repeatlens.run_sweep(load_sweep(HERE / name), args.out, workers=args.workers, progress=True) for name in SWEEPS]
    errors = [e for s in sweeps for e in s.errors]
    if errors:
        raise SystemExit(f"{len(errors)} run(s) failed: {errors}")
    write_sweep_tables(args.out)  # both sweeps' runs in one table
    scores, metrics = repeatlens.load_scores(args.out), repeatlens.load_metrics(args.out)
    chance = chance_levels(build_probes(ProbeSpec.parse(PROBE), run_probe_source(RunDir(args.out / "rot2-d64_f0_E1_s0"))))
    final = final_table(scores, metrics, probe=PROBE)
    sizes = sorted(final[SIZE].unique())
    per_size = {n: evaluate_targets(scores, metrics, chance=chance, probe=PROBE, loss=LOSS, size=n) for n in sizes}
    middle = sorted(sizes)[len(sizes) // 2]
    fit = fit_scaling(final, LOSS, bootstrap=args.bootstrap)
    targets = per_size[middle] + scaling_targets(fit)

    res = args.results / "results"
    res.mkdir(parents=True, exist_ok=True)
    points = point_table(final, by_size=True)
    final.to_csv(res / "final_runs.csv", index=False, float_format="%.5g")
    points.to_csv(res / "points.csv", index=False, float_format="%.5g")
    named = circuit_table(scores, PROBE)
    named.to_csv(res / "circuits.csv", index=False, float_format="%.4g")
    traj = metrics[metrics.split.isin(["test_text", "test_synthetic", "repeated"])].dropna(subset=["loss"])
    traj[["run_id", "model_preset", "n_params_nonembedding", "repeated_fraction", "repeat_count", "seed", "step", "tokens_seen",
          "split", "loss"]].to_csv(res / "loss_trajectories.csv", index=False, float_format="%.5g")
    fit.to_json(res / "scaling_fit.json")  # what `repeatlens fit results/final_runs.csv --json` writes
    (res / "targets.json").write_text(json.dumps(
        {"middle_size": middle, "targets": [_target_json(t) for t in targets],
         "per_size": {str(n): [_target_json(t) for t in ts] for n, ts in per_size.items()}}, indent=2, default=float) + "\n")

    s = check_scores(scores, PROBE)
    figs = {k: v for k, v in available_figures(s, metrics).items() if k in FIGURES}
    figs["loss_vs_repeat_count_by_size"] = loss_vs_repeat_count(final, loss=LOSS, by="size")
    try:
        figs["effective_model_size"] = effective_model_size(final, loss=LOSS, size=SIZE)
    except UnsupportedFigureError as e:  # N_eff needs controls at 4 or more sizes
        print(f"no effective_model_size figure: {e}")
    shifted = named[(named.kind == "shifted") & (named.repeated_fraction == 0)]
    for run_id in list(dict.fromkeys(shifted.run_id))[:1]:
        figs["offset_profile_shifted_control"] = offset_profile(s, run_id)
    formats = [f for f in args.formats.split(",") if f]
    written = write_figures(figs, res / "figures", formats=formats) if formats else {}
    elapsed = time.perf_counter() - t0
    write_results_md(args, sweeps, targets, per_size, middle, points, named, chance, written, elapsed, fit)
    print(targets_markdown(targets))
    print(f"\nwrote {args.results / 'RESULTS.md'} and {res} in {elapsed / 60:.1f} min")


def _target_json(t) -> dict:
    return {"name": t.name, "held": t.held, "statement": t.statement, "detail": t.detail, "numbers": t.numbers}


def _machine() -> str:
    from importlib.metadata import version

    return (f"{platform.system()} {platform.machine()}, {available_cores()} cores, torch {torch.__version__}, "
            f"Python {platform.python_version()}, repeatlens {version('repeatlens')}")


def _train_seconds(out: Path) -> float:
    return sum(json.loads(p.read_text())["seconds"] for p in Path(out).glob("*/complete.json"))


def _points_markdown(points: pd.DataFrame) -> str:
    cols = [LOSS, "repeated_loss", "induction", "shifted_induction", "copying_gain"]
    head = "| N (non-emb.) | f | E | seeds | " + " | ".join(c.replace("_", " ") for c in cols) + " |\n|" + "---|" * (4 + len(cols)) + "\n"
    rows = []
    for r in points.itertuples(index=False):
        cells = [f"{getattr(r, c):.3f} ± {getattr(r, c + '_spread') / 2:.3f}" if pd.notna(getattr(r, c)) else "–" for c in cols]
        rows.append(f"| {getattr(r, SIZE):,.0f} | {r.repeated_fraction:g} | {r.repeat_count:g} | {r.seeds} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows)


def write_results_md(args, sweeps, targets, per_size, middle, points, named, chance, written, elapsed: float, fit) -> None:
    rel = lambda p: os.path.relpath(p, args.results)  # noqa: E731
    figs = "\n\n".join(f"![{name}]({rel(paths[0])})" for name, paths in written.items() if paths and paths[0].suffix == ".png")
    notes = (HERE / "NOTES.md").read_text() if (args.results == HERE and (HERE / "NOTES.md").exists()) else ""
    heads_md = args.results / "results" / "memorizing_heads.md"  # written by memorizing_heads.py
    heads = ""
    if heads_md.exists():
        pics = "\n\n".join(f"![{n}](results/figures/{n}.png)" for n in ("head_attribution_peak_s0", "memorization_share_peak_s0")
                            if (args.results / "results" / "figures" / f"{n}.png").exists())
        heads = f"## Which heads carry the memorized subset at the peak\n\n{heads_md.read_text()}\n{pics}\n"
    done = sum(len(s.done) for s in sweeps)
    call = (f"Wall time of this call: **{elapsed / 60:.1f} min** ({done} runs trained or scored now)." if done else
            f"This call found every run trained and scored and only rewrote the tables, figures and this file ({elapsed / 60:.1f} min).")
    sizes = "\n".join(
        f"* N = {n:,.0f}:\n" + "\n".join(f"  * {t.line}" for t in ts) for n, ts in per_size.items())
    text = f"""# Results: repetition on natural text across model sizes

Generated by `python {os.path.relpath(Path(__file__), Path.cwd())}` on {datetime.now(timezone.utc):%Y-%m-%d}
({_machine()}). {call} Training loops of all runs, summed: **{_train_seconds(args.out) / 60:.1f} min** of one
core each. Losses are the natural-text test loss (held-out Shakespeare) unless named; attention
and copying scores read the probe drawn from the synthetic source's 64 ids (`{PROBE}`), on which
the circuits show (the uniform probe over the whole vocabulary reads them near chance). N is the
non-embedding parameter count. The tables give the mean ± half the seed range at the final checkpoint.

## Targets

T1-T4 at the middle size (N = {middle:,.0f}, three seeds); T5-T6 across the sizes.

{targets_markdown(targets)}

### T1-T4 at every size

{sizes}

## The scaling fit

`repeatlens fit results/final_runs.csv` (also `results/scaling_fit.json`):

```
{chr(10).join(fit.lines())}
```

## Final checkpoint, per grid point

{_points_markdown(points)}

Chance levels on the same probe (uniform causal attention): induction {chance['induction']:.3f},
prefix-matching {chance['prefix_matching']:.3f}, previous-token {chance['previous_token']:.3f}.

## Which copying circuit each run formed, and when

Named from the offset profile (`repeatlens.results.circuits`): a later head attending at offset
L-1-d from the second copy of [BOS, r, r] paired with an earlier head attending d+1 back; d = 0
is canonical induction. "Formed by step" is the first scored checkpoint with that circuit.

{circuits_markdown(named)}

## Figures

{figs}

{heads}
{notes}
"""
    (args.results / "RESULTS.md").write_text(text)


if __name__ == "__main__":
    main()
