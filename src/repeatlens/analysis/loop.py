"""The scoring loop every source shares: what to score into one table (:class:`_Source`, its
checkpoints and probes), and the locked loop (:func:`_score_locked`, on one screen, its steps
below it) that scores what is not yet scored and writes the table after each checkpoint."""

from __future__ import annotations

import gc
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from repeatlens.analyze_options import AnalyzeOptions
from repeatlens.data.special import SpecialIds
from repeatlens.errors import ConfigError, DataError, RepeatlensError
from repeatlens.results.store import ScoreTable, empty_scores, say_waiting, tidy_scores

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
    """What to score into one table, built by a source adapter (:func:`.runs._run_source` per
    run, a sweep's runs one by one, :func:`.foreign_source._foreign_source` for other people's
    checkpoints, a local folder or a hub revision). The probes' source is known up front for our runs;
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


def _specs(source: "ProbeSource", opts: AnalyzeOptions) -> list["ProbeSpec"]:
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


def _score_source(src: _Source, metrics: Optional[Iterable[str]], opts: AnalyzeOptions, *, wait: bool = True) -> AnalysisResult:
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


def _score_locked(src: _Source, names: list[str], opts: AnalyzeOptions, default_battery: bool = False) -> AnalysisResult:
    """Score what ``src``'s table lacks, one checkpoint at a time, writing the table after each."""
    from tqdm.auto import tqdm

    versions = _versions(names)
    table, before = _open_table(src)
    battery = _Battery.choose(src.run_id, names, default_battery, src.n_heads)
    _record_settings(table, battery.names)
    data = _Data.of(src)
    probes = _probe_batches(src.probe_source, opts) if src.probe_source is not None else None
    result, wrote = AnalysisResult(src.table_path.parent, src.kind, failures=list(src.problems)), False
    for item in tqdm(src.items, desc=src.run_id, unit="ckpt", disable=not opts.progress):
        if probes is not None and not _todo(table, item.step, battery.names, list(probes), versions, opts.force):
            result.skipped += 1
            continue
        try:
            model = item.load()
        except RepeatlensError as e:
            result.failures.append(Failure.from_error(item.path, e))
            continue
        if probes is None:  # other people's checkpoints: the probes are read off the first model
            probes = _probes_from_model(src, table, model, item, opts)
        todo = _todo(table, item.step, battery.for_model(model), list(probes), versions, opts.force)
        rows = _score_pairs(model, todo, probes, data, opts) if todo else None
        alive = weakref.ref(model)
        del model
        _collect_if_held(alive)
        if rows is None:
            result.skipped += 1
            continue
        table.update(item.step, todo, versions, _table_rows(rows, todo, src.run_id, item, versions))
        table.write()  # after every checkpoint: an interrupted analysis resumes here
        wrote, result.scored = True, result.scored + 1
    _finish(result, src, table, probes, before, wrote)
    return result


# ------------------------------------------------------------------- the loop's steps


def _open_table(src: _Source) -> tuple[ScoreTable, dict[str, Any]]:
    """``src``'s table, its metadata updated with the run's columns, the axis and the probe
    ids, and that metadata as it was before (so an unchanged table is not rewritten)."""
    table = ScoreTable.read(src.table_path)
    before = {k: table.meta.get(k) for k in ("run", "axis", "probe_ids")}
    before["run"] = dict(table.meta["run"])
    table.meta["run"].update(src.run_info)
    table.meta["axis"] = dict(src.axis)
    if src.special is not None:
        table.meta["probe_ids"] = src.special.to_json()
    return table, before


def _record_settings(table: ScoreTable, names: Sequence[str]) -> None:
    """The settings of the scores that have some (e.g. the ablation's), in the table's metadata."""
    from repeatlens.scores import REGISTRY

    for m in names:
        if REGISTRY[m].settings is not None:
            table.meta.setdefault("settings", {})[m] = REGISTRY[m].settings


@dataclass
class _Battery:
    """The metrics to score: those named, or the default battery, which depends on the
    model's head count (known up front for our runs, from the first model loaded otherwise)."""

    run_id: str
    names: list[str]
    pending: bool  # the default battery, still waiting for the head count

    @classmethod
    def choose(cls, run_id: str, names: list[str], default: bool, n_heads: Optional[int]) -> "_Battery":
        from repeatlens.scores import REGISTRY, available

        battery = cls(run_id, names, default)
        if default and n_heads is not None:
            battery._for_heads(n_heads)
        if battery.pending:  # opt-in scores are never in it
            battery.names = [m for m in battery.names if REGISTRY[m].default]
        battery.names = available(battery.names)  # a score whose extra is missing: one line, and not marked done
        return battery

    def for_model(self, model: Any) -> list[str]:
        if self.pending:  # the first model says how many heads
            self._for_heads(int(model.cfg.n_layers * model.cfg.n_heads))
        return self.names

    def _for_heads(self, n_heads: int) -> None:
        """The default battery for this many heads, saying once what it leaves out."""
        from repeatlens.scores import default_metrics

        keep, left_out = default_metrics(n_heads)
        if left_out:
            print(f"{self.run_id}: {', '.join(left_out)} left out of the default battery for a model of {n_heads} heads "
                  "(one forward pass per head); name it with -m to compute it", file=sys.stderr, flush=True)
        self.names, self.pending = [m for m in self.names if m in keep], False


@dataclass(frozen=True)
class _Data:
    """The behaviour scores' sequences as tensors: test and repeated tokens, and which of
    their rows came from the synthetic source (mixed runs)."""

    test: Any
    repeated: Any
    test_synthetic: Any
    repeated_synthetic: Any

    @classmethod
    def of(cls, src: _Source) -> "_Data":
        test, rep = token_tensor(src.test_tokens), token_tensor(src.repeated_tokens)
        return cls(test, rep, _mask_tensor(src.test_synthetic) if test is not None else None,
                   _mask_tensor(src.repeated_synthetic) if rep is not None else None)


def _todo(table: ScoreTable, step: int, names: Sequence[str], keys: Sequence[str], versions: dict[str, int], force: bool) -> list[tuple[str, str]]:
    """(metric, probe key) pairs of ``step`` not yet scored at their current version."""
    from repeatlens.scores import REGISTRY

    pairs = [(m, k) for m in names for k in (keys if REGISTRY[m].reads_probe else [""])]
    return [(m, k) for m, k in pairs if force or table.done_version(m, k, step) != versions[m]]


def _probe_batches(source: "ProbeSource", opts: AnalyzeOptions) -> dict[str, Any]:
    """Probe key -> probe batch, one per family scored (built once per table)."""
    from repeatlens.scores import build_probes

    return {spec.key: build_probes(spec, source) for spec in _specs(source, opts)}


def _probes_from_model(src: _Source, table: ScoreTable, model: Any, item: _Item, opts: AnalyzeOptions) -> dict[str, Any]:
    """Other people's checkpoints: the probe batches read off the first model loaded, and
    the special ids they were built with (recorded in the table's metadata)."""
    probes = _probe_batches(src.probe_source_from_model(model, item), opts)
    if item.special is not None:
        src.special = item.special
        table.meta["probe_ids"] = item.special.to_json()
    return probes


def _score_pairs(model: Any, todo: Sequence[tuple[str, str]], probes: dict[str, Any], data: _Data, opts: AnalyzeOptions) -> pd.DataFrame:
    """:func:`repeatlens.scores.score_model` on the metrics and probes of ``todo``."""
    from repeatlens.scores import score_model

    keys = {k for _, k in todo if k}
    return score_model(
        model,
        list(dict.fromkeys(m for m, _ in todo)),
        probes=[p for k, p in probes.items() if k in keys] or None,
        test_tokens=_fit_tokens(data.test, model, "test tokens"),
        repeated_tokens=data.repeated,
        test_synthetic=data.test_synthetic,
        repeated_synthetic=data.repeated_synthetic,
        device=opts.device,
        batch_size=opts.batch_size,
    )


def _collect_if_held(alive: "weakref.ref[Any]") -> None:
    """A full gc (slow) only when something still holds the model dropped, in a cycle."""
    if alive() is not None:
        gc.collect()


def _table_rows(rows: pd.DataFrame, todo: Sequence[tuple[str, str]], run_id: str, item: _Item, versions: dict[str, int]) -> pd.DataFrame:
    """One checkpoint's rows as the table holds them: only the (metric, probe) pairs of
    ``todo`` (a pair already scored may be recomputed alongside: the stored rows are kept),
    with the run, step, tokens seen, score version and duplicate."""
    from repeatlens.results.keys import in_pairs

    rows = rows[in_pairs(rows, todo)]
    rows = rows.assign(run_id=run_id, step=item.step, tokens_seen=item.tokens_seen, score_version=rows["metric"].map(versions),
                       duplicate_of=item.duplicate_of)
    return tidy_scores(rows) if len(rows) else empty_scores()


def _finish(result: AnalysisResult, src: _Source, table: ScoreTable, probes: Optional[dict[str, Any]], before: dict[str, Any],
            wrote: bool) -> None:
    """What ``result`` reports of this table; the table rewritten if only its metadata changed."""
    folder = str(src.table_path.parent)
    if probes is not None:
        result.probes[folder] = list(probes)
    if src.special is not None:
        result.special[folder] = src.special
    result.axis[folder] = dict(src.axis)
    if not wrote and table.path.is_file() and any(table.meta.get(k) != v for k, v in before.items()):
        table.write()  # e.g. a run's columns changed, or a table written before its axis was recorded; the rows did not
    if table.path.is_file():
        result.tables.append(table.path)


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
