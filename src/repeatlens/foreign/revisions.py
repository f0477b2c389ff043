"""What a revision's name says: the layouts' file names, and the step (and tokens) in a revision folder's name (:func:`parse_revision`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Optional


TL_FILE = re.compile(r"^model_(\d+)\.pt$")
TL_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
NANOGPT_FILE = "ckpt.pt"
DIGEST_CACHE = ".repeatlens_digests.json"

Kind = Literal["transformerlens", "huggingface", "nanogpt"]

_TOKEN_UNITS = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
_REVISION_PATTERNS = [
    re.compile(r"^(?:[\w.]+[-_])?(?:global_)?step[-_]?(?P<step>\d+)(?:[-_]tok(?:en)?s?[-_]?(?P<tokens>\d+(?:\.\d+)?)(?P<unit>[kmbgt]?))?$", re.I),
    re.compile(r"^checkpoint[-_](?P<step>\d+)$", re.I),
    re.compile(r"^iter(?:ation)?[-_]?(?P<step>\d+)$", re.I),
    re.compile(r"^ckpt[-_]?(?P<step>\d+)$", re.I),
]


@dataclass(frozen=True)
class Revision:
    """What a revision's name says: the training step, and tokens seen when it says so."""

    name: str
    step: int
    tokens: Optional[int] = None


def parse_revision(name: str) -> Optional[Revision]:
    """Step (and tokens) from a revision name; None when the name gives no step.

    ``step1000``, ``step_1000``, ``global_step1000``, ``step1000-tokens4B`` (4 x 10^9
    tokens; K, M, B/G, T suffixes, or a plain count), ``stage1-step1000-tokens4B``,
    ``checkpoint-1000``, ``iter_0001000``, ``ckpt_1000``; a ``.pt`` suffix is ignored.

    >>> parse_revision("stage1-step20000-tokens84B")
    Revision(name='stage1-step20000-tokens84B', step=20000, tokens=84000000000)
    >>> parse_revision("checkpoint-1000").step, parse_revision("iter_0001000").step, parse_revision("main")
    (1000, 1000, None)
    """
    stem = name[:-3] if name.endswith(".pt") else name
    for pat in _REVISION_PATTERNS:
        m = pat.match(stem)
        if m:
            d = m.groupdict()
            tokens = None
            if d.get("tokens"):
                tokens = int(round(float(d["tokens"]) * _TOKEN_UNITS[(d.get("unit") or "").lower()]))
            return Revision(name, int(d["step"]), tokens)
    return None
