"""Our own runs and sweeps as scoring sources: a run's probes, data and checkpoints;
:func:`needs_scoring`, :func:`score_checkpoint`; a sweep scored run by run and joined."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

import numpy as np

from repeatlens.checkpoints import RunDir
from repeatlens.data.special import SpecialIds
from repeatlens.errors import CheckpointError
from repeatlens.results.store import SCORES_FILE, ScoreTable, run_coordinates, sweep_runs, write_sweep_tables
from repeatlens.analysis.loop import (
    AnalysisResult,
    Failure,
    _Item,
    _Source,
    _mask_tensor,
    _probe_batches,
    _score_source,
    _specs,
    _todo,
    _versions,
    token_tensor,
)
from repeatlens.analyze_options import AnalyzeOptions

if TYPE_CHECKING:
    import pandas as pd

    from repeatlens.config import RunConfig
    from repeatlens.scores.probes import ProbeSource


# -------------------------------------------------------------------------------- runs


def run_special_ids(run: RunDir) -> SpecialIds:
    """The probes' BOS and excluded ids of one of our runs, and where they came from: the
    manifest's record (the tokenizer, a ``.bin`` corpus's ``data.bin_bos_id`` or the synthetic
    source decided them when the run was prepared; :meth:`RunDir.special_ids`)."""
    return run.special_ids()


def run_probe_source(run: RunDir) -> "ProbeSource":
    """What the probe families draw from for one of our runs.

    ``train``: the counts of the tokens the run trains on (:meth:`RunDir.training_token_counts`);
    ``synthetic``: the id range the run's synthetic source draws from (recorded in the
    manifest; for older runs, taken from the config); ``text``: the run's held-out test
    sequences that come from the corpus (none for a synthetic-only run, and none for a
    mixed run written before the pool recorded which rows are synthetic). A run with a
    synthetic share repeats spans of at most ``data.synthetic.max_len`` tokens within a
    sequence, which caps every family's default copy length (:func:`default_copy_len`).
    """
    from repeatlens.scores.probes import ProbeSource

    cfg, man = run.config(), run.manifest()
    data = cfg.data
    vocab = man.vocab_size
    special = run.special_ids()  # the manifest's record; BOS 0 for a run written before it was kept
    synthetic: Optional[tuple[int, int]] = None
    longest: Optional[int] = None
    if data.synthetic_only or data.synthetic_fraction > 0:
        longest = int(data.synthetic.max_len)
        if man.synthetic_ids is not None:
            synthetic = man.synthetic_ids
        else:  # a run written before the range was recorded: the ordinary ids its source drew from
            ids = special.ordinary_ids(vocab, None if data.synthetic_only else data.synthetic.token_ids)
            synthetic = (int(ids[0]), int(ids[-1]) + 1)
    kinds = run.is_synthetic()
    text = None
    if kinds is not None and not data.synthetic_only:
        n_test = man.n_test
        text_rows = np.flatnonzero(~kinds[:n_test])
        text = np.asarray(run.pool()[text_rows]) if len(text_rows) else None
    return ProbeSource(
        d_vocab=vocab,
        n_ctx=int(cfg.model.n_ctx),
        bos=special.bos,
        exclude=special.special,
        train_counts=run.training_token_counts(vocab),
        synthetic_ids=synthetic,
        text=text,
        longest_repeat=longest,
    )


def check_run_options(cfg: "RunConfig", metrics: Optional[Iterable[str]] = None, options: Optional[AnalyzeOptions] = None,
                      **keywords: Any) -> None:
    """Check the :func:`analyze` options a run of ``cfg`` will be scored with, before it is
    trained (a sweep's ``analyze:`` section, ``options`` and/or keywords as :func:`analyze`
    takes them): the metric names, the probe settings, that
    each probe family asked for applies to such a run and that the copy length fits its context.

    The families that apply follow :func:`run_probe_source`: ``uniform`` and ``train``
    always, ``synthetic`` with a synthetic share, ``text`` when some test rows come from a corpus.

    Raises:
        ConfigError: the same one line :func:`analyze` would give once the run is trained.
    """
    from repeatlens.data.pools import _split
    from repeatlens.scores import resolve_metrics
    from repeatlens.scores.probes import ProbeSource

    if metrics is not None:
        resolve_metrics(metrics)
    data = cfg.data
    share = data.synthetic_share
    source = ProbeSource(
        d_vocab=2, n_ctx=int(cfg.model.n_ctx), train_counts=np.ones(2), synthetic_ids=(1, 2) if share > 0 else None,
        text=np.zeros((_split(data.test_sequences, share)[0], 2)) if not data.synthetic_only else None,
        longest_repeat=int(data.synthetic.max_len) if share > 0 else None,
    )
    _specs(source, (options or AnalyzeOptions()).with_(**keywords))


def _run_source(run: RunDir, max_sequences: int, device: str) -> _Source:
    from repeatlens.model import model_from_state_dict

    hcfg = run.hooked_config(device)
    hcfg.init_weights = False  # every load overwrites all weights: skip the random init

    def loader(info):
        return lambda: model_from_state_dict(hcfg, info.load_state_dict(), device=device)

    items = [_Item(info.weights_path, info.step, info.tokens_seen, loader(info)) for info in run.checkpoints()]
    n = max(int(max_sequences), 0)
    return _Source(
        kind="run",
        run_id=run.run_id,
        table_path=run.path / SCORES_FILE,
        items=items,
        probe_source=run_probe_source(run),
        special=run_special_ids(run),
        n_heads=run.config().model.n_layers * run.config().model.n_heads,
        test_tokens=np.asarray(run.test_tokens()[:n]),
        repeated_tokens=np.asarray(run.repeated_tokens()[:n]),
        **_split_masks(run, n),
        run_info=run_coordinates(run),
    )


def _split_masks(run: RunDir, n: int) -> dict[str, Optional[np.ndarray]]:
    """Which of the first ``n`` test and repeated rows came from the synthetic source, for a
    run mixing a corpus with it (:meth:`RunDir.mixed_kinds`); None for the others."""
    kinds = run.mixed_kinds()
    if kinds is None:
        return {"test_synthetic": None, "repeated_synthetic": None}
    man = run.manifest()
    return {"test_synthetic": np.asarray(kinds[: man.n_test][:n]),
            "repeated_synthetic": np.asarray(kinds[man.n_test : man.n_test + man.n_repeated][:n])}


def _analyze_run(path: Path, metrics: Optional[Iterable[str]], opts: AnalyzeOptions, *, wait: bool = True, check: bool = True) -> AnalysisResult:
    run = RunDir(path).require()
    if check:
        run.check(full=True)  # every file hashed before its data is scored
    return _score_source(_run_source(run, opts.max_sequences, opts.device), metrics, opts, wait=wait)


def needs_scoring(path: str | Path, metrics: Optional[Iterable[str]] = None, options: Optional[AnalyzeOptions] = None,
                  **probe_options: Any) -> bool:
    """Whether some checkpoint of run ``path`` lacks a metric (for some probe that
    ``analyze`` would score with ``options``, changed by ``probe_options``) at its current version."""
    from repeatlens.scores import default_metrics, resolve_metrics

    run = RunDir(path)
    if not run.is_run():
        return True
    opts = (options or AnalyzeOptions()).with_(**probe_options)
    model = run.config().model
    names = resolve_metrics(metrics) if metrics is not None else default_metrics(model.n_layers * model.n_heads)[0]
    keys = [s.key for s in _specs(run_probe_source(run), opts)]
    table = ScoreTable.read(run.path / SCORES_FILE)
    versions = _versions(names)
    return any(_todo(table, info.step, names, keys, versions, False) for info in run.checkpoints())


def score_checkpoint(
    run: RunDir,
    step: Optional[int] = None,
    metrics: Optional[Iterable[str]] = None,
    *,
    max_sequences: int = 64,
    device: str = "cpu",
    **probe_options: Any,
) -> "pd.DataFrame":
    """Score one checkpoint of ``run`` (default: the last) with every probe that applies
    (or those in ``probe_options``: ``probes``, ``probe_len``, ``probe_batch``,
    ``probe_seed``), without writing the run's table.

    Returns:
        The rows of :func:`repeatlens.scores.score_model`, with ``run_id``, ``step`` and
        ``tokens_seen`` in front.
    """
    from repeatlens.scores import default_metrics, resolve_metrics, score_model

    shape = run.config().model
    names = resolve_metrics(metrics) if metrics is not None else default_metrics(shape.n_layers * shape.n_heads)[0]
    opts = AnalyzeOptions.parse(probe_options, "score")
    info = run.checkpoint(step)
    probes = _probe_batches(run_probe_source(run), opts)
    model = run.load_model(info.step, device=device)
    n = max(int(max_sequences), 0)
    masks = {k: _mask_tensor(v) for k, v in _split_masks(run, n).items()}
    df = score_model(
        model, names, probes=list(probes.values()), test_tokens=token_tensor(run.test_tokens()[:n]),
        repeated_tokens=token_tensor(run.repeated_tokens()[:n]), device=device, **masks,
    )
    df.insert(0, "tokens_seen", info.tokens_seen)
    df.insert(0, "step", info.step)
    df.insert(0, "run_id", run.run_id)
    return df


# ------------------------------------------------------------------------------- sweeps


def _analyze_sweep(path: Path, metrics: Optional[Iterable[str]], opts: AnalyzeOptions) -> AnalysisResult:
    from repeatlens.errors import LockTimeout

    runs = sweep_runs(path)
    result = AnalysisResult(path, "sweep")
    sound = []
    for run in runs:  # a run whose files disagree is listed as a failure; the others are scored
        try:
            sound.append(run.check(full=True))
        except CheckpointError as e:
            result.failures.append(Failure.from_error(run.path, e))
    busy = []
    for run in sound:  # first the runs no other process is scoring …
        try:
            result.merge(_analyze_run(run.path, metrics, opts, wait=False, check=False))
        except LockTimeout:
            busy.append(run)
    for run in busy:  # … then wait for the others, and score what they left
        result.merge(_analyze_run(run.path, metrics, opts, check=False))
    result.tables += write_sweep_tables(path, sound, lock_timeout=opts.lock_timeout)
    return result
