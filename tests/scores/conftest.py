"""Factories for the score tests: tiny models, hand-built patterns, a trained model.

The trained model is a 2-layer attention-only transformer trained (once per test session,
cached under a session tmp dir) on synthetic sequences: BOS, a random prefix of random
length, then random segments of random length each tiled 2+ times. Varying lengths force a
content-based induction head (a fixed repeat length teaches a positional shortcut).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from repeatlens.model import HookedTransformer, build_model, logits
from repeatlens.scores.probes import Probes, make_probes
from tests.factories import tiny_model, tiny_model_config  # noqa: F401 (re-exported: score tests import tiny_model from here)


@dataclass(frozen=True)
class TrainSettings:
    """Settings that formed a layer-0 previous-token head and a layer-1 induction head
    for seeds 0 and 1 in ~500-600 steps (~35 ms a step on one free core).

    Found by trial: learned absolute positions split the previous-token role between
    heads by position range; n_ctx 32 and segments of 4+ tokens taught shifted
    (offset-k) copying circuits; a higher learning rate failed on seed 1.
    """

    d_vocab: int = 64
    n_ctx: int = 64
    d_model: int = 64
    n_heads: int = 4
    positional: str = "rotary"
    steps: int = 800
    batch: int = 32
    lr: float = 3e-3
    warmup: int = 50
    decay: int = 0  # 1: linear decay to 10% after warmup
    weight_decay: float = 0.01
    prefix_max: int = 8
    seg_min: int = 2
    seg_max: int = 30
    rep_min: int = 2
    rep_max: int = 4
    seed: int = 0


def synthetic_batch(s: TrainSettings, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` sequences: BOS=0, random prefix, then random segments tiled 2+ times."""
    out = torch.empty(n, s.n_ctx, dtype=torch.long)

    def randint(lo: int, hi: int, size: int = 1) -> list[int]:
        return torch.randint(lo, hi + 1, (size,), generator=g).tolist()

    for b in range(n):
        seq = [0] + randint(1, s.d_vocab - 1, randint(0, s.prefix_max)[0])
        while len(seq) < s.n_ctx:
            seg = randint(1, s.d_vocab - 1, randint(s.seg_min, s.seg_max)[0])
            seq += seg * randint(s.rep_min, s.rep_max)[0]
        out[b] = torch.tensor(seq[: s.n_ctx])
    return out


@contextlib.contextmanager
def one_thread():
    """Tiny models train faster on one thread, and far faster when other processes share
    the cores (two contended threads measured 20-40x slower per step)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with one_thread():
        yield


def train_tiny(s: TrainSettings, log_every: int = 0, probe_fn=None) -> HookedTransformer:
    """Train a tiny 2-layer attention-only model with AdamW on :func:`synthetic_batch`."""
    with one_thread():
        return _train(s, log_every, probe_fn)


def _train(s: TrainSettings, log_every: int, probe_fn) -> HookedTransformer:
    torch.manual_seed(s.seed)
    model = build_model(tiny_model_config(s.d_vocab, s.n_ctx, s.d_model, s.n_heads, positional=s.positional), seed=s.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)

    def lr_factor(step: int) -> float:
        if step < s.warmup:
            return (step + 1) / s.warmup
        return 1.0 - 0.9 * s.decay * (step - s.warmup) / max(1, s.steps - s.warmup)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    g = torch.Generator().manual_seed(s.seed)
    t0 = time.time()
    for step in range(s.steps):
        x = synthetic_batch(s, s.batch, g)
        loss = F.cross_entropy(logits(model, x)[:, :-1].flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log_every and (step % log_every == 0 or step == s.steps - 1):
            extra = probe_fn(model) if probe_fn else ""
            print(f"step {step} {time.time() - t0:.1f}s loss {loss.item():.3f} {extra}", flush=True)
    return model.eval()


TRAIN = TrainSettings()


@pytest.fixture(scope="session")
def trained_model(induction_run) -> HookedTransformer:
    """The session's induction run (tests/conftest.py: INDUCTION_RUN, the settings of
    :data:`TRAIN` trained through ``repeatlens train``) at its last checkpoint: one
    800-step training per test session serves the score tests and tests/test_learning.py."""
    return induction_run.load_model(tokenizer=False)


@pytest.fixture
def probes64() -> Probes:
    """Probes for a 64-token vocabulary and a 32-token context."""
    return make_probes(64, 32, seed=0, batch=4)


# ------------------------------------------------------------------ hand-built patterns


def offset_pattern(batch: int, n_heads: int, T: int, offsets: torch.Tensor) -> torch.Tensor:
    """Pattern where query ``i`` puts all its attention on key ``i - offsets[i]`` (clamped to
    ``[0, i]``); ``offsets`` is ``[T]``."""
    q = torch.arange(T)
    k = (q - offsets).clamp(min=0)
    k = torch.minimum(k, q)
    pat = torch.zeros(T, T)
    pat[q, k] = 1.0
    return pat.expand(batch, n_heads, T, T).clone()


def previous_token_pattern(probes: Probes, n_heads: int = 1) -> torch.Tensor:
    T = probes.seq_len
    return offset_pattern(probes.tokens.shape[0], n_heads, T, torch.ones(T, dtype=torch.long))


def induction_pattern(probes: Probes, n_heads: int = 1) -> torch.Tensor:
    """Perfect induction on copy rows: second-copy query ``i`` attends to ``i - L + 1``;
    every other query attends to BOS."""
    T, L = probes.seq_len, probes.copy_len
    off = torch.arange(T)  # i - off = 0: BOS
    off[L + 1 : 2 * L + 1] = L - 1
    return offset_pattern(probes.tokens.shape[0], n_heads, T, off)


def bos_pattern(probes: Probes, n_heads: int = 1) -> torch.Tensor:
    T = probes.seq_len
    return offset_pattern(probes.tokens.shape[0], n_heads, T, torch.arange(T))


@pytest.fixture
def patterns():
    """Hand-built pattern factories: ``patterns.offset/previous_token/induction/bos``."""
    return SimpleNamespace(offset=offset_pattern, previous_token=previous_token_pattern, induction=induction_pattern, bos=bos_pattern)


@pytest.fixture
def tiny():
    """Factory of randomly initialised tiny attention-only models (see :func:`tiny_model`)."""
    return tiny_model
