"""Factories for realistic tidy tables: a synthetic repetition sweep with known shape.

The sweep behaves like the paper's: test loss follows a power law in parameters for the
control and rises with repetition, peaking at E = 100 (double descent over E); the
induction head (layer 1, head 2) forms mid-training and is damaged more than the test
loss; copying loss falls as it forms; repeated-subset loss drops with E (memorization).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from repeatlens.plots.figures import PER_HEAD_ORDER

PER_HEAD = list(PER_HEAD_ORDER)
MODEL_LEVEL = ["copying_loss", "copying_gain", "icl_score", "test_loss", "repeated_loss", "memorization"]
INDUCTION_HEAD = (1, 2)


def damage(f: float, e: float) -> float:
    """Relative test-loss damage of (f, E): linear in f, peaked near E = 100, larger at E = 1000 than 10."""
    return 0.0 if f == 0 else 2.5 * f * math.exp(-((math.log10(e) - 2.2) ** 2) / 1.5)


def base_loss(n_params: float) -> float:
    """The control's asymptotic test loss: an exact power law in parameters."""
    return 5.0 * (n_params / 1e5) ** -0.1


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _run_rows(run: dict, steps: Sequence[int], n_layers: int, n_heads: int, metrics: set[str]) -> list[dict]:
    f, e, seed, n = run["repeated_fraction"], run["repeat_count"], run["seed"], run["n_params"]
    d = damage(f, e)
    noise = 0.004 * (seed + 1) * (1 if seed % 2 else -1)
    rows = []
    last = steps[-1]
    for step in steps:
        p = step / last
        tokens = int(run["total_tokens"] * p)
        form = _sig((p - 0.3) * 14)  # induction-head formation
        test = base_loss(n) * (1 + d * p**2) + 3.0 * math.exp(-6 * p) + noise
        model_vals = {
            "test_loss": test,
            "repeated_loss": test - (0.25 * math.log10(e) * p * (1 + 10 * f) if f > 0 else 0.0),
            "copying_loss": 4.0 - 3.0 * form * (1 - 1.6 * d) + noise,
            "copying_gain": 3.0 * form * (1 - 1.6 * d),
            "icl_score": -0.8 * form * (1 - 1.2 * d),
            "memorization": min(1.0, f * e * p / 5.0) if f > 0 else 0.0,
        }
        for metric, value in model_vals.items():
            if metric in metrics:
                rows.append({"step": step, "tokens_seen": tokens, "metric": metric, "layer": pd.NA,
                             "head": pd.NA, "value": value})
        for metric in PER_HEAD:
            if metric not in metrics:
                continue
            for layer in range(n_layers):
                for head in range(n_heads):
                    v = 0.03 + 0.01 * head + 0.005 * layer
                    if metric == "induction" and (layer, head) == INDUCTION_HEAD:
                        v = 0.9 * form * (1 - 2.0 * d) + 0.02
                    elif metric == "previous_token" and (layer, head) == (0, 1):
                        v = 0.85 * _sig((p - 0.1) * 20)
                    elif metric == "copying_ov":
                        v = (0.7 * form if (layer, head) == INDUCTION_HEAD else 0.1) - 0.05 * head
                    rows.append({"step": step, "tokens_seen": tokens, "metric": metric, "layer": layer,
                                 "head": head, "value": v + noise / 10})
    for r in rows:
        r.update(run)
    return rows


def make_scores(
    *,
    fractions: Sequence[float] = (0.0, 0.01, 0.1),
    repeat_counts: Sequence[int] = (10, 100, 1000),
    models: Sequence[tuple[str, int]] = (("tiny", 100_000), ("small", 800_000)),
    seeds: Sequence[int] = (0, 1),
    steps: Sequence[int] = (0, 50, 100, 200, 400, 800, 1600, 3200),
    n_layers: int = 2,
    n_heads: int = 4,
    total_tokens: int = 3_276_800,
    metrics: Sequence[str] = tuple(PER_HEAD + MODEL_LEVEL),
) -> pd.DataFrame:
    """A long scores table for a sweep over (f, E, model, seed).

    f = 0 gives one control per model and seed (repeat_count 1); each f > 0 is crossed
    with every E. Run ids look like ``tiny-f0.1-E100-s0``.
    """
    rows: list[dict] = []
    for preset, n_params in models:
        for f in fractions:
            for e in ([1] if f == 0 else repeat_counts):
                for seed in seeds:
                    run = {"run_id": f"{preset}-f{f:g}-E{e}-s{seed}", "repeated_fraction": float(f),
                           "repeat_count": int(e), "total_tokens": total_tokens, "model_preset": preset,
                           "n_params": int(n_params), "seed": int(seed)}
                    rows += _run_rows(run, steps, n_layers, n_heads, set(metrics))
    table = pd.DataFrame(rows)
    table["layer"] = table["layer"].astype("Int64")
    table["head"] = table["head"].astype("Int64")
    table["step"] = table["step"].astype(int)
    table["tokens_seen"] = table["tokens_seen"].astype(int)
    return table


def make_metrics(scores: pd.DataFrame, extra_steps: int = 3) -> pd.DataFrame:
    """A training-metrics table consistent with ``scores``: train/test/repeated losses.

    Losses are interpolated (in log tokens) between checkpoints, with ``extra_steps``
    evaluations between consecutive checkpoints, as a trainer logging more often would.
    """
    run_cols = ["run_id", "repeated_fraction", "repeat_count", "total_tokens", "model_preset", "n_params", "seed"]
    out = []
    for split, metric in (("test", "test_loss"), ("repeated", "repeated_loss")):
        src = scores[scores["metric"] == metric]
        for _rid, g in src.groupby("run_id"):
            g = g[g["tokens_seen"] > 0].sort_values("step")
            steps = np.unique(np.geomspace(g["step"].min(), g["step"].max(), len(g) * (extra_steps + 1)).astype(int))
            per_step = g["tokens_seen"].iloc[-1] / g["step"].iloc[-1]
            loss = np.interp(np.log(steps), np.log(g["step"].to_numpy(float)), g["value"].to_numpy(float))
            if split == "repeated" and g["repeated_fraction"].iloc[0] == 0:
                continue
            frame = pd.DataFrame({"step": steps, "tokens_seen": (steps * per_step).astype(int), "split": split,
                                  "loss": loss})
            for c in run_cols:
                frame[c] = g[c].iloc[0]
            out.append(frame)
            if split == "test":
                out.append(frame.assign(split="train", loss=loss * 0.97))
    return pd.concat(out, ignore_index=True)
