"""From an audit to an experiment: a sweep whose grid spans the corpus's own (f, E) buckets.

The sweep (:mod:`repeatlens.sweep`'s YAML) trains on the audited corpus with
``mixture.repeated_fraction`` over the token shares f of the corpus's repeated buckets (to
two significant digits, plus the f = 0 control) and ``mixture.repeat_count`` over their
repeat counts E (each bucket's token-weighted mean repeat count, rounded: the E its tokens
see), so a user can test the predicted damage on their
own model family. D is the planned tokens, at most one epoch of the corpus less its
held-out test sequences (training never wraps around the corpus: that would itself be
repetition). Every point of the grid must be a valid repetition spec at that D:
an f too small to hold one sequence at the largest E is left out (and named in the file),
and if no f survives, the largest E is dropped in turn.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import pandas as pd
import yaml

from repeatlens.config import DataConfig, MixtureConfig
from repeatlens.data.corpus import BUNDLED
from repeatlens.data.mixture import plan_mixture
from repeatlens.errors import ConfigError

F_KEY, E_KEY = "mixture.repeated_fraction", "mixture.repeat_count"


def _feasible(f: float, e: int, total_tokens: int, seq_len: int) -> bool:
    try:
        plan_mixture(MixtureConfig(total_tokens=total_tokens, repeated_fraction=f, repeat_count=e), seq_len)
    except ConfigError:
        return False
    return True


def sweep_grid(table: pd.DataFrame, unit: str, total_tokens: int, seq_len: int) -> tuple[list[float], list[int], list[str]]:
    """The f and E values of the grid, and what was left out (one line each).

    >>> t = pd.DataFrame({"unit": "document", "repeat_count": [1, 10, 100], "repeat_count_max": [1, 19, 199],
    ...                   "repeat_count_mean": [1.0, 12.4, 100.0],
    ...                   "items": [50, 3, 1], "tokens": [8000, 1200, 800], "token_fraction": [0.8, 0.12, 0.08]})
    >>> sweep_grid(t, "document", 1_000_000, 100)[:2]
    ([0.08, 0.12], [12, 100])
    """
    if total_tokens < seq_len:
        raise ConfigError(f"--write-sweep: D = {total_tokens:,} tokens is below one sequence of {seq_len}; the corpus is too "
                          "small to train on beside its held-out test sequences")
    rows = table[(table.unit == unit) & (table.repeat_count >= 2) & (table.token_fraction > 0)]
    if rows.empty:
        raise ConfigError(f"--write-sweep: the corpus has no repeated {unit} buckets (every {unit} occurs once); no grid to write")
    fs = sorted({float(f"{f:.2g}") for f in rows.token_fraction if float(f"{f:.2g}") < 1})
    es = sorted({int(round(e)) for e in rows.repeat_count_mean})  # >= 2: a mean of counts >= repeat_count >= 2
    left_out: list[str] = []
    while es:
        keep = [f for f in fs if all(_feasible(f, e, total_tokens, seq_len) for e in es)]
        if keep:
            left_out += [f"f = {f:g}: fewer than one sequence of {seq_len} tokens at E = {max(es)} and D = {total_tokens:,}"
                         for f in fs if f not in keep]
            return keep, es, left_out
        left_out.append(f"E = {es[-1]}: no f of the corpus holds one sequence of {seq_len} tokens at D = {total_tokens:,}")
        es = es[:-1]
    raise ConfigError(f"--write-sweep: at D = {total_tokens:,} tokens no repeated {unit} bucket holds one sequence of "
                      f"{seq_len} tokens; raise --tokens")


def _data_section(data: DataConfig) -> dict[str, Any]:
    """The data settings that differ from the defaults, with the source made absolute."""
    out = data.model_dump(mode="json", exclude_defaults=True)
    if data.source not in BUNDLED:
        out["source"] = os.path.abspath(os.path.expanduser(data.source))
    if data.tokenizer:
        out["tokenizer"] = os.path.abspath(os.path.expanduser(data.tokenizer))
    out["seq_len"] = data.seq_len
    return out


def sweep_document(table: pd.DataFrame, unit: str, data: DataConfig, total_tokens: int,
                   model: Optional[dict[str, Any]], train: Optional[dict[str, Any]] = None) -> tuple[str, dict[str, Any]]:
    """The sweep YAML's text, and what it records (grid, D, what was left out).

    Raises:
        ConfigError: the corpus has no repeated bucket of ``unit``, or none holds a sequence.
    """
    from repeatlens.sweep import expand_grid

    fs, es, left_out = sweep_grid(table, unit, total_tokens, data.seq_len)
    base: dict[str, Any] = {"data": _data_section(data), "mixture": {"total_tokens": int(total_tokens)}}
    if model:
        base["model"] = model
    if train:
        base["train"] = train
    grid = {F_KEY: [0.0, *fs], E_KEY: es, "seed": [0]}
    expand_grid(base, grid, where="--write-sweep")  # every point is a valid config and repetition spec
    header = [f"Written by `repeatlens audit`: a grid over the {unit} buckets of {data.source}.",
              "f: the buckets' token shares (2 significant digits) and the f = 0 control; E: the mean repeat count of each bucket's tokens.",
              f"D = {total_tokens:,} tokens per run" + ("" if model else "; model: the default ModelConfig (set model: to yours)") + "."]
    header += [f"left out: {line}" for line in left_out]
    text = "".join(f"# {h}\n" for h in header) + yaml.safe_dump({"base": base, "grid": grid}, sort_keys=False)
    return text, {"unit": unit, "total_tokens": int(total_tokens), "repeated_fraction": fs, "repeat_count": es, "left_out": left_out}
