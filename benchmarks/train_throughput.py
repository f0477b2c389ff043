"""Training throughput: repeatlens (HookedTransformer, real data path) vs a plain SDPA model.

Both models have the same shape (default: 2-layer attention-only, d_model 128, 8 heads of
16, vocab 4096, batch 32x256, LayerNorm, biases, AdamW) and are trained in this process,
alternating, so the ratio is measured side by side on the same (possibly busy) machine.

* ``repeatlens``: ``repeatlens.train.train`` on a synthetic-source run directory: schedule
  iterator, memory-mapped pool, HookedTransformer with the fused attention path, AdamW,
  LR schedule, grad clipping, the checkpoint at the end. Its tokens/s comes from the run's
  ``complete.json`` (the loop only, step-0 checkpoint excluded; compiled: also without the
  first step, in which torch.compile compiles, as the reference compiles before its timing).
* ``reference``: a nanoGPT-style model with ``F.scaled_dot_product_attention`` on random
  token batches already in memory, same optimiser and clipping.

``--determinism-cost`` also trains repeatlens with ``train.deterministic: false`` (how it
trained before issue 15) in the same alternation and prints the deterministic / off
tokens-per-second ratio: what bit-reproducible training costs. Whole runs alternate every
few tens of seconds, too slowly on a shared machine whose load moves, so it also times the
training step itself (the fused forward, loss, backward, clipping, AdamW on the same
HookedTransformer) with the mode switched on and off every step, and prints that ratio
(``step-interleaved``).

Also reports the schedule iterator alone (gathering batches from the pool) and model FLOPs
utilisation against the peak float32 matmul FLOP/s measured here. Runs on CUDA too when
present (``--device cuda``; default: cuda if available).

Usage::

    python benchmarks/train_throughput.py [--steps 30] [--repeats 3] [--compile] [--device cpu] [--determinism-cost]

The last line is ``ratio=X``: repeatlens tokens/s over reference tokens/s (eager; the
compiled ratio is printed above it when --compile is given, and is the last line's value
when --compile-only is given).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from repeatlens.checkpoints import RunDir  # noqa: E402
from repeatlens.config import config_from_dict  # noqa: E402
from repeatlens.train import prepare_run, train  # noqa: E402


def rope_tables(n_ctx: int, dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """GPT-NeoX rotary tables [n_ctx, dim] (Su et al. 2021), halves convention."""
    freq = base ** (-torch.arange(0, dim, 2).float() / dim)
    ang = torch.arange(n_ctx).float()[:, None] * freq[None]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos(), ang.sin()


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    p = x.shape[-2]
    return x * cos[:p] + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin[:p]


class Block(nn.Module):
    def __init__(self, d: int, h: int, dh: int, n_ctx: int, rotary: bool):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * h * dh)
        self.out = nn.Linear(h * dh, d)
        self.h, self.dh, self.rotary = h, dh, rotary
        cos, sin = rope_tables(n_ctx, dh)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, p, _ = x.shape
        q, k, v = self.qkv(self.ln(x)).view(b, p, 3, self.h, self.dh).permute(2, 0, 3, 1, 4).unbind(0)
        if self.rotary:
            q, k = rope(q, self.cos, self.sin), rope(k, self.cos, self.sin)
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return x + self.out(z.transpose(1, 2).reshape(b, p, self.h * self.dh))


class Reference(nn.Module):
    """Plain attention-only transformer of the same shape as the HookedTransformer."""

    def __init__(self, vocab: int, n_ctx: int, d: int, layers: int, h: int, dh: int, rotary: bool = False):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = None if rotary else nn.Parameter(torch.randn(n_ctx, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, h, dh, n_ctx, rotary) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.unembed = nn.Linear(d, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.emb(tokens)
        if self.pos is not None:
            x = x + self.pos[: tokens.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.unembed(self.ln_f(x))


def run_config(args, steps: int, compile_: bool, deterministic: bool = True) -> dict:
    return {
        "seed": 0,
        "data": {"source": "synthetic", "seq_len": args.ctx, "test_sequences": 8, "synthetic": {"vocab_size": args.vocab, "max_len": min(20, args.ctx - 1)}},  # a segment fits the context
        "mixture": {"total_tokens": steps * args.batch * args.ctx, "repeated_fraction": 0.1, "repeat_count": 4},
        "model": {"n_layers": args.layers, "d_model": args.d_model, "n_heads": args.heads, "d_head": args.d_head, "n_ctx": args.ctx,
                  "positional_embedding": "rotary" if args.rotary else "standard"},
        "train": {
            "batch_size": args.batch,
            "device": args.device,
            "progress": False,
            "eval_sequences": 8,
            "compile": compile_,
            "deterministic": deterministic,
            "fast_attention": not args.hooked,
            "checkpoints": {"log_count": 0, "include_zero": False, "every": 10**9},
        },
    }


def bench_repeatlens(args, root: Path, tag: str, compile_: bool, deterministic: bool = True) -> float:
    cfg = config_from_dict(run_config(args, args.steps, compile_, deterministic))
    out = root / tag
    train(cfg, out, progress=False)
    done = json.loads((out / "complete.json").read_text())
    # compiled: leave out the first step, where torch.compile compiles (the reference compiles outside its timing too)
    return done["steady_tokens_per_s"] if compile_ else done["tokens_per_s"]


def bench_reference(args, compile_: bool) -> float:
    torch.manual_seed(0)
    dev = args.device
    model = Reference(args.vocab, args.ctx, args.d_model, args.layers, args.heads, args.d_head, args.rotary).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, betas=(0.9, 0.98))
    fwd = torch.compile(model) if compile_ else model
    data = torch.randint(0, args.vocab, (args.steps, args.batch, args.ctx), device=dev)

    def step(tokens: torch.Tensor) -> None:
        logits = fwd(tokens)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, args.vocab).float(), tokens[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()

    if compile_:  # compile outside the timed loop, as the repeatlens run compiles in its first step
        step(data[0])
    _sync(dev)
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(data[i])
    _sync(dev)
    return args.steps * args.batch * args.ctx / (time.perf_counter() - t0)


def bench_step_interleaved(args, steps: int) -> tuple[float, float]:
    """Median seconds of one training step with deterministic algorithms on / off, alternating every step."""
    from repeatlens import model as adapter
    from repeatlens.determinism import deterministic_algorithms
    from repeatlens.train import lm_loss

    cfg = config_from_dict(run_config(args, args.steps, False))
    model = adapter.build_model(cfg.model, d_vocab=args.vocab, device=args.device, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, betas=(0.9, 0.98))
    fwd = adapter.forward_fn(model, not args.hooked)
    tokens = torch.randint(0, args.vocab, (args.batch, args.ctx), device=args.device)

    def step() -> None:
        loss = lm_loss(fwd(model, tokens), tokens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()

    times: dict[bool, list[float]] = {True: [], False: []}
    step()  # warm-up
    for i in range(2 * steps):
        mode = i % 4 in (0, 3)  # on, off, off, on: neither mode always goes first
        with deterministic_algorithms(mode, args.device):
            _sync(args.device)
            t0 = time.perf_counter()
            step()
            _sync(args.device)
        times[mode].append(time.perf_counter() - t0)
    return statistics.median(times[True]), statistics.median(times[False])


def bench_schedule(run: RunDir, batch: int, seconds: float = 2.0) -> float:
    """Tokens/s of the schedule iterator alone: the exact gather the training loop does."""
    pool, schedule = run.pool(), np.load(run.schedule_path)
    n, tokens, t0 = len(schedule), 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in range(0, n, batch):
            t = torch.from_numpy(pool[schedule[i : i + batch]].astype(np.int64))
            tokens += t.numel()
    return tokens / (time.perf_counter() - t0)


def peak_matmul_flops(device: str, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def train_flops_per_token(args) -> float:
    """6·N (matmul params, unembedding included, embedding lookup not) + attention 12·L·T·d_attn/2 (causal)."""
    d_attn = args.heads * args.d_head
    n_matmul = args.layers * (args.d_model * 3 * d_attn + d_attn * args.d_model) + args.d_model * args.vocab
    attn = 2 * 2 * args.layers * args.ctx * d_attn  # QK^T and AV, forward, per token (full square)
    return 6 * n_matmul + 3 * attn


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def shape_arguments(p: argparse.ArgumentParser) -> None:
    """The model/batch shape options every training benchmark shares (defaults: the brief's shape)."""
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--d-head", type=int, default=16)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rotary", action="store_true", help="rotary positions (the study's recipe)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    shape_arguments(p)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true", help="also measure both with torch.compile")
    p.add_argument("--compile-only", action="store_true", help="measure only the compiled pair")
    p.add_argument("--hooked", action="store_true", help="train repeatlens through the hooked forward (fast_attention: false)")
    p.add_argument("--determinism-cost", action="store_true", help="also train repeatlens with train.deterministic: false")
    args = p.parse_args()
    modes = [True] if args.compile_only else ([False, True] if args.compile else [False])
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} shape: {args.layers}L "
          f"d_model={args.d_model} heads={args.heads}x{args.d_head} vocab={args.vocab} batch={args.batch}x{args.ctx} steps={args.steps} "
          f"positions={'rotary' if args.rotary else 'learned'} repeatlens_forward={'hooked' if args.hooked else 'fused'}")
    peak = peak_matmul_flops(args.device)
    fpt = train_flops_per_token(args)
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for comp in modes:
            ours, ref, off = [], [], []
            for r in range(args.repeats):  # alternate so all see the same machine load
                ref.append(bench_reference(args, comp))
                if args.determinism_cost and r % 2:  # deterministic first on even repeats, second on odd ones
                    off.append(bench_repeatlens(args, root, f"off_{int(comp)}_{r}", comp, deterministic=False))
                ours.append(bench_repeatlens(args, root, f"run_{int(comp)}_{r}", comp))
                if args.determinism_cost and not r % 2:
                    off.append(bench_repeatlens(args, root, f"off_{int(comp)}_{r}", comp, deterministic=False))
            mo, mr = statistics.median(ours), statistics.median(ref)
            ratios[comp] = mo / mr
            tag = "compiled" if comp else "eager"
            print(f"[{tag}] repeatlens {mo:,.0f} tok/s (runs: {', '.join(f'{x:,.0f}' for x in ours)})")
            print(f"[{tag}] reference  {mr:,.0f} tok/s (runs: {', '.join(f'{x:,.0f}' for x in ref)})")
            print(f"[{tag}] MFU repeatlens {mo * fpt / peak:.1%}  reference {mr * fpt / peak:.1%}  "
                  f"(peak fp32 matmul {peak / 1e9:,.1f} GFLOP/s, {fpt / 1e6:.2f} MFLOP/token)")
            if off:
                moff = statistics.median(off)
                print(f"[{tag}] repeatlens, train.deterministic false {moff:,.0f} tok/s (runs: {', '.join(f'{x:,.0f}' for x in off)}); "
                      f"ratio to reference {moff / mr:.3f}")
                pairs = [a / b for a, b in zip(ours, off)]
                print(f"[{tag}] deterministic / not: {mo / moff:.3f} (per run pair: {', '.join(f'{x:.3f}' for x in pairs)}; "
                      f"median {statistics.median(pairs):.3f})")
            print(f"[{tag}] ratio={ratios[comp]:.3f}")
        if args.determinism_cost:
            on, off_s = bench_step_interleaved(args, max(args.steps, 4))
            print(f"step-interleaved: deterministic {on * 1e3:.1f} ms/step, not {off_s * 1e3:.1f} ms/step: "
                  f"deterministic / not tokens/s {off_s / on:.3f}")
        run = prepare_run(config_from_dict(run_config(args, args.steps * 4, False)), root / "sched", progress=False)
        sched = bench_schedule(run, args.batch)
        best_train = max(statistics.median(ours), 1.0)
        print(f"schedule iterator {sched:,.0f} tok/s = {sched / best_train:,.0f}x training throughput")
    last = ratios[True] if args.compile_only else ratios[False]
    print(f"ratio={last:.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
