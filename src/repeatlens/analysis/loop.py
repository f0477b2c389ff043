"""The scoring loop every source shares: what to score into one table (:class:`_Source`, its
checkpoints and probes), the locked loop that scores what is not yet scored and writes the table
after each checkpoint, and the options of :func:`repeatlens.analysis.analyze`."""

from __future__ import annotations

import gc
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import numpy as np

from repeatlens.data.special import SpecialIds
from repeatlens.errors import ConfigError, DataError, RepeatlensError
from repeatlens.results.schema import SCORE_COLUMNS
from repeatlens.results.store import ScoreTable, empty_scores, say_waiting

if TYPE_CHECKING:
    from repeatlens.scores.probes import ProbeSource, ProbeSpec


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


def _mask_tensor(mask: Optional[np.ndarray]):
    import torch

    return None if mask is None or len(mask) == 0 else torch.from_numpy(np.asarray(mask, dtype=bool))


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
