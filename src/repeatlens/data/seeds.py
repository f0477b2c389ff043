"""Every random stream a run draws from, named, in one place.

A run's data is a pure function of its config and one integer seed. Each consumer draws
from its own stream, so changing one (say, the number of test sequences) never reshuffles
another (the training schedule). NumPy streams are ``default_rng([seed, k])``; the synthetic
source takes a 63-bit integer derived from ``(seed, k)`` (:func:`hash_seed`). The manifest
records every stream (:func:`manifest_seeds`).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

__all__ = ["SEED_STREAMS", "rng", "stream_seed", "hash_seed", "manifest_seeds"]

SEED_STREAMS: dict[str, int] = {
    "pool": 0,  # which corpus chunks become test rows and which training rows
    "test_synthetic": 1,  # the synthetic test sequences
    "train_synthetic": 2,  # the synthetic training sequences
    "schedule": 3,  # the order of the training slots (repeats spread over the run)
    "train_rows": 4,  # the order of the training rows in the pool (corpus and synthetic mixed)
    "test_rows": 5,  # the order of the test rows in the pool
}
"""Stream name -> its index ``k``. Model initialisation is seeded with the run's seed itself."""


def rng(seed: int, stream: str) -> np.random.Generator:
    """The NumPy generator of ``stream`` for run seed ``seed``: ``default_rng([seed, k])``."""
    return np.random.default_rng([int(seed), SEED_STREAMS[stream]])


def hash_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (stable across processes, unlike hash())."""
    h = hashlib.sha256(json.dumps(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def stream_seed(seed: int, stream: str) -> int:
    """An integer seed for ``stream`` (for generators that take one): ``hash_seed(seed, k)``."""
    return hash_seed(int(seed), SEED_STREAMS[stream])


def manifest_seeds(seed: int) -> dict[str, object]:
    """Every stream of a run, as the manifest records them: ``[seed, k]`` per stream."""
    return {"seed": int(seed), "model_init": int(seed), **{name: [int(seed), k] for name, k in SEED_STREAMS.items()}}
