"""The runs table the scaling fits read: one row per run, its size columns, its loss (no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from repeatlens.results.fits.common import COLUMN_ALIASES, CONTROL_KINDS, ScalingDataError


# ------------------------------------------------------------------------------ the runs table


def default_loss(table: pd.DataFrame) -> str:
    """``test_text`` (the natural-text loss of mixed runs) when every run has it, else ``test_loss``."""
    if "test_text" in table.columns and table["test_text"].notna().all():
        return "test_text"
    return "test_loss"


def scaling_table(runs: Any, loss: Optional[str] = None) -> tuple[pd.DataFrame, str]:
    """Validate a one-row-per-run table and return a normalised copy and the loss column.

    Adds ``N`` / ``N_total`` from ``n_params_nonembedding`` / ``n_params`` when absent and
    ``control`` from f when absent (f = 0: ``full``, else ``none``); drops runs whose loss is
    missing (their count is in ``attrs["dropped"]``). Raises :class:`ScalingDataError`
    naming the column or value at fault.
    """
    table = runs.copy() if isinstance(runs, pd.DataFrame) else pd.DataFrame(runs)
    for column, alias in COLUMN_ALIASES.items():
        if column not in table.columns and alias in table.columns:
            table[column] = table[alias]
    loss = loss or default_loss(table)
    need = ["N", "repeated_fraction", "repeat_count", "seed", loss]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ScalingDataError(f"the runs table lacks column(s) {missing} (N may be given as n_params_nonembedding); "
                               f"it has {list(table.columns)}")
    for column in ["N", "repeated_fraction", "repeat_count", loss] + [c for c in ("N_total", "total_tokens", "unique_tokens")
                                                                        if c in table.columns]:
        try:
            table[column] = pd.to_numeric(table[column]).astype(float)
        except (TypeError, ValueError):
            raise ScalingDataError(f"column {column!r} of the runs table is not numeric") from None
    derived = np.where(table["repeated_fraction"] == 0, "full", "none")
    if "control" not in table.columns:
        table["control"] = derived
    table["control"] = table["control"].fillna("").astype(str)
    table.loc[table["control"] == "", "control"] = derived[(table["control"] == "").to_numpy()]  # tables that did not record it
    bad = sorted(set(table["control"]) - set(CONTROL_KINDS))
    if bad:
        raise ScalingDataError(f"column 'control' holds {bad}; expected one of {', '.join(CONTROL_KINDS)}")
    f, kind = table["repeated_fraction"], table["control"]
    if not ((f >= 0) & (f < 1)).all():
        raise ScalingDataError(f"repeated_fraction must lie in [0, 1); got {sorted(set(f[~((f >= 0) & (f < 1))]))}")
    if ((kind == "none") & (f == 0)).any() or ((kind != "none") & (f > 0)).any():
        raise ScalingDataError("column 'control' contradicts repeated_fraction: a control ('full', 'data_matched') has f = 0, "
                               "a repeated run ('none') f > 0")
    if not (table["N"] > 0).all():
        raise ScalingDataError(f"N must be a positive parameter count; got {sorted(set(table.loc[~(table['N'] > 0), 'N']))}")
    if not (table.loc[kind == "none", "repeat_count"] >= 1).all():
        raise ScalingDataError("repeat_count must be at least 1 for every repeated run")
    keep = table[loss].notna() & np.isfinite(table[loss])
    out = table[keep].reset_index(drop=True)
    out.attrs["dropped"] = int((~keep).sum())
    return out, loss


def read_runs_table(path: str | Path) -> pd.DataFrame:
    """A per-run table from a ``.csv`` or ``.parquet`` file (one line naming the file when unreadable)."""
    p = Path(path)
    if not p.is_file():
        raise ScalingDataError(f"{p}: no such file")
    try:
        if p.suffix == ".csv":
            return pd.read_csv(p)
        if p.suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ScalingDataError(f"{p}: unreadable table ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    raise ScalingDataError(f"{p}: expected a .csv or .parquet table of runs, or a sweep directory")
