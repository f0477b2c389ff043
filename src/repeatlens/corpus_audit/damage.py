"""The damage map: which of a corpus's (f, E) buckets fall inside the predicted region.

A bucket holds repeat counts E from ``repeat_count`` to ``repeat_count_max``; against a
:class:`~repeatlens.corpus_audit.region.Region` [E_left, E_right] it is

* ``inside``: E_left ≤ repeat_count and repeat_count_max ≤ E_right;
* ``partly inside``: it overlaps the region without lying within it;
* ``below`` / ``above``: it lies wholly under E_left / over E_right;
* ``unknown``: the source gives only one edge and the bucket is on the unbounded side.

The region was measured at the repeated fraction of the experiments behind it; a bucket
that holds a far smaller share f of the tokens is inside the region's E range, not
predicted to cost as much.
"""

from __future__ import annotations

from typing import Optional, SupportsFloat

import pandas as pd

from repeatlens.corpus_audit.region import Region
from repeatlens.corpus_audit.table import UNIT_NOUNS, UNITS, items_label
from repeatlens.plots.theme import format_count

STATUSES = ("below", "partly inside", "inside", "above", "unknown")


def classify(low: float, high: float, region: Region) -> str:
    """Where the bucket [low, high] of E lies against the region (see the module docstring).

    >>> r = Region(1e7, 500.0, 16000.0, None, "published", "")
    >>> [classify(lo, hi, r) for lo, hi in [(100, 199), (200, 499), (500, 999), (10000, 19999), (20000, 49999)]]
    ['below', 'below', 'inside', 'partly inside', 'above']
    """
    left, right = region.left, region.right
    if left is not None and high < left:
        return "below"
    if right is not None and low > right:
        return "above"
    if left is None or right is None:
        return "unknown"
    return "inside" if left <= low and high <= right else "partly inside"


def damage_table(table: pd.DataFrame, region: Region) -> pd.DataFrame:
    """The audit table with a ``region`` column: each bucket's status against ``region``."""
    out = table.copy()
    out["region"] = [classify(lo, hi, region) for lo, hi in zip(out.repeat_count, out.repeat_count_max)]
    return out


def _pct(f: SupportsFloat) -> str:
    return f"{100 * float(f):.3g}%"


def _range(low: SupportsFloat, high: SupportsFloat) -> str:
    lo, hi = float(low), float(high)
    return f"{lo:,.4g}" if lo == hi else f"{lo:,.4g}–{hi:,.4g}"


def unit_sentence(rows: pd.DataFrame, unit: str, epochs: float, region: Optional[Region], span_min: int = 0) -> str:
    """One line on one unit: how much of it is repeated, and what lies inside the region.

    >>> rows = pd.DataFrame({"repeat_count": [1, 50, 500], "repeat_count_max": [1, 99, 999], "items": [900, 4, 2],
    ...                      "tokens": [9000, 600, 400], "token_fraction": [0.9, 0.06, 0.04],
    ...                      "region": ["below", "below", "inside"]})
    >>> unit_sentence(rows, "document", 1, Region(1e7, 500.0, 16000.0, None, "published", ""))
    'document: 10% of tokens sit in documents with more than one copy; 4% of tokens (2 documents) sit in documents copied 500–999 times, inside the predicted region E = 500–16,000 for N = 10M.'
    """
    noun, verb = UNIT_NOUNS[unit]
    if unit == "span":
        noun = f"spans of >= {span_min} tokens"
    per_epoch = "" if epochs == 1 else f" (E = copies × {epochs:g} epochs)"
    repeated = rows[rows.repeat_count_max > epochs]  # buckets of more than one copy
    line = f"{unit}: {_pct(repeated.token_fraction.sum())} of tokens sit in {noun} with more than one copy{per_epoch}"
    if region is None:
        if len(repeated):
            top = rows.iloc[-1]
            line += f"; the most repeated bucket, E = {_range(top.repeat_count, top.repeat_count_max)}, holds {_pct(top.token_fraction)}"
        return line + "."
    where = f"the predicted region {region.label()} for N = {format_count(region.n)}"
    inside = rows[rows.region == "inside"]
    partly = rows[rows.region == "partly inside"]
    if len(inside):
        lo, hi = inside.repeat_count.min() / epochs, inside.repeat_count_max.max() / epochs
        line += (f"; {_pct(inside.token_fraction.sum())} of tokens ({items_label(unit, int(inside['items'].sum()))}) sit in {noun} "
                 f"{verb} {_range(lo, hi)} times, inside {where}")
    else:
        line += f"; none lies wholly inside {where}"
    if len(partly):
        line += f"; {_pct(partly.token_fraction.sum())} in buckets partly inside (E = " + \
            ", ".join(_range(a, b) for a, b in zip(partly.repeat_count, partly.repeat_count_max)) + ")"
    return line + "."


def summary_lines(table: pd.DataFrame, epochs: float, region: Optional[Region], span_min: int = 0) -> list[str]:
    """The plain-text summary: one line per unit, then the region's source and caveats."""
    lines = [unit_sentence(table[table.unit == u], u, epochs, region, span_min) for u in UNITS if (table.unit == u).any()]
    if region is not None:
        lines.append(f"region: {region.description}.")
        lines += [f"note: {n}." for n in region.notes]
    return lines
