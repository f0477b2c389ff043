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
"""

from __future__ import annotations

import gc
import warnings
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import numpy as np

from repeatlens.checkpoints import RunDir
from repeatlens.data.special import SpecialIds
from repeatlens.errors import CheckpointError, ConfigError, DataError, RepeatlensError, first_line
from repeatlens.results.schema import SCORE_COLUMNS
from repeatlens.results.store import SCORES_FILE, ScoreTable, empty_scores, run_coordinates, say_waiting, sweep_runs, write_sweep_tables

if TYPE_CHECKING:
    import pandas as pd

    from repeatlens.config import RunConfig

    from repeatlens.scores.probes import ProbeSource, ProbeSpec

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

TOKENS_AXIS = {"x": "tokens_seen", "tokens_from": "training"}
"""A run's table metadata ``axis``: tokens seen, counted by the trainer (other people's
checkpoints: :meth:`repeatlens.foreign.ForeignFolder.axis`)."""


@dataclass(frozen=True)
class Failure:
    """A checkpoint that could not be scored: the file and a one-line reason."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    @classmethod
    def from_error(cls, path: Path | str, err: BaseException) -> "Failure":
        msg, prefix = str(err), f"{path}: "
        return cls(str(path), msg[len(prefix) :] if msg.startswith(prefix) else msg)


@dataclass
class AnalysisResult:
    """What one :func:`analyze` call did.

    Attributes:
        path: the path analysed.
        kind: ``"run"``, ``"sweep"``, ``"transformerlens"``, ``"huggingface"``, ``"nanogpt"`` or ``"mixed"``.
        tables: every ``scores.parquet`` (and sweep ``metrics.parquet``) written.
        scored: checkpoints scored by this call.
        skipped: checkpoints already fully scored.
        failures: checkpoints that could not be scored.
        probes: per table folder, the probe keys scored there.
        special: per table folder, the probes' BOS and excluded ids and their source.
        axis: per table folder, what ``tokens_seen`` holds (``{"x": "tokens_seen" | "step",
            "tokens_from": ...}``, as the table's metadata records it).
    """

    path: Path
    kind: str
    tables: list[Path] = field(default_factory=list)
    scored: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    probes: dict[str, list[str]] = field(default_factory=dict)
    special: dict[str, SpecialIds] = field(default_factory=dict)
    axis: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def merge(self, other: "AnalysisResult") -> None:
        self.tables += other.tables
        self.scored += other.scored
        self.skipped += other.skipped
        self.failures += other.failures
        self.probes.update(other.probes)
        self.special.update(other.special)
        self.axis.update(other.axis)


@dataclass(frozen=True)
class _Options:
    """How to score (the keyword arguments of :func:`analyze`)."""

    max_sequences: int = 64
    force: bool = False
    progress: bool = True
    device: str = "cpu"
    probes: Optional[tuple[str, ...]] = None
    probe_len: Optional[int] = None
    probe_batch: int = 16
    probe_seed: int = 0
    batch_size: int = 32
    lock_timeout: Optional[float] = None


# ----------------------------------------------------------------------- scoring sources


@dataclass
class _Item:
    path: Path
    step: int
    tokens_seen: int
    load: Callable[[], Any]
    special: Optional[SpecialIds] = None  # foreign: the validated BOS and excluded ids, and their source
    duplicate_of: Optional[str] = None  # foreign: the earlier revision with identical weights


@dataclass
class _Source:
    """What to score into one table. The probes' source is known up front for our runs;
    for other people's checkpoints it is read off the first model loaded (vocabulary,
    context, BOS), by ``probe_source_from_model``."""

    kind: str
    run_id: str
    table_path: Path
    items: list[_Item]
    probe_source: Optional["ProbeSource"] = None
    probe_source_from_model: Optional[Callable[[Any, _Item], "ProbeSource"]] = None
    n_heads: Optional[int] = None  # heads in all, when known without loading a model
    test_tokens: Optional[np.ndarray] = None
    repeated_tokens: Optional[np.ndarray] = None
    test_synthetic: Optional[np.ndarray] = None  # per test row: from the synthetic source (mixed runs)
    repeated_synthetic: Optional[np.ndarray] = None
    problems: list[Failure] = field(default_factory=list)
    run_info: dict[str, Any] = field(default_factory=dict)
    special: Optional[SpecialIds] = None  # the probes' ids; for other people's checkpoints, the first model's item's
    axis: dict[str, str] = field(default_factory=lambda: dict(TOKENS_AXIS))


def _versions(names: Sequence[str]) -> dict[str, int]:
    from repeatlens.scores import SCORE_VERSION

    return {m: int(SCORE_VERSION.get(m, 1)) for m in names}


def token_tensor(tokens: Optional[np.ndarray]):
    """int64 tensor of token ids, or None for no (or zero) sequences."""
    import torch

    if tokens is None or len(tokens) == 0:
        return None
    return torch.from_numpy(np.asarray(tokens).astype(np.int64))


def _specs(source: "ProbeSource", opts: _Options) -> list["ProbeSpec"]:
    """The resolved probe specs to score for ``source`` (one per family).

    Raises:
        ConfigError: a family asked for does not apply (one line saying why), or the copy
            length does not fit the context.
    """
    from repeatlens.scores.probes import ProbeSpec

    families = list(opts.probes) if opts.probes else source.families()
    for f in families:
        spec = ProbeSpec(f)  # validates the family name
        if f not in source.families():
            raise ConfigError(f"--probe {spec.family}: does not apply here: {source.why_not(spec.family)}")
    return [source.resolve(ProbeSpec(f, opts.probe_len, opts.probe_batch, opts.probe_seed)) for f in families]


def _score_source(src: _Source, metrics: Optional[Iterable[str]], opts: _Options, *, wait: bool = True) -> AnalysisResult:
    """Score ``src`` into its table, holding its folder's lock throughout.

    Args:
        wait: False: raise :class:`LockTimeout` at once if another process holds the lock.
    """
    from repeatlens.io import LOCK_FILE, file_lock
    from repeatlens.scores import resolve_metrics

    names = resolve_metrics(metrics)
    lock = src.table_path.parent / LOCK_FILE
    with file_lock(lock, timeout=opts.lock_timeout if wait else 0, on_wait=lambda holder: say_waiting(lock, holder)):
        return _score_locked(src, names, opts, default_battery=metrics is None)


def _todo(table: ScoreTable, step: int, names: Sequence[str], keys: Sequence[str], versions: dict[str, int], force: bool) -> list[tuple[str, str]]:
    """(metric, probe key) pairs of ``step`` not yet scored at their current version."""
    from repeatlens.scores import REGISTRY

    pairs = [(m, k) for m in names for k in (keys if REGISTRY[m].reads_probe else [""])]
    return [(m, k) for m, k in pairs if force or table.done_version(m, k, step) != versions[m]]


def _probe_batches(source: "ProbeSource", opts: _Options) -> dict[str, Any]:
    """Probe key -> probe batch, one per family scored (built once per table)."""
    from repeatlens.scores import build_probes

    return {spec.key: build_probes(spec, source) for spec in _specs(source, opts)}


def _score_locked(src: _Source, names: list[str], opts: _Options, default_battery: bool = False) -> AnalysisResult:
    from tqdm.auto import tqdm

    from repeatlens.results.keys import row_keys
    from repeatlens.scores import REGISTRY, available, default_metrics, score_model

    versions = _versions(names)
    table = ScoreTable.read(src.table_path)
    meta_before = {k: table.meta.get(k) for k in ("run", "axis", "probe_ids")}
    meta_before["run"] = dict(table.meta["run"])
    table.meta["run"].update(src.run_info)
    table.meta["axis"] = dict(src.axis)
    if src.special is not None:
        table.meta["probe_ids"] = src.special.to_json()
    result = AnalysisResult(src.table_path.parent, src.kind, failures=list(src.problems))
    test, rep = token_tensor(src.test_tokens), token_tensor(src.repeated_tokens)
    test_kinds, rep_kinds = _mask_tensor(src.test_synthetic), _mask_tensor(src.repeated_synthetic)
    probes = _probe_batches(src.probe_source, opts) if src.probe_source is not None else None

    def battery(n_heads: int) -> list[str]:
        """The default battery for this many heads, saying once what it leaves out."""
        keep, left_out = default_metrics(n_heads)
        if left_out:
            print(f"{src.run_id}: {', '.join(left_out)} left out of the default battery for a model of {n_heads} heads "
                  "(one forward pass per head); name it with -m to compute it", file=sys.stderr, flush=True)
        return [m for m in names if m in keep]

    if default_battery and src.n_heads is not None:
        names, default_battery = battery(src.n_heads), False
    if default_battery:  # the heads are known once a model is loaded; opt-in scores are never in it
        names = [m for m in names if REGISTRY[m].default]
    names = available(names)  # a score whose extra is missing: one line, and not marked done
    for m in names:
        if REGISTRY[m].settings is not None:
            table.meta.setdefault("settings", {})[m] = REGISTRY[m].settings
    wrote = False
    for item in tqdm(src.items, desc=src.run_id, unit="ckpt", disable=not opts.progress):
        if probes is not None and not _todo(table, item.step, names, list(probes), versions, opts.force):
            result.skipped += 1
            continue
        try:
            model = item.load()
        except RepeatlensError as e:
            result.failures.append(Failure.from_error(item.path, e))
            continue
        if probes is None:
            probes = _probe_batches(src.probe_source_from_model(model, item), opts)
            if item.special is not None:  # the ids the probes were built with
                src.special = item.special
                table.meta["probe_ids"] = item.special.to_json()
        if default_battery:  # the first model says how many heads
            names, default_battery = battery(int(model.cfg.n_layers * model.cfg.n_heads)), False
        todo = _todo(table, item.step, names, list(probes), versions, opts.force)
        if not todo:
            result.skipped += 1
            del model
            continue
        todo_keys = {k for _, k in todo if k}
        rows = score_model(
            model,
            list(dict.fromkeys(m for m, _ in todo)),
            probes=[p for k, p in probes.items() if k in todo_keys] or None,
            test_tokens=_fit_tokens(test, model, "test tokens"),
            repeated_tokens=rep,
            test_synthetic=test_kinds if test is not None else None,
            repeated_synthetic=rep_kinds if rep is not None else None,
            device=opts.device,
            batch_size=opts.batch_size,
        )
        alive = weakref.ref(model)
        del model
        if alive() is not None:  # only when something holds it in a cycle: a full gc is slow
            gc.collect()
        if len(rows):  # a (metric, probe) pair already scored was recomputed alongside: keep the stored rows
            wanted = set(todo)
            rows = rows[[(m, k) in wanted for m, k in zip(rows["metric"], row_keys(rows))]]
        rows = rows.assign(run_id=src.run_id, step=item.step, tokens_seen=item.tokens_seen, score_version=rows["metric"].map(versions),
                           duplicate_of=item.duplicate_of)
        table.update(item.step, todo, versions, rows[SCORE_COLUMNS] if len(rows) else empty_scores())
        table.write()  # after every checkpoint: an interrupted analysis resumes here
        wrote = True
        result.scored += 1
    folder = str(src.table_path.parent)
    if probes is not None:
        result.probes[folder] = list(probes)
    if src.special is not None:
        result.special[folder] = src.special
    result.axis[folder] = dict(src.axis)
    if not wrote and table.path.is_file() and any(table.meta.get(k) != v for k, v in meta_before.items()):
        table.write()  # e.g. a run's columns changed, or a table written before its axis was recorded; the rows did not
    if table.path.is_file():
        result.tables.append(table.path)
    return result


def _fit_tokens(tokens, model, what: str):
    """Check test tokens against the model's vocabulary and cut them to its context."""
    if tokens is None:
        return None
    top = int(tokens.max())
    if top >= model.cfg.d_vocab:
        raise DataError(f"{what}: token id {top} is outside the model's vocabulary of {model.cfg.d_vocab}")
    return tokens[:, : model.cfg.n_ctx]


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


def check_run_options(cfg: "RunConfig", metrics: Optional[Iterable[str]] = None, **options: Any) -> None:
    """Check the :func:`analyze` options a run of ``cfg`` will be scored with, before it is
    trained (a sweep's ``analyze:`` section): the metric names, the probe settings, that
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
    share = 1.0 if data.synthetic_only else data.synthetic_fraction
    source = ProbeSource(
        d_vocab=2, n_ctx=int(cfg.model.n_ctx), train_counts=np.ones(2), synthetic_ids=(1, 2) if share > 0 else None,
        text=np.zeros((_split(data.test_sequences, share)[0], 2)) if not data.synthetic_only else None,
        longest_repeat=int(data.synthetic.max_len) if share > 0 else None,
    )
    _specs(source, _options(**options))


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


def _mask_tensor(mask: Optional[np.ndarray]):
    import torch

    return None if mask is None or len(mask) == 0 else torch.from_numpy(np.asarray(mask, dtype=bool))


def _analyze_run(path: Path, metrics: Optional[Iterable[str]], opts: _Options, *, wait: bool = True, check: bool = True) -> AnalysisResult:
    run = RunDir(path).require()
    if check:
        run.check(full=True)  # every file hashed before its data is scored
    return _score_source(_run_source(run, opts.max_sequences, opts.device), metrics, opts, wait=wait)


def needs_scoring(path: str | Path, metrics: Optional[Iterable[str]] = None, **probe_options: Any) -> bool:
    """Whether some checkpoint of run ``path`` lacks a metric (for some probe that
    ``analyze`` would score with ``probe_options``) at its current version."""
    from repeatlens.scores import default_metrics, resolve_metrics

    run = RunDir(path)
    if not run.is_run():
        return True
    opts = _options(**probe_options)
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
    opts = _options(device=device, **probe_options)
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


def _analyze_sweep(path: Path, metrics: Optional[Iterable[str]], opts: _Options) -> AnalysisResult:
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


def _analyze_foreign(
    path: str | Path, metrics: Optional[Iterable[str]], opts: _Options, tokens: Optional[str | Path], tokens_per_step: Optional[int],
    *, out: Optional[str | Path] = None, revisions: Optional[Sequence[str]] = None, download: bool = False,
) -> AnalysisResult:
    from repeatlens.foreign import discover
    from repeatlens.scores import resolve_metrics

    folder = discover(path, tokens_per_step, revisions=revisions, out=out, download=download)
    if folder is None:
        raise CheckpointError(f"{path}: no foreign checkpoints found")
    resolve_metrics(metrics)  # a bad metric name fails before the weights are hashed
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

    src = _Source(
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
    return _score_source(src, metrics, opts)


def _read_tokens(path: str | Path, max_sequences: Optional[int]) -> np.ndarray:
    p = Path(path)
    try:
        arr = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: unreadable token file ({first_line(e)}); expected a .npy of token ids [n, seq]") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer) or arr.shape[1] < 2 or (arr.size and arr.min() < 0):
        raise DataError(f"{p}: expected non-negative integer token ids of shape [n, seq >= 2], got {arr.dtype} {arr.shape}")
    return arr if max_sequences is None else arr[: max(int(max_sequences), 0)]


# -------------------------------------------------------------------------------- entry


def _options(
    *,
    max_sequences: int = 64,
    force: bool = False,
    progress: bool = True,
    device: str = "cpu",
    probes: Optional[str | Sequence[str]] = None,
    probe_len: Optional[int] = None,
    probe_batch: int = 16,
    probe_seed: int = 0,
    batch_size: int = 32,
    lock_timeout: Optional[float] = None,
) -> _Options:
    if isinstance(probes, str):
        probes = [p.strip() for p in probes.split(",") if p.strip()]
    families = tuple(dict.fromkeys(probes)) if probes else None
    if probes is not None and not families:
        raise ConfigError("--probe: empty list; name at least one probe family or leave it out for every family that applies")
    if probe_batch < 1:
        raise ConfigError(f"--probe-batch {probe_batch}: expected at least 1 row of each kind")
    if probe_len is not None and probe_len < 2:
        raise ConfigError(f"--probe-len {probe_len}: expected at least 2 (induction reads offset L-1)")
    return _Options(max_sequences, force, progress, device, families, probe_len, probe_batch, probe_seed, batch_size, lock_timeout)


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
