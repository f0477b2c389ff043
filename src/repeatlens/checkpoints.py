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
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence

import numpy as np
from pydantic import ValidationError

from repeatlens.config import RunConfig, config_from_dict, read_yaml
from repeatlens.errors import ENVIRONMENT_ERRNOS, CheckpointError, RepeatlensError, first_line, os_error_message, shorten
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
        """The run's typed :class:`~repeatlens.results.schema.Manifest`."""
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


# --------------------------------------------------------------- the run directory's contract

#: Format of the manifest :func:`repeatlens.train.prepare_run` writes: 3 records every file
#: the run was written with (:attr:`~repeatlens.results.schema.Manifest.files`).
MANIFEST_FORMAT = 3

#: Files up to this size are hashed whenever a run is opened (``info``, ``report``, ``plot``,
#: ``score``); larger ones (the pool and schedule of a big run) are checked there by size
#: and ``.npy`` layout only, and hashed when their data is about to be used (``train``
#: resuming, ``analyze``) and by ``verify``. Hashing runs at about 1 GB/s.
QUICK_HASH_BYTES = 16 * 2**20

#: Every file of a run directory that the manifest records (the data files only when present).
RECORDED_FILES = ("config.yaml", "tokenizer.json", "data/rows.npy", "data/pool.npy", "data/schedule.npy", "data/is_synthetic.npy")

#: The last field every version of repeatlens writing manifests before format 3 put in
#: ``config.yaml`` (``train.wandb.mode``): a file without it was cut short.
_LAST_WRITTEN = ("train", "wandb", "mode")


def file_record(path: Path, data: Optional[bytes] = None) -> dict[str, Any]:
    """What the manifest records of a file (``data``: its bytes, when already in memory)."""
    if data is not None:
        import hashlib

        return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def run_file_problems(run: RunDir, *, full: bool = True) -> tuple[list[tuple[str, str]], list[str]]:
    """Whether the files of ``run`` agree with each other and with what was written.

    Checks, each failure one ``(file, problem)``:

    * every file the manifest records (:data:`RECORDED_FILES`, format 3) exists with its
      recorded size and sha256 (files over :data:`QUICK_HASH_BYTES` are hashed only with
      ``full``); a run written before format 3 has its pool and schedule checked against
      the manifest's ``pool.sha256`` and ``schedule.sha256`` instead;
    * ``config.yaml`` parses, was not cut short, and agrees with ``manifest.json``
      (seed, mixture, sequence length, batch size, source, parameter count);
    * the ``.npy`` files have the shapes the manifest's counts give;
    * every checkpoint sidecar that records the config and manifest it was trained under
      (format 3) names these.

    Returns:
        ``(problems, unchecked)``: ``unchecked`` says what could not be checked (files an
        older run did not record, large files without ``full``).

    Raises:
        CheckpointError / ConfigError: ``manifest.json`` or ``config.yaml`` cannot be read at all.
    """
    man = run.manifest()
    problems: list[tuple[str, str]] = []
    unchecked: list[str] = []
    recorded = dict(man.files)

    def hashed(path: Path, sha: str, size: Optional[int], what: str) -> None:
        """The file at ``path`` against its record (``size`` None: not recorded)."""
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            problems.append((str(path), f"missing ({what} records it)"))
            return
        except OSError as e:
            problems.append((str(path), os_error_message(e, path).split(": ", 1)[-1]))
            return
        if size is not None and actual != size:
            problems.append((str(path), f"{actual:,} bytes, but {what} records {size:,} (truncated, extended or replaced)"))
            return
        if not full and actual > QUICK_HASH_BYTES:
            unchecked.append(f"{path.name}: sha256 ({actual / 2**20:,.0f} MiB; hashed on resume, analyze and verify)")
            return
        try:
            digest = sha256_file(path)
        except OSError as e:
            problems.append((str(path), os_error_message(e, path).split(": ", 1)[-1]))
            return
        if digest != sha:
            problems.append((str(path), f"sha256 does not match {what} (changed after the run was written)"))

    for rel in RECORDED_FILES:
        if rel in recorded:
            hashed(run.path / rel, recorded[rel].sha256, recorded[rel].bytes, "manifest.json")
    if not recorded:  # a run written before format 3
        unchecked.append("config.yaml, tokenizer.json, data/is_synthetic.npy: no sha256 recorded (manifest format < 3); "
                         "config.yaml checked for truncation and against manifest.json")
        if man.pool.get("layout") == "reference":  # written by referencing runs before format 3
            hashed(run.rows_path, man.pool["rows_sha256"], None, "manifest.json pool.rows_sha256")
            hashed(run.is_synthetic_path, man.pool["is_synthetic_sha256"], None, "manifest.json pool.is_synthetic_sha256")
        else:
            hashed(run.pool_path, man.pool["sha256"], None, "manifest.json pool.sha256")
        if full or _size(run.schedule_path) <= QUICK_HASH_BYTES:
            from repeatlens.data.mixture import schedule_hash

            try:
                if schedule_hash(load_npy(run.schedule_path)) != man.schedule["sha256"]:
                    problems.append((str(run.schedule_path), "schedule hash does not match manifest.json schedule.sha256"))
            except CheckpointError as e:
                problems.append((str(run.schedule_path), str(e).split(": ", 1)[-1]))
    if (man.tokenizer is not None) != run.tokenizer_path.is_file():
        problems.append((str(run.tokenizer_path), "missing (manifest.json names it)" if man.tokenizer else "present, but manifest.json names no tokenizer"))
    if any(where == str(run.config_path) for where, _ in problems):
        return problems, unchecked  # a changed config.yaml: comparing its fields would only repeat that
    problems += _config_problems(run, man, old_run=not recorded)
    problems += [p for p in _layout_problems(run, man) if p[0] not in {where for where, _ in problems}]
    problems += _sidecar_problems(run, recorded)
    return problems, unchecked


def _sidecar_problems(run: RunDir, recorded: dict[str, Any]) -> list[tuple[str, str]]:
    """Every checkpoint sidecar that records the config and manifest it was trained under
    (format 3) against this run's: a checkpoint of another run, or a manifest edited since."""
    if "config.yaml" not in recorded:
        return []
    expected = {"config_sha256": (recorded["config.yaml"].sha256, "config.yaml"), "manifest_sha256": (sha256_file(run.manifest_path), "manifest.json")}
    out = []
    for side in sorted(run.ckpt_dir.glob("step_*.json")):
        try:
            meta = read_json_object(side, "checkpoint sidecar")
        except CheckpointError as e:
            out.append((str(side), str(e).split(": ", 1)[-1]))
            continue
        for key, (sha, name) in expected.items():
            if meta.get(key) is not None and meta[key] != sha:
                where = run.manifest_path if name == "manifest.json" else side
                out.append((str(where), f"differs from the {name} {side.name} was trained under ({key}); changed after training, "
                                        "or the checkpoint is another run's"))
    return list(dict.fromkeys(out))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _config_problems(run: RunDir, man: Manifest, *, old_run: bool) -> list[tuple[str, str]]:
    """``config.yaml`` against the manifest written with it (and, for an old run, against truncation)."""
    import math

    where = str(run.config_path)
    raw = read_yaml(run.config_path)
    if old_run:
        node: Any = raw
        for key in _LAST_WRITTEN:
            if not isinstance(node, dict) or key not in node:
                return [(where, f"cut short: no {'.'.join(_LAST_WRITTEN)}, which every version writes last; restore the file")]
            node = node[key]
    cfg = config_from_dict(raw, where=where)
    mixture = cfg.mixture.model_dump(mode="json")
    expected = {
        "seed": (man.seeds.get("seed"), cfg.seed),
        "data.seq_len": (man.seq_len, cfg.data.seq_len),
        "train.batch_size": (man.batch_size, cfg.train.batch_size),
        "data.source": (man.corpus.get("source"), cfg.data.source),
        **{f"mixture.{k}": (v, mixture.get(k)) for k, v in man.requested.items()},
    }
    if man.n_params is not None:
        expected["model (parameter count)"] = (man.n_params, cfg.model.n_params(man.vocab_size))
    if cfg.data.synthetic_only:
        expected["data.synthetic.vocab_size"] = (man.vocab_size, cfg.data.synthetic.vocab_size)
    out = []
    for field, (written, now) in expected.items():
        same = math.isclose(written, now) if isinstance(written, float) and isinstance(now, (int, float)) else written == now
        if not same:
            out.append((where, f"{field} = {shorten(repr(now))}, but manifest.json was written for {shorten(repr(written))}; "
                               "the config was edited after the run was written"))
    if math.ceil(man.schedule["slots"] / man.batch_size) != man.total_steps:
        out.append((str(run.manifest_path), f"total_steps = {man.total_steps} disagrees with {man.schedule['slots']} slots in batches of {man.batch_size}"))
    return out


def _layout_problems(run: RunDir, man: Manifest) -> list[tuple[str, str]]:
    """The ``.npy`` files' shapes and dtypes against the manifest's counts (headers only)."""
    rows = man.n_test + man.n_repeated + man.n_unique
    expect = {run.schedule_path: ((int(man.schedule["slots"]),), "i")}
    if man.pool.get("layout") == "reference":
        expect[run.rows_path] = ((rows,), "i")
    else:
        expect[run.pool_path] = ((rows, man.seq_len), "u")
    if run.is_synthetic_path.is_file() or "data/is_synthetic.npy" in man.files:
        expect[run.is_synthetic_path] = ((rows,), "b")
    out = []
    for path, (shape, kind) in expect.items():
        try:
            got_shape, dtype = npy_header(path)
        except CheckpointError as e:
            out.append((str(path), str(e).split(": ", 1)[-1]))
            continue
        if got_shape != shape or dtype.kind != kind:
            out.append((str(path), f"holds {dtype} {got_shape}; manifest.json's counts give {'uint' if kind == 'u' else dtype.name} {shape}"))
    return out


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a ``.npy`` file declares (its header only), or a one-line CheckpointError."""
    from numpy.lib import format as npy

    try:
        with open(path, "rb") as fh:
            version = npy.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = npy.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = npy.read_array_header_2_0(fh)
            else:
                raise ValueError(f".npy format {version[0]}.{version[1]}; repeatlens writes 1.0")
            data_bytes = path.stat().st_size - fh.tell()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except OSError as e:
        raise CheckpointError(os_error_message(e, path)) from None
    except (ValueError, EOFError, SyntaxError, TypeError) as e:
        raise CheckpointError(f"{path}: not a .npy file ({first_line(e)})") from None
    if dtype.hasobject or data_bytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise CheckpointError(f"{path}: {data_bytes:,} bytes of data where its header declares {dtype} {tuple(shape)} (truncated?)")
    return tuple(int(x) for x in shape), dtype


# ------------------------------------------------------------------------ reading safely


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object (a dict) from ``path``, or a one-line CheckpointError naming the file."""
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {what} is missing") from None
    except OSError as e:
        raise CheckpointError(os_error_message(e, path)) from None
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: unreadable {what} (not UTF-8 text at byte {e.start})") from None
    except ValueError as e:  # json.JSONDecodeError, or a number too long to convert
        raise CheckpointError(f"{path}: unreadable {what} (not JSON: {first_line(e)})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: unreadable {what} (a JSON {type(raw).__name__}; expected an object)")
    return raw


#: A sidecar's fields that readers use, and the JSON types they must have (None: may be absent).
_SIDECAR_FIELDS: dict[str, tuple[type, bool]] = {
    "step": (int, True), "tokens_seen": (int, True), "sha256": (str, True), "train_state": (dict, False),
    "environment": (dict, False), "versions": (dict, False), "config_sha256": (str, False), "manifest_sha256": (str, False),
}


#: ``complete.json``'s fields that readers use.
_COMPLETION_FIELDS: dict[str, tuple[type, bool]] = {"step": (int, True), "tokens_seen": (int, True), "environment": (dict, False)}


def _check_fields(path: Path, meta: dict[str, Any], fields: dict[str, tuple[type, bool]], what: str) -> dict[str, Any]:
    """``meta`` if each of ``fields`` (name -> (JSON type, required)) has its type, else a one-line CheckpointError."""
    for key, (kind, required) in fields.items():
        value = meta.get(key)
        if value is None and not required:
            continue
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            got = "missing" if value is None else shorten(repr(value), 60)
            expected = "a whole number >= 0" if kind is int else "a JSON " + {str: "string", dict: "object"}[kind]
            raise CheckpointError(f"{path}: unreadable {what} (field '{key}': {got}; expected {expected})")
    return meta


def read_sidecar(side: Path) -> dict[str, Any]:
    """A checkpoint's JSON sidecar, its fields checked (:data:`_SIDECAR_FIELDS`) and its step
    the one its name gives, or a one-line CheckpointError naming the file and field."""
    meta = _check_fields(side, read_json_object(side, "checkpoint sidecar"), _SIDECAR_FIELDS, "checkpoint sidecar")
    ts = meta.get("train_state")
    if ts is not None and not isinstance(ts.get("sha256"), str):
        raise CheckpointError(f"{side}: unreadable checkpoint sidecar (field 'train_state.sha256': missing or not a string)")
    groups = ts.get("param_groups") if ts is not None else []
    if not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups):
        raise CheckpointError(f"{side}: unreadable checkpoint sidecar (field 'train_state.param_groups': expected the optimizer's parameter groups)")
    if side.name != f"{step_name(meta['step'])}.json":
        raise CheckpointError(f"{side}: sidecar says step {meta['step']}; expected its name to be {step_name(meta['step'])}.json")
    return meta


def load_npy(path: Path, *, mmap: bool = False) -> np.ndarray:
    """A run's ``.npy`` file (never unpickled), or a one-line CheckpointError naming the file."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except OSError as e:
        if e.errno in (None, 0):  # numpy's own "failed to interpret file as a pickle" etc.
            raise CheckpointError(f"{path}: unreadable .npy file ({first_line(e)})") from None
        raise CheckpointError(os_error_message(e, path)) from None
    except (ValueError, EOFError) as e:  # a truncated or malformed .npy
        raise CheckpointError(f"{path}: unreadable .npy file ({first_line(e)})") from None


def read_parquet_table(path: Path, columns: Sequence[str], what: str):
    """A parquet table holding at least ``columns``, or a one-line CheckpointError naming the file."""
    import pandas as pd
    import pyarrow as pa

    try:
        df = pd.read_parquet(path)
    except OSError as e:
        if e.errno in ENVIRONMENT_ERRNOS:
            raise CheckpointError(os_error_message(e, path)) from None
        raise CheckpointError(f"{path}: unreadable {what} ({first_line(e)})") from None
    except (ValueError, pa.ArrowException) as e:
        raise CheckpointError(f"{path}: unreadable {what} ({first_line(e)})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise CheckpointError(f"{path}: {what} lacks column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    return df
def _declared_special(path: Path) -> tuple[int, ...]:
    """Ids of the special tokens a ``tokenizer.json`` declares (read as JSON)."""
    if not path.is_file():
        return ()
    try:
        added = json.loads(path.read_text(encoding="utf-8")).get("added_tokens", [])
    except (OSError, ValueError, AttributeError):  # ValueError: not JSON, or not UTF-8
        return ()
    return tuple(int(t["id"]) for t in added if isinstance(t, dict) and t.get("special") and isinstance(t.get("id"), int))




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
