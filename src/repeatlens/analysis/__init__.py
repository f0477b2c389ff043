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

The package: :mod:`.loop` (the scoring loop every source shares, the options),
:mod:`.runs` (our runs and sweeps as sources) and :mod:`.foreign_source` (other people's
checkpoints); :func:`analyze` here picks the source.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Optional, Sequence

from repeatlens.checkpoints import RunDir
from repeatlens.errors import CheckpointError, ConfigError
from repeatlens.results.store import sweep_runs
from repeatlens.analysis.foreign_source import _analyze_foreign
from repeatlens.analysis.loop import TOKENS_AXIS, AnalysisResult, Failure, _options, token_tensor
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
    max_sequences: int = 64,
    tokens: Optional[str | Path] = None,
    tokens_per_step: Optional[int] = None,
    out: Optional[str | Path] = None,
    revisions: Optional[Sequence[str]] = None,
    download: bool = False,
    force: bool = False,
    progress: bool = True,
    device: str = "auto",
    probes: Optional[str | Sequence[str]] = None,
    probe_len: Optional[int] = None,
    probe_batch: int = 16,
    probe_seed: Optional[int] = None,
    seed: Optional[int] = None,
    batch_size: int = 32,
    lock_timeout: Optional[float] = None,
) -> AnalysisResult:
    """Score every checkpoint under ``path``: a run, a sweep or a foreign folder.

    Args:
        path: run directory, sweep directory, a folder of other people's checkpoints
            (:mod:`repeatlens.foreign`: TransformerLens ``model_{step}.pt``, Hugging Face
            revision folders, nanoGPT ``ckpt.pt``), or ``hf:ORG/NAME`` (the local hub cache).
        metrics: metric names from :data:`repeatlens.scores.REGISTRY` (default: all).
        max_sequences: test / repeated sequences the behaviour scores read.
        tokens: foreign folders only: ``.npy`` token ids, the test set and the data of the
            ``train`` and ``text`` probes.
        tokens_per_step: foreign folders only: ``tokens_seen = step * tokens_per_step``.
        out: foreign sources only: folder for the scores table (required for ``hf:``;
            default the folder analysed).
        revisions: ``hf:`` only: revisions to analyse (default every cached one with a step).
        download: ``hf:`` only: fetch requested revisions the cache lacks (network).
        force: score again what is already scored.
        progress: progress bar over checkpoints.
        device: torch device for loading and scoring; ``auto``: CUDA, then MPS, then CPU.
        probes: probe families (``"synthetic,text"`` or a list); default every family
            that applies (see the module docstring).
        probe_len: ``L``, the copy length of ``[BOS, r, r]``; default ``2P`` for the context.
        probe_batch: probe rows of each kind.
        probe_seed: seed of the probe draw (default 0).
        seed: deprecated name of ``probe_seed``; giving both is an error.
        batch_size: sequences per forward pass of the behaviour scores.
        lock_timeout: seconds to wait while another process writes the same table
            (None: as long as it takes).

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
        if probe_seed is not None:
            raise ConfigError(f"seed={seed} and probe_seed={probe_seed}: give probe_seed only (seed is its deprecated name)")
        warnings.warn("analyze(seed=...) is deprecated: use probe_seed=...", DeprecationWarning, stacklevel=2)
        probe_seed = seed
    opts = _options(
        max_sequences=max_sequences, force=force, progress=progress, device=resolve_device(device), probes=probes,
        probe_len=probe_len, probe_batch=probe_batch, probe_seed=0 if probe_seed is None else probe_seed, batch_size=batch_size,
        lock_timeout=lock_timeout,
    )
    foreign = dict(out=out, revisions=revisions, download=download)
    if str(path).startswith("hf:"):
        return _analyze_foreign(str(path), metrics, opts, tokens, tokens_per_step, **foreign)
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such directory")
    if RunDir(p).looks_like_run():
        RunDir(p).require()  # a run directory that lost its config or manifest: say which
    if RunDir(p).is_run() or sweep_runs(p):
        if out is not None or revisions is not None or download:
            raise ConfigError(f"{p}: --out, --revisions and --download are for other people's checkpoints; runs keep their tables inside")
        return _analyze_run(p, metrics, opts) if RunDir(p).is_run() else _analyze_sweep(p, metrics, opts)
    if looks_foreign(p):
        return _analyze_foreign(p, metrics, opts, tokens, tokens_per_step, **foreign)
    raise CheckpointError(
        f"{p}: not a run directory, a sweep (folder of runs), a TransformerLens folder (model_{{step}}.pt + config.json), "
        "a folder of Hugging Face revision folders (step1000/, checkpoint-1000/, ...) or nanoGPT ckpt.pt files"
    )
