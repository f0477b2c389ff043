"""Other people's checkpoints as a scoring source (:mod:`repeatlens.foreign` finds them): probes
read off the first model loaded, the optional tokens file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

import numpy as np

from repeatlens.errors import CheckpointError, DataError, first_line
from repeatlens.results.store import SCORES_FILE
from repeatlens.analysis.loop import AnalysisResult, Failure, _Item, _Source, _score_source
from repeatlens.analyze_options import AnalyzeOptions

if TYPE_CHECKING:
    from repeatlens.scores.probes import ProbeSource


# ----------------------------------------------------------------------------- foreign


def _foreign_probe_source(model: Any, item: _Item, tokens: Optional[np.ndarray]) -> "ProbeSource":
    """Probes for other people's checkpoints: ``uniform``, plus ``train`` (frequencies of
    ``tokens``) and ``text`` (spans of ``tokens``) when token ids are given. BOS and the
    excluded special ids are the ones :mod:`repeatlens.foreign` validated from the config."""
    from repeatlens.scores.probes import ProbeSource

    vocab, n_ctx = int(model.cfg.d_vocab), int(model.cfg.n_ctx)
    special = item.special
    if special is None:
        raise AssertionError(f"{item.path}: a foreign checkpoint without its special ids")  # repeatlens.foreign always sets them
    counts = text = None
    if tokens is not None and len(tokens):
        counts = np.bincount(np.asarray(tokens, dtype=np.int64).ravel(), minlength=vocab)[:vocab]
        text = np.asarray(tokens)[:, :n_ctx]
    return ProbeSource(d_vocab=vocab, n_ctx=n_ctx, bos=special.bos, exclude=special.special,
                       train_counts=counts, text=text)


def _analyze_foreign(path: str | Path, metrics: Optional[Iterable[str]], opts: AnalyzeOptions) -> AnalysisResult:
    from repeatlens.foreign import discover
    from repeatlens.scores import resolve_metrics

    revisions = list(opts.revisions) if opts.revisions is not None else None
    folder = discover(path, opts.tokens_per_step, revisions=revisions, out=opts.out, download=opts.download)
    if folder is None:
        raise CheckpointError(f"{path}: no foreign checkpoints found")
    resolve_metrics(metrics)  # a bad metric name fails before the weights are hashed
    return _score_source(_foreign_source(path, folder, opts), metrics, opts)


def _foreign_source(path: str | Path, folder: Any, opts: AnalyzeOptions) -> _Source:
    """The scoring source of a folder of other people's checkpoints (:class:`repeatlens.foreign.ForeignFolder`):
    its checkpoints, hashed for duplicates (each said on stderr, with the folder's warnings),
    and the probes read off the first model loaded (with ``opts.tokens``: its train and text data)."""
    tokens = opts.tokens
    test = _read_tokens(tokens, opts.max_sequences) if tokens is not None else None
    all_tokens = _read_tokens(tokens, None) if tokens is not None else None
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    for w in folder.warnings:
        say(f"warning: {w}")
    folder.on_warning = lambda w: say(f"warning: {w}")
    dups = folder.duplicates(progress=opts.progress)
    for rev, original in dups.items():
        say(f"duplicate: revision {rev} has the same weights as {original} (equal tensor hashes); one of them is probably mislabelled")
    axis = folder.axis()
    if axis["x"] == "step" and folder.checkpoints:
        say(f"note: {path}: no token count for these checkpoints, so tokens_seen holds the step and the figures plot against "
            "the step; give --tokens-per-step N (sequences per optimizer step x their length) to plot against tokens seen")

    def loader(ckpt):
        return lambda: folder.load_model(ckpt, opts.device)

    return _Source(
        kind=folder.kind,
        run_id=folder.run_id,
        table_path=Path(folder.table_dir) / SCORES_FILE,
        items=[_Item(Path(c.name), c.step, c.tokens_seen, loader(c), c.special, dups.get(c.revision)) for c in folder.checkpoints],
        probe_source_from_model=lambda model, item: _foreign_probe_source(model, item, all_tokens),
        test_tokens=test,
        problems=[Failure(str(p), reason) for p, reason in folder.problems],
        run_info={"source": folder.kind},
        axis=axis,
    )


def _read_tokens(path: str | Path, max_sequences: Optional[int]) -> np.ndarray:
    p = Path(path)
    try:
        arr = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: unreadable token file ({first_line(e)}); expected a .npy of token ids [n, seq]") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer) or arr.shape[1] < 2 or (arr.size and arr.min() < 0):
        raise DataError(f"{p}: expected non-negative integer token ids of shape [n, seq >= 2], got {arr.dtype} {arr.shape}")
    return arr if max_sequences is None else arr[: max(int(max_sequences), 0)]
