"""Ranking heads: the commonest question asked of a scores table in a notebook.

:func:`top_heads` answers "which heads are the induction heads (or the copying heads, or
the ones whose ablation hurts most)?" for every run of a table, at one checkpoint.

A column named ``head`` and ``DataFrame.head``: ``df.head`` is pandas' method (the first
rows), never the column; read the column as ``df["head"]``. The rows :func:`top_heads`
returns also carry it as ``head_idx`` (the same values), so ``best.head_idx`` works.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

import pandas as pd

from repeatlens.results.reduce import MissingDataError, TableError, select_probe

__all__ = ["top_heads"]

Step = Union[int, Literal["last", "first"]]


def top_heads(
    scores: pd.DataFrame,
    metric: str,
    k: Optional[int] = 5,
    *,
    step: Step = "last",
    run_id: Optional[str] = None,
    probe: Optional[str] = None,
    largest: bool = True,
) -> pd.DataFrame:
    """The ``k`` heads with the highest value of a per-head metric (``largest=False``: the
    lowest), per run, at one checkpoint.

    Args:
        scores: a tidy scores table: :func:`repeatlens.load_scores`, or the rows of
            :func:`repeatlens.scores.score_model` (one checkpoint, no ``run_id``) or
            :func:`repeatlens.analysis.score_checkpoint`.
        metric: a per-head metric, e.g. ``"induction"`` or ``"ablation_copying_loss"``.
        k: heads per run (every head when ``k`` is None or at least their number).
        step: ``"last"`` (each run's last checkpoint with this metric), ``"first"``, or a
            training step every run shown has.
        run_id: only this run (default: every run of the table).
        probe: the probe to read when the metric reads one (a family such as ``"synthetic"``
            or a key, :func:`repeatlens.results.select_probe`); default the table's default.
        largest: rank by the highest values (True) or the lowest.

    Returns:
        One row per (run, head kept), best first within each run: ``run_id``, ``step``,
        ``tokens_seen`` (NA for :func:`score_model` rows), ``rank`` (1 = best), ``layer``,
        ``head``, ``head_idx`` (the same as ``head``: ``df.head`` is pandas' method),
        ``name`` (``"L1.H3"``), ``value`` and ``probe`` (the probe key read, ``""`` for none).
        Ties keep the lower layer, then the lower head.

    Raises:
        TableError: the table has no rows of ``metric`` (the metrics present are listed), the
            metric is model-level or per offset, ``run_id`` or ``step`` is not in the table,
            or ``k < 1``.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"metric": "induction", "layer": [0, 0, 1, 1], "head": [0, 1, 0, 1],
    ...                    "value": [0.1, 0.2, 0.9, 0.4]})
    >>> top_heads(df, "induction", k=2)[["rank", "name", "value"]].values.tolist()
    [[1, 'L1.H0', 0.9], [2, 'L1.H1', 0.4]]
    """
    from repeatlens.results.keys import row_keys

    if k is not None and k < 1:
        raise TableError(f"top_heads: k = {k}; expected at least 1 (or None: every head)")
    missing = [c for c in ("metric", "layer", "head", "value") if c not in scores.columns]
    if missing:
        raise TableError(f"top_heads: the table lacks column(s) {missing}; it has {list(scores.columns)}")
    df = scores.assign(**{c: "" if c == "run_id" else pd.NA for c in ("run_id", "step", "tokens_seen") if c not in scores.columns})
    if "probe" in df.columns:
        df = select_probe(df, probe)[0]
    rows = df[df["metric"] == metric]
    if rows.empty:
        raise MissingDataError(f"top_heads: no {metric!r} rows; metrics present: {sorted(scores['metric'].unique())}")
    if rows["head"].isna().all():
        raise TableError(f"top_heads: {metric!r} is a model-level metric (no layer and head)")
    if "offset" in rows.columns and rows["offset"].notna().any():
        raise TableError(f"top_heads: {metric!r} has one value per head and offset; rank a per-head metric")
    rows = rows[rows["head"].notna() & rows["value"].notna()].copy()
    rows["probe"] = row_keys(rows) if "probe" in rows.columns else ""
    rows["run_id"] = rows["run_id"].astype(str)
    if run_id is not None:
        if str(run_id) not in set(rows["run_id"]):
            raise TableError(f"top_heads: run {run_id!r} has no {metric!r} rows; runs with it: {sorted(rows['run_id'].unique())[:8]}")
        rows = rows[rows["run_id"] == str(run_id)]
    out = []
    for rid, g in rows.groupby("run_id", sort=True):
        if g["step"].isna().all():
            at = g
        elif step in ("last", "first"):
            at = g[g["step"] == (g["step"].max() if step == "last" else g["step"].min())]
        else:
            at = g[g["step"] == int(step)]
            if at.empty:
                raise TableError(f"top_heads: run {rid!r} has no {metric!r} rows at step {step}; its steps: {sorted(g['step'].unique())[:12]}")
        ranked = at.sort_values(["value", "layer", "head"], ascending=[not largest, True, True])
        ranked = ranked if k is None else ranked.iloc[:k]
        out.append(ranked.assign(rank=range(1, len(ranked) + 1)))
    best = pd.concat(out, ignore_index=True)
    best["layer"] = best["layer"].astype("Int64")
    best["head"] = best["head"].astype("Int64")
    best["head_idx"] = best["head"]
    best["name"] = [f"L{int(a)}.H{int(b)}" for a, b in zip(best["layer"], best["head"])]
    return best[["run_id", "step", "tokens_seen", "rank", "layer", "head", "head_idx", "name", "value", "probe"]].reset_index(drop=True)
