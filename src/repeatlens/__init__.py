"""repeatlens: what repeating a small fraction of the training data does inside a model.

The notebook API mirrors the command line, and importing the package is cheap: each name
below is imported (with torch) on first use::

    import repeatlens
    run = repeatlens.load_run("runs/f0.1_E100")                  # a RunDir
    repeatlens.analyze("sweeps/tiny")                            # score every checkpoint
    repeatlens.analyze("runs/f0.1_E100", options=repeatlens.AnalyzeOptions(probes="synthetic", probe_len=20))
    scores = repeatlens.load_scores("sweeps/tiny", probe="synthetic")   # tidy DataFrame, one probe
    metrics = repeatlens.load_metrics("sweeps/tiny")             # training losses
    repeatlens.top_heads(scores, "induction", k=3)               # the 3 best induction heads per run
    repeatlens.run_sweep("analyses/configs/tiny_sweep.yaml", "sweeps/tiny")
    fit = repeatlens.fit_scaling(runs_table)                      # E* per size, alpha, N_eff (no torch)
    repeatlens.audit("shakespeare", "audit_out", model_size="10M")   # (f, E) of a corpus

    >>> import repeatlens
    >>> sorted(repeatlens.__all__)
    ['AnalyzeOptions', 'analyze', 'audit', 'fit_scaling', 'load_metrics', 'load_run', 'load_scores', 'load_sweep', 'run_sweep', 'top_heads']
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["load_run", "load_scores", "load_metrics", "analyze", "AnalyzeOptions", "run_sweep", "load_sweep", "fit_scaling", "audit", "top_heads"]

_LAZY = {
    "load_run": ("repeatlens.checkpoints", "load_run"),
    "analyze": ("repeatlens.analysis", "analyze"),
    "AnalyzeOptions": ("repeatlens.analyze_options", "AnalyzeOptions"),
    "load_scores": ("repeatlens.results.store", "load_scores"),
    "load_metrics": ("repeatlens.results.store", "load_metrics"),
    "run_sweep": ("repeatlens.sweep", "run_sweep"),
    "load_sweep": ("repeatlens.sweep", "load_sweep"),
    "fit_scaling": ("repeatlens.results.fits", "fit_scaling"),
    "audit": ("repeatlens.corpus_audit", "audit"),
    "top_heads": ("repeatlens.results.heads", "top_heads"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'repeatlens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
