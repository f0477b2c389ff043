"""``repeatlens demo``: the mechanism on natural text, in minutes on a laptop.

Trains a control (f = 0), the E = 1 check and repeat counts spanning the poor-performance
region at f = 0.25 on the bundled Shakespeare (BPE vocabulary 1024) mixed with the
synthetic source drawn from 64 ids (three quarters of the sequences), the points two at a
time on the machine's cores (:func:`repeatlens.sweep.run_sweep`), scores every checkpoint
with the probes that see the copying circuit (``synthetic``, and ``uniform`` to show what
a probe over the whole vocabulary misses), prints the final losses and scores and the
study's targets T1-T4 (:mod:`repeatlens.study`) with T1 and T2 on the natural-text loss,
and writes ``out/report.html``.

The regime is the one the natural-text scaling study (``analyses/repeated_data_scaling``)
uses at its middle size, for 977 steps instead of 1,953: the control forms an induction
head there by step 750 in seed 0 of the study (and by step 977 in the demo itself, 0.92), and
repetition at E = 512 stops it from forming. ``REPEATLENS_TINY=1`` runs a seconds-long
version for the tests (the numbers are noise).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import typer

from repeatlens.config import config_from_dict, merge
from repeatlens.report import write_report
from repeatlens.results.store import load_metrics, load_scores
from repeatlens.study import evaluate_targets, final_table, targets_markdown

TINY = os.environ.get("REPEATLENS_TINY") == "1"

DEMO_BASE: dict[str, Any] = {
    "seed": 0,
    "data": {
        "source": "shakespeare",
        "vocab_size": 300 if TINY else 1024,
        "seq_len": 32 if TINY else 128,
        "synthetic_fraction": 0.75,
        "test_sequences": 64 if TINY else 512,
        "synthetic": {"min_len": 2, "max_len": 30, "max_gap": 0, "max_prefix": 8, "token_ids": 64},
    },
    "mixture": {"total_tokens": 32 * 16 * 30 if TINY else 4_000_000},
    "model": {"n_layers": 2, "d_model": 32 if TINY else 64, "n_heads": 4, "d_head": 8 if TINY else 16,
              "n_ctx": 32 if TINY else 128, "positional_embedding": "rotary"},
    "train": {"batch_size": 16 if TINY else 32, "lr": 3e-3, "warmup_steps": 5 if TINY else 100, "weight_decay": 0.01,
              "decay": "constant", "betas": [0.9, 0.999], "grad_clip": None, "eval_sequences": 32 if TINY else 128,
              "progress": False, "checkpoints": {"log_count": 4 if TINY else 6, "every": None}},
}

#: (repeated_fraction, repeat_count) points; (0, 1) is the control, (0.25, 1) its check (T3).
DEMO_POINTS: list[tuple[float, int]] = (
    [(0.0, 1), (0.25, 1), (0.25, 4), (0.25, 16)] if TINY else [(0.0, 1), (0.25, 1), (0.25, 8), (0.25, 64), (0.25, 512), (0.25, 4096)]
)

#: The probes the demo scores: the synthetic ids that show the head, uniform ids that miss it.
DEMO_PROBES = ("synthetic", "uniform")


def demo_spec():
    """The demo as a :class:`repeatlens.sweep.SweepSpec` (one point per :data:`DEMO_POINTS`)."""
    from repeatlens.sweep import SweepPoint, SweepSpec

    points = []
    for f, e in DEMO_POINTS:
        name = "control" if f == 0 else f"f{f:g}_E{e}"
        cfg = config_from_dict(merge(DEMO_BASE, {"mixture": {"repeated_fraction": f, "repeat_count": e}}), where=f"demo:{name}")
        points.append(SweepPoint(name, {"mixture.repeated_fraction": f, "mixture.repeat_count": e}, cfg.model_dump(mode="json")))
    analyze = {"probes": list(DEMO_PROBES), "max_sequences": 64 if TINY else 128}
    return SweepSpec(base=DEMO_BASE, grid={}, analyze=analyze, points=points)


def data_line(out: Path, spec, probe: str, uniform_probe: str) -> str:
    """What the runs trained on and which probe read the scores, measured from each run's
    ``data/`` (:meth:`~repeatlens.checkpoints.RunDir.synthetic_shares`)."""
    from repeatlens.checkpoints import RunDir

    def pct(values: list[float]) -> str:
        lo, hi = min(values), max(values)
        return f"{lo:.1%}" if round(lo, 3) == round(hi, 3) else f"{lo:.1%}-{hi:.1%}"

    shares = {p.name: RunDir(out / p.name).synthetic_shares() for p in spec.points}
    if any(v is None for v in shares.values()):
        return f"Scores: the best head on probe {probe}; induction_uniform on probe {uniform_probe}."
    control = [v for name, v in shares.items() if name == "control"]
    repeated = [v for name, v in shares.items() if name != "control"]
    return (f"Data (measured from each run's data/): the control's training tokens are {pct([v['trained'] for v in control])} "
            f"synthetic; at f > 0 the repeated subset is {pct([v['repeated'] for v in repeated])} synthetic and the training "
            f"tokens {pct([v['trained'] for v in repeated])}. Losses on held-out natural text; scores: the best head on probe "
            f"{probe}, induction_uniform on probe {uniform_probe}.")


def run_demo(out: str | Path, progress: bool = True, workers: Optional[int] = None) -> pd.DataFrame:
    """Train and score every demo point under ``out`` (two at a time on two cores), print
    the table and T1-T4, write the report; returns the printed table."""
    from repeatlens.analysis import run_probe_source
    from repeatlens.checkpoints import RunDir
    from repeatlens.scores import ProbeSpec, build_probes, chance_levels
    from repeatlens.sweep import run_sweep

    out = Path(out)
    t0 = time.perf_counter()
    spec = demo_spec()
    typer.echo(f"Training and scoring {len(spec.points)} runs under {out} (Shakespeare + synthetic, "
               f"{DEMO_BASE['mixture']['total_tokens']:,} tokens each)...")
    result = run_sweep(spec, out, workers=workers, progress=progress)
    if result.errors:
        for name, err in result.errors:
            typer.echo(f"point {name} failed: {err}", err=True)
        raise typer.Exit(code=1)
    scores, metrics = load_scores(out), load_metrics(out)
    source = run_probe_source(RunDir(out / "control"))
    # the keys this analysis scored (rows from another version's defaults may sit beside them)
    syn_spec, uni_spec = (source.resolve(ProbeSpec(f)) for f in DEMO_PROBES)
    final = final_table(scores, metrics, probe=syn_spec.key)
    uniform = final_table(scores, metrics, probe=uni_spec.key).set_index("run_id")
    table = final[["run_id", "repeated_fraction", "repeat_count"]].rename(columns={"repeated_fraction": "f", "repeat_count": "E"})
    for col, name in (("test_text", "text_loss"), ("repeated_loss", "repeated_loss"), ("induction", "induction"),
                      ("shifted_induction", "shifted_ind"), ("copying_gain", "copying_gain")):
        if col in final:
            table[name] = final[col].to_numpy()
    table["induction_uniform"] = table.run_id.map(uniform["induction"])
    table = table.astype({"E": int}).sort_values(["f", "E"]).reset_index(drop=True)
    report = write_report(out, scores, metrics, probe=syn_spec.key)
    elapsed = time.perf_counter() - t0
    typer.echo("\nFinal checkpoint (losses in nats/token: natural-text test loss, repeated subset; best head on the synthetic-id probe; "
               "induction_uniform: the same heads on uniform ids):")
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    typer.echo(data_line(out, spec, syn_spec.key, uni_spec.key))
    chance = chance_levels(build_probes(syn_spec, source))
    targets = evaluate_targets(scores, metrics, chance=chance, probe=syn_spec.key)
    typer.echo("\nThe study's targets on these runs (one seed, so the seed spread is 0; "
               "analyses/repeated_data_scaling/ runs them with several seeds and sizes):\n")
    typer.echo(targets_markdown(targets))
    if result.failures:
        typer.echo(f"{len(result.failures)} checkpoint(s) could not be scored: {result.failures}", err=True)
    typer.echo(f"\n{len(spec.points)} runs in {elapsed / 60:.1f} min. Run directories: {out.resolve()}")
    typer.echo(f"Report: {report.resolve()}")
    return table
