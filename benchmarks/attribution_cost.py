"""The cost of the per-head attribution scores against the rest of the default battery.

One checkpoint (a seeded random model: the work does not depend on the weights), the same
probes and the same held-out / repeated sequences (half of each marked synthetic, so the
split scores run too) on both sides, timed side by side in this process, alternating:

* ``battery``: ``score_model`` with every default score but the attribution ones (attention
  scores on one probe batch, weights, copying, the per-head copying ablation, test and
  repeated loss, ICL, memorization);
* ``attribution``: ``score_model`` with the nine attribution scores of
  :mod:`repeatlens.scores.attribution` (mean ablation on both sets, every split and the
  share from one set of passes; zero ablation on both sets);
* ``patching``: :func:`~repeatlens.scores.attribution.patched_sequence_deltas` on both sets
  (the first-order estimate that is not a score, for its cost);
* optionally (``--llc``, needs the devinterp extra) ``llc_test`` with its default sampler.

Usage::

    python benchmarks/attribution_cost.py [--layers 2 --heads 8 --d-model 128 --vocab 4096 --ctx 128 --sequences 64]

The last line is ``ratio=X``: attribution time over battery time per checkpoint.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from score_throughput import machine, revision  # noqa: E402

from repeatlens.config import ModelConfig  # noqa: E402
from repeatlens.model import build_model  # noqa: E402
from repeatlens.scores import default_metrics, make_probes, resolve_metrics, score_model  # noqa: E402
from repeatlens.scores.attribution import patched_sequence_deltas  # noqa: E402
from repeatlens.scores.behaviour import z_means  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--ctx", type=int, default=128)
    p.add_argument("--sequences", type=int, default=64, help="held-out and repeated sequences each (analyze's default)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--llc", action="store_true", help="also time llc_test (devinterp extra)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = ModelConfig(n_layers=args.layers, d_model=args.d_model, n_heads=args.heads, d_head=args.d_model // args.heads,
                      n_ctx=args.ctx, d_vocab=args.vocab, attn_only=True)
    model = build_model(cfg, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    test = torch.randint(1, args.vocab, (args.sequences, args.ctx), generator=g)
    rep = torch.randint(1, args.vocab, (args.sequences, args.ctx), generator=g)
    half = torch.arange(args.sequences) % 2 == 1
    data = dict(test_tokens=test, repeated_tokens=rep, test_synthetic=half, repeated_synthetic=half)
    probes = make_probes(args.vocab, args.ctx, seed=0)
    attr = resolve_metrics(["attribution"])  # opt-in: the group of the nine scores
    rest = default_metrics(args.layers * args.heads)[0]
    print(f"date={time.strftime('%Y-%m-%d %H:%M')} commit={revision()} machine: {machine()} torch={torch.__version__} threads={torch.get_num_threads()}")
    print(f"shape: {args.layers}L attn-only d_model={args.d_model} heads={args.heads} vocab={args.vocab} n_ctx={args.ctx}; "
          f"{args.sequences} held-out + {args.sequences} repeated sequences")
    print(f"attribution scores: {', '.join(attr)}")

    def patch() -> None:
        means = z_means(model, test, 32)
        for x in (test, rep):
            patched_sequence_deltas(model, x, means, 32)

    sides = {
        "battery": lambda: score_model(model, rest, probes=probes, **data),
        "attribution": lambda: score_model(model, attr, **data),
        "patching": patch,
    }
    if args.llc:
        sides["llc_test"] = lambda: score_model(model, ["llc_test"], test_tokens=test)
    for fn in sides.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(args.repeats):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:<12} {med[k]:8.3f} s / checkpoint  (runs: {', '.join(f'{x:.3f}' for x in v)})  {med[k] / med['battery']:.2f}x battery")
    print(f"ratio={med['attribution'] / med['battery']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
