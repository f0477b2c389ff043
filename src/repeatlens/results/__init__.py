"""The tidy tables: their schema, the store on disk, and the reductions every consumer shares.

* :mod:`.schema`: every column of the scores and metrics tables, with dtypes (no torch, no pandas);
* :mod:`.store`: a run's incremental scores table, its lock, the sweep join,
  :func:`load_scores` / :func:`load_metrics`;
* :mod:`.reduce`: per checkpoint, final per run, seed statistics, relative damage, probe
  selection, named copying circuits;
* :mod:`.fits`: the scaling statistics: the peak per model size, E* against N (alpha, or
  why it is not identified), effective model size (:func:`fit_scaling`);
* :mod:`.heads`: :func:`top_heads`, the best heads of a metric per run.

``study``, ``plots`` and ``report`` read only from here. Names are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = ("schema", "store", "reduce", "fits", "heads", "metric_facts")


def __getattr__(name: str) -> Any:
    for module in _MODULES:
        mod = importlib.import_module(f"repeatlens.results.{module}")
        if name in getattr(mod, "__all__", ()):
            value = getattr(mod, name)
            globals()[name] = value
            return value
    reduce = importlib.import_module("repeatlens.results.reduce")
    if name in reduce.RENAMED:  # a deprecated alias: warns, and is not cached here
        return getattr(reduce, name)
    raise AttributeError(f"module 'repeatlens.results' has no attribute {name!r}")
