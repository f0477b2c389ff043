"""Other people's checkpoints: discover them in a folder and load them offline.

Two layouts are understood:

* **TransformerLens** (what TransformerLens' own ``train.py`` writes): state-dict files
  ``model_{step}.pt`` with the model's ``HookedTransformerConfig`` beside them as
  ``config.json`` (its ``to_dict()``, e.g. ``json.dumps(cfg.to_dict(), default=str)``).
  The ``.pt`` files are read ONLY through ``torch.load(weights_only=True)``: a pickle that
  is anything but plain tensors is refused before any of its code can run.
* **Hugging Face**: one subfolder per revision, ``step1000/``, ``step2000/`` … as Pythia
  publishes them, each what ``save_pretrained`` writes for a GPT-2 or GPT-NeoX model.
  Converted into a ``HookedTransformer`` by :func:`repeatlens.model.model_from_hf_folder`,
  with ``local_files_only=True`` (no network).

A bad file never stops the others: discovery problems (e.g. no ``config.json``) are listed
in :attr:`ForeignFolder.problems`, and :meth:`ForeignFolder.load_model` raises a one-line
:class:`~repeatlens.errors.CheckpointError` naming the file and what is wrong with it.

These folders say nothing about tokens per step, so ``tokens_seen`` is ``step ×
tokens_per_step`` when the caller gives ``tokens_per_step`` (Pythia: 2,097,152) and the
step itself otherwise.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from repeatlens.errors import CheckpointError, ConfigError

__all__ = ["ForeignCheckpoint", "ForeignFolder", "discover", "load_tl_state_dict", "TL_CONFIG"]

TL_FILE = re.compile(r"^model_(\d+)\.pt$")
HF_STEP_DIR = re.compile(r"^(?:global_)?step[_-]?(\d+)$")
TL_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")

Kind = Literal["transformerlens", "huggingface"]


@dataclass(frozen=True)
class ForeignCheckpoint:
    """One checkpoint of a foreign folder: a ``model_{step}.pt`` file or a ``step{N}/`` folder."""

    path: Path
    step: int
    tokens_seen: int
    bos: Optional[int] = None  # BOS id from the HF config, when it names one


@dataclass
class ForeignFolder:
    """A folder of other people's checkpoints, found by :func:`discover`.

    Attributes:
        path: the folder.
        kind: ``"transformerlens"`` or ``"huggingface"``.
        checkpoints: loadable-looking checkpoints, sorted by step.
        problems: ``(path, reason)`` for files already known to be unusable.
    """

    path: Path
    kind: Kind
    checkpoints: list[ForeignCheckpoint]
    problems: list[tuple[Path, str]] = field(default_factory=list)
    _hcfg: Any = field(default=None, repr=False)

    @property
    def run_id(self) -> str:
        return self.path.resolve().name

    def load_model(self, ckpt: ForeignCheckpoint, device: str = "cpu"):
        """The ``HookedTransformer`` of ``ckpt``; a one-line CheckpointError if it is bad."""
        from repeatlens import model as adapter

        try:
            if self.kind == "transformerlens":
                return adapter.model_from_foreign_state_dict(self._hcfg, load_tl_state_dict(ckpt.path), device=device)
            return adapter.model_from_hf_folder(ckpt.path, device=device)
        except ValueError as e:
            raise CheckpointError(f"{ckpt.path}: {e}") from None


def load_tl_state_dict(path: str | Path) -> dict[str, Any]:
    """Read a ``.pt`` state dict with ``torch.load(weights_only=True)`` and nothing else.

    Raises:
        ValueError: one line: unreadable or truncated file, or a pickle that is not plain
            weights (the refused global is named).
    """
    import torch

    path = Path(path)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read an untrusted file is reported, not raised
        text = str(e)
        if "Weights only load failed" in text or "WeightsUnpickler" in text:
            glob = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
            what = f"it refers to {glob.group(1)}" if glob else "it holds more than tensors"
            raise ValueError(f"refused to unpickle: not plain weights ({what}; only torch.load(weights_only=True) is used)") from None
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        raise ValueError(f"unreadable or truncated .pt file ({first[:200]})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"not a state dict: the file holds a {type(obj).__name__}, expected a mapping of parameter names to tensors")
    return obj


def _tl_folder(path: Path, files: list[tuple[int, Path]], tokens_per_step: Optional[int]) -> ForeignFolder:
    from repeatlens.model import hooked_config_from_json

    folder = ForeignFolder(path, "transformerlens", [])
    cfg_path = path / TL_CONFIG
    reason = None
    if not cfg_path.is_file():
        reason = f"no {TL_CONFIG} beside it; expected the model's HookedTransformerConfig.to_dict() as JSON"
    else:
        try:
            folder._hcfg = hooked_config_from_json(json.loads(cfg_path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            reason = f"{cfg_path} is unreadable ({e})"
        except ValueError as e:
            reason = f"{cfg_path} is not a HookedTransformerConfig: {e}"
    for step, f in sorted(files):
        if reason is not None:
            folder.problems.append((f, reason))
        else:
            folder.checkpoints.append(ForeignCheckpoint(f, step, step * (tokens_per_step or 1)))
    return folder


def _hf_folder(path: Path, dirs: list[tuple[int, Path]], tokens_per_step: Optional[int]) -> ForeignFolder:
    folder = ForeignFolder(path, "huggingface", [])
    for step, d in sorted(dirs):
        cfg = d / "config.json"
        if not cfg.is_file():
            folder.problems.append((d, "no config.json; expected a Hugging Face save_pretrained folder"))
            continue
        if not any((d / w).is_file() for w in HF_WEIGHTS):
            folder.problems.append((d, f"no weights file; expected one of {', '.join(HF_WEIGHTS)}"))
            continue
        bos = None
        try:
            raw = json.loads(cfg.read_text(encoding="utf-8")).get("bos_token_id")
            bos = raw if isinstance(raw, int) else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            pass  # load_model reports the unreadable config with its file name
        folder.checkpoints.append(ForeignCheckpoint(d, step, step * (tokens_per_step or 1), bos))
    return folder


def discover(path: str | Path, tokens_per_step: Optional[int] = None) -> Optional[ForeignFolder]:
    """The foreign checkpoints in ``path``, or None when it holds neither layout.

    ``model_{step}.pt`` files make it a TransformerLens folder; otherwise subfolders named
    ``step{N}`` (also ``step_{N}``, ``global_step{N}``) make it a Hugging Face one.
    """
    path = Path(path)
    if not path.is_dir():
        return None
    tl, hf = [], []
    for entry in path.iterdir():
        if entry.is_file() and (m := TL_FILE.match(entry.name)):
            tl.append((int(m.group(1)), entry))
        elif entry.is_dir() and (m := HF_STEP_DIR.match(entry.name)):
            hf.append((int(m.group(1)), entry))
    if tl:
        return _tl_folder(path, tl, tokens_per_step)
    if hf:
        import importlib.util

        if importlib.util.find_spec("transformers") is None:
            raise ConfigError(f"{path}: Hugging Face checkpoints need transformers; pip install 'repeatlens[hf]'")
        return _hf_folder(path, hf, tokens_per_step)
    return None
