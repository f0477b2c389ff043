"""Writing checkpoints (weights, optimizer and RNG state, atomically, sidecar last) and reading
back what resume needs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from repeatlens.errors import CheckpointError
from repeatlens.io import atomic_path, atomic_write_json, sha256_file
from repeatlens.checkpoints.reading import step_name
from repeatlens.checkpoints.rundir import CheckpointInfo, RunDir, _load_verified, library_versions

if TYPE_CHECKING:
    import torch


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
