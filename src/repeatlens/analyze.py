"""Score every checkpoint of a run, a sweep or a folder of other people's checkpoints.

``analyze(PATH)`` writes one long, tidy table per run, ``scores.parquet``::

    run_id (str) | step (int64) | tokens_seen (int64) | metric (str) |
    layer (Int64, NA for model-level) | head (Int64, NA) | value (float64) | score_version (int64)

* **a run directory**: the table goes into the run; behaviour scores (test loss,
  repeated-subset loss, memorization, ICL) use up to ``max_sequences`` of the run's
  held-out and repeated sequences.
* **a sweep directory** (run directories side by side): every run is analysed, then the
  sweep root gets ``scores.parquet`` — every run's rows joined with its
  ``repeated_fraction`` (f), ``repeat_count`` (E), ``total_tokens`` (D),
  ``model_preset``, ``n_params`` and ``seed`` — and ``metrics.parquet``, the runs'
  training-loss tables (``step, tokens_seen, split, loss``) with the same columns.
* **other people's checkpoints** (see :mod:`repeatlens.foreign`): the table is written
  inside the folder analysed. Only token-free scores are computed unless ``tokens`` (an
  ``.npy`` of token ids ``[n, seq]``) is given, which then serves as the test set.

Incremental: the table's parquet metadata records, per metric, the score-definition
version (:data:`repeatlens.scores.SCORE_VERSION`) each step was scored with, so a re-run
scores only the (checkpoint, metric) pairs not yet scored at the current version — also
those whose score yielded no row. The table is rewritten atomically after EACH
checkpoint, so an interrupted analysis resumes where it stopped. One model is in memory
at a time.

Concurrent: each folder whose table is written (a run, a foreign folder, the sweep root)
is locked (:func:`repeatlens.io.file_lock` on its ``.repeatlens.lock``) from reading its
table to writing it back, so two ``repeatlens analyze`` processes on the same run or sweep
never lose each other's rows. The second process waits for the first (saying so on
stderr), then finds the work done and skips it; on a sweep, a process first scores the
runs nobody else holds and only then waits for the others.

A bad checkpoint (missing, truncated, mismatched, refused pickle, sha256 mismatch) is
recorded as a :class:`Failure` — file and one-line reason — and the others are still
scored; ``repeatlens analyze`` lists the failures at the end and exits with code 1.

The module itself is callable: ``repeatlens.analyze(path)`` is :func:`analyze`.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import types
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from repeatlens.checkpoints import RunDir
from repeatlens.errors import CheckpointError, ConfigError, DataError, RepeatlensError

__all__ = [
    "analyze",
    "load_scores",
    "load_metrics",
    "sweep_runs",
    "write_sweep_tables",
    "needs_scoring",
    "Failure",
    "AnalysisResult",
    "SCORES_FILE",
    "METRICS_FILE",
    "COLUMNS",
    "RUN_COLUMNS",
]

SCORES_FILE = "scores.parquet"
METRICS_FILE = "metrics.parquet"
COLUMNS = ["run_id", "step", "tokens_seen", "metric", "layer", "head", "value", "score_version"]
RUN_COLUMNS = ["repeated_fraction", "repeat_count", "total_tokens", "model_preset", "n_params", "seed"]
_DTYPES = {
    "run_id": "str",
    "step": "int64",
    "tokens_seen": "int64",
    "metric": "str",
    "layer": "Int64",
    "head": "Int64",
    "value": "float64",
    "score_version": "int64",
}
#: issue 14: foreign tables only: the earlier revision with identical weights, else NA
#: (:meth:`repeatlens.foreign.ForeignFolder.duplicates`).
DUPLICATE_COLUMN = "duplicate_of"
_RUN_DTYPES = {"repeated_fraction": "float64", "repeat_count": "int64", "total_tokens": "int64", "model_preset": "str", "n_params": "int64", "seed": "int64"}
_META_KEY = b"repeatlens"


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
    """

    path: Path
    kind: str
    tables: list[Path] = field(default_factory=list)
    scored: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def merge(self, other: "AnalysisResult") -> None:
        self.tables += other.tables
        self.scored += other.scored
        self.skipped += other.skipped
        self.failures += other.failures


@dataclass(frozen=True)
class _Options:
    """How to score (the keyword arguments of :func:`analyze`)."""

    max_sequences: int = 64
    force: bool = False
    progress: bool = True
    device: str = "cpu"
    seed: int = 0
    batch_size: int = 32
    lock_timeout: Optional[float] = None


#: Tests only: seconds to pause between reading a table and scoring the first checkpoint
#: into it, widening the window in which a second process without the lock would read the
#: same, stale table (and its write would then drop the first process's rows).
PAUSE_ENV = "REPEATLENS_TEST_PAUSE_AFTER_READ"


# ------------------------------------------------------------------------------ the table


class _Table:
    """A run's scores table plus its bookkeeping (kept in the parquet metadata)."""

    def __init__(self, path: Path, df: pd.DataFrame, meta: dict[str, Any]):
        self.path, self.df, self.meta = path, df, meta
        self.meta.setdefault("done", {})  # metric -> {str(step): version}
        self.meta.setdefault("run", {})

    @classmethod
    def read(cls, path: Path) -> "_Table":
        if not path.is_file():
            return cls(path, _empty(), {})
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
            raw = (table.schema.metadata or {}).get(_META_KEY)
            meta = json.loads(raw) if raw else {}
            df = table.to_pandas()
        except (OSError, ValueError, pa.ArrowException) as e:
            raise CheckpointError(f"{path}: unreadable scores table ({str(e).splitlines()[0]}); delete it to score again") from None
        return cls(path, _tidy(df), meta)

    def done_version(self, metric: str, step: int) -> Optional[int]:
        return self.meta["done"].get(metric, {}).get(str(step))

    def update(self, step: int, metrics: Sequence[str], versions: dict[str, int], rows: pd.DataFrame) -> None:
        keep = ~((self.df["step"] == step) & self.df["metric"].isin(list(metrics)))
        self.df = _tidy(pd.concat([self.df[keep], rows], ignore_index=True) if len(rows) else self.df[keep])
        for m in metrics:
            self.meta["done"].setdefault(m, {})[str(step)] = versions[m]

    def write(self) -> None:
        _write_parquet(self.path, self.df.sort_values(["step", "metric", "layer", "head"], kind="stable"), self.meta)


def _empty() -> pd.DataFrame:
    return _tidy(pd.DataFrame({c: [] for c in COLUMNS}))


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    # issue 14 (foreign duplicates): foreign tables carry one more, nullable string column
    if DUPLICATE_COLUMN in df.columns:
        return df[COLUMNS + [DUPLICATE_COLUMN]].astype({**_DTYPES, DUPLICATE_COLUMN: "string"}).reset_index(drop=True)
    return df[COLUMNS].astype(_DTYPES).reset_index(drop=True)


def _write_parquet(path: Path, df: pd.DataFrame, meta: Optional[dict[str, Any]] = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from repeatlens.io import atomic_write

    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    if meta is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(meta).encode()})
    atomic_write(path, lambda p: pq.write_table(table, p))


# ----------------------------------------------------------------------- scoring sources


@dataclass
class _Item:
    path: Path
    step: int
    tokens_seen: int
    load: Callable[[], Any]
    bos: Optional[int] = None
    exclude: tuple[int, ...] = ()  # special ids kept out of the probes' random tokens (with bos)
    duplicate_of: Optional[str] = None  # issue 14: foreign revisions only


@dataclass
class _Source:
    kind: str
    run_id: str
    table_path: Path
    items: list[_Item]
    test_tokens: Optional[np.ndarray] = None
    repeated_tokens: Optional[np.ndarray] = None
    problems: list[Failure] = field(default_factory=list)
    run_info: dict[str, Any] = field(default_factory=dict)


def _resolve_metrics(metrics: Optional[Iterable[str]]) -> list[str]:
    from repeatlens.scores import REGISTRY

    names = list(REGISTRY) if metrics is None else list(dict.fromkeys(metrics))
    unknown = [m for m in names if m not in REGISTRY]
    if unknown:
        raise ConfigError(f"metrics: unknown {', '.join(map(repr, unknown))}; expected any of {', '.join(REGISTRY)}")
    if not names:
        raise ConfigError("metrics: empty list; name at least one metric or leave it out for all")
    return names


def _versions(names: Sequence[str]) -> dict[str, int]:
    from repeatlens.scores import SCORE_VERSION

    return {m: int(SCORE_VERSION.get(m, 1)) for m in names}


def _todo(table: _Table, step: int, versions: dict[str, int], force: bool) -> list[str]:
    return [m for m, v in versions.items() if force or table.done_version(m, step) != v]


def token_tensor(tokens: Optional[np.ndarray]):
    """int64 tensor of token ids, or None for no (or zero) sequences."""
    import torch

    if tokens is None or len(tokens) == 0:
        return None
    return torch.from_numpy(np.asarray(tokens).astype(np.int64))


def _score_source(src: _Source, metrics: Optional[Iterable[str]], opts: _Options, *, wait: bool = True) -> AnalysisResult:
    """Score ``src`` into its table, holding its folder's lock throughout.

    Args:
        wait: False: raise :class:`LockTimeout` at once if another process holds the lock.
    """
    from repeatlens.io import LOCK_FILE, file_lock

    names = _resolve_metrics(metrics)
    lock = src.table_path.parent / LOCK_FILE
    with file_lock(lock, timeout=opts.lock_timeout if wait else 0, on_wait=lambda holder: _say_waiting(lock, holder)):
        return _score_locked(src, names, opts)


def _say_waiting(lock: Path, holder: str) -> None:
    print(f"{lock.parent}: another repeatlens process ({holder}) is writing here; waiting for it", file=sys.stderr, flush=True)


def _score_locked(src: _Source, names: list[str], opts: _Options) -> AnalysisResult:
    from tqdm.auto import tqdm

    from repeatlens.model import n_params
    from repeatlens.scores import get_probes, score_model

    versions = _versions(names)
    table = _Table.read(src.table_path)
    pause = float(os.environ.get(PAUSE_ENV) or 0)
    run_before = dict(table.meta["run"])
    table.meta["run"].update(src.run_info)
    result = AnalysisResult(src.table_path.parent, src.kind, failures=list(src.problems))
    test, rep = token_tensor(src.test_tokens), token_tensor(src.repeated_tokens)
    wrote = False
    for item in tqdm(src.items, desc=src.run_id, unit="ckpt", disable=not opts.progress):
        todo = _todo(table, item.step, versions, opts.force)
        if not todo:
            result.skipped += 1
            continue
        if pause:
            time.sleep(pause)
            pause = 0
        try:
            model = item.load()
        except RepeatlensError as e:
            result.failures.append(Failure.from_error(item.path, e))
            continue
        table.meta["run"]["n_params"] = n_params(model)
        t = _fit_tokens(test, model, "test tokens")
        probes = None
        if item.bos is not None:
            exclude = tuple(sorted({item.bos, *item.exclude}))
            probes = get_probes(int(model.cfg.d_vocab), int(model.cfg.n_ctx), opts.seed, item.bos, exclude)
        rows = score_model(
            model, todo, probes=probes, test_tokens=t, repeated_tokens=rep, device=opts.device, seed=opts.seed, batch_size=opts.batch_size
        )
        alive = weakref.ref(model)
        del model
        if alive() is not None:  # only when something holds it in a cycle: a full gc is slow
            gc.collect()
        rows = rows.assign(run_id=src.run_id, step=item.step, tokens_seen=item.tokens_seen, score_version=rows["metric"].map(versions))
        cols = COLUMNS
        if src.kind != "run":  # issue 14: foreign rows say which revision they duplicate
            rows, cols = rows.assign(**{DUPLICATE_COLUMN: item.duplicate_of}), COLUMNS + [DUPLICATE_COLUMN]
        table.update(item.step, todo, versions, _tidy(rows[cols]) if len(rows) else _empty())
        table.write()  # after every checkpoint: an interrupted analysis resumes here
        wrote = True
        result.scored += 1
    if not wrote and table.path.is_file() and table.meta["run"] != run_before:
        table.write()  # e.g. a run's columns changed; the rows did not
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


def _run_source(run: RunDir, max_sequences: int, device: str) -> _Source:
    from repeatlens.model import model_from_state_dict

    cfg, man = run.config(), run.manifest()
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
        test_tokens=np.asarray(run.test_tokens()[:n]),
        repeated_tokens=np.asarray(run.repeated_tokens()[:n]),
        run_info=_run_columns(run, cfg, man),
    )


def _run_columns(run: RunDir, cfg=None, man=None) -> dict[str, Any]:
    cfg = cfg if cfg is not None else run.config()
    man = man if man is not None else run.manifest()
    # the requested f (the sweep's design coordinate), not the whole-sequence-rounded one
    # the manifest also records, so runs of one grid row share their f
    return {
        "repeated_fraction": float(man.get("requested", {}).get("repeated_fraction", man["f"])),
        "repeat_count": int(man["E"]),
        "total_tokens": int(man["D"]),
        "model_preset": cfg.model.preset or "custom",
        "seed": int(cfg.seed),
    }


def _analyze_run(path: Path, metrics: Optional[Iterable[str]], opts: _Options, *, wait: bool = True) -> AnalysisResult:
    run = RunDir(path).require()
    return _score_source(_run_source(run, opts.max_sequences, opts.device), metrics, opts, wait=wait)


def needs_scoring(path: str | Path, metrics: Optional[Iterable[str]] = None) -> bool:
    """Whether some checkpoint of run ``path`` lacks a metric at its current version."""
    run = RunDir(path)
    if not run.is_run():
        return True
    versions = _versions(_resolve_metrics(metrics))
    table = _Table.read(run.path / SCORES_FILE)
    return any(_todo(table, info.step, versions, False) for info in run.checkpoints())


# ------------------------------------------------------------------------------- sweeps


def sweep_runs(path: str | Path) -> list[RunDir]:
    """Run directories directly under ``path``, sorted by name."""
    path = Path(path)
    if not path.is_dir():
        return []
    return [RunDir(p) for p in sorted(path.iterdir()) if p.is_dir() and RunDir(p).is_run()]


def _analyze_sweep(path: Path, metrics: Optional[Iterable[str]], opts: _Options) -> AnalysisResult:
    from repeatlens.errors import LockTimeout

    runs = sweep_runs(path)
    result = AnalysisResult(path, "sweep")
    busy = []
    for run in runs:  # first the runs no other process is scoring …
        try:
            result.merge(_analyze_run(run.path, metrics, opts, wait=False))
        except LockTimeout:
            busy.append(run)
    for run in busy:  # … then wait for the others, and score what they left
        result.merge(_analyze_run(run.path, metrics, opts))
    result.tables += write_sweep_tables(path, runs, lock_timeout=opts.lock_timeout)
    return result


def write_sweep_tables(path: str | Path, runs: Optional[list[RunDir]] = None, *, lock_timeout: Optional[float] = None) -> list[Path]:
    """Join the runs' ``scores.parquet`` / ``metrics.parquet`` into the sweep root's.

    Every row gets its run's ``repeated_fraction``, ``repeat_count``, ``total_tokens``,
    ``model_preset``, ``n_params`` and ``seed``. Runs with no scores table are left out of
    the scores table (their training metrics are still joined).

    The sweep root's lock is held while the tables are joined and written, so concurrent
    callers write one after the other; the last reads the newest run tables.

    Args:
        path: the sweep root.
        runs: the runs to join (default: every run directory under ``path``).
        lock_timeout: seconds to wait for another process writing the sweep tables (None: no limit).

    Raises:
        LockTimeout: another process held the sweep root's lock for over ``lock_timeout`` s.
    """
    from repeatlens.io import LOCK_FILE, file_lock

    path = Path(path)
    runs = sweep_runs(path) if runs is None else runs
    lock = path / LOCK_FILE
    with file_lock(lock, timeout=lock_timeout, on_wait=lambda holder: _say_waiting(lock, holder)):
        return _join_sweep_tables(path, runs)


def _join_sweep_tables(path: Path, runs: list[RunDir]) -> list[Path]:
    scores, metrics = [], []
    for run in runs:
        table_path = run.path / SCORES_FILE
        table = _Table.read(table_path) if table_path.is_file() else None
        info = run_info(run, table)
        if table is not None and len(table.df):
            scores.append(table.df.assign(**info))
        met = run.metrics()
        if len(met):
            metrics.append(met.assign(run_id=run.run_id, **info))
    written = []
    score_df = pd.concat(scores, ignore_index=True) if scores else _empty().assign(**{c: [] for c in RUN_COLUMNS})
    score_df = score_df.astype({**_DTYPES, **_RUN_DTYPES})[COLUMNS + RUN_COLUMNS]
    _write_parquet(path / SCORES_FILE, score_df)
    written.append(path / SCORES_FILE)
    met_cols = ["run_id", "step", "tokens_seen", "split", "loss"] + RUN_COLUMNS
    met_df = pd.concat(metrics, ignore_index=True) if metrics else pd.DataFrame({c: [] for c in met_cols})
    met_df = met_df.astype({"run_id": "str", "step": "int64", "tokens_seen": "int64", "split": "str", "loss": "float64", **_RUN_DTYPES})[met_cols]
    _write_parquet(path / METRICS_FILE, met_df)
    written.append(path / METRICS_FILE)
    return written


def run_info(run: RunDir, table: Optional["_Table"] = None) -> dict[str, Any]:
    """A run's sweep coordinates: f, E, D, model preset, seed and n_params."""
    info = _run_columns(run)
    n = (table.meta["run"].get("n_params") if table is not None else None) or _n_params_from_config(run)
    info["n_params"] = int(n)
    return info


def _n_params_from_config(run: RunDir) -> int:
    from repeatlens.model import build_model, n_params

    model = build_model(run.config().model, d_vocab=run.manifest()["vocab_size"])
    return n_params(model)


# ----------------------------------------------------------------------------- foreign


def _analyze_foreign(
    path: str | Path, metrics: Optional[Iterable[str]], opts: _Options, tokens: Optional[str | Path], tokens_per_step: Optional[int],
    *, out: Optional[str | Path] = None, revisions: Optional[Sequence[str]] = None, download: bool = False,
) -> AnalysisResult:
    from repeatlens.foreign import discover

    folder = discover(path, tokens_per_step, revisions=revisions, out=out, download=download)
    if folder is None:
        raise CheckpointError(f"{path}: no foreign checkpoints found")
    test = _read_tokens(tokens, opts.max_sequences) if tokens is not None else None
    _resolve_metrics(metrics)  # a bad metric name fails before the weights are hashed
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    for w in folder.warnings:
        say(f"warning: {w}")
    folder.on_warning = lambda w: say(f"warning: {w}")
    dups = folder.duplicates(progress=opts.progress)
    for rev, original in dups.items():
        say(f"duplicate: revision {rev} has the same weights as {original} (equal tensor hashes); one of them is probably mislabelled")

    def loader(ckpt):
        return lambda: folder.load_model(ckpt, opts.device)

    src = _Source(
        kind=folder.kind,
        run_id=folder.run_id,
        table_path=Path(folder.table_dir) / SCORES_FILE,
        items=[_Item(Path(c.name), c.step, c.tokens_seen, loader(c), c.bos, c.exclude, dups.get(c.revision)) for c in folder.checkpoints],
        test_tokens=test,
        problems=[Failure(str(p), reason) for p, reason in folder.problems],
        run_info={"source": folder.kind},
    )
    return _score_source(src, metrics, opts)


def _read_tokens(path: str | Path, max_sequences: int) -> np.ndarray:
    p = Path(path)
    try:
        arr = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: unreadable token file ({str(e).splitlines()[0]}); expected a .npy of token ids [n, seq]") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer) or arr.shape[1] < 2 or (arr.size and arr.min() < 0):
        raise DataError(f"{p}: expected non-negative integer token ids of shape [n, seq >= 2], got {arr.dtype} {arr.shape}")
    return arr[: max(int(max_sequences), 0)]


# -------------------------------------------------------------------------------- entry


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
    seed: int = 0,
    batch_size: int = 32,
    lock_timeout: Optional[float] = None,
) -> AnalysisResult:
    """Score every checkpoint under ``path`` — a run, a sweep or a foreign folder.

    Args:
        path: run directory, sweep directory, a folder of other people's checkpoints
            (:mod:`repeatlens.foreign`: TransformerLens ``model_{step}.pt``, Hugging Face
            revision folders, nanoGPT ``ckpt.pt``), or ``hf:ORG/NAME`` (the local hub cache).
        metrics: metric names from :data:`repeatlens.scores.REGISTRY` (default: all).
        max_sequences: test / repeated sequences the behaviour scores read.
        tokens: foreign folders only: ``.npy`` token ids used as the test set.
        tokens_per_step: foreign folders only: ``tokens_seen = step * tokens_per_step``.
        out: foreign sources only: folder for the scores table (required for ``hf:``;
            default the folder analysed).
        revisions: ``hf:`` only: revisions to analyse (default every cached one with a step).
        download: ``hf:`` only: fetch requested revisions the cache lacks (network).
        force: score again what is already scored.
        progress: progress bar over checkpoints.
        device: torch device for loading and scoring; ``auto``: CUDA, then MPS, then CPU.
        seed: probe seed.
        batch_size: sequences per forward pass of the behaviour scores.
        lock_timeout: seconds to wait while another process writes the same table
            (None: as long as it takes).

    Returns:
        An :class:`AnalysisResult`; ``result.failures`` lists the checkpoints that could
        not be scored (everything else was).

    Raises:
        RepeatlensError: ``path`` is none of the above, or an argument is invalid.
        LockTimeout: another process held a table's lock for over ``lock_timeout`` seconds.
    """
    from repeatlens.devices import resolve_device
    from repeatlens.foreign import looks_foreign

    opts = _Options(max_sequences, force, progress, resolve_device(device), seed, batch_size, lock_timeout)
    foreign = dict(out=out, revisions=revisions, download=download)
    if str(path).startswith("hf:"):
        return _analyze_foreign(str(path), metrics, opts, tokens, tokens_per_step, **foreign)
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such directory")
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


def load_scores(path: str | Path) -> pd.DataFrame:
    """The scores table of a run, sweep or foreign folder (or a ``.parquet`` file) as a DataFrame.

    A run's table gets the run's coordinates joined (f, E, D, model preset, n_params,
    seed), as a sweep's has them, so the same code reads both.
    """
    df = _load_table(path, SCORES_FILE)
    run = RunDir(path)
    if run.is_run():
        table = _Table.read(run.path / SCORES_FILE)
        df = df.assign(**run_info(run, table)).astype(_RUN_DTYPES)[COLUMNS + RUN_COLUMNS]
    return df


def load_metrics(path: str | Path) -> pd.DataFrame:
    """The training-metrics table: a sweep's joined ``metrics.parquet`` or one run's (with run_id and coordinates)."""
    df = _load_table(path, METRICS_FILE)
    run = RunDir(path)
    if run.is_run():
        table_path = run.path / SCORES_FILE
        info = run_info(run, _Table.read(table_path) if table_path.is_file() else None)
        df = df.assign(run_id=run.run_id, **info).astype(_RUN_DTYPES)
    return df


def _load_table(path: str | Path, name: str) -> pd.DataFrame:
    p = Path(path)
    file = p / name if p.is_dir() else p
    if not file.is_file():
        raise CheckpointError(f"{p}: no {name} yet; run `repeatlens analyze {p}` first")
    try:
        return pd.read_parquet(file)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{file}: unreadable table ({str(e).splitlines()[0]})") from None


class _CallableModule(types.ModuleType):
    """Lets ``repeatlens.analyze(path)`` call :func:`analyze` although it names this module."""

    def __call__(self, *args: Any, **kwargs: Any) -> AnalysisResult:
        return analyze(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
