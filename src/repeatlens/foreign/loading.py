"""Reading other people's weight files safely: ``torch.load(weights_only=True)`` and nothing else, one-line errors for damaged or hostile files."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from repeatlens.errors import damaged_file_errors, first_line
from repeatlens.foreign.revisions import NANOGPT_FILE


# ----------------------------------------------------------------------------- reading .pt


def load_pt(path: str | Path, *, mmap: bool = False) -> Any:
    """Read a ``.pt`` file with ``torch.load(weights_only=True)`` and nothing else.

    Raises:
        ValueError: one line: unreadable or truncated file, or a pickle that is not plain
            weights (the refused global is named).
    """
    import torch

    path = Path(path)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as e:
                if mmap and "mmap" in str(e):  # the legacy (non-zip) format cannot be memory-mapped
                    return torch.load(path, map_location="cpu", weights_only=True)
                raise
    except damaged_file_errors() as e:  # a damaged or hostile file is reported; anything else is a bug and surfaces
        text = str(e)
        if "Weights only load failed" in text or "WeightsUnpickler" in text:
            glob = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
            what = f"it refers to {glob.group(1)}" if glob else "it holds more than tensors"
            raise ValueError(f"refused to unpickle: not plain weights ({what}; only torch.load(weights_only=True) is used)") from None
        raise ValueError(f"unreadable or truncated .pt file ({first_line(e)})") from None


def load_tl_state_dict(path: str | Path) -> dict[str, Any]:
    """A TransformerLens state dict from ``path`` (:func:`load_pt`), checked to be a mapping.

    Raises:
        ValueError: one line (see :func:`load_pt`), or the file holds something else.
    """
    obj = load_pt(path)
    if not isinstance(obj, dict):
        raise ValueError(f"not a state dict: the file holds a {type(obj).__name__}, expected a mapping of parameter names to tensors")
    return obj


def _nanogpt_file(path: Path) -> Path:
    return path / NANOGPT_FILE if path.is_dir() else path
