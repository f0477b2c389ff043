"""Profile one training step (forward + backward + AdamW) through the hooked and the fused forward.

torch.profiler over a few steps of the same HookedTransformer, once through TransformerLens'
own forward and once through ``repeatlens.model.fast_forward``; prints the top operators by
self CPU time for each and the per-step time ratio. Used to decide what the fused path
must replace (see benchmarks/README.md: "Profiles").

Usage::

    python benchmarks/profile_train_step.py [--rotary] [--steps 5] [--d-model 128] [--vocab 4096] [--ctx 256] ...
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from repeatlens import model as adapter  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import shape_arguments  # noqa: E402


def step_fn(model, forward, tokens, opt):
    def step() -> None:
        logits = forward(model, tokens)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=12)
    shape_arguments(p)
    args = p.parse_args()
    cfg = adapter.ModelConfig(n_layers=args.layers, d_model=args.d_model, n_heads=args.heads, d_head=args.d_head, n_ctx=args.ctx,
                              positional_embedding="rotary" if args.rotary else "standard")
    tokens = torch.randint(0, args.vocab, (args.batch, args.ctx))
    times = {}
    for name, forward in (("hooked", adapter.hooked_logits), ("fused", adapter.fast_forward)):
        model = adapter.build_model(cfg, d_vocab=args.vocab, seed=0)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        step = step_fn(model, forward, tokens, opt)
        step()  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name] = (time.perf_counter() - t0) / args.steps
        print(f"\n=== {name} forward ({'rotary' if args.rotary else 'learned'} positions): {times[name] * 1e3:.0f} ms/step")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=40))
    print(f"ratio={times['hooked'] / times['fused']:.3f}  (hooked ms/step over fused ms/step)")


if __name__ == "__main__":
    main()
