"""Run directories: layout, checkpoints with sidecars, lazy iteration over models.

A run directory holds::

    config.yaml            the validated RunConfig (the run's full description)
    manifest.json          D, f, E, S, repeated sequence ids, seeds, schedule hash …
    tokenizer.json         the tokenizer the corpus was tokenized with (text corpora only)
    data/rows.npy          the run's sequences [test | repeated | unique] by reference: per row, its row
                           in the corpus's cached token stream, or among the run's synthetic rows
    data/is_synthetic.npy  per row, whether it is synthetic (regenerated from the manifest's seeds)
    data/schedule.npy      pool row trained on at each slot
    checkpoints/step_0000100.safetensors        model weights (every checkpoint)
    checkpoints/step_0000100.train.safetensors  optimizer moments and RNG state (resume; the last
                                                two checkpoints only, unless train.keep_optimizer: all)
    checkpoints/step_0000100.json               sidecar: step, tokens_seen, sha256s, versions
    metrics.parquet        step, tokens_seen, split (train|test|repeated), loss
    complete.json          written last: the run finished

Runs written before the pool was stored by reference hold ``data/pool.npy``, the rows
themselves; :meth:`RunDir.pool` reads either. Every file is written atomically; a checkpoint counts only once its sidecar exists (the
sidecar is written last), and its sha256 is checked when it is loaded. Nothing is ever
unpickled: weights are safetensors, metadata JSON/YAML.

Reading a run's config, manifest, sidecars and metrics imports neither torch nor
TransformerLens (``repeatlens info`` answers without them); torch is imported where
tensors are read or written.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

import numpy as np
from pydantic import ValidationError

from repeatlens.config import RunConfig, config_from_dict, read_yaml
from repeatlens.errors import CheckpointError, RepeatlensError
from repeatlens.io import atomic_path, atomic_write_json, sha256_file
from repeatlens.results.schema import Manifest

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


def step_name(step: int) -> str:
    return f"step_{step:07d}"


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
        raise CheckpointError(f"{path}: unreadable safetensors file ({str(e).splitlines()[0]})") from None


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

    def require(self) -> "RunDir":
        if not self.is_run():
            raise CheckpointError(f"{self.path}: not a repeatlens run directory (no config.yaml and manifest.json)")
        return self

    def config(self) -> RunConfig:
        return config_from_dict(read_yaml(self.config_path), where=str(self.config_path))

    def manifest(self) -> Manifest:
        """The run's typed :class:`~repeatlens.results.schema.Manifest`."""
        try:
            raw = json.loads(self.manifest_path.read_text())
            return Manifest.model_validate(raw)
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{self.manifest_path}: unreadable manifest ({e})") from None
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"])
            raise CheckpointError(f"{self.manifest_path}: field '{field}': {err['msg']}") from None

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
            elif not self.pool_path.is_file():
                raise CheckpointError(f"{self.pool_path}: missing (the run's sequences)")
            else:
                self._pool = np.load(self.pool_path, mmap_mode="r")
        return self._pool

    def special_ids(self) -> "SpecialIds":
        """The run's BOS and special ids (:mod:`repeatlens.data.special`): the manifest's
        record, or, for a run written before it was kept, BOS 0 (as those runs were
        trained) plus every special token its ``tokenizer.json`` declares."""
        from repeatlens.data.special import SpecialIds

        man = self.manifest()
        if man.special_ids is not None:
            return man.special()
        legacy = man.special()
        return SpecialIds(legacy.bos, legacy.special + _declared_special(self.tokenizer_path), source=legacy.source)

    def test_tokens(self) -> np.ndarray:
        return self.pool()[: self.manifest().n_test]

    def repeated_tokens(self) -> np.ndarray:
        m = self.manifest()
        return self.pool()[m.n_test : m.n_test + m.n_repeated]

    def is_synthetic(self) -> Optional[np.ndarray]:
        """Per pool row, whether it came from the synthetic source; None for a run written
        before this was recorded (unless it has no synthetic share, or nothing else)."""
        if self.is_synthetic_path.is_file():
            return np.load(self.is_synthetic_path)
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

    def training_token_counts(self, vocab_size: Optional[int] = None) -> np.ndarray:
        """How often each id occurs in the tokens the run trains on (every scheduled
        sequence, a repeated one as often as it is repeated), ``[vocab_size]`` int64."""
        vocab = int(vocab_size or self.manifest().vocab_size)
        pool, schedule = self.pool(), np.load(self.schedule_path)
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
        return pd.read_parquet(self.metrics_path)

    # checkpoints
    def checkpoints(self) -> list[CheckpointInfo]:
        """Every complete checkpoint (sidecar present), sorted by step. Reads sidecars only."""
        out = []
        for side in sorted(self.ckpt_dir.glob("step_*.json")):
            try:
                meta = json.loads(side.read_text())
                out.append(CheckpointInfo(self.path, int(meta["step"]), int(meta["tokens_seen"]), meta))
            except (OSError, ValueError, KeyError) as e:
                raise CheckpointError(f"{side}: unreadable checkpoint sidecar ({e})") from None
        return sorted(out, key=lambda c: c.step)

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


def _declared_special(path: Path) -> tuple[int, ...]:
    """Ids of the special tokens a ``tokenizer.json`` declares (read as JSON)."""
    if not path.is_file():
        return ()
    try:
        added = json.loads(path.read_text(encoding="utf-8")).get("added_tokens", [])
    except (OSError, json.JSONDecodeError, AttributeError):
        return ()
    return tuple(int(t["id"]) for t in added if isinstance(t, dict) and t.get("special") and isinstance(t.get("id"), int))


def load_run(path: str | Path) -> RunDir:
    """Open a run directory (raises a one-line CheckpointError if it is not one)."""
    return RunDir(path).require()


# ----------------------------------------------------------------------------- writing


def save_file(tensors: dict[str, "torch.Tensor"], filename: str, metadata: Optional[dict[str, str]] = None) -> None:
    """``safetensors.torch.save_file``, imported when the first checkpoint is written."""
    from safetensors.torch import save_file as write

    write(tensors, filename, metadata=metadata)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: Optional[dict[str, str]] = None) -> str:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return sha256_file(path)


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten an optimizer state dict into tensors (safetensors) and JSON-able groups."""
    import torch

    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for name, val in st.items():
            t = val if torch.is_tensor(val) else torch.tensor(val)
            tensors[f"opt.{idx}.{name}"] = t
    return tensors, {"param_groups": sd["param_groups"]}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, val in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = val
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in groups["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    run: RunDir,
    model: torch.nn.Module,
    step: int,
    tokens_seen: int,
    optimizer: Optional[torch.optim.Optimizer] = None,
    extra: Optional[dict[str, Any]] = None,
    state: Optional[dict[str, "torch.Tensor"]] = None,
) -> CheckpointInfo:
    """Write weights, training state and (last) the sidecar for ``step``.

    The training state (with an ``optimizer``) holds its moments, torch's CPU RNG state,
    the CUDA RNG state of the current device where CUDA is available, and ``state`` (more
    tensors to resume with, e.g. a gradient scaler's).

    If any of the three writes fails (a full disk, Ctrl-C), the weight files of ``step``
    are removed again: without its sidecar the checkpoint does not count anyway, and on a
    full disk their space is better given back. Earlier checkpoints are never touched.

    Raises:
        WriteError: a file could not be written (:class:`~repeatlens.errors.DiskFullError`
            when the disk is full); the message names it.
    """
    import torch

    base = run.ckpt_dir / step_name(step)
    sidecar = base.with_suffix(".json")
    written: list[Path] = []
    try:
        written.append(base.with_suffix(".safetensors"))
        sha = _save_tensors(written[-1], dict(model.state_dict()))
        meta: dict[str, Any] = {
            "step": step,
            "tokens_seen": tokens_seen,
            "file": base.with_suffix(".safetensors").name,
            "sha256": sha,
            "versions": library_versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if optimizer is not None:
            tensors, groups = optimizer_tensors(optimizer)
            tensors["rng.torch"] = torch.get_rng_state()
            if torch.cuda.is_available():
                tensors["rng.cuda"] = torch.cuda.get_rng_state()
            tensors.update(state or {})
            written.append(run.ckpt_dir / f"{step_name(step)}.train.safetensors")
            meta["train_state"] = {"file": written[-1].name, "sha256": _save_tensors(written[-1], tensors), **groups}
        meta.update(extra or {})
        atomic_write_json(sidecar, meta)
    except BaseException:
        if not sidecar.exists():
            for path in written:
                path.unlink(missing_ok=True)
        raise
    return CheckpointInfo(run.path, step, tokens_seen, meta)


def restore_rng(tensors: dict[str, "torch.Tensor"]) -> None:
    """Put back the RNG states :func:`save_checkpoint` saved: torch's CPU generator and,
    where it was saved and CUDA is available, the current CUDA device's."""
    import torch

    torch.set_rng_state(tensors["rng.torch"].cpu())
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"].cpu())


def prune_train_states(run: RunDir, keep: int) -> list[int]:
    """Drop the training state (optimizer moments, RNG) of every checkpoint but the last
    ``keep`` that have one; their weights stay. Each sidecar is rewritten first (without
    ``train_state``, with ``train_state_dropped`` saying why), then the file is removed, so
    a crash between the two leaves a file no sidecar counts, removed on the next call.

    Returns:
        The steps whose training state was dropped.
    """
    ckpts = run.checkpoints()
    with_state = [c for c in ckpts if c.sidecar.get("train_state")]
    dropped = []
    for c in with_state[: max(len(with_state) - keep, 0)]:
        side = {k: v for k, v in c.sidecar.items() if k != "train_state"}
        side["train_state_dropped"] = {"sha256": c.sidecar["train_state"].get("sha256"), "why": f"train.keep_optimizer: last (keeps {keep})"}
        atomic_write_json(run.ckpt_dir / f"{step_name(c.step)}.json", side)
        c.train_state_path.unlink(missing_ok=True)
        dropped.append(c.step)
    for c in ckpts:  # left by a crash between the two writes above
        if not c.sidecar.get("train_state") and c.sidecar.get("train_state_dropped"):
            c.train_state_path.unlink(missing_ok=True)
    return dropped


def load_train_state(info: CheckpointInfo) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer tensors + param groups saved with a checkpoint (sha256 checked)."""
    ts = info.sidecar.get("train_state")
    if ts is None:
        raise CheckpointError(f"{info.weights_path}: no training state saved with this checkpoint; cannot resume from it")
    return _load_verified(info.train_state_path, ts["sha256"]), ts


__all__ = [
    "RunDir",
    "CheckpointInfo",
    "load_run",
    "save_checkpoint",
    "load_train_state",
    "restore_optimizer",
    "restore_rng",
    "prune_train_states",
    "library_versions",
    "RepeatlensError",
]
