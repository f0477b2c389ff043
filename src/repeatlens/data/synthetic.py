"""Synthetic source: random tokens with in-context repeats of varying length and position.

A sequence is ``[BOS, prefix…, (segment × r, gap…)…]``: a random prefix of random length,
then blocks, each a fresh random segment of length L ~ U[min_len, max_len] written r ~
U[min_repeats, max_repeats] times in a row, followed by a random gap of up to ``max_gap``
tokens. Because L and the block starts vary, no fixed positional offset predicts a copy:
only a content-based mechanism (an induction head: attend to the token after the previous
occurrence of the current token) does.

Used in place of a corpus (``data.source: synthetic``) or mixed with one
(``data.synthetic_fraction``).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Bool, Integer

from repeatlens.config import SyntheticConfig


GENERATION_BYTES_PER_TOKEN = 9
"""Bytes per token :func:`synthetic_sequences` holds while it draws, beside the rows it
returns: the int64 draws (8) and the copy mask (1)."""


def synthetic_sequences(
    n: int,
    seq_len: int,
    cfg: SyntheticConfig,
    *,
    ids: Integer[np.ndarray, "n_ids"],
    bos: int,
    seed: int,
    dtype: np.dtype = np.dtype(np.uint16),
) -> tuple[Integer[np.ndarray, "n seq_len"], Bool[np.ndarray, "n seq_len"]]:
    """Generate ``n`` synthetic sequences.

    Args:
        n: number of sequences.
        seq_len: tokens per sequence, BOS at position 0 included.
        cfg: segment lengths, repeat counts and gaps.
        ids: the ids random tokens are drawn from, uniformly (the run's ordinary ids,
            :meth:`repeatlens.data.special.SpecialIds.ordinary_ids`: never a special one).
        bos: the id at position 0 (:mod:`repeatlens.data.special`).
        seed: the sequences are a pure function of the arguments.
        dtype: integer dtype of the returned tokens.

    Returns:
        ``(tokens, is_copy)``: ``is_copy[i, t]`` is True where token t repeats the token one
        segment length earlier inside a block (second copy onward), i.e. where an induction
        head can predict it from context. Position 0 is BOS.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        raise ValueError(f"the synthetic source needs at least 2 ids to draw from, got {len(ids)}")
    rng = np.random.default_rng(seed)
    # ids[k] for k uniform in [0, len(ids)): the same draws as rng.integers(low, high) for ids = [low, high);
    # looked up in place (no second [n, seq_len] int64 array: see GENERATION_BYTES_PER_TOKEN)
    tokens = rng.integers(0, len(ids), size=(n, seq_len), dtype=np.int64)
    np.take(ids, tokens, out=tokens, mode="clip")  # "clip" writes element by element (every index is in range)
    is_copy = np.zeros((n, seq_len), dtype=bool)
    tokens[:, 0] = bos
    body = seq_len - 1
    for i in range(n):
        pos = 1 + int(rng.integers(0, (body // 4 if cfg.max_prefix is None else cfg.max_prefix) + 1))
        while pos < seq_len - cfg.min_len:
            length = int(rng.integers(cfg.min_len, cfg.max_len + 1))
            reps = int(rng.integers(cfg.min_repeats, cfg.max_repeats + 1))
            seg = tokens[i, pos : pos + length].copy()
            end = min(pos + length * reps, seq_len)
            span = np.resize(seg, end - pos)
            tokens[i, pos:end] = span
            is_copy[i, pos + len(seg) : end] = True
            pos = end + int(rng.integers(0, cfg.max_gap + 1))
    return tokens.astype(dtype), is_copy
