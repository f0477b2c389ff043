"""Seeded probe batches: what the attention scores read, in four families.

A score is only as good as its probe. A model trained on Shakespeare mixed with a
synthetic source drawn from 64 ids formed an induction head that reads 0.75 on probes
drawn from those 64 ids and 0.002 on probes drawn uniformly from the whole vocabulary:
random ids the model has no embeddings for hide the circuit. So every probe belongs to a
**family**, a pure seeded function of the vocabulary, the context and, for some, the
run's data (:class:`ProbeSource`):

* ``uniform``: ids drawn uniformly from every non-special id of the vocabulary;
* ``train``: ids drawn in proportion to their frequency in the run's training tokens,
  after dropping ids never seen and the rarest and most frequent ``drop_fraction`` of the
  rest (what the model has learned embeddings for);
* ``synthetic``: ids drawn uniformly from the range the run's synthetic source draws from;
* ``text``: real held-out natural text: copy rows ``[BOS, s, s]`` and prefix rows
  ``BOS + p p p p`` with ``s``, ``p`` spans of the run's test sequences (or of the
  ``--tokens`` given with other people's checkpoints).

One :class:`Probes` batch serves every attention score of a checkpoint (and the copying
loss), so that one forward pass computes them all. It stacks two kinds of rows:

* ``batch`` **copy rows** ``[BOS, r, r]`` with ``r`` a block of ``L`` tokens (the copy
  length, :attr:`ProbeSpec.copy_len`): duplicate-token, induction, the offset profile and
  the copying loss read these;
* ``batch`` **prefix rows** ``BOS + p + p + p + p``, a block ``p`` of ``P`` tokens repeated
  4 times (Olsson et al. 2022's prefix-matching probe, ``P = min(25, (n_ctx - 1) // 4)``,
  fitted to the context): the prefix-matching score reads these.

The previous-token score reads every real position of every row. When ``1 + 2L`` and
``1 + 4P`` differ, the shorter rows are right-padded to the longer length with BOS;
attention is causal, so padding after a row's end changes nothing before it, and no score
reads a padded position (:attr:`Probes.lengths`). The default ``L = 2P`` makes both kinds
the same length (``n_ctx = 64``: ``P = 15, L = 30, T = 61``; ``n_ctx >= 101``: ``P = 25,
L = 50``).

Random blocks are drawn without replacement when enough ids are allowed (so each token of
``r`` has exactly one earlier occurrence), with replacement otherwise; text spans keep the
repeats natural text has. Probes never depend on a model, so the same batch is reused
across checkpoints and scores are comparable over training. Every score row records the
probe it read (:attr:`ProbeSpec.key`), so tables never mix probes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from repeatlens.errors import ConfigError
from repeatlens.results.schema import FAMILIES, check_family, parse_key, probe_key

__all__ = [
    "FAMILIES",
    "ProbeSpec",
    "ProbeSource",
    "parse_key",
    "Probes",
    "build_probes",
    "make_probes",
    "get_probes",
    "allowed_tokens",
    "default_copy_len",
    "prefix_block",
    "uniform_pattern",
]

OLSSON_PREFIX_BLOCK = 25
PREFIX_REPEATS = 4
DEFAULT_BATCH = 16


def prefix_block(n_ctx: int) -> int:
    """``P``, the prefix-matching block fitted to the context: ``min(25, (n_ctx - 1) // 4)``."""
    return min(OLSSON_PREFIX_BLOCK, (n_ctx - 1) // PREFIX_REPEATS)


def default_copy_len(n_ctx: int, longest_repeat: Optional[int] = None) -> int:
    """The default copy length: ``L = 2P`` (so copy and prefix rows have the same length), or the
    longest repeat the training data is known to make when that is shorter.

    A model that only ever copied spans of up to ``m`` tokens need not attend further back than
    ``m``: a run trained with the synthetic source's segments of 2-30 tokens at n_ctx 128 reads
    induction 0.97 at L = 30 and 0.44 at L = 50 (``analyses/repeated_data_scaling/NOTES.md``).

    >>> default_copy_len(128), default_copy_len(128, longest_repeat=30), default_copy_len(64, 40)
    (50, 30, 30)
    """
    L = 2 * prefix_block(n_ctx)
    return max(2, min(L, int(longest_repeat))) if longest_repeat is not None else L


@dataclass(frozen=True)
class ProbeSpec:
    """Which probe: a family and the settings that make its batch unique.

    Attributes:
        family: one of :data:`FAMILIES`.
        copy_len: ``L`` of ``[BOS, r, r]``; None: :func:`default_copy_len` of the context
            (and of the source's longest repeat, when known).
        batch: rows of each kind.
        seed: seeds the draw.
    """

    family: str = "uniform"
    copy_len: Optional[int] = None
    batch: int = DEFAULT_BATCH
    seed: int = 0

    def __post_init__(self) -> None:
        check_family(self.family)
        if self.batch < 1:
            raise ConfigError(f"probe batch = {self.batch}; expected at least 1")
        if self.copy_len is not None and self.copy_len < 2:
            raise ConfigError(f"probe length L = {self.copy_len}; expected at least 2 (induction reads offset L-1)")

    def resolved(self, n_ctx: int, longest_repeat: Optional[int] = None) -> "ProbeSpec":
        """This spec with ``copy_len`` filled in for a context of ``n_ctx`` (and, when known, the
        longest repeat of the training data: :func:`default_copy_len`), checked to fit.

        Raises:
            ConfigError: ``1 + 2L`` tokens do not fit ``n_ctx`` (one line naming both).
        """
        L = default_copy_len(n_ctx, longest_repeat) if self.copy_len is None else int(self.copy_len)
        if prefix_block(n_ctx) < 1:
            raise ConfigError(f"probes: n_ctx = {n_ctx} is too short for BOS + 4 repeats of a prefix block; expected n_ctx >= 5")
        if 1 + 2 * L > n_ctx:
            raise ConfigError(
                f"probe length L = {L}: [BOS, r, r] needs 1 + 2L = {1 + 2 * L} positions but the model's context is "
                f"n_ctx = {n_ctx}; expected L <= {(n_ctx - 1) // 2}"
            )
        return replace(self, copy_len=L)

    @property
    def key(self) -> str:
        """``family:L{L}:B{batch}:s{seed}``, e.g. ``synthetic:L30:B16:s0`` (resolved specs only)."""
        return probe_key(self.family, self.copy_len, self.batch, self.seed)

    @property
    def label(self) -> str:
        """For figures and reports: ``synthetic probe (L=30, 16 rows, seed 0)``."""
        return f"{self.family} probe (L={self.copy_len}, {self.batch} rows, seed {self.seed})"

    @classmethod
    def parse(cls, text: str) -> "ProbeSpec":
        """Inverse of :attr:`key`; also accepts partial keys such as ``synthetic`` or ``text:L20``
        (settings left out take their defaults; see :func:`parse_key`).

        Raises:
            ConfigError: an unknown family or a malformed setting.

        >>> ProbeSpec.parse("text:L20")
        ProbeSpec(family='text', copy_len=20, batch=16, seed=0)
        >>> ProbeSpec("synthetic").resolved(128).key
        'synthetic:L50:B16:s0'
        """
        family, settings = parse_key(text)
        return cls(family, **settings)


@dataclass(frozen=True, eq=False)
class ProbeSource:
    """What the probe families draw from, for one run or one folder of checkpoints.

    Attributes:
        d_vocab: vocabulary size of the models.
        n_ctx: their context length.
        bos: id at position 0 of every row.
        exclude: special ids no random block uses (``bos`` is always excluded).
        train_counts: per-id count of the training tokens (``train``); None: not known.
        synthetic_ids: ``(low, high)``, the id range ``[low, high)`` the run's synthetic
            source draws from (``synthetic``); None: the run has no synthetic share.
        text: held-out natural-text sequences ``[n, seq]`` (``text``); None: none known.
        drop_fraction: share of the rarest and of the most frequent seen ids ``train`` drops.
        longest_repeat: the longest span the training data is known to repeat within a
            sequence (the synthetic source's ``max_len``); caps the default copy length of
            every family. None: not known (natural text repeats spans of any length).
    """

    d_vocab: int
    n_ctx: int
    bos: int = 0
    exclude: tuple[int, ...] = ()
    train_counts: Optional[np.ndarray] = field(default=None, repr=False)
    synthetic_ids: Optional[tuple[int, int]] = None
    text: Optional[np.ndarray] = field(default=None, repr=False)
    drop_fraction: float = 0.01
    longest_repeat: Optional[int] = None

    def families(self) -> list[str]:
        """The families this source can build, in :data:`FAMILIES` order."""
        have = {"uniform": True, "train": self.train_counts is not None, "synthetic": self.synthetic_ids is not None,
                "text": self.text is not None and len(self.text) > 0}
        return [f for f in FAMILIES if have[f]]

    def resolve(self, spec: ProbeSpec) -> ProbeSpec:
        """``spec`` with its copy length filled in for this source (its context and its
        longest repeat, :func:`default_copy_len`), checked to fit; what its key will be."""
        return spec.resolved(self.n_ctx, self.longest_repeat)

    def why_not(self, family: str) -> str:
        """Why ``family`` cannot be built from this source (one phrase)."""
        return {
            "train": "no training tokens are known (a run directory has them; other people's checkpoints need --tokens)",
            "synthetic": "the run has no synthetic share",
            "text": "no held-out natural text is known (a synthetic-only run has none; other people's checkpoints need --tokens)",
        }.get(family, "")


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
        family: the probe family (:data:`FAMILIES`).
    """

    tokens: Int[Tensor, "batch pos"]
    n_copy: int
    copy_len: int
    prefix_len: int
    prefix_repeats: int
    bos: int
    d_vocab: int
    seed: int
    family: str = "uniform"

    @property
    def spec(self) -> ProbeSpec:
        """The (resolved) spec these probes were built from."""
        return ProbeSpec(self.family, self.copy_len, self.n_copy, self.seed)

    @property
    def seq_len(self) -> int:
        """``T``, the length of every (padded) row."""
        return int(self.tokens.shape[1])

    @property
    def copy_seq_len(self) -> int:
        """Real length of a copy row, ``1 + 2L``."""
        return 1 + 2 * self.copy_len

    @property
    def prefix_seq_len(self) -> int:
        """Real length of a prefix row, ``1 + 4P``."""
        return 1 + self.prefix_repeats * self.prefix_len

    @property
    def lengths(self) -> Int[Tensor, "batch"]:
        """Real (unpadded) length of every row."""
        n_prefix = self.tokens.shape[0] - self.n_copy
        return torch.tensor([self.copy_seq_len] * self.n_copy + [self.prefix_seq_len] * n_prefix, device=self.tokens.device)

    @property
    def valid(self) -> Bool[Tensor, "batch pos"]:
        """True at the real positions of every row, False at padding."""
        return torch.arange(self.seq_len, device=self.tokens.device)[None, :] < self.lengths[:, None]

    @property
    def copy_rows(self) -> slice:
        """Rows holding ``[BOS, r, r]``."""
        return slice(0, self.n_copy)

    @property
    def prefix_rows(self) -> slice:
        """Rows holding ``BOS + p * prefix_repeats``."""
        return slice(self.n_copy, self.tokens.shape[0])

    @property
    def copy_tokens(self) -> Int[Tensor, "n_copy copy_pos"]:
        """Copy rows cut to their real length ``1 + 2L``."""
        return self.tokens[self.copy_rows, : self.copy_seq_len]

    @property
    def prefix_tokens(self) -> Int[Tensor, "n_prefix prefix_pos"]:
        """Prefix rows cut to their real length ``1 + 4P``."""
        return self.tokens[self.prefix_rows, : self.prefix_seq_len]

    def to(self, device: torch.device | str) -> "Probes":
        """The same probes with ``tokens`` on ``device``."""
        if self.tokens.device == torch.device(device):
            return self
        return replace(self, tokens=self.tokens.to(device))


def allowed_tokens(
    d_vocab: int,
    exclude: Sequence[int] = (0,),
    frequencies: Optional[Sequence[float] | Tensor | np.ndarray] = None,
    drop_fraction: float = 0.01,
) -> Int[Tensor, "n"]:
    """Ids random probe tokens may take, in increasing order.

    Args:
        d_vocab: vocabulary size.
        exclude: special ids never used (BOS, EOS, padding...); ids outside the
            vocabulary are ignored.
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
        freq = torch.as_tensor(np.asarray(frequencies, dtype=np.float64)).flatten()
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


def _random_blocks(
    ids: Tensor, n: int, length: int, g: torch.Generator, weights: Optional[Tensor] = None
) -> Int[Tensor, "n length"]:
    """``n`` blocks of ``length`` ids from ``ids`` (uniformly, or with probability
    proportional to ``weights``): without replacement when enough ids have weight."""
    if weights is None:
        if ids.numel() >= length:
            picks = torch.rand(n, ids.numel(), generator=g).argsort(dim=1)[:, :length]
        else:
            picks = torch.randint(0, ids.numel(), (n, length), generator=g)
        return ids[picks]
    w = weights.double().expand(n, -1)
    distinct = int((weights > 0).sum()) >= length
    return ids[torch.multinomial(w, length, replacement=not distinct, generator=g)]


def _text_blocks(text: np.ndarray, n: int, length: int, g: torch.Generator, what: str) -> Int[Tensor, "n length"]:
    """``n`` spans of ``length`` consecutive tokens of ``text`` rows (position 0, BOS, skipped)."""
    rows = torch.as_tensor(np.asarray(text, dtype=np.int64))
    span = rows.shape[1] - 1
    if span < length:
        raise ConfigError(
            f"text probe: {what} of L = {length} tokens do not fit the held-out text sequences of {rows.shape[1]} tokens "
            f"(BOS + {span}); expected L <= {span}"
        )
    which = torch.randint(0, rows.shape[0], (n,), generator=g)
    start = 1 + torch.randint(0, span - length + 1, (n,), generator=g)
    return rows[which[:, None], start[:, None] + torch.arange(length)[None, :]]


def _assemble(copy_block: Tensor, prefix_block_: Tensor, bos: int) -> Int[Tensor, "rows pos"]:
    """Copy rows ``[BOS, r, r]`` above prefix rows ``BOS + p*4``, right-padded with BOS."""
    n = copy_block.shape[0]
    bos_col = torch.full((n, 1), int(bos), dtype=torch.long)
    copy = torch.cat([bos_col, copy_block, copy_block], dim=1)
    prefix = torch.cat([torch.full((prefix_block_.shape[0], 1), int(bos), dtype=torch.long), prefix_block_.repeat(1, PREFIX_REPEATS)], dim=1)
    T = max(copy.shape[1], prefix.shape[1])
    pad = lambda x: torch.cat([x, torch.full((x.shape[0], T - x.shape[1]), int(bos), dtype=torch.long)], dim=1)  # noqa: E731
    return torch.cat([pad(copy), pad(prefix)], dim=0)


def build_probes(spec: ProbeSpec, source: ProbeSource) -> Probes:
    """The probe batch of ``spec``'s family drawn from ``source`` (see the module docstring).

    Raises:
        ConfigError: the family does not apply to this source (saying why), the copy
            length does not fit the context, or too few ids are allowed.
    """
    if spec.family not in source.families():
        raise ConfigError(f"probe {spec.family!r} does not apply here: {source.why_not(spec.family)}")
    spec = source.resolve(spec)
    L, P, B = int(spec.copy_len), prefix_block(source.n_ctx), spec.batch
    g = torch.Generator().manual_seed(int(spec.seed))
    exclude = tuple(source.exclude) + (source.bos,)
    if spec.family == "text":
        r = _text_blocks(source.text, B, L, g, "copy spans")
        p = _text_blocks(source.text, B, P, g, "prefix spans")
    else:
        weights = None
        if spec.family == "uniform":
            ids = allowed_tokens(source.d_vocab, exclude)
        elif spec.family == "synthetic":
            low, high = source.synthetic_ids
            outside = [i for i in range(source.d_vocab) if not low <= i < high]
            ids = allowed_tokens(source.d_vocab, exclude + tuple(outside))
        else:  # train: in proportion to training frequency, after the drops
            counts = np.asarray(source.train_counts, dtype=np.float64)
            ids = allowed_tokens(source.d_vocab, exclude, counts, source.drop_fraction)
            weights = torch.as_tensor(counts)[ids]
        r = _random_blocks(ids, B, L, g, weights)
        p = _random_blocks(ids, B, P, g, weights)
    return Probes(
        tokens=_assemble(r, p, source.bos),
        n_copy=B,
        copy_len=L,
        prefix_len=P,
        prefix_repeats=PREFIX_REPEATS,
        bos=int(source.bos),
        d_vocab=int(source.d_vocab),
        seed=int(spec.seed),
        family=spec.family,
    )


def make_probes(
    d_vocab: int,
    n_ctx: int,
    *,
    seed: int = 0,
    batch: int = DEFAULT_BATCH,
    exclude: Sequence[int] = (0,),
    bos: int = 0,
    frequencies: Optional[Sequence[float] | Tensor | np.ndarray] = None,
    drop_fraction: float = 0.01,
    prefix_len: Optional[int] = None,
    copy_len: Optional[int] = None,
) -> Probes:
    """A ``uniform`` probe batch (see the module docstring for its layout), with its
    settings spelled out; the other families go through :func:`build_probes`.

    Args:
        d_vocab: vocabulary size of the models to be scored.
        n_ctx: their context length; no row exceeds it.
        seed: seeds a private generator; the global RNG is left alone.
        batch: rows of each kind (``batch`` copy rows and ``batch`` prefix rows).
        exclude: special ids random tokens avoid; ``bos`` is always avoided.
        bos: id placed at position 0 of every row.
        frequencies: optional per-id counts restricting the ids (see :func:`allowed_tokens`;
            ids are still drawn uniformly among those kept).
        drop_fraction: share of rarest and of most frequent ids dropped with frequencies.
        prefix_len: ``P``; default ``min(25, (n_ctx - 1) // 4)``.
        copy_len: ``L``; default ``2P``.

    Returns:
        A :class:`Probes` with ``2 * batch`` rows on the CPU.
    """
    P = prefix_block(n_ctx) if prefix_len is None else int(prefix_len)
    if P < 1 or 1 + PREFIX_REPEATS * P > n_ctx:
        raise ConfigError(f"probes: n_ctx={n_ctx} with prefix_len={P} does not fit BOS + 4 repeats; expected n_ctx >= 5 and 1 <= prefix_len <= (n_ctx-1)//4")
    spec = ProbeSpec("uniform", 2 * P if copy_len is None else copy_len, batch, seed).resolved(n_ctx)
    ids = allowed_tokens(d_vocab, tuple(exclude) + (bos,), frequencies, drop_fraction)
    g = torch.Generator().manual_seed(int(seed))
    r = _random_blocks(ids, batch, int(spec.copy_len), g)
    p = _random_blocks(ids, batch, P, g)
    return Probes(
        tokens=_assemble(r, p, bos),
        n_copy=batch,
        copy_len=int(spec.copy_len),
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
