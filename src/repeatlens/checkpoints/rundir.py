"""A run directory and its checkpoints: :class:`RunDir` (config, manifest, data, checkpoints,
tables), :class:`CheckpointInfo`, :func:`load_run`."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

import numpy as np
from pydantic import ValidationError

from repeatlens.config import RunConfig, config_from_dict, read_yaml
from repeatlens.errors import CheckpointError, first_line, shorten
from repeatlens.io import sha256_file
from repeatlens.checkpoints.manifest import Manifest
from repeatlens.checkpoints.contract import run_file_problems
from repeatlens.checkpoints.reading import (
    _COMPLETION_FIELDS,
    _check_fields,
    _declared_special,
    load_npy,
    read_json_object,
    read_parquet_table,
    read_sidecar,
    step_name,
)

if TYPE_CHECKING:
    import torch

    from repeatlens.data.pools import PoolView
    from repeatlens.data.special import SpecialIds


CKPT_DIR = "checkpoints"


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("repeatlens", "torch", "transformer-lens", "numpy", "safetensors"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


@dataclass(frozen=True)
class CheckpointInfo:
    """One saved checkpoint, described by its sidecar. Loading the weights is lazy."""

    run_dir: Path
    step: int
    tokens_seen: int
    sidecar: dict[str, Any]

    @property
    def weights_path(self) -> Path:
        return self.run_dir / CKPT_DIR / f"{step_name(self.step)}.safetensors"

    @property
    def train_state_path(self) -> Path:
        return self.run_dir / CKPT_DIR / f"{step_name(self.step)}.train.safetensors"

    def load_state_dict(self, verify: bool = True) -> dict[str, torch.Tensor]:
        """Read the weights (sha256 checked against the sidecar first)."""
        return _load_verified(self.weights_path, self.sidecar.get("sha256") if verify else None)


def _load_verified(path: Path, sha: Optional[str]) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file is missing")
    if sha is not None and sha256_file(path) != sha:
        raise CheckpointError(f"{path}: sha256 does not match its sidecar (corrupted or truncated file)")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({first_line(e)})") from None


class RunDir:
    """Paths and readers for one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._pool: Any = None

    # paths
    config_path = property(lambda self: self.path / "config.yaml")
    manifest_path = property(lambda self: self.path / "manifest.json")
    tokenizer_path = property(lambda self: self.path / "tokenizer.json")
    pool_path = property(lambda self: self.path / "data" / "pool.npy")  # runs written before the pool was referenced
    rows_path = property(lambda self: self.path / "data" / "rows.npy")
    schedule_path = property(lambda self: self.path / "data" / "schedule.npy")
    is_synthetic_path = property(lambda self: self.path / "data" / "is_synthetic.npy")
    metrics_path = property(lambda self: self.path / "metrics.parquet")
    complete_path = property(lambda self: self.path / "complete.json")
    ckpt_dir = property(lambda self: self.path / CKPT_DIR)

    @property
    def run_id(self) -> str:
        return self.path.resolve().name

    def is_run(self) -> bool:
        return self.config_path.is_file() and self.manifest_path.is_file()

    def is_complete(self) -> bool:
        return self.complete_path.is_file()

    def looks_like_run(self) -> bool:
        """Whether this folder holds any part of a run directory's description (a damaged run is still one)."""
        return self.config_path.is_file() or self.manifest_path.is_file()

    def require(self) -> "RunDir":
        """This run directory, or a one-line CheckpointError: not a run, or one that lost config.yaml or manifest.json."""
        if not self.is_run():
            if self.looks_like_run():
                lost = self.manifest_path if self.config_path.is_file() else self.config_path
                raise CheckpointError(f"{lost}: missing; {self.path} holds the rest of a run directory (restore the file)")
            raise CheckpointError(f"{self.path}: not a repeatlens run directory (no config.yaml and manifest.json)")
        return self

    def check(self, full: bool = False) -> "RunDir":
        """Refuse a run whose files disagree with each other (:func:`run_file_problems`).

        Args:
            full: hash every file (before training on or scoring its data); else only the
                files up to :data:`QUICK_HASH_BYTES`, the larger ones by size and layout.

        Raises:
            CheckpointError: one line naming the first file that disagrees (and how many
                others do; ``repeatlens verify`` lists them all).
        """
        problems, _ = run_file_problems(self, full=full)
        if problems:
            where, what = problems[0]
            more = f" (and {len(problems) - 1} more problem(s); `repeatlens verify {self.path}` lists them)" if len(problems) > 1 else ""
            raise CheckpointError(f"{where}: {what}{more}")
        return self

    def config(self) -> RunConfig:
        return config_from_dict(read_yaml(self.config_path), where=str(self.config_path))

    def manifest(self) -> Manifest:
        """The run's typed :class:`~repeatlens.checkpoints.manifest.Manifest`."""
        raw = read_json_object(self.manifest_path, "manifest")
        try:
            return Manifest.model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"])
            raise CheckpointError(f"{self.manifest_path}: field '{field}': {shorten(err['msg'])}") from None

    def completion(self) -> Optional[dict[str, Any]]:
        """``complete.json`` (how the run finished: steps, time, environment), or None while it is unfinished."""
        if not self.is_complete():
            return None
        return _check_fields(self.complete_path, read_json_object(self.complete_path, "completion record"), _COMPLETION_FIELDS, "completion record")

    def pool(self) -> "np.ndarray | PoolView":
        """The run's rows ``[test | repeated | unique]``, ``[n_rows, seq_len]``, read on access:
        a :class:`~repeatlens.data.pools.PoolView` for a run stored by reference, the
        memory-mapped ``data/pool.npy`` for one written before.

        Raises:
            DataError: the corpus stream or the synthetic rows cannot be had (one line
                saying how to rebuild them).
            CheckpointError: an older run's ``data/pool.npy`` is missing.
        """
        if self._pool is None:
            man = self.manifest()
            if man.pool.get("layout") == "reference":
                from repeatlens.data.pools import open_pool

                self._pool = open_pool(self.path, man, self.config().data, str(self.path))
            else:
                self._pool = load_npy(self.pool_path, mmap=True)
        return self._pool

    def schedule(self) -> np.ndarray:
        """``data/schedule.npy``: the pool row trained on at each slot."""
        return load_npy(self.schedule_path)

    def special_ids(self) -> "SpecialIds":
        """The run's BOS and special ids (:mod:`repeatlens.data.special`): the manifest's
        record, or, for a run written before it was kept, BOS 0 (as those runs were
        trained) plus every special token its ``tokenizer.json`` declares."""
        from repeatlens.data.special import SpecialIds

        man = self.manifest()
        if man.special_ids is not None:
            return man.special()
        legacy = man.special()
        return SpecialIds(legacy.bos, legacy.special + _declared_special(self.tokenizer_path), source=legacy.source, kind="legacy")

    def test_tokens(self) -> np.ndarray:
        return self.pool()[: self.manifest().n_test]

    def repeated_tokens(self) -> np.ndarray:
        m = self.manifest()
        return self.pool()[m.n_test : m.n_test + m.n_repeated]

    def is_synthetic(self) -> Optional[np.ndarray]:
        """Per pool row, whether it came from the synthetic source; None for a run written
        before this was recorded (unless it has no synthetic share, or nothing else)."""
        if self.is_synthetic_path.is_file():
            return load_npy(self.is_synthetic_path)
        data = self.config().data
        if data.synthetic_only or data.synthetic_fraction == 0:
            return np.full(len(self.pool()), data.synthetic_only)
        return None

    def mixed_kinds(self) -> Optional[np.ndarray]:
        """:meth:`is_synthetic` for a run that mixes a corpus with the synthetic source (its
        test and repeated sets split into natural-text and synthetic rows); None for any
        other run, or one written before the pool recorded the kinds."""
        data = self.config().data
        if data.synthetic_only or data.synthetic_fraction <= 0:
            return None
        return self.is_synthetic()

    def synthetic_shares(self) -> Optional[dict[str, float]]:
        """Shares of synthetic sequences, measured from the run's ``data/``: ``trained`` (every
        scheduled slot, a repeated row as often as it is repeated), ``unique`` (the slots of
        rows that are not repeated) and ``repeated`` (the repeated subset's rows, each once;
        NaN without one). None where the pool does not record which rows are synthetic."""
        kinds = self.is_synthetic()
        if kinds is None:
            return None
        schedule, repeated = self.schedule(), np.asarray(self.manifest().repeated_ids, dtype=np.int64)
        unique = schedule[~np.isin(schedule, repeated)]
        return {"trained": float(kinds[schedule].mean()), "unique": float(kinds[unique].mean()) if len(unique) else float("nan"),
                "repeated": float(kinds[repeated].mean()) if len(repeated) else float("nan")}

    def training_token_counts(self, vocab_size: Optional[int] = None) -> np.ndarray:
        """How often each id occurs in the tokens the run trains on (every scheduled
        sequence, a repeated one as often as it is repeated), ``[vocab_size]`` int64."""
        vocab = int(vocab_size or self.manifest().vocab_size)
        pool, schedule = self.pool(), self.schedule()
        rows, seen = np.unique(schedule, return_counts=True)
        counts = np.zeros(vocab, dtype=np.int64)
        for start in range(0, len(rows), 4096):  # bounded memory for large pools
            chunk = np.asarray(pool[rows[start : start + 4096]], dtype=np.int64)
            counts += np.bincount(chunk.ravel(), weights=np.repeat(seen[start : start + 4096], chunk.shape[1]), minlength=vocab)[:vocab].astype(np.int64)
        return counts

    def metrics(self):
        import pandas as pd

        if not self.metrics_path.is_file():
            return pd.DataFrame({"step": [], "tokens_seen": [], "split": [], "loss": [], "loss_se": []})
        df = read_parquet_table(self.metrics_path, ("step", "tokens_seen", "split", "loss"), "training-metrics table")
        kinds = {"step": "iu", "tokens_seen": "iu", "loss": "fiu"}
        wrong = [c for c, k in kinds.items() if df[c].dtype.kind not in k] + ([] if all(isinstance(v, str) for v in df["split"]) else ["split"])
        if wrong:
            raise CheckpointError(f"{self.metrics_path}: training-metrics table with column {wrong[0]} of type {df[wrong[0]].dtype}; "
                                  "expected whole steps and tokens, text splits, numeric losses")
        return df

    # checkpoints
    def checkpoints(self) -> list[CheckpointInfo]:
        """Every complete checkpoint (sidecar present), sorted by step. Reads sidecars only."""
        out = [read_sidecar(side) for side in sorted(self.ckpt_dir.glob("step_*.json"))]
        return sorted((CheckpointInfo(self.path, meta["step"], meta["tokens_seen"], meta) for meta in out), key=lambda c: c.step)

    def checkpoint(self, step: Optional[int] = None) -> CheckpointInfo:
        """The checkpoint at ``step`` (default: the last one)."""
        ckpts = self.require().checkpoints()
        if not ckpts:
            raise CheckpointError(f"{self.path}: run has no checkpoints yet")
        if step is None:
            return ckpts[-1]
        for c in ckpts:
            if c.step == step:
                return c
        raise CheckpointError(f"{self.path}: no checkpoint at step {step}; steps saved: {', '.join(str(c.step) for c in ckpts)}")

    def hooked_config(self, device: str = "cpu"):
        from repeatlens.model import hooked_config

        return hooked_config(self.config().model, d_vocab=self.manifest().vocab_size, device=device)

    def hf_tokenizer(self):
        if not self.tokenizer_path.is_file():
            return None
        from repeatlens.data.tokenizer import hf_tokenizer

        return hf_tokenizer(self.tokenizer_path, self.special_ids().bos_token)

    def load_model(self, step: Optional[int] = None, device: str = "cpu", tokenizer: bool = True):
        """Rebuild the exact HookedTransformer saved at ``step`` (default: last)."""
        from repeatlens.model import model_from_state_dict

        info = self.checkpoint(step)
        return model_from_state_dict(
            self.hooked_config(device), info.load_state_dict(), tokenizer=self.hf_tokenizer() if tokenizer else None, device=device
        )

    def iter_models(self, steps: Optional[Iterable[int]] = None, device: str = "cpu") -> Iterator[tuple[CheckpointInfo, Any]]:
        """Yield ``(checkpoint, model)`` one at a time; only one model is alive at once."""
        from repeatlens.model import model_from_state_dict

        hcfg = self.hooked_config(device)
        wanted = None if steps is None else set(steps)
        for info in self.checkpoints():
            if wanted is not None and info.step not in wanted:
                continue
            model = model_from_state_dict(hcfg, info.load_state_dict(), device=device)
            yield info, model
            del model


def load_run(path: str | Path, *, check: bool = True) -> RunDir:
    """Open a run directory.

    Args:
        check: also check that its files agree with each other (:meth:`RunDir.check`, the
            quick level: every small file hashed, the large ones' sizes and layouts).

    Raises:
        CheckpointError: not a run directory, or (with ``check``) one whose files disagree:
            one line naming the file.
    """
    run = RunDir(path).require()
    if check:
        run.check()
    return run
