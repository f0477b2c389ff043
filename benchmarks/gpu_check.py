"""The GPU path in one command: training throughput and MFU, the score battery, the CUDA tests.

Run on a CUDA machine from the repository root (a few minutes on one H100-class GPU)::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/gpu_check.py

It prints, in this order:

(a) **training throughput at GPT-2 small's shape in bf16** (12 layers, d_model 768, 12 heads
    of 64, MLP 3072, n_ctx 1024, vocab 50257, batch 8 x 1024): repeatlens' training step (the
    HookedTransformer built by the adapter, its fused SDPA forward, ``train.precision: bf16``
    autocast through :class:`repeatlens.precision.Precision`, ``accumulate_gradients``,
    clipping, AdamW with fp32 master weights) against a plain-PyTorch model of the same shape
    with ``F.scaled_dot_product_attention`` under the same autocast and optimizer, timed
    alternately in this process; tokens/s of each, their ratio, peak GPU memory, and the MFU
    of each against the GPU's dense bf16 peak (:data:`BF16_PEAK_TFLOPS`, by device name;
    ``--peak-tflops`` for another GPU). FLOPs per token: nanoGPT's ``6 N + 12 L d T`` (N the
    parameters without the embedding, attention counted as full T x T products).
(b) **the default score battery and analyze** on a random checkpoint of that shape:
    ``benchmarks/score_throughput.py --shape gpt2-small`` (seconds of each score, peak GPU
    memory, ``repeatlens.analyze`` on a folder holding the checkpoint).
(c) **the CUDA-marked tests**: ``pytest -m cuda`` on the files that hold them
    (``--list-cuda-tests``: device placement, autocast and resume on CUDA, analyze on CUDA
    against the CPU).

``--cpu --tiny`` runs the same code on the CPU at a tiny shape (the test suite does, in
seconds, with ``--skip-tests``). The last line is ``gpu_check=ok`` or ``gpu_check=FAILED``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

#: Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' datasheets, matched
#: as a substring of ``torch.cuda.get_device_name()``, most specific first.
BF16_PEAK_TFLOPS: list[tuple[str, float]] = [
    ("GH200", 989.4),
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.5),
    ("H100", 989.4),  # SXM
    ("H800", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.1),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 6000 Ada", 364.2),
    ("RTX A6000", 154.8),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
]

SHAPES = {
    "gpt2-small": dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024, vocab=50257, batch=8),
    "tiny": dict(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=128, n_ctx=64, vocab=512, batch=4),
}


def bf16_peak(device_name: str) -> float | None:
    """The dense bf16 peak (FLOP/s) of a GPU by name, or None when it is not in the table.

    >>> bf16_peak("NVIDIA H100 80GB HBM3"), bf16_peak("NVIDIA H100 PCIe"), bf16_peak("NVIDIA L4"), bf16_peak("Tesla T4")
    (989400000000000.0, 756000000000000.0, 121000000000000.0, None)
    """
    for key, tflops in BF16_PEAK_TFLOPS:
        if key in device_name:
            return tflops * 1e12
    return None


class Block(nn.Module):
    """Pre-LayerNorm GPT-2 block: SDPA causal attention, then a GELU MLP."""

    def __init__(self, d: int, h: int, dh: int, d_mlp: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * h * dh), nn.Linear(h * dh, d)
        self.fc, self.proj = nn.Linear(d, d_mlp), nn.Linear(d_mlp, d)
        self.h, self.dh = h, dh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, p, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, p, 3, self.h, self.dh).permute(2, 0, 3, 1, 4).unbind(0)
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(z.transpose(1, 2).reshape(b, p, self.h * self.dh))
        return x + self.proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class Reference(nn.Module):
    """A plain-PyTorch GPT-2 of the same shape as the HookedTransformer (learned positions, untied unembedding)."""

    def __init__(self, s: dict):
        super().__init__()
        self.emb = nn.Embedding(s["vocab"], s["d_model"])
        self.pos = nn.Parameter(torch.randn(s["n_ctx"], s["d_model"]) * 0.02)
        self.blocks = nn.ModuleList(Block(s["d_model"], s["n_heads"], s["d_head"], s["d_mlp"]) for _ in range(s["n_layers"]))
        self.ln_f = nn.LayerNorm(s["d_model"])
        self.unembed = nn.Linear(s["d_model"], s["vocab"])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.emb(tokens) + self.pos[: tokens.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.unembed(self.ln_f(x))


def flops_per_token(s: dict) -> float:
    """nanoGPT's estimate: 6 N (N without the token embedding) + 12 L d T."""
    d, L = s["d_model"], s["n_layers"]
    n = L * (4 * d * s["n_heads"] * s["d_head"] + 2 * d * s["d_mlp"]) + d * s["vocab"]
    return 6 * n + 12 * L * d * s["n_ctx"]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def repeatlens_step(s: dict, device: str):
    """repeatlens' training step on a HookedTransformer of shape ``s`` in bf16: a closure over one batch."""
    from repeatlens import model as adapter
    from repeatlens.config import ModelConfig
    from repeatlens.precision import Precision
    from repeatlens.train import accumulate_gradients

    cfg = ModelConfig(n_layers=s["n_layers"], d_model=s["d_model"], n_heads=s["n_heads"], d_head=s["d_head"], n_ctx=s["n_ctx"],
                      d_mlp=s["d_mlp"], attn_only=False, act_fn="gelu_new")
    model = adapter.build_model(cfg, d_vocab=s["vocab"], device=device, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, betas=(0.9, 0.98))
    fwd, numerics = adapter.forward_fn(model, True), Precision("bf16", device)

    def step(tokens: torch.Tensor) -> float:
        loss = accumulate_gradients(fwd, model, tokens, numerics, None)
        numerics.unscale(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        numerics.step(opt)
        opt.zero_grad(set_to_none=True)
        return loss.item()

    return step, sum(p.numel() for p in model.parameters())


def reference_step(s: dict, device: str):
    torch.manual_seed(0)
    model = Reference(s).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, betas=(0.9, 0.98))

    def step(tokens: torch.Tensor) -> float:
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
            logits = model(tokens)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, s["vocab"]).float(), tokens[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    return step, sum(p.numel() for p in model.parameters())


def throughput(args, s: dict) -> tuple[float, float]:
    """(a): tokens/s of repeatlens and of the reference, alternating; prints the table. Returns both medians."""
    dev = args.device
    data = torch.randint(0, s["vocab"], (args.steps, s["batch"], s["n_ctx"]), device=dev)
    sides = {"repeatlens": repeatlens_step(s, dev), "reference": reference_step(s, dev)}
    print(f"parameters: repeatlens {sides['repeatlens'][1] / 1e6:.1f}M, reference {sides['reference'][1] / 1e6:.1f}M")
    rates: dict[str, list[float]] = {k: [] for k in sides}
    peaks: dict[str, int] = {}
    for name, (step, _) in sides.items():  # warm-up: cuBLAS/cuDNN heuristics, the allocator
        step(data[0])
    for r in range(args.repeats):
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            step = sides[name][0]
            if dev.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            _sync(dev)
            t0 = time.perf_counter()
            for i in range(args.steps):
                step(data[i])
            _sync(dev)
            rates[name].append(args.steps * s["batch"] * s["n_ctx"] / (time.perf_counter() - t0))
            if dev.startswith("cuda"):
                peaks[name] = max(peaks.get(name, 0), torch.cuda.max_memory_allocated())
    fpt = flops_per_token(s)
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else (bf16_peak(name) if dev.startswith("cuda") else None)
    med = {k: statistics.median(v) for k, v in rates.items()}
    for k in sides:
        mfu = f"MFU {med[k] * fpt / peak:.1%}" if peak else "MFU not computed (no bf16 peak known for this device; --peak-tflops)"
        mem = f", peak GPU memory {peaks[k] / 2**30:.2f} GiB" if k in peaks else ""
        print(f"[a] {k:<10} {med[k]:>12,.0f} tok/s (runs: {', '.join(f'{x:,.0f}' for x in rates[k])}); {mfu}{mem}")
    print(f"[a] {fpt / 1e9:.3f} GFLOP/token; bf16 peak {peak / 1e12:.1f} TFLOP/s ({name})" if peak else f"[a] {fpt / 1e9:.3f} GFLOP/token ({name})")
    print(f"[a] train_ratio={med['repeatlens'] / med['reference']:.3f}")
    return med["repeatlens"], med["reference"]


#: (b)'s model with --tiny: one layer, so that the suite runs this script in seconds, and a
#: vocabulary whose vocab x vocab float32 matrix (381 MiB) stands out of the allocator's noise
#: in score_throughput.py's memory check.
BATTERY_TINY = dict(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=64, n_ctx=64, d_vocab=10000, act_fn="gelu_new")


def battery(args) -> int:
    """(b): score_throughput.py --shape on this device (GPT-2 small, or :data:`BATTERY_TINY`)."""
    spec = importlib.util.spec_from_file_location("_score_throughput", ROOT / "benchmarks" / "score_throughput.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    shape = args.shape
    if args.tiny:
        shape = "gpu-check-tiny"
        mod.SHAPES[shape] = BATTERY_TINY
    # threads=0: leave torch's thread count as the caller set it (shape_main's default sets 2 on the CPU)
    return mod.shape_main(SimpleNamespace(shape=shape, device=args.device, threads=0, ablation_layers=None, before_after=False))


def cuda_test_files() -> list[Path]:
    """The test files that hold CUDA-marked tests. pytest is pointed at these alone: collecting
    all of tests/ imports modules that need plotly and other extras a GPU machine's image may
    lack (on the lent H200 24 modules failed to collect)."""
    import ast

    def marked(path: Path) -> bool:  # a decorator @pytest.mark.cuda anywhere (not the words in a docstring)
        for node in ast.walk(ast.parse(path.read_text())):
            for dec in getattr(node, "decorator_list", []):
                if ast.unparse(dec.func if isinstance(dec, ast.Call) else dec) == "pytest.mark.cuda":
                    return True
        return False

    return sorted(f for f in (ROOT / "tests").rglob("test_*.py") if marked(f))


def cuda_tests() -> int:
    """(c): the CUDA-marked tests, in a child process."""
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-rs", *map(str, cuda_test_files())]
    print(f"[c] {' '.join(cmd)}", flush=True)
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}).returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="run on the CPU (to test this script without a GPU)")
    p.add_argument("--tiny", action="store_true", help="a tiny shape instead of GPT-2 small")
    p.add_argument("--steps", type=int, default=None, help="training steps per timing (default 20; 2 with --tiny)")
    p.add_argument("--repeats", type=int, default=None, help="alternating timings of each side (default 3; 1 with --tiny)")
    p.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, when it is not in the table")
    p.add_argument("--skip-battery", action="store_true", help="leave out (b)")
    p.add_argument("--skip-tests", action="store_true", help="leave out (c)")
    p.add_argument("--list-cuda-tests", action="store_true", help="print the test files (c) runs, one a line, and stop")
    args = p.parse_args(argv)
    if args.list_cuda_tests:
        print("\n".join(str(f.relative_to(ROOT)) for f in cuda_test_files()))
        return 0
    if not args.cpu and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --cpu --tiny to test the script on the CPU", file=sys.stderr)
        return 2
    args.device = "cpu" if args.cpu else "cuda"
    args.shape = "tiny" if args.tiny else "gpt2-small"
    args.steps = args.steps or (2 if args.tiny else 20)
    args.repeats = args.repeats or (1 if args.tiny else 3)
    if args.device == "cuda":
        from repeatlens.determinism import prepare_process

        prepare_process()
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # train.tf32's default
    s = SHAPES[args.shape]
    print(f"date={time.strftime('%Y-%m-%d %H:%M')} device={args.device}"
          + (f" ({torch.cuda.get_device_name()}, CUDA {torch.version.cuda})" if args.device == "cuda" else "")
          + f" torch={torch.__version__} shape={args.shape} {s} steps={args.steps} repeats={args.repeats}", flush=True)
    failed = []
    throughput(args, s)
    if not args.skip_battery:
        print("[b] default score battery and analyze (benchmarks/score_throughput.py --shape):", flush=True)
        if battery(args) != 0:
            failed.append("b")
    if not args.skip_tests and cuda_tests() != 0:
        failed.append("c")
    print(f"gpu_check={'FAILED (' + ', '.join(failed) + ')' if failed else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
