"""Which heads carry the memorized subset at the peak, and are they the heads that copy in the control?

    python analyses/repeated_data_scaling/v1/memorizing_heads.py --workers 2     # after run_study.py

For every seed at one size (default the middle one, d_model 64) it scores the peak run
(f = 0.25, E = 512 by default) and the same-seed control with the per-head attribution scores
(`-m attribution`: the rise of the repeated-subset and held-out losses when one head is
mean-ablated, per natural-text / synthetic split, and ``memorization_share``) at every
checkpoint, then writes

* ``results/memorizing_heads.csv``: per seed and head, at the last checkpoint, the peak run's
  deltas and share, its attention scores, and the same head's scores and role in the control
  (the later head or the partner of the copying circuit ``circuit_table`` names);
* ``results/memorizing_heads_over_training.csv``: the peak runs' share per head and checkpoint;
* ``results/memorizing_heads.md``: the table and what it says (RESULTS.md includes it);
* ``results/figures/head_attribution_peak_s0`` and ``memorization_share_peak_s0`` (seed 0's
  peak run; a control has no repeated subset to plot against).

Same seed means same initial weights, so ``layer.head`` names the same starting head in both
runs; the table also gives each head's attention scores, so a reader can compare roles where
positions differ.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
PROBE = "synthetic:L30"
ATTENTION = ("induction", "shifted_induction", "previous_token")
DELTAS = ("ablation_repeated_text_loss", "ablation_repeated_synthetic_loss", "ablation_test_text_loss",
          "ablation_test_synthetic_loss", "memorization_share")


def _score(run: str) -> str:
    import torch

    import repeatlens

    torch.set_num_threads(1)
    res = repeatlens.analyze(run, ["attribution"], probes="synthetic", max_sequences=128, progress=False)
    return f"{Path(run).name}: scored {res.scored} checkpoint(s), {len(res.failures)} failed"


def _heads(scores: pd.DataFrame, run_id: str, metrics, step: int) -> pd.DataFrame:
    s = scores[(scores.run_id == run_id) & scores.metric.isin(metrics) & (scores.step == step) & scores["head"].notna()]
    wide = s.pivot_table(index=["layer", "head"], columns="metric", values="value", aggfunc="mean")
    return wide.reindex(columns=list(metrics))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/repeated_data_scaling"), help="the study's run directories")
    p.add_argument("--preset", default="rot2-d64", help="model size (preset) to read")
    p.add_argument("--peak", type=int, default=512, help="the peak repeat count at that size (RESULTS.md, T1)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--formats", default="png,svg")
    args = p.parse_args()

    from repeatlens.plots import head_attribution, memorization_share_over_training, write_figures
    from repeatlens.results.reduce import check_scores
    from repeatlens.results.store import load_scores
    from repeatlens.study import circuit_table

    seeds = sorted(int(d.name.rsplit("_s", 1)[1]) for d in args.out.glob(f"{args.preset}_f0_E1_s*"))
    pairs = [(args.out / f"{args.preset}_f0.25_E{args.peak}_s{s}", args.out / f"{args.preset}_f0_E1_s{s}") for s in seeds]
    runs = [str(r) for pair in pairs for r in pair]
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        for line in pool.map(_score, runs):
            print(line)

    scores = check_scores(pd.concat([load_scores(r) for r in runs], ignore_index=True), PROBE)
    circuits = circuit_table(scores, PROBE).set_index("run_id")
    rows, over = [], []
    for seed, (peak, ctrl) in zip(seeds, pairs):
        last = int(scores.loc[scores.run_id == peak.name, "step"].max())
        mine = _heads(scores, peak.name, DELTAS + ATTENTION, last)
        theirs = _heads(scores, ctrl.name, ("ablation_test_text_loss",) + ATTENTION, last)
        c = circuits.loc[ctrl.name]
        for (layer, head), r in mine.iterrows():
            hid = f"L{int(layer)}.H{int(head)}"
            role = "later head" if hid == c["head"] else "partner" if hid == c["partner"] else ""
            t = theirs.loc[(layer, head)] if (layer, head) in theirs.index else pd.Series(dtype=float)
            rows.append({"seed": seed, "head": hid, **{k: r.get(k) for k in DELTAS},
                         **{f"peak_{k}": r.get(k) for k in ATTENTION},
                         "control_ablation_test_text_loss": t.get("ablation_test_text_loss"),
                         **{f"control_{k}": t.get(k) for k in ATTENTION},
                         "control_circuit": f"{c['kind']}" + (f" (d = {int(c['d'])})" if c["kind"] == "shifted" else ""),
                         "control_role": role, "control_formed_at": c["formed_at"]})
        share = scores[(scores.run_id == peak.name) & (scores.metric == "memorization_share")]
        for r in share.itertuples(index=False):
            over.append({"seed": seed, "step": int(r.step), "tokens_seen": int(r.tokens_seen),
                         "head": f"L{int(r.layer)}.H{int(r.head)}", "memorization_share": float(r.value)})
    table = pd.DataFrame(rows)
    traj = pd.DataFrame(over).sort_values(["seed", "head", "step"])
    res = HERE / "results"
    table.to_csv(res / "memorizing_heads.csv", index=False, float_format="%.4g")
    traj.to_csv(res / "memorizing_heads_over_training.csv", index=False, float_format="%.4g")

    figs = {"head_attribution_peak_s0": head_attribution(scores, pairs[0][0].name, PROBE),
            "memorization_share_peak_s0": memorization_share_over_training(scores, pairs[0][0].name)}
    formats = [f for f in args.formats.split(",") if f]
    if formats:
        write_figures(figs, res / "figures", formats=formats)
    (res / "memorizing_heads.md").write_text(_markdown(table, traj, args))
    print((res / "memorizing_heads.md").read_text())


def _switch(traj: pd.DataFrame, seed: int, head: str) -> str:
    """First checkpoint from which the head's share stays at or above 0.5 to the end."""
    g = traj[(traj.seed == seed) & (traj["head"] == head)].sort_values("step")
    if g.empty or g.memorization_share.iloc[-1] < 0.5:
        return "–"
    below = g[g.memorization_share < 0.5]
    after = g[g.step > below.step.max()] if len(below) else g
    return f"{int(after.step.iloc[0]):,}"


def _markdown(table: pd.DataFrame, traj: pd.DataFrame, args) -> str:
    f = lambda v: "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"  # noqa: E731
    lines = ["| seed | head | Δ repeated (text) | Δ repeated (synthetic) | Δ test (text) | share | share ≥ 0.5 from step | "
             "peak: induction / shifted / prev. | control: Δ test (text) | control: shifted ind. | role in the control's circuit |",
             "|" + "---|" * 11]
    for r in table.sort_values(["seed", "head"]).itertuples(index=False):
        d = r._asdict()
        lines.append(
            f"| {r.seed} | {r.head} | {f(d['ablation_repeated_text_loss'])} | {f(d['ablation_repeated_synthetic_loss'])} | "
            f"{f(d['ablation_test_text_loss'])} | {f(d['memorization_share'])} | {_switch(traj, r.seed, r.head)} | "
            f"{f(d['peak_induction'])} / {f(d['peak_shifted_induction'])} / {f(d['peak_previous_token'])} | "
            f"{f(d['control_ablation_test_text_loss'])} | {f(d['control_shifted_induction'])} | "
            f"{(d['control_role'] + ' of ' + d['control_circuit']) if d['control_role'] else ''} |")
    return (f"Per head of the {args.preset} peak runs (f = 0.25, E = {args.peak}) at the last checkpoint: the rise in "
            "loss (nats) when the head is mean-ablated, on the repeated subset's natural-text and synthetic rows and on "
            "held-out text; `memorization_share` = r⁺/(r⁺+g⁺) of the two natural-text deltas (no value where neither "
            "reaches 1e-3 nats); the first checkpoint from which the share stays ≥ 0.5; the head's attention scores on "
            f"`{PROBE}`; and the same head (same seed, same initial weights) in the control. Produced by "
            "`python analyses/repeated_data_scaling/v1/memorizing_heads.py` (`results/memorizing_heads.csv`, "
            "`results/memorizing_heads_over_training.csv`).\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
