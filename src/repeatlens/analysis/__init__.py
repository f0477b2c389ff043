"""Score every checkpoint of a run, a sweep or a folder of other people's checkpoints.

``analyze(PATH)`` writes one long, tidy table per run, ``scores.parquet`` (columns in
:mod:`repeatlens.results.schema`; the store in :mod:`repeatlens.results.store`):

* **a run directory**: the table goes into the run; behaviour scores (test loss,
  repeated-subset loss, memorization, ICL) use up to ``max_sequences`` of the run's
  held-out and repeated sequences.
* **a sweep directory** (run directories side by side): every run is analysed, then the
  sweep root gets ``scores.parquet`` and ``metrics.parquet``, every run's rows joined with
  its coordinates (f, E, D, model preset, parameter counts, seed).
* **other people's checkpoints** (see :mod:`repeatlens.foreign`): the table is written
  inside the folder analysed. Only token-free scores are computed unless ``tokens`` (an
  ``.npy`` of token ids ``[n, seq]``) is given, which then serves as the test set and as
  the data of the ``train`` and ``text`` probes.

Probes. The attention scores, the copying loss and gain and the ablation read a probe
batch (:mod:`repeatlens.scores.probes`), and what they see depends on it. By default every
probe family that applies is scored: a run mixing a corpus with the synthetic source gets
``uniform``, ``train``, ``synthetic`` and ``text``; a synthetic-only run ``uniform``,
``train`` and ``synthetic``; a corpus-only run ``uniform``, ``train`` and ``text``; other
people's checkpoints ``uniform``, plus ``train`` and ``text`` with ``tokens``. ``probes``,
``probe_len``, ``probe_batch`` and ``probe_seed`` choose others; each combination is its
own set of rows (the ``probe*`` columns), so analysing a run twice with two copy lengths
keeps both.

Incremental: a re-run scores only the (checkpoint, metric, probe) triples not yet scored at
the current score version (:data:`repeatlens.scores.SCORE_VERSION`), also those whose
score yielded no row. The table is rewritten atomically after EACH checkpoint, so an
interrupted analysis resumes where it stopped. One model is in memory at a time.

Concurrent: each folder whose table is written (a run, a foreign folder, the sweep root)
is locked (:func:`repeatlens.io.file_lock` on its ``.repeatlens.lock``) from reading its
table to writing it back, so two ``repeatlens analyze`` processes on the same run or sweep
never lose each other's rows. The second process waits for the first (saying so on
stderr), then finds the work done and skips it; on a sweep, a process first scores the
runs nobody else holds and only then waits for the others.

A bad checkpoint (missing, truncated, mismatched, refused pickle, sha256 mismatch) is
recorded as a :class:`Failure` (file and one-line reason) and the others are still
scored; ``repeatlens analyze`` lists the failures at the end and exits with code 1.

How to score is one :class:`AnalyzeOptions` (:mod:`repeatlens.analyze_options`, declared once for
the API, the command line and sweeps). The package: :mod:`.loop` (the scoring loop every source shares),
:mod:`.runs` (our runs and sweeps as sources) and :mod:`.foreign_source` (other people's
checkpoints); :func:`analyze` here picks the source.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterable, Optional

from repeatlens.checkpoints import RunDir
from repeatlens.errors import CheckpointError, ConfigError
from repeatlens.results.store import sweep_runs
from repeatlens.analysis.foreign_source import _analyze_foreign
from repeatlens.analysis.loop import TOKENS_AXIS, AnalysisResult, Failure, token_tensor
from repeatlens.analyze_options import AnalyzeOptions
from repeatlens.analysis.runs import (
    _analyze_run,
    _analyze_sweep,
    check_run_options,
    needs_scoring,
    run_probe_source,
    run_special_ids,
    score_checkpoint,
)

__all__ = [
    "analyze",
    "AnalyzeOptions",
    "score_checkpoint",
    "needs_scoring",
    "run_probe_source",
    "token_tensor",
    "Failure",
    "AnalysisResult",
    "run_special_ids",
    "TOKENS_AXIS",
]


def analyze(
    path: str | Path,
    metrics: Optional[Iterable[str]] = None,
    *,
    options: Optional[AnalyzeOptions] = None,
    seed: Optional[int] = None,
    **keywords: Any,
) -> AnalysisResult:
    """Score every checkpoint under ``path``: a run, a sweep or a foreign folder.

    Args:
        path: run directory, sweep directory, a folder of other people's checkpoints
            (:mod:`repeatlens.foreign`: TransformerLens ``model_{step}.pt``, Hugging Face
            revision folders, nanoGPT ``ckpt.pt``), or ``hf:ORG/NAME`` (the local hub cache).
        metrics: metric names from :data:`repeatlens.scores.REGISTRY` (default: the default
            battery); the same as ``AnalyzeOptions.metrics`` (give one of the two).
        options: an :class:`AnalyzeOptions`; the keywords below change single fields of it.
        seed: deprecated name of ``probe_seed``; giving both is an error.
        **keywords: any field of :class:`AnalyzeOptions`, validated as it validates them:
            ``max_sequences`` (test / repeated sequences the behaviour scores read, 64),
            ``batch_size`` (32), ``device`` (``auto``: CUDA, then MPS, then CPU),
            ``probes`` (families, ``"synthetic,text"`` or a list; default every family that
            applies, see the module docstring), ``probe_len`` (``L``, the copy length of
            ``[BOS, r, r]``; default ``2P`` for the context), ``probe_batch`` (16),
            ``probe_seed`` (0), ``force`` (score again what is scored), ``progress``,
            ``lock_timeout`` (seconds to wait while another process writes the same table;
            None: as long as it takes); other people's checkpoints only: ``tokens`` (``.npy``
            token ids, the test set and the data of the ``train`` and ``text`` probes),
            ``tokens_per_step`` (``tokens_seen = step * tokens_per_step``), ``out`` (folder
            for the table: required for ``hf:``, default the folder analysed), and for ``hf:``
            ``revisions`` (default every cached one with a step) and ``download`` (fetch the
            requested revisions the cache lacks: network).

    Returns:
        An :class:`AnalysisResult`; ``result.failures`` lists the checkpoints that could
        not be scored (everything else was).

    Raises:
        RepeatlensError: ``path`` is none of the above, or an argument is invalid (e.g. a
            probe family that does not apply, a copy length that does not fit the context).
        LockTimeout: another process held a table's lock for over ``lock_timeout`` seconds.
    """
    from repeatlens.devices import resolve_device
    from repeatlens.foreign import looks_foreign

    if seed is not None:
        if "probe_seed" in keywords:
            raise ConfigError(f"seed={seed} and probe_seed={keywords['probe_seed']}: give probe_seed only (seed is its deprecated name)")
        warnings.warn("analyze(seed=...) is deprecated: use probe_seed=...", DeprecationWarning, stacklevel=2)
        keywords["probe_seed"] = seed
    opts = (options or AnalyzeOptions()).with_(**keywords)
    if metrics is not None:
        if opts.metrics is not None:
            raise ConfigError("analyze: metrics given twice (as an argument and in options); give one")
        opts = opts.with_(metrics=metrics)
    opts = opts.model_copy(update={"device": resolve_device(opts.device)})
    metrics = opts.metrics
    if str(path).startswith("hf:"):
        return _analyze_foreign(str(path), metrics, opts)
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such directory")
    if RunDir(p).looks_like_run():
        RunDir(p).require()  # a run directory that lost its config or manifest: say which
    if RunDir(p).is_run() or sweep_runs(p):
        if opts.out is not None or opts.revisions is not None or opts.download:
            raise ConfigError(f"{p}: --out, --revisions and --download are for other people's checkpoints; runs keep their tables inside")
        return _analyze_run(p, metrics, opts) if RunDir(p).is_run() else _analyze_sweep(p, metrics, opts)
    if looks_foreign(p):
        return _analyze_foreign(p, metrics, opts)
    raise CheckpointError(
        f"{p}: not a run directory, a sweep (folder of runs), a TransformerLens folder (model_{{step}}.pt + config.json), "
        "a folder of Hugging Face revision folders (step1000/, checkpoint-1000/, ...) or nanoGPT ckpt.pt files"
    )
