"""Seeded probe batches made of token ids only.

One :class:`Probes` batch serves every attention score of a checkpoint (and the copying
loss), so that one forward pass computes them all. It stacks two kinds of rows of the
same length ``T = 1 + 4P``:

* **copy rows** ``[BOS, r, r]`` with ``r`` a block of ``L = 2P`` random tokens: the
  duplicate-token and induction scores and the copying loss read these;
* **prefix rows** ``BOS + p + p + p + p``, a block ``p`` of ``P`` random tokens repeated 4
  times (Olsson et al. 2022's prefix-matching probe, ``P = 25`` by default): the
  prefix-matching score reads these.

The previous-token score reads every row. Because ``L = 2P`` both kinds have exactly the
same length, so they concatenate into one batch without padding. ``P`` defaults to
``min(25, (n_ctx - 1) // 4)``, so the probe always fits the context (``n_ctx = 64`` gives
``P = 15, L = 30, T = 61``; ``n_ctx >= 101`` gives Olsson's ``P = 25`` and ``L = 50``).

Random blocks are drawn without replacement when the allowed vocabulary is large enough
(so each token of ``r`` has exactly one earlier occurrence), with replacement otherwise.
Allowed ids exclude BOS and every id in ``exclude``; when the caller gives token
frequencies, ids never seen and the rarest and most frequent ``drop_fraction`` of the rest
are excluded too. Probes depend only on (vocabulary, context, seed, exclusions), never on
a model, so the same batch is reused across checkpoints and scores are comparable over
training (:func:`get_probes` caches them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from repeatlens.errors import ConfigError

__all__ = ["Probes", "make_probes", "get_probes", "allowed_tokens", "uniform_pattern"]

OLSSON_PREFIX_BLOCK = 25
PREFIX_REPEATS = 4


@dataclass(frozen=True, eq=False)
class Probes:
    """A seeded probe batch: token ids plus the description the scores need.

    Attributes:
        tokens: all probe rows, copy rows first then prefix rows, ``[batch, T]``.
        n_copy: number of copy rows ``[BOS, r, r]`` (rows ``0 .. n_copy-1``).
        copy_len: ``L``, the length of ``r``.
        prefix_len: ``P``, the length of the prefix-matching block.
        prefix_repeats: how many times the prefix block is repeated (4).
        bos: the BOS id at position 0 of every row.
        d_vocab: vocabulary the ids are drawn from.
        seed: the seed that drew them.
    """

    tokens: Int[Tensor, "batch pos"]
    n_copy: int
    copy_len: int
    prefix_len: int
    prefix_repeats: int
    bos: int
    d_vocab: int
    seed: int

    @property
    def seq_len(self) -> int:
        """``T``, the length of every row."""
        return int(self.tokens.shape[1])

    @property
    def copy_rows(self) -> slice:
        """Rows holding ``[BOS, r, r]``."""
        return slice(0, self.n_copy)

    @property
    def prefix_rows(self) -> slice:
        """Rows holding ``BOS + p * prefix_repeats``."""
        return slice(self.n_copy, self.tokens.shape[0])

    @property
    def copy_tokens(self) -> Int[Tensor, "n_copy pos"]:
        return self.tokens[self.copy_rows]

    @property
    def prefix_tokens(self) -> Int[Tensor, "n_prefix pos"]:
        return self.tokens[self.prefix_rows]

    def to(self, device: torch.device | str) -> "Probes":
        """The same probes with ``tokens`` on ``device``."""
        if self.tokens.device == torch.device(device):
            return self
        return Probes(**{**self.__dict__, "tokens": self.tokens.to(device)})


def allowed_tokens(
    d_vocab: int,
    exclude: Sequence[int] = (0,),
    frequencies: Optional[Sequence[float] | Tensor] = None,
    drop_fraction: float = 0.01,
) -> Int[Tensor, "n"]:
    """Ids random probe tokens may take, in increasing order.

    Args:
        d_vocab: vocabulary size.
        exclude: special ids never used (BOS, EOS, padding...).
        frequencies: optional count or frequency of every id (length ``d_vocab``). When
            given, ids with frequency 0 are dropped, then the ``drop_fraction`` rarest and
            the ``drop_fraction`` most frequent of the remaining ids (by rank, ties by id).
        drop_fraction: share dropped at each end of the frequency ranking.
    """
    keep = torch.ones(d_vocab, dtype=torch.bool)
    for t in exclude:
        if 0 <= int(t) < d_vocab:
            keep[int(t)] = False
    if frequencies is not None:
        freq = torch.as_tensor(frequencies, dtype=torch.float64).flatten()
        if freq.numel() != d_vocab:
            raise ConfigError(f"token frequencies: {freq.numel()} values for a vocabulary of {d_vocab}; expected one per id")
        keep &= freq > 0
        ids = keep.nonzero().flatten()
        ranked = ids[torch.sort(freq[ids], stable=True).indices]
        n_drop = int(drop_fraction * ranked.numel())
        if n_drop:
            keep[ranked[:n_drop]] = False
            keep[ranked[-n_drop:]] = False
    ids = keep.nonzero().flatten()
    if ids.numel() < 2:
        raise ConfigError(f"probes: only {ids.numel()} token ids of {d_vocab} are allowed after exclusions; expected at least 2")
    return ids


def _random_blocks(ids: Tensor, n: int, length: int, g: torch.Generator) -> Int[Tensor, "n length"]:
    """``n`` blocks of ``length`` ids from ``ids``: without replacement when possible."""
    if ids.numel() >= length:
        picks = torch.rand(n, ids.numel(), generator=g).argsort(dim=1)[:, :length]
    else:
        picks = torch.randint(0, ids.numel(), (n, length), generator=g)
    return ids[picks]


def make_probes(
    d_vocab: int,
    n_ctx: int,
    *,
    seed: int = 0,
    batch: int = 16,
    exclude: Sequence[int] = (0,),
    bos: int = 0,
    frequencies: Optional[Sequence[float] | Tensor] = None,
    drop_fraction: float = 0.01,
    prefix_len: Optional[int] = None,
) -> Probes:
    """Build the shared probe batch (see the module docstring for its layout).

    Args:
        d_vocab: vocabulary size of the models to be scored.
        n_ctx: their context length; the probe length ``1 + 4P`` never exceeds it.
        seed: seeds a private generator; the global RNG is left alone.
        batch: rows of each kind (``batch`` copy rows and ``batch`` prefix rows).
        exclude: special ids random tokens avoid; ``bos`` is always avoided.
        bos: id placed at position 0 of every row.
        frequencies: optional per-id counts; see :func:`allowed_tokens`.
        drop_fraction: share of rarest and of most frequent ids dropped with frequencies.
        prefix_len: ``P``; default ``min(25, (n_ctx - 1) // 4)``. ``L = 2P``.

    Returns:
        A :class:`Probes` with ``2 * batch`` rows of length ``1 + 4P`` on the CPU.
    """
    P = min(OLSSON_PREFIX_BLOCK, (n_ctx - 1) // PREFIX_REPEATS) if prefix_len is None else int(prefix_len)
    if P < 1 or 1 + PREFIX_REPEATS * P > n_ctx:
        raise ConfigError(f"probes: n_ctx={n_ctx} with prefix_len={P} does not fit BOS + 4 repeats; expected n_ctx >= 5 and 1 <= prefix_len <= (n_ctx-1)//4")
    if batch < 1:
        raise ConfigError(f"probes: batch={batch}; expected at least 1")
    ids = allowed_tokens(d_vocab, tuple(exclude) + (bos,), frequencies, drop_fraction)
    g = torch.Generator().manual_seed(int(seed))
    L = 2 * P
    r = _random_blocks(ids, batch, L, g)
    p = _random_blocks(ids, batch, P, g)
    bos_col = torch.full((batch, 1), int(bos), dtype=torch.long)
    copy = torch.cat([bos_col, r, r], dim=1)
    prefix = torch.cat([bos_col, p.repeat(1, PREFIX_REPEATS)], dim=1)
    return Probes(
        tokens=torch.cat([copy, prefix], dim=0),
        n_copy=batch,
        copy_len=L,
        prefix_len=P,
        prefix_repeats=PREFIX_REPEATS,
        bos=int(bos),
        d_vocab=int(d_vocab),
        seed=int(seed),
    )


@functools.lru_cache(maxsize=32)
def get_probes(d_vocab: int, n_ctx: int, seed: int = 0, bos: int = 0, exclude: tuple[int, ...] = (0,)) -> Probes:
    """:func:`make_probes` with default settings, cached per (vocabulary, context, seed,
    BOS, exclusions) so scoring N checkpoints builds the probes once."""
    return make_probes(d_vocab, n_ctx, seed=seed, bos=bos, exclude=exclude)


def uniform_pattern(batch: int, n_heads: int, seq_len: int) -> Float[Tensor, "batch head query key"]:
    """Causal uniform attention (query ``i`` gives ``1/(i+1)`` to each key ``j <= i``).

    Scoring this pattern gives every attention score's chance level.
    """
    tri = torch.tril(torch.ones(seq_len, seq_len))
    return (tri / tri.sum(-1, keepdim=True)).expand(batch, n_heads, seq_len, seq_len)
