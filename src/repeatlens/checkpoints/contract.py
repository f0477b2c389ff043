"""The run directory's contract: what the manifest records of each file, and the problems a run's
files have against it (:func:`run_file_problems`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from repeatlens.config import config_from_dict, read_yaml
from repeatlens.errors import CheckpointError, first_line, os_error_message, shorten
from repeatlens.io import sha256_file
from repeatlens.checkpoints.manifest import Manifest
from repeatlens.checkpoints.reading import NPY_HEADER_ERRORS, load_npy, read_json_object

if TYPE_CHECKING:
    from repeatlens.checkpoints.rundir import RunDir  # annotations only: rundir imports this module


# --------------------------------------------------------------- the run directory's contract

#: Format of the manifest :func:`repeatlens.train.prepare_run` writes: 3 records every file
#: the run was written with (:attr:`~repeatlens.checkpoints.manifest.Manifest.files`).
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
    except NPY_HEADER_ERRORS as e:
        raise CheckpointError(f"{path}: not a .npy file ({first_line(e)})") from None
    if dtype.hasobject or data_bytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise CheckpointError(f"{path}: {data_bytes:,} bytes of data where its header declares {dtype} {tuple(shape)} (truncated?)")
    return tuple(int(x) for x in shape), dtype
