"""The tables on disk: a run's incremental ``scores.parquet``, the sweep join, the readers.

* :class:`ScoreTable`: one folder's scores table plus its bookkeeping, kept in the
  parquet metadata: per metric and probe key (:func:`~repeatlens.results.schema.probe_key`),
  the score version each step was scored with, so a re-run scores only the (checkpoint,
  metric, probe) triples not yet scored at the current version, also those whose score
  yielded no row; and the facts of its metrics (:mod:`repeatlens.results.metric_facts`). Rewritten atomically (:func:`repeatlens.io.atomic_write`).
* :func:`write_sweep_tables`: the sweep root's ``scores.parquet`` and ``metrics.parquet``,
  every run's rows joined with its coordinates (:data:`~repeatlens.results.schema.RUN_COLUMNS`),
  under the sweep root's lock.
* :func:`load_scores` / :func:`load_metrics`: the tables of a run, a sweep or a foreign
  folder as DataFrames, with the run's coordinates joined for a single run, optionally
  restricted to one probe; :func:`table_runs`: what a table's metadata records per run
  (the x-axis, the probes' special ids).

Concurrent writers coordinate through :func:`repeatlens.io.file_lock` on the folder's
``.repeatlens.lock`` (held by the caller from reading a table to writing it back).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import pandas as pd

from repeatlens.errors import CheckpointError, StaleTableWarning, first_line
from repeatlens.results.schema import (
    METRIC_COLUMNS,
    METRIC_DTYPES,
    PROBE_COLUMNS,
    PROBE_KEY,
    RUN_COLUMNS,
    RUN_DTYPES,
    SCORE_COLUMNS,
    SCORE_DTYPES,
)
from repeatlens.results.metric_facts import TABLE_KEY as FACTS_KEY, record_facts
from repeatlens.results.keys import derive_keys, in_pairs, row_keys  # row_keys re-exported: its home until the reduce <-> store cycle was cut
from repeatlens.results.reduce import select_probe

if TYPE_CHECKING:
    from repeatlens.checkpoints import RunDir

__all__ = [
    "SCORES_FILE",
    "METRICS_FILE",
    "ScoreTable",
    "tidy_scores",
    "empty_scores",
    "write_parquet",
    "row_keys",
    "run_coordinates",
    "with_coordinates",
    "sweep_runs",
    "write_sweep_tables",
    "join_run_tables",
    "load_scores",
    "load_metrics",
    "table_runs",
    "say_waiting",
]

SCORES_FILE = "scores.parquet"
METRICS_FILE = "metrics.parquet"
_META_KEY = b"repeatlens"
TABLE_FORMAT = 2
"""2: rows name their probe and ``done`` is keyed by metric, then probe key. Format 1
(no probe columns) is read by dropping the rows of the probe-reading metrics, all of whose
versions have since been bumped, so they are scored again."""


def empty_scores() -> pd.DataFrame:
    return tidy_scores(pd.DataFrame({c: [] for c in SCORE_COLUMNS}))


def tidy_scores(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with exactly :data:`SCORE_COLUMNS`, in order, with their dtypes (a table
    written before ``duplicate_of`` existed gets it, NA; rows without the
    :data:`~repeatlens.results.schema.PROBE_KEY` column get it from their probe columns)."""
    if "duplicate_of" not in df.columns:
        df = df.assign(duplicate_of=pd.array([pd.NA] * len(df), dtype="string"))
    if PROBE_KEY not in df.columns:
        df = df.assign(**{PROBE_KEY: derive_keys(df)})
    return df[SCORE_COLUMNS].astype(SCORE_DTYPES).reset_index(drop=True)


def write_parquet(path: Path, df: pd.DataFrame, meta: Optional[dict[str, Any]] = None) -> None:
    """Write ``df`` atomically, with ``meta`` as JSON in the parquet schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from repeatlens.io import atomic_write

    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    if meta is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(meta).encode()})
    atomic_write(path, lambda p: pq.write_table(table, p))


class ScoreTable:
    """One folder's scores table plus its bookkeeping (kept in the parquet metadata).

    ``meta["done"][metric][probe_key][str(step)]`` is the score version that step was
    scored with; ``meta["run"]`` holds the run's columns (``n_params`` ...).
    """

    def __init__(self, path: Path, df: pd.DataFrame, meta: dict[str, Any]):
        self.path, self.df, self.meta = path, df, meta
        self.meta["format"] = TABLE_FORMAT
        self.meta.setdefault("done", {})
        self.meta.setdefault("run", {})

    @classmethod
    def read(cls, path: Path) -> "ScoreTable":
        """The table at ``path`` (an empty one if there is none yet).

        Raises:
            CheckpointError: the file is not a readable parquet table.
        """
        if not path.is_file():
            return cls(path, empty_scores(), {})
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
            raw = (table.schema.metadata or {}).get(_META_KEY)
            meta = json.loads(raw) if raw else {}
            df = table.to_pandas()
        except (OSError, ValueError, pa.ArrowException) as e:
            raise CheckpointError(f"{path}: unreadable scores table ({first_line(e)}); delete it to score again") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("done", {}), dict) or not isinstance(meta.get("run", {}), dict):
            raise CheckpointError(f"{path}: scores table with unreadable bookkeeping (its repeatlens metadata); delete it to score again")
        old = not isinstance(meta.get("format", 1), int) or meta.get("format", 1) < TABLE_FORMAT
        _require_score_columns(path, df, old)
        if old:
            df, meta = _from_format_1(df, meta)
        try:
            return cls(path, tidy_scores(df), meta)
        except (ValueError, TypeError) as e:  # a column of the wrong type
            raise CheckpointError(f"{path}: scores table with a column of the wrong type ({first_line(e)}); delete it to score again") from None

    def done_version(self, metric: str, key: str, step: int) -> Optional[int]:
        return self.meta["done"].get(metric, {}).get(key, {}).get(str(step))

    def update(self, step: int, done: Sequence[tuple[str, str]], versions: dict[str, int], rows: pd.DataFrame) -> None:
        """Replace ``step``'s rows of every (metric, probe key) in ``done`` by ``rows`` and
        record them as scored at ``versions``."""
        if len(self.df):
            kept = self.df[~((self.df["step"] == step).to_numpy() & in_pairs(self.df, done))]
        else:
            kept = self.df
        self.df = tidy_scores(pd.concat([kept, rows], ignore_index=True) if len(rows) else kept)
        for metric, key in done:
            self.meta["done"].setdefault(metric, {}).setdefault(key, {})[str(step)] = versions[metric]
        record_facts(self.meta, dict.fromkeys(m for m, _ in done))  # the table names its metrics to any later reader

    def write(self) -> None:
        order = ["step", "metric", *PROBE_COLUMNS, "layer", "head", "offset"]
        write_parquet(self.path, self.df.sort_values(order, kind="stable"), self.meta)


def _require_score_columns(path: Path, df: pd.DataFrame, format_1: bool) -> None:
    """A scores table read from ``path`` holds the columns its format has (one-line CheckpointError otherwise)."""
    later = {"duplicate_of", PROBE_KEY} | ({"offset", *PROBE_COLUMNS} if format_1 else set())
    missing = [c for c in SCORE_COLUMNS if c not in later and c not in df.columns]
    if missing:
        raise CheckpointError(f"{path}: not a repeatlens scores table (no column {', '.join(missing)}); delete it to score again")


def _from_format_1(df: pd.DataFrame, meta: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A format-1 table (no probe columns) in format 2: rows of scores that read a probe
    are dropped (their versions have all been bumped since), the others read no probe."""
    from repeatlens.scores import REGISTRY

    reads = {m for m, f in REGISTRY.items() if f.reads_probe}
    df = df[~df["metric"].isin(reads)].copy()
    df["offset"] = pd.array([pd.NA] * len(df), dtype="Int64")
    df["probe"] = ""
    for col in PROBE_COLUMNS[1:]:
        df[col] = pd.array([pd.NA] * len(df), dtype="Int64")
    if "duplicate_of" not in df.columns:
        df["duplicate_of"] = pd.array([pd.NA] * len(df), dtype="string")
    done = {m: {"": steps} for m, steps in meta.get("done", {}).items() if m not in reads}
    return df, {**meta, "done": done, "format": TABLE_FORMAT}


# ------------------------------------------------------------------------------ runs and sweeps


def run_coordinates(run: "RunDir") -> dict[str, Any]:
    """A run's :data:`RUN_COLUMNS`: the requested f (the sweep's design coordinate, not
    the whole-sequence-rounded one the manifest also records, so runs of one grid row
    share their f), E, D, model preset, parameter counts and seed.

    Parameter counts come from the manifest when the run recorded them, else from the
    model config's shape (:meth:`repeatlens.config.ModelConfig.n_params`); no model is built.
    """
    cfg, man = run.config(), run.manifest()
    return {
        "repeated_fraction": man.requested_fraction,
        "repeat_count": man.repeat_count,
        "total_tokens": man.total_tokens,
        "unique_tokens": man.n_unique * man.seq_len,
        "control": cfg.mixture.control,
        "model_preset": cfg.model.preset or "custom",
        "n_params": man.n_params or cfg.model.n_params(man.vocab_size),
        "n_params_nonembedding": man.n_params_nonembedding or cfg.model.n_params(man.vocab_size, embeddings=False),
        "seed": int(cfg.seed),
    }


def with_coordinates(df: pd.DataFrame, coordinates: dict[str, Any], columns: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """``df`` with a run's coordinates (:func:`run_coordinates`) joined onto every row, in
    their :data:`RUN_DTYPES`: the one place a table gets them (a run's table when loaded, a
    sweep's when joined). ``columns``: the columns in front of them (default: all of ``df``'s).

    >>> with_coordinates(pd.DataFrame({"step": [1, 2]}), {"seed": 3, "repeat_count": 10}).dtypes.astype(str).to_dict()
    {'step': 'int64', 'repeat_count': 'int64', 'seed': 'int64'}
    """
    front = list(df.columns if columns is None else columns)
    joined = df.assign(**coordinates).astype({c: RUN_DTYPES[c] for c in coordinates})
    return joined[front + [c for c in RUN_COLUMNS if c in coordinates and c not in front]]


def sweep_runs(path: str | Path) -> list["RunDir"]:
    """Run directories directly under ``path``, sorted by name."""
    from repeatlens.checkpoints import RunDir

    path = Path(path)
    if not path.is_dir():
        return []
    return [RunDir(p) for p in sorted(path.iterdir()) if p.is_dir() and RunDir(p).is_run()]


def say_waiting(lock: Path, holder: str) -> None:
    """One stderr line while another process holds ``lock``."""
    print(f"{lock.parent}: another repeatlens process ({holder}) is writing here; waiting for it", file=sys.stderr, flush=True)


def write_sweep_tables(path: str | Path, runs: Optional[list["RunDir"]] = None, *, lock_timeout: Optional[float] = None) -> list[Path]:
    """Join the runs' ``scores.parquet`` / ``metrics.parquet`` into the sweep root's.

    Every row gets its run's :data:`RUN_COLUMNS`. Runs with no scores table are left out
    of the scores table (their training metrics are still joined).

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
    with file_lock(lock, timeout=lock_timeout, on_wait=lambda holder: say_waiting(lock, holder)):
        return _join_sweep_tables(path, runs)


def _join_sweep_tables(path: Path, runs: list["RunDir"]) -> list[Path]:
    score_df, met_df = join_run_tables(runs)
    write_parquet(path / SCORES_FILE, score_df, {"runs": score_df.attrs["runs"], FACTS_KEY: score_df.attrs[FACTS_KEY]})
    write_parquet(path / METRICS_FILE, met_df)
    return [path / SCORES_FILE, path / METRICS_FILE]


def join_run_tables(runs: Sequence["RunDir"]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tables :func:`write_sweep_tables` writes, in memory: every run's scores and
    training metrics joined with its :data:`RUN_COLUMNS` (a run's metrics from before
    ``loss_se`` was recorded get it as NaN), the scores' ``attrs["runs"]`` holding each
    run's recorded axis and probe ids. Reads the runs only, writes nothing."""
    scores, metrics = [], []
    per_run: dict[str, dict[str, Any]] = {}
    facts: dict[str, Any] = {}
    for run in runs:
        table_path = run.path / SCORES_FILE
        table = ScoreTable.read(table_path) if table_path.is_file() else None
        info = run_coordinates(run)
        if table is not None and len(table.df):
            scores.append(with_coordinates(table.df, info))
            per_run[run.run_id] = {k: table.meta[k] for k in ("axis", "probe_ids") if k in table.meta}
            facts.update(table.meta.get(FACTS_KEY) or {})
        met = run.metrics()
        if len(met) and "loss_se" not in met.columns:  # trained before loss_se was recorded
            met = met.assign(loss_se=float("nan"))
        if len(met):
            metrics.append(with_coordinates(met.assign(run_id=run.run_id), info))
    score_df = pd.concat(scores, ignore_index=True) if scores else empty_scores().assign(**{c: [] for c in RUN_COLUMNS})
    met_cols = ["run_id", *METRIC_COLUMNS, *RUN_COLUMNS]
    met_df = pd.concat(metrics, ignore_index=True) if metrics else pd.DataFrame({c: [] for c in met_cols})
    score_df = score_df.astype({**SCORE_DTYPES, **RUN_DTYPES})[SCORE_COLUMNS + RUN_COLUMNS]
    score_df.attrs["runs"] = per_run
    score_df.attrs[FACTS_KEY] = facts
    return score_df, met_df.astype({"run_id": "str", **METRIC_DTYPES, **RUN_DTYPES})[met_cols]


# ------------------------------------------------------------------------------------ readers


def table_runs(path: str | Path, run_ids: Optional[Sequence[str]] = None) -> dict[str, dict[str, Any]]:
    """Per run of a scores table, what its metadata records besides the rows: ``axis``
    (``{"x": "tokens_seen" | "step", "tokens_from": ...}``: whether ``tokens_seen`` counts
    tokens or holds the step), ``probe_ids`` (:meth:`repeatlens.probe_ids.SpecialIds.to_json`)
    and, for other people's checkpoints, ``source`` (their kind: ``huggingface``, ``nanogpt``,
    ...); {} for a table written before they were recorded.

    Args:
        path: a run, sweep or analysed folder, or a scores ``.parquet`` file.
        run_ids: the table's run ids, when the caller has read them (a one-run table's
            metadata applies to each).
    """
    import pyarrow.parquet as pq

    p = Path(path)
    file = p / SCORES_FILE if p.is_dir() else p
    try:
        raw = (pq.read_schema(file).metadata or {}).get(_META_KEY)
        meta = json.loads(raw) if raw else {}
    except (OSError, ValueError):
        return {}
    if isinstance(meta.get("runs"), dict):  # a sweep's joined table
        return {str(k): v for k, v in meta["runs"].items() if isinstance(v, dict)}
    own = {k: meta[k] for k in ("axis", "probe_ids") if k in meta}
    if own and isinstance(meta.get("run"), dict) and meta["run"].get("source"):
        own["source"] = meta["run"]["source"]  # other people's checkpoints: huggingface, nanogpt, ...
    if not own:
        return {}
    if run_ids is None:
        import pyarrow.compute as pc

        try:
            run_ids = pc.unique(pq.read_table(file, columns=["run_id"])["run_id"]).to_pylist()
        except (OSError, ValueError, KeyError):
            return {}
    return {str(r): dict(own) for r in run_ids}


def _recorded_facts(path: str | Path) -> dict[str, Any]:
    """The metric facts a scores table's metadata records (:data:`FACTS_KEY`; {} for a table
    written before they were), as JSON records: :func:`~repeatlens.results.metric_facts.table_facts`
    reads them off ``df.attrs``."""
    import pyarrow.parquet as pq

    p = Path(path)
    try:
        raw = (pq.read_schema(p / SCORES_FILE if p.is_dir() else p).metadata or {}).get(_META_KEY)
        meta = json.loads(raw) if raw else {}
    except (OSError, ValueError):
        return {}
    facts = meta.get(FACTS_KEY) if isinstance(meta, dict) else None
    return facts if isinstance(facts, dict) else {}


def load_scores(path: str | Path, probe: Optional[str] = None) -> pd.DataFrame:
    """The scores table of a run, sweep or foreign folder (or a ``.parquet`` file).

    A run's table gets the run's coordinates joined (:data:`RUN_COLUMNS`), as a sweep's
    has them, so the same code reads both. ``df.attrs["runs"]`` holds what the table's
    metadata records per run (:func:`table_runs`: the x-axis, the probes' special ids),
    which the figures read.

    Args:
        path: a run, sweep or analysed folder, or a scores ``.parquet`` file.
        probe: keep only the rows of this probe (a family such as ``synthetic``, or a key
            such as ``synthetic:L30``; see :func:`repeatlens.results.select_probe`) and
            the rows that read no probe. None: every row of every probe the table holds;
            the probe columns (:data:`~repeatlens.results.schema.PROBE_COLUMNS`) tell them
            apart, and ``df.attrs["probes"]`` lists their keys: with more than one there,
            group by those columns or select one before averaging a metric, since the same
            (run, step, metric, head) then has one value per probe.
    """
    from repeatlens.checkpoints import RunDir

    df = _load_table(path, SCORES_FILE)
    run = RunDir(path)
    if run.is_run():
        df = with_coordinates(df, run_coordinates(run), SCORE_COLUMNS)
    else:
        _warn_if_runs_missing(path, SCORES_FILE, df)
    if probe is not None:
        df = select_probe(df, probe)[0]
    df.attrs["runs"] = table_runs(path, [str(r) for r in df["run_id"].unique()])
    df.attrs[FACTS_KEY] = _recorded_facts(path)
    df.attrs["probes"] = sorted(set(row_keys(df).unique()) - {""})
    return df


def load_metrics(path: str | Path) -> pd.DataFrame:
    """The training-metrics table: a sweep's joined ``metrics.parquet`` or one run's (with run_id and coordinates)."""
    from repeatlens.checkpoints import RunDir

    df = _load_table(path, METRICS_FILE)
    run = RunDir(path)
    if run.is_run():
        df = with_coordinates(df.assign(run_id=run.run_id), run_coordinates(run))
    else:
        _warn_if_runs_missing(path, METRICS_FILE, df)
    return df


def _warn_if_runs_missing(path: str | Path, name: str, df: pd.DataFrame) -> None:
    """Warn when a folder's joined table lacks complete runs that sit in the folder: the table
    was written before they finished (or by a sweep that joined only its own points), and a
    fit or target read off it would silently leave them out. ``repeatlens analyze FOLDER``
    scores them and rewrites the table."""
    import warnings

    from repeatlens.checkpoints import RunDir

    folder = Path(path)
    if not folder.is_dir() or "run_id" not in df.columns:
        return
    have = set(df["run_id"].astype(str))
    try:
        missing = sorted(c.name for c in folder.iterdir() if c.is_dir() and c.name not in have and RunDir(c).is_complete())
    except OSError:  # a folder or run we may not list: the table was read; only this check is skipped
        return
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        warnings.warn(f"{folder / name}: {len(missing)} complete run(s) in {folder} are not in this table ({shown}); "
                      f"`repeatlens analyze {folder}` scores them and rewrites it", StaleTableWarning, stacklevel=3)


def _load_table(path: str | Path, name: str) -> pd.DataFrame:
    p = Path(path)
    file = p / name if p.is_dir() else p
    if not file.is_file():
        raise CheckpointError(f"{p}: no {name} yet; run `repeatlens analyze {p}` first")
    from repeatlens.checkpoints import read_parquet_table

    df = read_parquet_table(file, (), "table")
    if name == SCORES_FILE:
        _require_score_columns(file, df, "probe" not in df.columns)
    else:
        missing = [c for c in METRIC_COLUMNS if c not in df.columns]
        if missing:
            raise CheckpointError(f"{file}: not a repeatlens metrics table (no column {', '.join(missing)})")
    if name == SCORES_FILE and "probe" not in df.columns:  # a table written before probes were recorded
        meta = {"done": {}}
        df, _ = _from_format_1(df, meta)
        df = df[[c for c in SCORE_COLUMNS + RUN_COLUMNS if c in df.columns]]
    if name == SCORES_FILE and PROBE_KEY not in df.columns:  # written before the key was stored: derived once, here
        df = df.copy()
        df.insert(df.columns.get_loc(PROBE_COLUMNS[-1]) + 1, PROBE_KEY, derive_keys(df).astype(SCORE_DTYPES[PROBE_KEY]))
    return df
