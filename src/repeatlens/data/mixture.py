"""Repetition mixtures: the schedule of training sequences (Hernandez et al. 2022).

Given D total training tokens, a repeated fraction f and a repeat count E, with sequences
of ``seq_len`` tokens (BOS included):

* n_total = ⌊D / seq_len⌋ training sequences are seen in all;
* n_rep = round(f · n_total / E) distinct sequences form the repeated subset, so
  S = n_rep · seq_len ≈ f·D/E tokens, and each is seen exactly E times;
* n_unique = n_total − n_rep · E sequences are unique, each seen exactly once;
* the schedule is a seeded uniform permutation of those n_total slots, so repeats are
  spread over the whole run, not bunched at the start.

f = 0 is the control. A data-matched control (``data_matched = f``, with f = 0 itself)
trains on n_total − round(f · n_total) unique sequences: the unique data a run at f sees.
A repeated subset that rounds to zero sequences while f > 0 is an error, never a silent
change of spec. The held-out test sequences live in the same pool
but never appear in the schedule.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
from jaxtyping import Int64

from repeatlens.config import MixtureConfig
from repeatlens.data.seeds import rng
from repeatlens.errors import ConfigError


@dataclass(frozen=True)
class MixturePlan:
    """Counts realised by a :class:`~repeatlens.config.MixtureConfig` at a given seq_len."""

    seq_len: int
    repeat_count: int
    n_total: int
    n_repeated: int
    n_unique: int

    @property
    def total_tokens(self) -> int:
        """D actually trained on (a whole number of sequences)."""
        return self.n_total * self.seq_len

    @property
    def repeated_tokens(self) -> int:
        """S: tokens in the repeated subset."""
        return self.n_repeated * self.seq_len

    @property
    def repeated_fraction(self) -> float:
        """f actually realised: S·E / D."""
        return self.n_repeated * self.repeat_count / self.n_total

    @property
    def unique_tokens(self) -> int:
        return self.n_unique * self.seq_len

    def summary(self) -> dict:
        return {
            **asdict(self),
            "total_tokens": self.total_tokens,
            "repeated_tokens": self.repeated_tokens,
            "unique_tokens": self.unique_tokens,
            "repeated_fraction": self.repeated_fraction,
        }


def plan_mixture(mix: MixtureConfig, seq_len: int) -> MixturePlan:
    """Turn (D, f, E) into whole-sequence counts, or raise a ConfigError naming the numbers.

    >>> plan = plan_mixture(MixtureConfig(total_tokens=128_000, repeated_fraction=0.1, repeat_count=10), seq_len=128)
    >>> plan.n_total, plan.n_repeated, plan.n_unique, plan.repeated_tokens
    (1000, 10, 900, 1280)
    >>> plan_mixture(MixtureConfig(total_tokens=128_000, data_matched=0.1), seq_len=128).n_unique   # 900 = 1000 - 100
    900
    """
    n_total = mix.total_tokens // seq_len
    if n_total < 1:
        raise ConfigError(f"mixture.total_tokens = {mix.total_tokens} is below one sequence of data.seq_len = {seq_len} tokens")
    if mix.data_matched is not None:
        n_matched = n_total - int(round(mix.data_matched * n_total))
        if n_matched < 1:
            raise ConfigError(f"mixture.data_matched = {mix.data_matched}: leaves no unique sequence of the {n_total} in D")
        return MixturePlan(seq_len=seq_len, repeat_count=1, n_total=n_matched, n_repeated=0, n_unique=n_matched)
    f, e = mix.repeated_fraction, mix.repeat_count
    n_rep = int(round(f * n_total / e)) if f > 0 else 0
    if f > 0 and n_rep < 1:
        s_tokens = f * mix.total_tokens / e
        raise ConfigError(
            f"mixture: repeated subset f*D/E = {f}*{mix.total_tokens}/{e} = {s_tokens:.0f} tokens is smaller than one "
            f"sequence ({seq_len} tokens); raise total_tokens or repeated_fraction, or lower repeat_count"
        )
    n_unique = n_total - n_rep * e
    if n_unique < 0:
        raise ConfigError(f"mixture: {n_rep} repeated sequences x E={e} exceed the {n_total} sequences of D; lower repeated_fraction")
    return MixturePlan(seq_len=seq_len, repeat_count=e, n_total=n_total, n_repeated=n_rep, n_unique=n_unique)


def build_schedule(plan: MixturePlan, *, first_repeated: int, first_unique: int, seed: int) -> Int64[np.ndarray, "n_total"]:
    """Seeded order of training sequences as pool row ids.

    Args:
        plan: the counts.
        first_repeated: pool row of the first repeated sequence (rows are contiguous).
        first_unique: pool row of the first unique sequence.
        seed: the permutation seed.

    Returns:
        ``schedule[i]`` is the pool row trained on at slot i; repeated rows occur exactly E
        times each, unique rows exactly once.
    """
    rep = np.repeat(np.arange(first_repeated, first_repeated + plan.n_repeated, dtype=np.int64), plan.repeat_count)
    uni = np.arange(first_unique, first_unique + plan.n_unique, dtype=np.int64)
    slots = np.concatenate([rep, uni])
    return rng(seed, "schedule").permutation(slots)


def schedule_hash(schedule: np.ndarray) -> str:
    """sha256 of the schedule's int64 little-endian bytes."""
    return hashlib.sha256(np.ascontiguousarray(schedule, dtype="<i8").tobytes()).hexdigest()
