"""Scoring throughput: repeatlens' score battery vs TransformerLens' head detector + a naive OV eig.

One checkpoint, the same model and the same probe tokens on both sides, timed side by side
in this process (alternating), with the results checked equal before any ratio is printed.

* ``baseline``: ``transformer_lens.head_detector.detect_head`` once per score type it
  supports (``previous_token_head`` over every probe row, ``duplicate_token_head`` and
  ``induction_head`` over the ``[BOS, r, r]`` rows), plus prefix-matching as a custom
  detection pattern per ``BOS + p p p p`` row (detect_head has no prefix-matching type; its
  tensor-pattern API scores it the same way), plus the naive OV copying score: LayerNorm
  folded by TransformerLens' own ``fold_layer_norm``, then for every head the full
  vocab x vocab matrix ``W_E W_V W_O W_U`` (float64) and ``torch.linalg.eigvals`` of it,
  score ``sum Re(lambda) / sum |lambda|``. detect_head runs under ``torch.inference_mode``
  (a stronger baseline than calling it bare, which records autograd graphs).
* ``repeatlens``: ``repeatlens.scores.score_model(model, [previous_token, duplicate_token,
  induction, prefix_matching, copying_ov])``: one forward pass over the probe batch caching
  only ``hook_pattern``, and OV eigenvalues in the d_head space.

Same results (exit 1 if not): head_detector's ``mul`` measure divides the attention on the
target keys by the attention of every query (``T``), repeatlens by the queries where the
target is defined, so on the same rows the two differ by a known constant per score:
``(T-1)/T`` previous-token, ``L/T`` duplicate-token and induction (copy rows hold no
repeated token inside ``r``), ``(T-P-1)/T`` prefix-matching. The script asserts
``baseline == factor * repeatlens`` per head (atol 1e-4, as tests/scores/test_trained.py)
and the OV copying scores equal to 1e-6.

Scaling: ``repeatlens.analyze`` (the real path: checkpoint discovery, sha256-verified
safetensors load, scoring, the incremental parquet table written after every checkpoint)
on run directories holding N = 1, 2, 4, 8 checkpoints written by the real checkpoint
writer (seeded random models; the checkpoints' content does not change the work); time
per checkpoint and the peak memory of each call above what was resident when it started
(CPU: the C heap trimmed, then the kernel's VmHWM reset through /proc/self/clear_refs and
read back; CUDA: torch.cuda.max_memory_allocated). Exit 2 if t(8)/t(1) is outside 0.5x-1.5x
of linear, or the peak growth at N=8 exceeds that at N=1 by more than 16 MiB + 50% (medians
of the repeats; allocator noise alone moves it by tens of MiB either way).

MFU: the model FLOPs of the scoring pass (probe batch through every layer, 2 FLOPs per
multiply-add, attention scores and mixing counted as full T x T matmuls; OV products)
over its time, against the peak float32 matmul FLOP/s measured here at the same thread
count. Runs on CUDA when present (``--device cuda``; default cuda if available).

Usage::

    python benchmarks/score_throughput.py [--vocab 1024] [--repeats 5] [--threads 1] [--device cpu|cuda]

The last line is ``ratio=X``: baseline time over repeatlens time for all attention scores
plus OV copying of one checkpoint.

``--shape gpt2-small`` instead times repeatlens alone on a random model of GPT-2 small's
shape (12 layers, d_model 768, 12 heads of 64, MLP 3072, n_ctx 1024, vocab 50257,
LayerNorm gains and biases drawn away from 1 and 0): every score of the default battery
(every registered score; those that need data are skipped, as ``repeatlens analyze`` skips
them without ``--tokens``), each in its own ``score_model`` call with its peak memory,
then the battery in one call, then ``repeatlens.analyze`` on a TransformerLens folder
holding the model (load, scoring, table: seconds and peak memory per checkpoint). The
per-head ablation score re-runs the blocks from the head's layer once per head;
``--ablation-layers K`` (K < n_layers) times it on the heads of the first and of the last
layer and fits a line in the blocks re-run between them (labelled ESTIMATED, with the upper
bound of every layer as dear as the first; 0: every head, measured). The pre-issue-23 way
(``--before-after``), one complete forward per head, is timed on the first K layers' heads
and extrapolated.
Every call's peak memory is checked against one ``vocab x vocab`` float32 matrix (exit 3
if any call grew by that much). The last line is ``seconds_per_checkpoint=X`` (analyze,
ablation included, extrapolated when ``--ablation-layers`` is given). With ``--before-after``
the battery and the ablation are also timed the way they were computed before issue 23
(``repeatlens.scores.reference.full_logits``: full-vocabulary logits at every position, one
complete forward per ablated head), side by side.

``--vocab-cost`` (issue 23) asks what a GPT-2 vocabulary costs: two checkpoints of one
shape (2 layers, d_model 64, 4 heads of 16, MLP 256, n_ctx 64: probe rows of 61 tokens)
written by ``transformers`` (``GPT2LMHeadModel.save_pretrained``), one with a vocabulary of
50,257 and one of 256, each analysed by ``repeatlens.analyze`` (default battery, no
``--tokens``: what ``repeatlens analyze FOLDER`` runs on other people's checkpoints; load,
scores, table) the new way and the old way (``reference.full_logits``), alternating in this
process, ``--repeats`` times; the tables of the two ways are checked equal (exit 1 if a
value differs by more than 1e-4), then each score group is timed alone both ways. The last
line is ``ratio=X``: the new way's time at 50,257 over its time at 256 (target: at most 2).
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata as md
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import _sync, peak_matmul_flops  # noqa: E402

from repeatlens.analysis import analyze  # noqa: E402
from repeatlens.checkpoints import RunDir, save_checkpoint  # noqa: E402
from repeatlens.config import config_from_dict  # noqa: E402
from repeatlens.model import build_model, model_from_state_dict  # noqa: E402
from repeatlens.scores import Probes, make_probes, score_model  # noqa: E402
from repeatlens.train import prepare_run  # noqa: E402

ATTENTION = ["previous_token", "duplicate_token", "induction", "prefix_matching"]
METRICS = ATTENTION + ["copying_ov"]
MiB = 1 << 20


# ------------------------------------------------------------------------------ baseline


def _detect(model, probes: Probes, rows: range, pattern) -> torch.Tensor:
    """``detect_head`` on exactly our probe rows: the model has no tokenizer, so its
    ``to_tokens`` is replaced (on this instance, for this call) by a lookup from row names to
    token ids, as tests/scores/test_trained.py does. ``pattern`` is a head name, or a callable
    giving row ``i``'s detection-pattern tensor (then detect_head is called row by row)."""
    from transformer_lens.head_detector import detect_head

    seqs = {str(i): probes.tokens[i : i + 1].cpu() for i in rows}
    model.to_tokens = lambda s, *a, **k: torch.cat([seqs[x] for x in s]) if isinstance(s, list) else seqs[s]
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore", DeprecationWarning)
            if isinstance(pattern, str):
                return detect_head(model, list(seqs), pattern)
            return torch.stack([detect_head(model, str(i), pattern(i)) for i in rows]).mean(0)
    finally:
        del model.to_tokens


def prefix_detection_pattern(tokens: torch.Tensor, prefix_len: int) -> torch.Tensor:
    """Olsson's prefix-matching target for one ``BOS + p p p p`` row as a detect_head pattern:
    ``[i, j] = 1`` where ``tokens[j-1] == tokens[i]``, ``1 <= j <= i``, for queries ``i > P``."""
    T = tokens.shape[0]
    prev = torch.cat([tokens.new_full((1,), -1), tokens[:-1]])
    det = (tokens[:, None] == prev[None, :]) & torch.ones(T, T, dtype=torch.bool).tril()
    det[: prefix_len + 1] = False
    return det.float()


def naive_ov_copying(model) -> torch.Tensor:
    """OV copying per head the naive way: TransformerLens folds LayerNorm, then the full
    vocab x vocab circuit ``W_E W_V W_O W_U`` (float64) and ``eigvals`` of it, per head."""
    sd = {k: v.detach().double() for k, v in model.state_dict().items() if v.is_floating_point()}
    norm = model.cfg.normalization_type
    if norm is not None:
        sd = model.fold_layer_norm(sd, fold_biases=norm == "LN", center_weights=norm in ("LN", "LNPre"))
    cfg = model.cfg
    out = torch.empty(cfg.n_layers, cfg.n_heads, dtype=torch.float64)
    for layer in range(cfg.n_layers):
        for head in range(cfg.n_heads):
            W_V, W_O = sd[f"blocks.{layer}.attn.W_V"][head], sd[f"blocks.{layer}.attn.W_O"][head]
            full = sd["embed.W_E"] @ W_V @ W_O @ sd["unembed.W_U"]  # [vocab, vocab]
            lam = torch.linalg.eigvals(full)
            out[layer, head] = (lam.real.sum() / lam.abs().sum()).item()
    return out


def baseline_fns(model, probes: Probes) -> dict[str, Callable[[], torch.Tensor]]:
    """One callable per score type, each returning ``[layer, head]``."""
    all_rows, copy_rows = range(probes.tokens.shape[0]), range(probes.n_copy)
    prefix_rows = range(probes.n_copy, probes.tokens.shape[0])
    toks = probes.tokens.cpu()
    return {
        "previous_token": lambda: _detect(model, probes, all_rows, "previous_token_head"),
        "duplicate_token": lambda: _detect(model, probes, copy_rows, "duplicate_token_head"),
        "induction": lambda: _detect(model, probes, copy_rows, "induction_head"),
        "prefix_matching": lambda: _detect(
            model, probes, prefix_rows, lambda i: prefix_detection_pattern(toks[i], probes.prefix_len).to(model.cfg.device)
        ),
        "copying_ov": lambda: naive_ov_copying(model),
    }


def tl_factor(metric: str, probes: Probes) -> float:
    """head_detector's value over repeatlens' on the same rows (see the module docstring)."""
    T, L, P = probes.seq_len, probes.copy_len, probes.prefix_len
    return {"previous_token": (T - 1) / T, "duplicate_token": L / T, "induction": L / T, "prefix_matching": (T - P - 1) / T, "copying_ov": 1.0}[metric]


def per_head(df, metric: str, n_layers: int, n_heads: int) -> torch.Tensor:
    out = torch.full((n_layers, n_heads), float("nan"), dtype=torch.float64)
    sub = df[df.metric == metric]
    out[sub["layer"].to_numpy(int), sub["head"].to_numpy(int)] = torch.tensor(sub["value"].to_numpy())
    return out


# ---------------------------------------------------------------------------- timing helpers


def timed(fn: Callable, device: str):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def _malloc_trim() -> None:
    """Give the C heap's free pages back to the OS (glibc), so that RSS growth measures what a
    block allocates rather than whether freed memory happened to be reused."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory of a block above what was resident when it started.

    CPU: resident set size. On Linux the kernel's high-water mark (VmHWM) is reset to the
    current RSS through ``/proc/self/clear_refs`` and read back afterwards (exact); elsewhere
    a thread samples RSS every millisecond. CUDA: ``torch.cuda.max_memory_allocated``.
    """

    def __init__(self, device: str):
        self.device = device
        self.base = self.peak = 0

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    @staticmethod
    def rss() -> int:
        try:
            return PeakMemory._status("VmRSS")
        except (OSError, KeyError):
            import psutil

            return psutil.Process().memory_info().rss

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        self._thread = None
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        _malloc_trim()
        self.base = self.rss()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._hwm = True
        except OSError:
            self._hwm, self._stop, self.peak = False, threading.Event(), self.base
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        elif self._hwm:
            self.peak = self._status("VmHWM")
        else:
            self._stop.set()
            self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.base


# ------------------------------------------------------------------------------ model / runs


def run_config(args) -> dict:
    return {
        "seed": 0,
        "data": {"source": "synthetic", "seq_len": args.ctx, "test_sequences": 8, "synthetic": {"vocab_size": args.vocab}},
        "mixture": {"total_tokens": 64 * args.ctx, "repeated_fraction": 0.1, "repeat_count": 4},
        "model": {"n_layers": args.layers, "d_model": args.d_model, "n_heads": args.heads, "d_head": args.d_head, "n_ctx": args.ctx},
        "train": {"batch_size": 8, "device": "cpu", "progress": False},
    }


def perturb_norms(model, seed: int):
    """Draw the LayerNorm gains and biases away from 1 and 0 (in place), so that LayerNorm
    folding does real work; returns the model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".w"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g).to(p.device))
            elif name.endswith(".b") and "ln" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g).to(p.device))
    return model


def write_checkpoints(run: RunDir, n: int) -> None:
    """``n`` checkpoints through the real writer: seeded random models whose LayerNorm gains
    and biases are drawn away from 1 and 0, so the LayerNorm folding of OV copying does
    real work."""
    cfg, vocab = run.config(), run.manifest().vocab_size
    for i in range(n):
        model = perturb_norms(build_model(cfg.model, d_vocab=vocab, seed=i), seed=1000 + i)
        save_checkpoint(run, model, step=10 * (i + 1), tokens_seen=10 * (i + 1) * 8 * cfg.data.seq_len)


def make_runs(args, root: Path, counts: list[int]) -> dict[int, Path]:
    """A prepared run directory (real data path) copied once per checkpoint count."""
    base = prepare_run(config_from_dict(run_config(args)), root / "base", progress=False).path
    out = {}
    for n in sorted(set(counts) | {1}):
        path = root / f"run_{n}"
        shutil.copytree(base, path)
        write_checkpoints(RunDir(path), n)
        out[n] = path
    return out


# ---------------------------------------------------------------------------------- FLOPs


def scoring_flops(args, probes: Probes) -> float:
    """Model FLOPs of one checkpoint's scoring (2 per multiply-add).

    Forward over the probe batch through every layer: QKV and O projections plus the
    attention scores and mixing as full T x T matmuls (as the hooked attention computes
    them); no unembedding (no requested score reads logits). OV copying: ``W_U W_E`` once,
    then ``W_O (W_U W_E) W_V`` per head (float64, counted like float32 FLOPs); the d_head x
    d_head eigenvalue problems and LayerNorm folding are negligible and not counted.
    """
    B, T = probes.tokens.shape
    d, H, dh, V, nl = args.d_model, args.heads, args.d_head, args.vocab, args.layers
    per_token_layer = 2 * d * 3 * H * dh + 2 * H * dh * d + 2 * 2 * T * H * dh
    forward = B * T * nl * per_token_layer
    ov = 2 * d * V * d + nl * H * (2 * dh * d * d + 2 * dh * d * dh)
    return float(forward + ov)


# ----------------------------------------------------------------------------------- main


def machine() -> str:
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:
        mem = "? GiB"
    cpu = platform.processor() or platform.machine()
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{os.cpu_count()}-core {cpu} CPU, {mem}{gpu}, {platform.system()} {platform.release()}"


def revision() -> str:
    """The checkout's commit, marked ``+dirty`` when tracked files differ from it."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


# --------------------------------------------------------------------- --shape: one model, the battery

SHAPES = {
    "gpt2-small": dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024, d_vocab=50257, act_fn="gelu_new"),
    # the smoke test's: a vocabulary above copying_top1's exact threshold (its sampled path runs) and large
    # enough that one vocab x vocab matrix (1.5 GiB) would exceed everything else the battery holds
    "tiny": dict(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=128, n_ctx=64, d_vocab=20000, act_fn="gelu_new"),
}


def shape_model(shape: str, device: str):
    """A random HookedTransformer of ``shape`` whose LayerNorm gains/biases are drawn away from 1/0."""
    from repeatlens.model import HookedTransformerConfig

    hcfg = HookedTransformerConfig(**SHAPES[shape], normalization_type="LN", seed=0, device=device)
    return perturb_norms(build_model(hcfg, device=device).eval(), seed=1000)


def battery_groups(names: list[str]) -> list[list[str]]:
    """The battery as ``score_model`` runs it: the four attention scores (and the copying loss
    and gain) share one probe pass, copying_top1 and its standard error one computation."""
    from repeatlens.scores import REGISTRY

    attention = [m for m in names if REGISTRY[m].kind == "attention"]
    together = [attention, [m for m in ("copying_loss", "copying_gain") if m in names], [m for m in ("copying_top1", "copying_top1_se") if m in names]]
    rest = [[m] for m in names if not any(m in g for g in together)]
    return [g for g in together if g] + rest


def shape_main(args) -> int:
    from repeatlens.model import z_hook_name
    from repeatlens.scores import REGISTRY, model_probes, reference
    from repeatlens.scores.behaviour import copy_loss_positions, head_ablation_losses, z_means
    from repeatlens.scores.reference import _second_copy_loss
    from repeatlens.scores import weights as weights_mod

    dev = args.device
    threads = args.threads if args.threads is not None else (2 if dev == "cpu" else 0)
    if threads > 0:
        torch.set_num_threads(threads)
    print(f"date={time.strftime('%Y-%m-%d %H:%M')} commit={revision()} machine: {machine()}")
    print(f"device={dev} torch={torch.__version__} transformer_lens={md.version('transformer-lens')} threads={torch.get_num_threads()}"
          + (f" load={os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""))
    spec = SHAPES[args.shape]
    with PeakMemory(dev) as mem_build:
        model = shape_model(args.shape, dev)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"shape {args.shape}: {spec} LN, {n_params / 1e6:.1f}M parameters ({mem_build.growth / MiB:.0f} MiB to build)")
    probes = model_probes(model).to(dev)
    names = [m for m in REGISTRY if REGISTRY[m].default]  # the opt-in LLC is never in the battery
    needs_data = [m for m in names if m in ("test_loss", "repeated_loss", "memorization", "icl_score")
                  or REGISTRY[m].fn.__module__.endswith(".attribution")]  # the attribution scores: benchmarks/attribution_cost.py
    battery = [m for m in names if m not in needs_data]
    print(f"default battery: {len(battery)} scores without data ({', '.join(needs_data)} need --tokens and are skipped)")
    print(f"probes: {probes.tokens.shape[0]} rows x T={probes.seq_len}")
    vv_bytes = spec["d_vocab"] ** 2 * 4
    growths: dict[str, int] = {}
    score_model(shape_model("tiny", dev), battery, probes=None)  # warm-up: lazy imports, first-call allocations

    ways = (False, True) if args.before_after else (False,)
    label = {False: "", True: " [before: full logits]"}
    print(f"{'scores (one score_model call)':<60} {'seconds':>9} {'peak growth MiB':>16}")
    without_ablation = [m for m in battery if m != "ablation_copying_loss"]
    for group in battery_groups(without_ablation):
        for old in ways:
            weights_mod._TOP1_MEMO.clear()
            weights_mod._HEAD_WEIGHTS_MEMO.clear()
            with PeakMemory(dev) as mem:
                t, _ = timed(lambda: _both_ways(lambda: score_model(model, group, probes=probes), old), dev)
            growths[",".join(group) + label[old]] = mem.growth
            print(f"{', '.join(group)[:60 - len(label[old])] + label[old]:<60} {t:>9.2f} {mem.growth / MiB:>16.1f}")
    t_battery = {}
    for old in ways:
        weights_mod._TOP1_MEMO.clear()
        weights_mod._HEAD_WEIGHTS_MEMO.clear()
        with PeakMemory(dev) as mem:
            t_battery[old], _ = timed(lambda: _both_ways(lambda: score_model(model, without_ablation, probes=probes), old), dev)
        growths["battery" + label[old]] = mem.growth
        print(f"{'battery without ablation, one call' + label[old]:<60} {t_battery[old]:>9.2f} {mem.growth / MiB:>16.1f}")

    # ablation: the heads of the first k layers, extrapolated to all (or measured whole)
    L, H = spec["n_layers"], spec["n_heads"]
    k = L if args.ablation_layers in (0, None) or args.ablation_layers >= L else args.ablation_layers  # before: k layers measured
    t_abl, hows = {}, {}
    for old in ways:
        if k == L:
            with PeakMemory(dev) as mem:
                t_abl[old], _ = timed(lambda: _both_ways(lambda: score_model(model, ["ablation_copying_loss"], probes=probes), old), dev)
            hows[old] = "measured, every head"
        elif old:  # before: one complete forward per head
            means = torch.zeros(spec["d_head"], device=dev)

            def one_head(layer: int, head: int) -> float:
                def ablate(z, hook, head=head):
                    z[:, :, head] = means
                    return z

                return _second_copy_loss(model, probes, [(z_hook_name(layer), ablate)])

            with PeakMemory(dev) as mem, torch.inference_mode():
                t_some, _ = timed(lambda: [one_head(layer, h) for layer in range(k) for h in range(H)], dev)
                t_base, _ = timed(lambda: _second_copy_loss(model, probes, []), dev)
            per_head = t_some / (k * H)
            t_abl[old] = per_head * L * H + 2 * t_base  # + the means pass and the unablated pass
            hows[old] = f"EXTRAPOLATED from {k * H} of {L * H} heads ({per_head:.2f} s a head)"
        else:  # after: a head of layer l re-runs blocks l..L-1: the first and the last layer, then a line between them
            with PeakMemory(dev) as mem, torch.inference_mode():
                second = torch.arange(*copy_loss_positions(probes.copy_len)[1].indices(2 * probes.copy_len))
                t_means, means = timed(lambda: z_means(model, probes.copy_tokens), dev)
                t_first, _ = timed(lambda: head_ablation_losses(model, probes.copy_tokens, means, second, layers=[0]), dev)
                t_last, _ = timed(lambda: head_ablation_losses(model, probes.copy_tokens, means, second, layers=[L - 1]), dev)
            # t(l) = a + b (L - l) blocks: t(0) = a + b L, t(L-1) = a + b; the clean pass is in both, counted once
            b = (t_first - t_last) / max(L - 1, 1)
            a = t_last - b
            t_abl[old] = t_means + L * a + b * L * (L + 1) / 2
            hows[old] = (f"ESTIMATED: layer 0's {H} heads {t_first:.1f} s, layer {L - 1}'s {t_last:.1f} s, linear in the blocks "
                         f"re-run between them (at most {t_means + L * t_first:.0f} s: every layer as dear as layer 0)")
        growths["ablation_copying_loss" + label[old]] = mem.growth
        print(f"{'ablation_copying_loss' + label[old]:<60} {t_abl[old]:>9.2f} {mem.growth / MiB:>16.1f}   {hows[old]}")
    how = hows[False]

    # analyze: a TransformerLens folder holding this model, the battery without ablation
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "gpt2-shape"
        folder.mkdir()
        import json

        torch.save({k2: v.cpu() for k2, v in model.state_dict().items()}, folder / "model_0.pt")
        (folder / "config.json").write_text(json.dumps(model.cfg.to_dict(), default=str))
        del model
        gc.collect()
        with PeakMemory(dev) as mem:
            t_an, res = timed(lambda: analyze(folder, without_ablation, progress=False, device=dev), dev)
        if res.scored != 1 or res.failures:
            raise SystemExit(f"analyze scored {res.scored} checkpoint(s): {res.failures}")
    growths["analyze"] = mem.growth
    mem_what = "GPU allocated" if dev.startswith("cuda") else "RSS"
    print(f"{'analyze, 1 checkpoint (load+scores+table)':<60} {t_an:>9.2f} {mem.growth / MiB:>16.1f}   peak {mem_what} {mem.peak / MiB:.0f} MiB")
    per_ckpt = t_an + t_abl[False]
    print(f"per checkpoint, default battery: {per_ckpt:.1f} s = analyze {t_an:.1f} s + ablation {t_abl[False]:.1f} s ({how})")
    if args.before_after:
        print(f"before/after: battery without ablation {t_battery[True]:.1f} -> {t_battery[False]:.1f} s "
              f"({t_battery[True] / t_battery[False]:.2f}x), ablation {t_abl[True]:.0f} -> {t_abl[False]:.0f} s ({t_abl[True] / t_abl[False]:.2f}x)")
    worst = max(growths.values())
    ok = worst < vv_bytes
    print(f"check no_vocab_square: {'ok' if ok else 'FAILED'} (largest peak growth {worst / MiB:.0f} MiB; "
          f"one {spec['d_vocab']} x {spec['d_vocab']} float32 matrix is {vv_bytes / MiB:.0f} MiB)")
    if not ok:
        return 3
    print(f"seconds_per_checkpoint={per_ckpt:.3f}")
    sys.stdout.flush()
    return 0


# --------------------------------------------------------------- --vocab-cost: a GPT-2 vocabulary


def gpt2_folder(root: Path, vocab: int, seed: int = 0) -> Path:
    """One ``step1000`` revision of a random 2-layer, d_model-64 GPT-2 written by transformers."""
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=64, n_layer=2, n_head=4, bos_token_id=vocab - 1,
                                  eos_token_id=vocab - 1)
    folder = root / f"gpt2-d64-v{vocab}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.GPT2LMHeadModel(cfg).eval().save_pretrained(folder / "step1000")
    return folder


def _both_ways(fn: Callable, old: bool):
    from repeatlens.scores import reference

    if not old:
        return fn()
    with reference.full_logits():
        return fn()


def vocabulary_floor(model, probes, names: list[str], dev: str) -> dict[str, float]:
    """What the definitions themselves cost at this vocabulary, beside everything else the
    analysis does: the number of next-token losses the battery reads over the whole vocabulary
    (counted by wrapping ``behaviour._next_token_stats`` during one ``score_model`` call), that
    many rows through the tiled kernel alone (random residuals: the same work), and the
    top-1 copying estimate alone (``n_heads x 512 x vocab`` OV logits)."""
    from repeatlens.scores import behaviour, score_model
    from repeatlens.scores import weights as weights_mod

    counted: list[int] = []
    real = behaviour._next_token_stats

    def counting(unembed, resid, targets, greedy=False):
        counted.append(int(resid.shape[0]))
        return real(unembed, resid, targets, greedy)

    behaviour._next_token_stats = counting
    try:
        score_model(model, names, probes=probes)
    finally:
        behaviour._next_token_stats = real
    n, V = sum(counted), int(model.cfg.d_vocab)
    g = torch.Generator().manual_seed(0)
    resid = torch.randn(n, model.cfg.d_model, generator=g).to(dev)
    targets = torch.randint(0, V, (n,), generator=g).to(dev)
    unembed = behaviour.Unembedding(model)
    with torch.inference_mode():
        real(unembed, resid[:8], targets[:8])  # warm-up
        t_lse, _ = timed(lambda: real(unembed, resid, targets), dev)

    def top1():
        weights_mod._TOP1_MEMO.clear()
        weights_mod._HEAD_WEIGHTS_MEMO.clear()
        return weights_mod.top1_copying_estimate(model)

    t_top1, _ = timed(top1, dev)
    heads = model.cfg.n_layers * model.cfg.n_heads
    sample = weights_mod.top1_sample(V)
    return {"positions": n, "lse": t_lse, "top1": t_top1, "top1_elements": heads * (V if sample is None else sample.numel()) * V}


def vocab_cost_main(args) -> int:
    import contextlib
    import io

    from repeatlens.analysis.foreign_source import _foreign_probe_source
    from repeatlens.analysis.loop import _Item
    from repeatlens.foreign import discover
    from repeatlens.results.store import load_scores
    from repeatlens.scores import REGISTRY, ProbeSpec, build_probes, default_metrics
    from repeatlens.scores import weights as weights_mod

    dev = args.device
    if args.threads is not None and args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"date={time.strftime('%Y-%m-%d %H:%M')} commit={revision()} machine: {machine()}")
    print(f"device={dev} torch={torch.__version__} transformer_lens={md.version('transformer-lens')} threads={torch.get_num_threads()}"
          + (f" load={os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""))
    vocabs = tuple(int(v) for v in args.vocabs.split(","))
    if len(vocabs) != 2 or vocabs[0] <= vocabs[1]:
        raise SystemExit(f"--vocabs {args.vocabs}: expected LARGE,SMALL")
    big, small = vocabs
    with tempfile.TemporaryDirectory() as tmp:
        folders = {v: gpt2_folder(Path(tmp), v) for v in vocabs}
        print("shape: GPT-2, 2 layers, d_model 64, 4 heads x 16, MLP 256, n_ctx 64, LayerNorm; one revision per vocabulary; "
              "repeatlens.analyze FOLDER (default battery, no --tokens)")

        def analyse(v: int, old: bool) -> tuple[float, int]:
            quiet = io.StringIO()
            with PeakMemory(dev) as mem, contextlib.redirect_stderr(quiet):
                t, res = timed(lambda: _both_ways(lambda: analyze(folders[v], progress=False, force=True, device=dev), old), dev)
            if res.scored != 1 or res.failures:
                raise SystemExit(f"analyze scored {res.scored} checkpoint(s): {res.failures}")
            return t, mem.growth

        tables = {}
        for v in vocabs:  # warm-up, and the two ways' tables
            for old in (True, False):
                analyse(v, old)
                tables[v, old] = load_scores(folders[v]).sort_values(["metric", "layer", "head", "offset"]).reset_index(drop=True)
        worst = max(float((tables[v, True]["value"] - tables[v, False]["value"]).abs().max()) for v in vocabs)
        same = all(tables[v, True][["metric", "layer", "head"]].equals(tables[v, False][["metric", "layer", "head"]]) for v in vocabs)
        ways = [(v, old) for v in vocabs for old in (False, True)]
        times: dict = {w: [] for w in ways}
        peaks: dict = {w: [] for w in ways}
        for r in range(args.repeats):
            for w in ways[r % len(ways):] + ways[: r % len(ways)]:
                t, g = analyse(*w)
                times[w].append(t)
                peaks[w].append(g)
        med = {w: statistics.median(times[w]) for w in ways}
        print(f"repeatlens.analyze, one checkpoint (median of {args.repeats}, alternating; peak RSS growth above the call's start)")
        print(f"{'vocabulary':>10} {'way':<34} {'seconds':>8} {'peak MiB':>9}   runs")
        for v, old in ways:
            way = "before (full logits, a pass per head)" if old else "after"
            runs = ", ".join(f"{x:.2f}" for x in times[v, old])
            print(f"{v:>10} {way:<34} {med[v, old]:>8.2f} {statistics.median(peaks[v, old]) / MiB:>9.0f}   {runs}")
        ratio_new, ratio_old = med[big, False] / med[small, False], med[big, True] / med[small, True]
        print(f"vocabulary {big:,} / {small:,}: before {ratio_old:.2f}x, after {ratio_new:.2f}x (target <= 2: {'met' if ratio_new <= 2 else 'NOT met'}); "
              f"speed-up at {big:,}: {med[big, True] / med[big, False]:.2f}x, at {small:,}: {med[small, True] / med[small, False]:.2f}x")
        print(f"check same_results: {'ok' if same and worst <= 1e-4 else 'FAILED'} (largest |before - after| over both tables: {worst:.1e})")

        # where the time goes: each group of the battery alone, both ways
        print(f"{'score group (one score_model call)':<52} " + " ".join(f"{f'v{v} {w}':>12}" for v in vocabs for w in ("before", "after")))
        models = {}
        for v in vocabs:
            folder = discover(folders[v])
            ckpt = folder.checkpoints[0]
            model = folder.load_model(ckpt, dev)
            source = _foreign_probe_source(model, _Item(Path(ckpt.name), ckpt.step, ckpt.tokens_seen, lambda: None, ckpt.special), None)
            models[v] = (model, build_probes(source.resolve(ProbeSpec("uniform")), source).to(dev))
        names = [m for m in default_metrics(8)[0] if REGISTRY[m].kind != "behaviour" or REGISTRY[m].reads_probe]
        for group in battery_groups(names):
            cells = []
            for v in vocabs:
                model, probes = models[v]
                for old in (True, False):
                    weights_mod._TOP1_MEMO.clear()  # each call computes its weights anew, as in analyze
                    weights_mod._HEAD_WEIGHTS_MEMO.clear()
                    t, _ = timed(lambda: _both_ways(lambda: score_model(model, group, probes=probes), old), dev)
                    cells.append(f"{t:>12.3f}")
            print(f"{', '.join(group)[:52]:<52} " + " ".join(cells))
        floor = vocabulary_floor(*models[big], names, dev)
        print(f"the floor at {big:,}: the battery reads {floor['positions']:,} next-token losses over the whole vocabulary (the copying "
              f"loss and gain, the ablation's clean and per-head passes): {floor['lse']:.3f} s in the tiled kernel alone on random "
              f"residuals; copying_top1's argmax over {floor['top1_elements']:,} OV logits: {floor['top1']:.3f} s; together "
              f"{floor['lse'] + floor['top1']:.2f} s = {(floor['lse'] + floor['top1']) / med[small, False]:.2f}x the whole analysis at "
              f"{small:,} (the <= 2 target leaves {med[small, False]:.2f} s for them beside everything else)")
    if not (same and worst <= 1e-4):
        return 1
    print(f"ratio={ratio_new:.3f}")
    sys.stdout.flush()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default=None, help="time the default battery alone on a random model of this shape")
    p.add_argument("--before-after", action="store_true", help="--shape: also time the pre-issue-23 computation (full logits, a pass per head)")
    p.add_argument("--vocab-cost", action="store_true", help="a 2-layer GPT-2 at vocabulary 50,257 against 256, analysed before and after issue 23")
    p.add_argument("--vocabs", default="50257,256", help="--vocab-cost: the two vocabulary sizes, LARGE,SMALL")
    p.add_argument("--ablation-layers", type=int, default=None, help="--shape: time the ablation score on the first K layers' heads and extrapolate (0: all)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--d-head", type=int, default=16)
    p.add_argument("--vocab", type=int, default=1024, help="the naive OV eig costs ~vocab^3 per head")
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--probe-batch", type=int, default=16, help="copy rows, and as many prefix rows")
    p.add_argument("--repeats", type=int, default=5, help="alternating timings of the attention scores and of repeatlens")
    p.add_argument("--eig-repeats", type=int, default=1, help="timings of the naive OV eig (the slow part)")
    p.add_argument("--checkpoints", default="1,2,4,8", help="checkpoint counts N for the scaling table")
    p.add_argument("--scaling-repeats", type=int, default=2)
    p.add_argument("--no-scaling-check", action="store_true", help="report the scaling table but do not fail on it")
    p.add_argument("--peak-n", type=int, default=2048, help="matrix size of the peak-matmul measurement")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads for everything; default 1 on the CPU (shared machines: two contended threads "
                        "made one LAPACK eig up to 17x slower), torch's own choice with --device cuda; 0: torch's choice")
    args = p.parse_args()
    if args.vocab_cost:
        return vocab_cost_main(args)
    if args.shape is not None:
        return shape_main(args)
    dev = args.device
    threads = args.threads if args.threads is not None else (1 if dev == "cpu" else 0)
    if threads > 0:
        torch.set_num_threads(threads)
    counts = sorted({int(x) for x in args.checkpoints.split(",")})
    # detect_head needs T < n_ctx; Olsson's P = 25 whenever the context allows it
    P = min(25, (args.ctx - 2) // 4)
    if P < 1 or args.vocab < 2 * P + 2:
        p.error(f"--ctx {args.ctx} / --vocab {args.vocab}: need ctx >= 6 and vocab >= {2 * P + 2} (copy blocks drawn without replacement)")

    print(f"date={time.strftime('%Y-%m-%d %H:%M')} commit={revision()} machine: {machine()}")
    print(f"device={dev} torch={torch.__version__} transformer_lens={md.version('transformer-lens')} threads={torch.get_num_threads()}")
    print(f"shape: {args.layers}L attn-only d_model={args.d_model} heads={args.heads}x{args.d_head} vocab={args.vocab} n_ctx={args.ctx} LN")

    with tempfile.TemporaryDirectory() as tmp:
        runs = make_runs(args, Path(tmp), counts)
        run1 = RunDir(runs[1])
        model = model_from_state_dict(run1.hooked_config(dev), run1.checkpoint().load_state_dict(), device=dev)
        probes = make_probes(args.vocab, args.ctx, seed=0, batch=args.probe_batch, prefix_len=P).to(dev)
        print(f"probes: {probes.tokens.shape[0]} rows x T={probes.seq_len} (L={probes.copy_len}, P={probes.prefix_len})")
        nl, nh = args.layers, args.heads

        # ---------------------------------------------------------- one checkpoint, side by side
        base = baseline_fns(model, probes)
        ours_all = lambda: score_model(model, METRICS, probes=probes)  # noqa: E731
        ours_attn = lambda: score_model(model, ATTENTION, probes=probes)  # noqa: E731
        ours_one = {m: (lambda m=m: score_model(model, [m], probes=probes)) for m in METRICS}
        ours_all()  # warm-up: first-call allocations, lazy imports
        base["induction"]()
        tb: dict[str, list[float]] = {m: [] for m in METRICS}
        to: dict[str, list[float]] = {m: [] for m in METRICS}
        t_all: list[float] = []
        t_attn: list[float] = []
        results: dict[str, torch.Tensor] = {}
        for r in range(max(args.repeats, args.eig_repeats)):
            for m in METRICS:
                if r < (args.eig_repeats if m == "copying_ov" else args.repeats):
                    t, val = timed(base[m], dev)
                    tb[m].append(t)
                    results.setdefault(m, val)
            if r < args.repeats:
                t, df = timed(ours_all, dev)
                t_all.append(t)
                ours_df = df
                t_attn.append(timed(ours_attn, dev)[0])
                for m in METRICS:
                    to[m].append(timed(ours_one[m], dev)[0])

        # ------------------------------------------------------------------------ same results
        problems = []
        print("per score type, each side computing that score alone (repeatlens: one score_model call, its own forward pass):")
        print(f"{'score':<16} {'baseline s':>11} {'repeatlens s':>13} {'ratio':>9}   same results")
        for m in METRICS:
            ours = per_head(ours_df, m, nl, nh)
            f = tl_factor(m, probes)
            diff = (results[m].double() - f * ours).abs().max().item()
            tol = 1e-6 if m == "copying_ov" else 1e-4
            ok = diff <= tol
            if not ok:
                problems.append(f"{m}: max |baseline - {f:.4f} * repeatlens| = {diff:.2e} > {tol:g}")
            mb, mo = statistics.median(tb[m]), statistics.median(to[m])
            how = "eigvals equal" if m == "copying_ov" else f"baseline = {f:.4f} x ours"
            print(f"{m:<16} {mb:>11.4f} {mo:>13.4f} {mb / mo:>8.1f}x   {'ok' if ok else 'FAILED'} ({how}, max diff {diff:.1e})")
        t_base = sum(statistics.median(tb[m]) for m in METRICS)
        t_base_attn = sum(statistics.median(tb[m]) for m in ATTENTION)
        t_ours = statistics.median(t_all)
        print(f"{'all five':<16} {t_base:>11.4f} {t_ours:>13.4f} {t_base / t_ours:>8.1f}x   "
              f"(repeatlens runs: {', '.join(f'{x:.4f}' for x in t_all)})")
        t_ours_attn = statistics.median(t_attn)
        print(f"{'attention x4':<16} {t_base_attn:>11.4f} {t_ours_attn:>13.4f} {t_base_attn / t_ours_attn:>8.1f}x   "
              f"(no OV; repeatlens in one pass, runs: {', '.join(f'{x:.4f}' for x in t_attn)})")

        # -------------------------------------------------------------------------------- MFU
        peak = peak_matmul_flops(dev, n=args.peak_n)
        flops = scoring_flops(args, probes)
        print(f"MFU repeatlens scoring {flops / t_ours / peak:.2%} ({flops / 1e9:.3f} GFLOP in {t_ours * 1e3:.1f} ms = "
              f"{flops / t_ours / 1e9:.2f} GFLOP/s; peak fp32 matmul {peak / 1e9:.1f} GFLOP/s measured at n={args.peak_n})")
        del model, base, ours_all, ours_one

        # ---------------------------------------------------------------------- N checkpoints
        def analyse(n: int) -> tuple[float, int, int]:
            (runs[n] / "scores.parquet").unlink(missing_ok=True)
            with PeakMemory(dev) as mem:
                t, res = timed(lambda: analyze(runs[n], METRICS, progress=False, device=dev), dev)
            if res.scored != n or res.failures:
                raise SystemExit(f"analyze scored {res.scored} of {n} checkpoints: {res.failures}")
            return t, mem.growth, mem.peak

        analyse(1)  # warm-up
        times: dict[int, list[float]] = {n: [] for n in counts}
        grow: dict[int, list[int]] = {n: [] for n in counts}
        peaks: dict[int, list[int]] = {n: [] for n in counts}
        for r in range(args.scaling_repeats):
            for n in counts if r % 2 == 0 else counts[::-1]:
                t, g, pk = analyse(n)
                times[n].append(t)
                grow[n].append(g)
                peaks[n].append(pk)
    mem_what = "GPU allocated" if dev.startswith("cuda") else "RSS"
    print(f"repeatlens.analyze on N checkpoints (median of {args.scaling_repeats}; memory: peak {mem_what} above the start of the call)")
    print(f"{'N ckpts':>7} {'analyze s':>10} {'s / ckpt':>9} {'peak growth MiB':>16} {'peak ' + mem_what + ' MiB':>16}")
    tmed = {n: statistics.median(times[n]) for n in counts}
    gmed = {n: statistics.median(grow[n]) / MiB for n in counts}
    for n in counts:
        print(f"{n:>7} {tmed[n]:>10.3f} {tmed[n] / n:>9.3f} {gmed[n]:>16.1f} {max(peaks[n]) / MiB:>16.1f}")
    n0, n1 = counts[0], counts[-1]
    scaling = []
    if n1 > n0:
        # least-squares t(N) = a + b N: a is the per-call cost (run directory, table), b per checkpoint
        mn, mt = statistics.fmean(counts), statistics.fmean(tmed.values())
        b = sum((n - mn) * (tmed[n] - mt) for n in counts) / sum((n - mn) ** 2 for n in counts)
        a = mt - b * mn
        lin = (tmed[n1] / tmed[n0]) / (n1 / n0)
        allowed = 16 + 0.5 * gmed[n0]
        mfu = f"MFU {flops / b / peak:.2%} per checkpoint, loading and the table included" if b > 0 else "no slope"
        print(f"t({n1})/t({n0}) = {tmed[n1] / tmed[n0]:.2f} = {lin:.2f} x linear; fit t(N) = {a:.3f} s + {b:.3f} s x N ({mfu})")
        print(f"peak growth N={n0} -> N={n1}: {gmed[n0]:.1f} -> {gmed[n1]:.1f} MiB (allowed up to {gmed[n0] + allowed:.1f})")
        if not 0.5 <= lin <= 1.5:
            scaling.append(f"t({n1})/t({n0}) is {lin:.2f}x linear, outside 0.5-1.5")
        if gmed[n1] - gmed[n0] > allowed:
            scaling.append(f"peak memory grew {gmed[n1] - gmed[n0]:.1f} MiB from N={n0} to N={n1} (allowed {allowed:.1f})")

    print(f"check same_results: {'ok' if not problems else 'FAILED'}")
    print(f"check scaling: {'ok' if not scaling else 'FAILED'}{' (not enforced)' if scaling and args.no_scaling_check else ''}")
    for line in problems + scaling:
        print(f"  {line}", file=sys.stderr)
    if problems:
        return 1
    if scaling and not args.no_scaling_check:
        return 2
    print(f"ratio={t_base / t_ours:.3f}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
