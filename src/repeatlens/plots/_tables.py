"""Reductions of the tidy scores table that the figures share.

The scores table is long: one row per (run_id, step, metric, layer, head) with the run's
``repeated_fraction`` (f), ``repeat_count`` (E), ``total_tokens``, ``model_preset``,
``n_params`` and ``seed`` joined in. Model-level metrics have ``layer``/``head`` = NA.
"""

from __future__ import annotations

import pandas as pd

from repeatlens.errors import RepeatlensError

RUN_COLUMNS = ["run_id", "repeated_fraction", "repeat_count", "model_preset", "n_params", "seed"]
SCORE_COLUMNS = ["run_id", "step", "tokens_seen", "metric", "layer", "head", "value"]


class PlotDataError(RepeatlensError, ValueError):
    """A table handed to a figure lacks a column, a run or a value it needs."""


class UnsupportedFigureError(PlotDataError):
    """The sweep holds no data this figure can show (a metric, the control, a 2nd size)."""


QUANTITIES: dict[str, tuple[str, int, str]] = {
    "test_loss": ("test_loss", +1, "test-loss rise vs control"),
    "induction": ("induction", -1, "induction drop vs control"),
    "copying": ("copying_loss", +1, "copying-loss rise vs control"),
}
"""Damage quantities: name -> (metric, sign, label). Positive damage = worse than control.

``sign=+1``: relative rise of a loss, (v − c)/|c|; ``sign=-1``: relative drop of a score,
(c − v)/|c|; c is the mean over seeds of the f = 0 control of the same model size.
"""


def require_columns(table: pd.DataFrame, columns: list[str], what: str) -> None:
    """Raise PlotDataError naming the columns a table lacks.

    Args:
        table: The table to check.
        columns: Required column names.
        what: What the table is, for the message (e.g. ``"scores table"``).
    """
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise PlotDataError(f"{what} lacks column(s) {missing}; it has {list(table.columns)}")


RUN_DEFAULTS: dict[str, object] = {
    "repeated_fraction": float("nan"),
    "repeat_count": float("nan"),
    "total_tokens": float("nan"),
    "model_preset": "model",
    "n_params": 0,
    "seed": 0,
}
"""Run columns a table may lack (a foreign checkpoint folder has no sweep coordinates).

A run with unknown f and E is drawn in grey, in its own ``f = ?`` facet; figures that
compare against the control skip it."""


def check_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Validate the scores table and return it with tidy dtypes.

    The score columns are required; missing run columns get :data:`RUN_DEFAULTS`.

    Args:
        scores: The long scores table.

    Returns:
        A copy with numeric ``repeated_fraction``/``repeat_count``/``value``.
    """
    require_columns(scores, SCORE_COLUMNS, "scores table")
    out = scores.copy()
    for column, default in RUN_DEFAULTS.items():
        if column not in out.columns:
            out[column] = default
    out["repeated_fraction"] = out["repeated_fraction"].astype(float)
    out["repeat_count"] = out["repeat_count"].astype(float)
    out["n_params"] = out["n_params"].fillna(0)
    out["value"] = out["value"].astype(float)
    out["run_id"] = out["run_id"].astype(str)
    return out


def run_table(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per run with its sweep coordinates, sorted by size, f, E, seed.

    Args:
        scores: A validated scores table.

    Returns:
        Columns :data:`RUN_COLUMNS`, indexed 0..n-1.
    """
    runs = scores[RUN_COLUMNS].drop_duplicates("run_id")
    return runs.sort_values(["n_params", "repeated_fraction", "repeat_count", "seed", "run_id"]).reset_index(
        drop=True
    )


def model_label(preset: str, n_params: float) -> str:
    """Label of a model size, e.g. ``"small (1.2M params)"``.

    Args:
        preset: The model preset name.
        n_params: Its parameter count.

    Returns:
        The label.
    """
    from repeatlens.plots.theme import format_count

    return f"{preset} ({format_count(n_params)} params)" if n_params and n_params > 0 else str(preset)


def metric_rows(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of one metric with a finite value.

    Args:
        scores: A validated scores table.
        metric: Metric name.

    Returns:
        The rows; raises UnsupportedFigureError if there are none.
    """
    rows = scores[(scores["metric"] == metric) & scores["value"].notna()]
    if rows.empty:
        present = sorted(scores["metric"].unique())
        raise UnsupportedFigureError(f"the scores table has no {metric!r} rows; metrics present: {present}")
    return rows


def is_per_head(rows: pd.DataFrame) -> bool:
    """Whether a metric's rows are per head (head not NA).

    Args:
        rows: Rows of a single metric.

    Returns:
        True if any row names a head.
    """
    return bool(rows["head"].notna().any())


def per_checkpoint(
    scores: pd.DataFrame, metric: str, layer: int | None = None, head: int | None = None
) -> pd.DataFrame:
    """One value per (run, checkpoint); per-head metrics reduced by max over heads.

    With ``layer`` and ``head`` the single head is taken; with ``layer`` alone, the max
    over that layer's heads; with neither, the max over all heads. The returned
    ``layer``/``head`` columns name the head that attained the value (NA for
    model-level metrics).

    Args:
        scores: A validated scores table.
        metric: Metric name.
        layer: Optional layer restriction (per-head metrics only).
        head: Optional head (needs ``layer``).

    Returns:
        Run columns + ``step``, ``tokens_seen``, ``layer``, ``head``, ``value``.
    """
    rows = metric_rows(scores, metric)
    if not is_per_head(rows):
        if layer is not None or head is not None:
            raise PlotDataError(f"metric {metric!r} is model-level; layer/head do not apply")
        return rows.sort_values(["run_id", "step"]).reset_index(drop=True)
    if head is not None and layer is None:
        raise PlotDataError("head given without layer; pass both to select one head")
    rows = rows[rows["head"].notna()]
    if layer is not None:
        rows = rows[rows["layer"] == layer]
    if head is not None:
        rows = rows[rows["head"] == head]
    if rows.empty:
        raise PlotDataError(f"metric {metric!r} has no rows for layer={layer}, head={head}")
    best = rows.loc[rows.groupby(["run_id", "step"])["value"].idxmax()]
    return best.sort_values(["run_id", "step"]).reset_index(drop=True)


def final_values(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The metric at each run's last checkpoint (per-head: max over heads).

    Args:
        scores: A validated scores table.
        metric: Metric name.

    Returns:
        One row per run: run columns + ``step``, ``tokens_seen``, ``value``.
    """
    pc = per_checkpoint(scores, metric)
    return pc.loc[pc.groupby("run_id")["step"].idxmax()].reset_index(drop=True)


def control_mask(table: pd.DataFrame) -> pd.Series:
    """Rows of the f = 0 control.

    Args:
        table: Any table with ``repeated_fraction``.

    Returns:
        Boolean mask.
    """
    return table["repeated_fraction"].astype(float) == 0.0


def relative_damage(scores: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """Relative damage of every repeated-data (f > 0) run against its size's control.

    See :data:`QUANTITIES` for the definitions. Runs whose model size has no control
    are dropped.

    Args:
        scores: A validated scores table.
        quantity: ``"test_loss"``, ``"induction"`` or ``"copying"``.

    Returns:
        One row per non-control run: run columns + ``value``, ``control``, ``damage``.
    """
    if quantity not in QUANTITIES:
        raise PlotDataError(f"quantity must be one of {sorted(QUANTITIES)}, got {quantity!r}")
    metric, sign, _ = QUANTITIES[quantity]
    final = final_values(scores, metric)
    ctrl = final[control_mask(final)].groupby("n_params")["value"].mean().rename("control")
    if ctrl.empty:
        raise UnsupportedFigureError(f"no f = 0 control run has {metric!r}; relative damage needs one")
    runs = final[final["repeated_fraction"] > 0].join(ctrl, on="n_params", how="inner")
    if runs.empty:
        raise UnsupportedFigureError(
            f"no repeated-data run shares a model size with a control run that has {metric!r}"
        )
    runs = runs.copy()
    runs["damage"] = sign * (runs["value"] - runs["control"]) / runs["control"].abs()
    return runs.reset_index(drop=True)


def default_run(scores: pd.DataFrame) -> str:
    """The run a single-run figure shows by default: the most damaged one.

    The repeated-data run with the largest relative test-loss rise; without test loss
    or control, the run with the largest f, then E; a sweep of controls only gives its
    first run.

    Args:
        scores: A validated scores table.

    Returns:
        A run_id.
    """
    try:
        dmg = relative_damage(scores, "test_loss")
        return str(dmg.sort_values(["damage", "run_id"], ascending=[False, True]).iloc[0]["run_id"])
    except UnsupportedFigureError:
        pass
    runs = run_table(scores)
    runs = runs.sort_values(["repeated_fraction", "repeat_count", "seed"], ascending=[False, False, True])
    return str(runs.iloc[0]["run_id"])


def matching_control(scores: pd.DataFrame, run_id: str) -> str | None:
    """The control run of the same model size (same seed if there is one).

    Args:
        scores: A validated scores table.
        run_id: The run to match.

    Returns:
        A control run_id, or None if the sweep has none for that size.
    """
    runs = run_table(scores)
    this = runs[runs["run_id"] == run_id].iloc[0]
    ctrl = runs[control_mask(runs) & (runs["n_params"] == this["n_params"]) & (runs["run_id"] != run_id)]
    if ctrl.empty:
        return None
    same_seed = ctrl[ctrl["seed"] == this["seed"]]
    return str((same_seed if not same_seed.empty else ctrl).iloc[0]["run_id"])
