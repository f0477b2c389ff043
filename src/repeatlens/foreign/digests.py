"""Tensor hashes of a checkpoint's weights, independent of the file format (:func:`weights_digest`), to find revisions that are copies of each other."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from repeatlens.foreign.loading import load_pt


# ------------------------------------------------------------------------------- hashing

_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}


def _safetensors_entries(path: Path) -> Iterable[tuple[str, str, tuple[int, ...], bytes]]:
    """``(name, dtype, shape, sha256 of the bytes)`` of every tensor of a safetensors file,
    read from its header and data section (no tensor is materialised)."""
    import mmap
    import struct

    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if n > 100_000_000:
            raise ValueError(f"{path}: not a safetensors file")
        header = json.loads(f.read(n))
        base = 8 + n
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for name, meta in header.items():
                if name == "__metadata__":
                    continue
                start, stop = meta["data_offsets"]
                if base + stop > len(mm):
                    raise ValueError(f"{path}: truncated")
                digest = hashlib.sha256(memoryview(mm)[base + start : base + stop]).digest()
                yield name, _SAFETENSORS_DTYPES.get(meta["dtype"], meta["dtype"]), tuple(meta["shape"]), digest


def _torch_entries(obj: dict[str, Any]) -> Iterable[tuple[str, str, tuple[int, ...], bytes]]:
    import torch

    for name, t in obj.items():
        if torch.is_tensor(t):
            raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
            yield name, str(t.dtype).removeprefix("torch."), tuple(t.shape), hashlib.sha256(memoryview(raw)).digest()


def weights_digest(files: Sequence[Path], *, nanogpt: bool = False) -> str:
    """sha256 over the set of distinct tensors (dtype, shape, sha256 of the bytes), sorted.

    Independent of how the tensors are split into files or serialised (safetensors,
    ``.bin`` or ``.pt``), so two revisions get one digest exactly when they hold the same
    tensors. Names are left out on purpose: one model's keys differ between formats and
    library versions (transformers 5 saves GPT-NeoX's ``lm_head.weight`` as
    ``embed_out.weight``; a pickled state dict lists tied embeddings twice, safetensors
    once), while two revisions holding the same tensors under permuted names do not occur.
    For nanoGPT checkpoints only ``ckpt["model"]`` counts; optimizer state and counters do not.
    """
    entries = []
    for path in files:
        if path.suffix == ".safetensors":
            entries += list(_safetensors_entries(path))
            continue
        obj = load_pt(path, mmap=True)
        if nanogpt and isinstance(obj, dict):
            obj = {k.removeprefix("_orig_mod."): v for k, v in (obj.get("model") or {}).items()}
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: not a state dict")
        entries += list(_torch_entries(obj))
    h = hashlib.sha256()
    for dtype, shape, digest in sorted({(dtype, shape, digest) for _, dtype, shape, digest in entries}):
        h.update(f"{dtype}\0{shape}\0".encode())
        h.update(digest)
    return h.hexdigest()
