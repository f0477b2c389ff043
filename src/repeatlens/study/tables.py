"""The study's tables: per run (:func:`final_table`), per grid point (:func:`point_table`),
per run's copying circuit (:func:`circuit_table`), and the chance levels T3 reads."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from repeatlens.results import reduce

__all__ = ["STUDY_QUANTITIES", "LOSS_SPLITS", "ABILITIES", "SIZE", "final_table", "point_table", "standard_chance_levels",
           "circuit_table"]

STUDY_QUANTITIES = ("test_loss", "repeated_loss", "induction", "shifted_induction", "prefix_matching", "previous_token",
                    "copying_gain", "copying_loss")
"""Per-run quantities of :func:`final_table` from the scores (names of :data:`repeatlens.results.QUANTITIES`)."""
LOSS_SPLITS = ("test_text", "test_synthetic", "repeated_text", "repeated_synthetic")
"""Per-run final losses of :func:`final_table` from the training metrics, when the runs have them."""
ABILITIES = ("induction", "shifted_induction", "prefix_matching", "copying_gain")
"""The abilities T2 compares with the loss (higher is better for each)."""
SIZE = "n_params_nonembedding"
"""The model-size coordinate of the scaling targets: Kaplan et al. 2020's non-embedding N."""


def final_table(scores: pd.DataFrame, metrics: Optional[pd.DataFrame] = None, probe: Optional[str] = None, at: str = "last") -> pd.DataFrame:
    """Per run, the final (or first) checkpoint's losses, best-head scores and copying on
    one probe (:func:`repeatlens.results.check_scores`), plus the split losses of
    :data:`LOSS_SPLITS` from ``metrics`` when it has them."""
    final = reduce.quantities_table(reduce.check_scores(scores, probe), STUDY_QUANTITIES, at)
    if metrics is not None and len(metrics) and "split" in metrics.columns:
        splits = [s for s in LOSS_SPLITS if s in set(metrics["split"])]
        for split in splits:
            m = metrics[metrics["split"] == split].dropna(subset=["loss"])
            pick = m.groupby("run_id")["step"].idxmax() if at == "last" else m.groupby("run_id")["step"].idxmin()
            final[split] = final["run_id"].map(m.loc[pick].set_index("run_id")["loss"])
    return final


def point_table(final: pd.DataFrame, by_size: bool = False) -> pd.DataFrame:
    """Per (f, E) (and model size with ``by_size``): mean, seed range (``*_spread``,
    max - min) and seed count of every quantity."""
    cols = [c for c in STUDY_QUANTITIES + LOSS_SPLITS if c in final]
    keys = ([SIZE] if by_size else []) + ["repeated_fraction", "repeat_count"]
    if "control" in final.columns:
        keys.append("control")
    return reduce.seed_stats(final, keys, cols)


def standard_chance_levels(d_vocab: int, n_ctx: int) -> dict[str, float]:
    """Each attention score of causal uniform attention on the standard probes
    (:func:`repeatlens.scores.chance_levels` of ``get_probes(d_vocab, n_ctx)``).

    A randomly initialised model's attention is close to uniform, so its scores should sit
    near these values (query ``i`` gives ``1/(i+1)`` to each earlier key).
    """
    from repeatlens.scores import chance_levels as levels, get_probes

    return levels(get_probes(d_vocab, n_ctx))


def circuit_table(scores: pd.DataFrame, probe: Optional[str] = None) -> pd.DataFrame:
    """Per run: the copying circuit at its last checkpoint and when it formed.

    ``kind`` is ``canonical`` (induction: a later head at offset L-1, an earlier head one
    back), ``shifted`` (by ``d``: offset L-1-d and d+1 back) or ``none``, read off the
    offset profile by :func:`repeatlens.results.circuits` on one probe; ``head`` and
    ``partner`` name the pair with the highest later-head score, ``formed_at`` is the first
    scored checkpoint with the same circuit. Counting these per seed tells which circuit a
    regime forms: the offset-(L-1) induction score alone misses the shifted ones.
    """
    s = reduce.check_scores(scores, probe)
    found = reduce.circuits(s)
    cols = [c for c in ("run_id", "model_preset", SIZE, "repeated_fraction", "repeat_count", "seed") if c in s.columns]
    runs = s[cols].drop_duplicates("run_id")
    rows = []
    for r in runs.to_dict("records"):
        mine = found[found.run_id == r["run_id"]]
        last = s.loc[s.run_id == r["run_id"], "step"].max()
        at_end = mine[mine.step == last].sort_values("score", ascending=False)
        row = {**r, "kind": "none", "d": np.nan, "head": "", "partner": "", "score": np.nan, "formed_at": np.nan}
        if len(at_end):
            best = at_end.iloc[0]
            same = mine[(mine.kind == best.kind) & (mine.d == best.d)]
            row.update(kind=best.kind, d=int(best.d), head=f"L{int(best.layer)}.H{int(best['head'])}",
                       partner=f"L{int(best.partner_layer)}.H{int(best.partner_head)}", score=float(best.score),
                       formed_at=int(same.step.min()))
        rows.append(row)
    order = [c for c in (SIZE, "repeated_fraction", "repeat_count", "seed") if c in cols]
    return pd.DataFrame(rows).sort_values(order).reset_index(drop=True)
