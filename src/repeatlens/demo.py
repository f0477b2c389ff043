"""``repeatlens demo``: a small repetition sweep on the bundled Shakespeare corpus.

Trains a control (f = 0) and a few repeat counts at a fixed repeated fraction, each into
its own run directory under ``out``, scores every checkpoint, prints a table of final
losses and scores and the study's targets T1-T4 (:mod:`repeatlens.study`) on these runs,
and writes ``out/report.html``. Half of each run's sequences are Shakespeare, half come
from the synthetic source (random segments of length 2-30 repeated in context), so test
loss mixes natural text and in-context copying.

At this budget (800 steps, BPE vocabulary 512) induction heads do not form, not even in the
control: the demo shows the loss side of the story (an interior peak of test loss over E,
memorisation of the repeated subset). The synthetic-only study in
``analyses/repeated_data/`` is where they form and where repetition is seen to stop them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import typer

from repeatlens.analysis import analyze
from repeatlens.results.store import load_metrics, load_scores
from repeatlens.config import config_from_dict, merge
from repeatlens.report import write_report
from repeatlens.study import chance_levels, evaluate_targets, targets_markdown
from repeatlens.train import train

TINY = os.environ.get("REPEATLENS_TINY") == "1"

DEMO_BASE: dict[str, Any] = {
    "seed": 0,
    "data": {
        "source": "shakespeare",
        "vocab_size": 512,
        "seq_len": 64,
        "synthetic_fraction": 0.5,
        "test_sequences": 128,
        # the induction recipe (see tests/conftest.py: INDUCTION_RUN), over the BPE vocabulary
        "synthetic": {"min_len": 2, "max_len": 30, "max_gap": 0, "max_prefix": 8},
    },
    "mixture": {"total_tokens": 64 * 16 * 20 if TINY else 64 * 32 * 800},
    "model": {"n_layers": 2, "d_model": 32 if TINY else 64, "n_heads": 4, "d_head": 8 if TINY else 16, "n_ctx": 64,
              "positional_embedding": "rotary"},
    "train": {"batch_size": 16 if TINY else 32, "lr": 3e-3, "warmup_steps": 5 if TINY else 50, "weight_decay": 0.01,
              "decay": "constant", "betas": [0.9, 0.999], "grad_clip": None, "checkpoints": {"log_count": 6, "every": None}},
}

#: (repeated_fraction, repeat_count) points; (0, 1) is the control, (0.25, 1) its check (T3).
DEMO_POINTS: list[tuple[float, int]] = (
    [(0.0, 1), (0.25, 1), (0.25, 2), (0.25, 5)] if TINY else [(0.0, 1), (0.25, 1), (0.25, 10), (0.25, 100), (0.25, 1000)]
)


def demo_configs() -> dict[str, Any]:
    """Run name -> validated RunConfig for every demo point."""
    out = {}
    for f, e in DEMO_POINTS:
        name = "control" if f == 0 else f"f{f:g}_E{e}"
        point = {"mixture": {"repeated_fraction": f, "repeat_count": e}}
        out[name] = config_from_dict(merge(DEMO_BASE, point), where=f"demo:{name}")
    return out


def run_demo(out: str | Path, progress: bool = True) -> pd.DataFrame:
    """Train every demo point under ``out`` and print the final losses."""
    out = Path(out)
    t0 = time.perf_counter()
    rows = []
    configs = demo_configs()
    for name, cfg in configs.items():
        run = train(cfg, out / name, progress=progress)
        met = run.metrics()
        last = met[met.step == met.step.max()].set_index("split").loss
        man = run.manifest()
        rows.append(
            {
                "run": name,
                "f": round(man["f"], 4),
                "E": man["E"],
                "test_loss": last.get("test"),
                "repeated_loss": last.get("repeated"),
            }
        )
    table = pd.DataFrame(rows)
    typer.echo("\nScoring every checkpoint (induction, prefix-matching, copying, ...)")
    result = analyze(out, progress=progress)
    scores, metrics = load_scores(out), load_metrics(out)
    final = scores[scores.step == scores.groupby("run_id").step.transform("max")]
    for metric in ("induction", "prefix_matching", "copying_loss"):
        per_run = final[final.metric == metric].groupby("run_id").value.max()
        table[metric] = table.run.map(per_run)
    report = write_report(out, scores, metrics)
    elapsed = time.perf_counter() - t0
    typer.echo("\nFinal checkpoint (losses in nats/token; induction and prefix-matching: best head):")
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    control = configs["control"]
    targets = evaluate_targets(scores, metrics, chance=chance_levels(control.data.vocab_size, control.model.n_ctx))
    typer.echo("\nThe study's targets on these runs (one seed, so the seed spread is 0; "
               "analyses/repeated_data/ runs them with three):\n")
    typer.echo(targets_markdown(targets))
    if result.failures:
        typer.echo(f"{len(result.failures)} checkpoint(s) could not be scored: {result.failures}", err=True)
    typer.echo(f"\n{len(rows)} runs in {elapsed / 60:.1f} min. Run directories: {out.resolve()}")
    typer.echo(f"Report: {report.resolve()}")
    return table
