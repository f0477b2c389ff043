"""Training: prepare a run directory, then one plain loop.

``train(cfg, out)`` validates everything and draws the data before it creates ``out`` (a bad
spec never leaves a half-written run directory), trains with AdamW, warmup then cosine /
linear decay and gradient clipping, evaluates test and repeated-subset loss at every
checkpoint, and saves checkpoints on the declared schedule. Run it again on the same
directory to continue an unfinished run from its last checkpoint (bit-identical to an
uninterrupted run on the same device and thread count: training runs under torch's
deterministic algorithms, see :mod:`repeatlens.determinism`), or to do nothing for a
finished one.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from repeatlens import determinism
from repeatlens import model as adapter
from repeatlens.checkpoints import (
    CKPT_DIR,
    MANIFEST_FORMAT,
    RECORDED_FILES,
    RunDir,
    file_record,
    load_train_state,
    prune_train_states,
    restore_optimizer,
    restore_rng,
    save_checkpoint,
)
from repeatlens.config import RunConfig
from repeatlens.data.mixture import MixturePlan, build_schedule, plan_mixture, schedule_hash
from repeatlens.data.pools import Pool, build_pool
from repeatlens.data.streams import Corpus, cache_root, load_corpus
from repeatlens.data.seeds import manifest_seeds
from repeatlens.data.synthetic import GENERATION_BYTES_PER_TOKEN
from repeatlens.errors import CheckpointError, ConfigError, LockTimeout, RepeatlensError, ResourceError, first_line, shorten
from repeatlens.io import LOCK_FILE, atomic_save_npy, atomic_write_json, atomic_write_text, file_lock, sha256_file, write_failure
from repeatlens.losses import batched_losses, next_token_loss, token_losses
from repeatlens.precision import Precision, matmul_settings, micro_batches
from repeatlens.checkpoints.manifest import Manifest


class TrainingError(RepeatlensError):
    """Training cannot go on (e.g. a non-finite loss)."""


def resolve_device(name: str) -> str:
    """``train.device`` as a torch device (:func:`repeatlens.devices.resolve_device`)."""
    from repeatlens.devices import resolve_device as resolve

    return resolve(name, where="train.device")


def lr_at(step: int, total: int, cfg) -> float:
    """Learning rate at ``step``: linear warmup, then cosine / linear decay to min_lr_ratio·lr."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    if t.decay == "constant" or total <= t.warmup_steps:
        return t.lr
    frac = min((step - t.warmup_steps) / max(total - t.warmup_steps, 1), 1.0)
    shape = 0.5 * (1 + math.cos(math.pi * frac)) if t.decay == "cosine" else 1 - frac
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * shape)


def lm_loss(logits: Tensor, tokens: Int[Tensor, "batch pos"]) -> Tensor:
    """Deprecated name of :func:`repeatlens.losses.next_token_loss`."""
    return next_token_loss(logits, tokens)


@torch.inference_mode()
def eval_loss(model, tokens: np.ndarray, batch_size: int, device: str, fast: bool = True) -> float:
    """Mean next-token loss (nats/token) of ``model`` on ``tokens`` [n, seq_len]
    (:func:`repeatlens.losses.token_losses`, as the ``test_loss`` score reads it)."""
    return eval_loss_se(model, tokens, batch_size, device, fast)[0]


def eval_loss_se(model, tokens: np.ndarray, batch_size: int, device: str, fast: bool = True) -> tuple[float, float]:
    """:func:`eval_loss` and its standard error over the sequences: the sample standard
    deviation of the per-sequence mean losses over sqrt(n) (NaN for one sequence). Every
    sequence has the same length, so the mean of the per-sequence means is the mean loss."""
    if not len(tokens):
        return 0.0, float("nan")
    seqs = batched_losses(lambda t: token_losses(adapter.logits(model, t, fast), t).detach().double().mean(dim=1), tokens,
                          batch_size, device).numpy()
    se = float(seqs.std(ddof=1) / np.sqrt(len(seqs))) if len(seqs) > 1 else float("nan")
    return float(seqs.mean()), se


def eval_sets(run: RunDir, n: int) -> dict[str, np.ndarray]:
    """The sequences each evaluation split reads, at most ``n`` each.

    ``test`` and ``repeated``: the first ``n`` held-out and repeated-subset rows. For a run
    that mixes a corpus with the synthetic source, also ``test_text``/``test_synthetic``
    and ``repeated_text``/``repeated_synthetic``: the first ``n`` rows of each kind, so the
    natural-text loss is never diluted by (or mistaken for) in-context copying loss.
    Empty splits are left out.
    """
    man, pool = run.manifest(), run.pool()
    n_test, n_rep = man.n_test, man.n_repeated
    rows = {"test": np.arange(n_test), "repeated": n_test + np.arange(n_rep)}
    kinds = run.mixed_kinds()
    if kinds is not None:
        for split, idx in list(rows.items()):
            rows[f"{split}_text"] = idx[~kinds[idx]]
            rows[f"{split}_synthetic"] = idx[kinds[idx]]
    return {split: np.asarray(pool[idx[:n]]) for split, idx in rows.items() if len(idx)}


# ------------------------------------------------------------------------------ set-up


@dataclass
class DrawnData:
    """A run's data, drawn in memory from its config (nothing written yet)."""

    plan: MixturePlan
    corpus: Corpus
    pool: Pool
    schedule: np.ndarray
    total_steps: int


def draw_data(cfg: RunConfig, *, progress: bool = True) -> DrawnData:
    """Plan the mixture, load (or tokenize into the cache) the corpus, check that this
    machine has the memory for the run, and draw the pool and schedule, writing nothing
    into the run directory.

    Raises:
        ConfigError / DataError: an impossible spec, a corpus that is missing or too small.
        ResourceError: the pool, schedule or model would not fit in this machine's memory.
    """
    plan = plan_mixture(cfg.mixture, cfg.data.seq_len)
    corpus = load_corpus(cfg.data, progress=progress)
    check_memory(cfg, plan, corpus.vocab_size)
    pool = build_pool(cfg.data, plan, corpus, cfg.seed, source=cfg.mixture.repeated_source)
    schedule = build_schedule(plan, first_repeated=pool.first_repeated, first_unique=pool.first_unique, seed=cfg.seed)
    return DrawnData(plan, corpus, pool, schedule, math.ceil(plan.n_total / cfg.train.batch_size))


def check_memory(cfg: RunConfig, plan: MixturePlan, vocab_size: int) -> None:
    """Refuse a run that cannot fit in this machine's memory, before anything is drawn.

    Only what must be in memory at once is counted, so the estimate is a lower bound and a
    run that would have fit is never refused (one that nearly fills the machine may still
    fail later, as one line): the pool's row references (``rows x 8`` bytes; the corpus rows
    stay memory-mapped) and its synthetic rows (``data.synthetic_fraction x rows x seq_len`` ids
    of 2 or 4 bytes, and while they are drawn 9 bytes more a token:
    :data:`repeatlens.data.synthetic.GENERATION_BYTES_PER_TOKEN`), the schedule (``slots x 8`` bytes), and on the training device the
    model's weights, gradients and AdamW's two moments (``4 x 4`` bytes a parameter) and one
    forward's logits (``micro-batch x seq_len x vocab x 4`` bytes).

    Raises:
        ResourceError: naming the largest part, the total and what the machine (or GPU) has.
    """
    m, d, t = cfg.model, cfg.data, cfg.train
    rows = plan.n_repeated + plan.n_unique + d.test_sequences
    synthetic_rows = math.floor(rows * d.synthetic_share)
    host = {"the pool's row references (mixture.total_tokens / data.seq_len, data.test_sequences)": rows * 8,
            "the pool's synthetic rows (data.synthetic_fraction, data.seq_len)": synthetic_rows * d.seq_len * (2 if vocab_size <= 2**16 else 4),
            "drawing the synthetic rows (data.synthetic_fraction, data.seq_len)": synthetic_rows * d.seq_len * GENERATION_BYTES_PER_TOKEN,
            "the schedule (mixture.total_tokens / data.seq_len slots)": plan.n_total * 8}
    micro = t.micro_batch_size or t.batch_size
    model = {"the model's weights, gradients and AdamW moments (model)": 16 * m.n_params(vocab_size),
             "one forward's logits (train.micro_batch_size or batch_size x data.seq_len x vocabulary)": micro * d.seq_len * vocab_size * 4}
    device = resolve_device(t.device)
    gpu = _device_memory(device)
    budgets = [(host if gpu is not None else {**host, **model}, _host_memory(), "this machine has")]
    if gpu is not None:
        budgets.append((model, gpu, f"{device} has"))
    for parts, available, has in budgets:
        need = sum(parts.values())
        if available is not None and need > available:
            largest = max(parts, key=parts.get)
            raise ResourceError(
                f"the run needs at least {need / 2**30:,.1f} GiB of memory ({largest}: {parts[largest] / 2**30:,.1f} GiB), "
                f"but {has} {available / 2**30:,.1f} GiB; lower those sizes"
            )


def _host_memory() -> Optional[int]:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit if lower."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            total = min(total, int(Path(limit_file).read_text().strip()))
    return total


def _device_memory(device: str) -> Optional[int]:
    """Bytes of memory of a CUDA device; None for the CPU (and MPS, which shares the host's)."""
    if not device.startswith("cuda"):
        return None
    return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)


def check_wandb(cfg: RunConfig) -> None:
    """``train.wandb`` can start: the package is installed and, for ``mode: online``, a
    W&B API key is configured (``WANDB_API_KEY``, or a ``wandb login`` entry in ~/.netrc).

    Raises:
        ConfigError: naming the field and what to do instead.
    """
    w = cfg.train.wandb
    if not w.enabled:
        return
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        raise ConfigError("train.wandb.enabled = true but wandb is not installed; pip install 'repeatlens[wandb]'")
    if w.mode != "online" or os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    with contextlib.suppress(OSError, netrc.NetrcParseError):
        if netrc.netrc(os.environ.get("NETRC")).authenticators(host or ""):
            return
    raise ConfigError(
        f"train.wandb.mode = 'online' but no W&B API key is configured for {host} (WANDB_API_KEY or `wandb login`); "
        "log in, or set train.wandb.mode: offline"
    )


def _write_run(cfg: RunConfig, run: RunDir, drawn: DrawnData) -> RunDir:
    """Write a run directory's data, manifest and (last) config, under the run's train lock.

    ``config.yaml`` is written after everything else, so a directory without it is not a
    run (and has no checkpoints: :func:`_refuse_to_rewrite`); the manifest records the
    sha256 and size of every file, ``config.yaml``'s included (manifest format 3).
    """
    plan, corpus, pool, schedule = drawn.plan, drawn.corpus, drawn.pool, drawn.schedule
    _remove_temporaries(run)
    if pool.synthetic is not None:  # the shared cache keeps the rows; the run keeps how to regenerate them
        cached = cache_root(cfg.data) / pool.synthetic.cache_name
        if not cached.is_file():
            atomic_save_npy(cached, pool.synthetic_tokens)
    atomic_save_npy(run.rows_path, pool.rows)
    atomic_save_npy(run.is_synthetic_path, pool.is_synthetic)
    atomic_save_npy(run.schedule_path, schedule)
    if corpus.tokenizer_json is not None:
        atomic_write_text(run.tokenizer_path, corpus.tokenizer_json)
    else:
        run.tokenizer_path.unlink(missing_ok=True)  # left by an earlier, unfinished set-up from a text corpus
    config_text = cfg.to_yaml()
    files = {rel: file_record(run.path / rel) for rel in RECORDED_FILES if rel != "config.yaml" and (run.path / rel).is_file()}
    files["config.yaml"] = file_record(run.config_path, config_text.encode("utf-8"))
    manifest = Manifest(
        format_version=MANIFEST_FORMAT,
        run_id=run.run_id,
        total_tokens=plan.total_tokens,
        repeated_fraction=plan.repeated_fraction,
        repeat_count=plan.repeat_count,
        repeated_tokens=plan.repeated_tokens,
        requested=cfg.mixture.model_dump(),
        plan=plan.summary(),
        seq_len=cfg.data.seq_len,
        vocab_size=corpus.vocab_size,
        n_test=pool.n_test,
        n_repeated=pool.n_repeated,
        n_unique=pool.n_unique,
        n_synthetic=pool.n_synthetic,
        synthetic_ids=pool.synthetic_ids,
        n_params=cfg.model.n_params(corpus.vocab_size),
        n_params_nonembedding=cfg.model.n_params(corpus.vocab_size, embeddings=False),
        repeated_ids=list(range(pool.first_repeated, pool.first_unique)),
        test_ids=[0, pool.n_test],
        schedule={"file": "data/schedule.npy", "sha256": schedule_hash(schedule), "slots": int(len(schedule))},
        pool={"layout": "reference", "rows": "data/rows.npy", "rows_sha256": files["data/rows.npy"]["sha256"],
              "is_synthetic": "data/is_synthetic.npy", "is_synthetic_sha256": files["data/is_synthetic.npy"]["sha256"],
              "n_rows": int(len(pool.rows)), "dtype": str(corpus.dtype),
              "synthetic": pool.synthetic.to_json() if pool.synthetic is not None else None},
        seeds=manifest_seeds(cfg.seed),
        corpus={"source": cfg.data.source, "fingerprint": corpus.fingerprint,
                "stream": corpus.stream.to_json() if corpus.stream is not None else None},
        tokenizer="tokenizer.json" if corpus.tokenizer_json is not None else None,
        special_ids=corpus.special.to_json(),
        batch_size=cfg.train.batch_size,
        total_steps=drawn.total_steps,
        checkpoint_steps=cfg.train.checkpoints.steps(drawn.total_steps),
        files=files,
    ).to_json()
    atomic_write_json(run.manifest_path, manifest)
    atomic_write_text(run.config_path, config_text)
    return run


def _remove_temporaries(run: RunDir) -> None:
    """Remove the temporaries of writes a crash interrupted (see :mod:`repeatlens.io`); under the train lock."""
    for tmp in run.path.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _unstarted_run_of_another_config(run: RunDir, cfg: RunConfig) -> bool:
    """Whether ``run`` was set up for another config but never trained (no checkpoint,
    metrics or completion record: it failed before step 0); it is then set up again for ``cfg``
    rather than blocking it, and says so on stderr. Under the train lock."""
    if run.complete_path.exists() or run.metrics_path.exists() or any(run.ckpt_dir.glob("step_*")):
        return False
    try:
        _check_same_config(run, cfg)
        return False
    except RepeatlensError as e:  # another config, or one that no longer reads
        print(f"note: {run.path} held a run set up for another config that never trained; setting it up again ({shorten(str(e), 300)})",
              file=sys.stderr, flush=True)
        run.config_path.unlink()  # first: a directory without config.yaml is not a run, whatever happens next
        return True


def _refuse_to_rewrite(run: RunDir) -> None:
    """Before (re)writing a run directory's data: refuse one that holds a run's results
    (checkpoints, metrics, a completion record: its config.yaml was lost) or is not a run at all.

    Raises:
        CheckpointError: one line naming the directory and what it holds.
    """
    if not run.path.is_dir():
        return
    results = [p.name for p in (run.complete_path, run.metrics_path) if p.exists()]
    results += [f"{len(list(run.ckpt_dir.glob('step_*.json')))} checkpoint(s)"] if any(run.ckpt_dir.glob("step_*")) else []
    if results:
        raise CheckpointError(
            f"{run.config_path}: missing, but the run directory holds {', '.join(results)}; its data is not rewritten "
            "without the config it was trained with: restore config.yaml, or train into another --out"
        )
    ours = {"data", "config.yaml", "manifest.json", "tokenizer.json", TRAIN_LOCK, LOCK_FILE, CKPT_DIR}
    others = sorted(p.name for p in run.path.iterdir() if p.name not in ours)
    if others:
        raise CheckpointError(
            f"{run.path}: directory exists and holds files that are not a repeatlens run's ({shorten(', '.join(others[:5]))}); choose another --out"
        )


def _make_run_dir(run: RunDir) -> bool:
    """Create the run directory (and its parents); True when this call created it."""
    try:
        run.path.mkdir(parents=True)
        return True
    except FileExistsError:
        if not run.path.is_dir():
            raise CheckpointError(f"{run.path}: exists and is not a directory; choose another --out") from None
        return False
    except OSError as e:
        raise (write_failure(run.path, e) or e) from None


@contextlib.contextmanager
def _train_lock(run: RunDir, created: bool) -> Iterator[None]:
    """Hold the run's train lock (one trainer per run directory); a directory this call
    created is removed again if the block fails before ``config.yaml`` is written."""
    try:
        with file_lock(run.path / TRAIN_LOCK, timeout=0):
            try:
                yield
            except BaseException:
                if created and not run.config_path.is_file():
                    shutil.rmtree(run.path, ignore_errors=True)
                raise
    except LockTimeout as e:
        raise LockTimeout(f"{run.path}: another process is training this run already; wait for it or stop it ({e})") from None


def prepare_run(cfg: RunConfig, out: str | Path, *, progress: bool = True) -> RunDir:
    """Draw the data for ``cfg`` and write a run directory's config, manifest and pool (no training).

    Every check (config, memory, repetition spec, corpus) happens before anything is
    written, and the writing happens under the run's train lock. A directory that already
    holds a run (or its results) is refused.

    Raises:
        CheckpointError: ``out`` holds a run, a run's results, or other files.
        LockTimeout: another process is setting up or training ``out``.
    """
    run = RunDir(out)
    if run.config_path.is_file():
        raise CheckpointError(f"{run.path}: already a run directory; choose another --out")
    _refuse_to_rewrite(run)
    drawn = draw_data(cfg, progress=progress)
    created = _make_run_dir(run)
    with _train_lock(run, created):
        if run.config_path.is_file():
            raise CheckpointError(f"{run.path}: already a run directory; choose another --out")
        _refuse_to_rewrite(run)
        return _write_run(cfg, run, drawn)


#: Fields that may change between an interrupted run and its resumption (they change how it
#: is run, watched or logged, not what it computes).
_RESUMABLE_CHANGES = {"train.progress", "train.device", "train.keep_optimizer", "train.wandb.enabled", "train.wandb.mode",
                      "train.wandb.project"}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _check_same_config(run: RunDir, cfg: RunConfig) -> None:
    old, new = _flat(run.config().model_dump(mode="json")), _flat(cfg.model_dump(mode="json"))
    for field in sorted(set(old) | set(new)):
        if old.get(field) != new.get(field) and field not in _RESUMABLE_CHANGES:
            raise ConfigError(
                f"{run.path}: run directory was written by a different config ({field} = {shorten(repr(old.get(field)))} there, "
                f"{shorten(repr(new.get(field)))} now); use another --out or the same config"
            )


# ---------------------------------------------------------------------------- the loop

#: One trainer per run directory; separate from analyze's lock so a run can be scored while it trains.
TRAIN_LOCK = ".repeatlens.train.lock"


def train(cfg: RunConfig, out: str | Path, *, progress: Optional[bool] = None, stop_after: Optional[int] = None) -> RunDir:
    """Train ``cfg`` into run directory ``out`` (resuming it if it was interrupted).

    Before anything is written: the device and wandb settings are checked against this
    machine, and for a new run the data is drawn (the spec, the corpus, the memory it
    needs). Then, under the run's train lock, a new run directory is written, or an existing
    one is checked: the same config, and every file hashed against the manifest
    (:meth:`RunDir.check` with ``full``), so a resume never trains on data that changed.

    Args:
        cfg: the validated run config.
        out: run directory.
        progress: show a progress bar (default: ``cfg.train.progress``).
        stop_after: stop (as if interrupted) after this many steps; for tests.

    Raises:
        LockTimeout: another process is training the same run directory (one trainer per
            run: ``.repeatlens.train.lock``, an ``flock`` the kernel drops when its holder dies).
        CheckpointError: ``out`` holds another config's run, a run whose files disagree, or
            a run's results without its config.yaml.
    """
    show = progress if progress is not None else cfg.train.progress
    resolve_device(cfg.train.device)
    check_wandb(cfg)
    run = RunDir(out)
    drawn = None
    if not run.config_path.is_file():  # a new run: draw its data before creating anything
        _refuse_to_rewrite(run)
        drawn = draw_data(cfg, progress=show)
    created = _make_run_dir(run)
    with _train_lock(run, created):
        if run.config_path.is_file() and not _unstarted_run_of_another_config(run, cfg):
            run.check(full=True)
            _check_same_config(run, cfg)
        else:
            _refuse_to_rewrite(run)
            _write_run(cfg, run, drawn if drawn is not None else draw_data(cfg, progress=show))
        device = resolve_device(cfg.train.device)
        with determinism.deterministic_algorithms(cfg.train.deterministic, device), matmul_settings(device, cfg.train.tf32):
            return _train(cfg, run, progress, stop_after)


def _train(cfg: RunConfig, run: RunDir, progress: Optional[bool], stop_after: Optional[int]) -> RunDir:
    """The loop, for the one process holding the run's train lock."""
    _remove_temporaries(run)
    if run.is_complete():
        return run
    t = cfg.train
    man = run.manifest()
    device = resolve_device(t.device)
    env = determinism.environment(device)  # what bit-identity is promised for: sidecars and complete.json record it
    sidecar_extra: dict[str, Any] = {"environment": env}
    if "config.yaml" in man.files:  # which config and manifest each checkpoint was trained under (RunDir.check compares)
        sidecar_extra.update(config_sha256=man.files["config.yaml"].sha256, manifest_sha256=sha256_file(run.manifest_path))
    pool, schedule = run.pool(), run.schedule()
    total_steps, ckpt_steps = man.total_steps, set(man.checkpoint_steps)
    b, seq_len = t.batch_size, man.seq_len
    evals = eval_sets(run, t.eval_sequences)

    model = adapter.build_model(cfg.model, d_vocab=man.vocab_size, tokenizer=run.hf_tokenizer(), device=device, seed=cfg.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "W_pos" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "W_pos" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=t.lr, betas=t.betas
    )
    # chosen once: the trainer owns the model, so no hooks appear mid-run
    fwd: Callable = adapter.forward_fn(model, t.fast_attention)
    if t.compile:
        fwd = torch.compile(fwd)

    numerics = Precision(t.precision, device)

    start, rows = 0, []
    done = run.checkpoints()
    if done:  # resume from the last complete checkpoint
        last = done[-1]
        model.load_state_dict(last.load_state_dict(), strict=False)
        tensors, groups = load_train_state(last)
        restore_optimizer(opt, {k: v.to(device) for k, v in tensors.items() if k.startswith("opt.")}, groups)
        restore_rng(tensors)
        numerics.load_state(tensors)
        start = last.step
        determinism.warn_if_changed(last.sidecar.get("environment"), env, f"{run.path}: resuming from step {start}")
        rows = [r for r in run.metrics().to_dict("records") if r["step"] <= start]

    wandb_run = _wandb_init(cfg, run, start) if t.wandb.enabled else None

    def evaluate(step: int, tokens_seen: int) -> None:
        model.eval()
        for split, toks in evals.items():
            if len(toks):
                loss, se = eval_loss_se(model, toks, b, device, t.fast_attention)
                rows.append({"step": step, "tokens_seen": tokens_seen, "split": split, "loss": loss, "loss_se": se})
                if wandb_run:
                    wandb_run.log({f"loss/{split}": loss, "tokens_seen": tokens_seen}, step=step)
        model.train()

    def checkpoint(step: int, tokens_seen: int) -> None:
        evaluate(step, tokens_seen)
        _write_metrics(run, rows)  # before the sidecar: a counted checkpoint always has its metrics
        save_checkpoint(run, model, step, tokens_seen, opt, extra=sidecar_extra, state=numerics.state())
        if t.keep_optimizer == "last":  # resume needs the latest; verify --replay of the last interval the one before
            prune_train_states(run, keep=2)

    if not done and 0 in ckpt_steps:
        checkpoint(0, 0)
    model.train()
    bar = tqdm(total=total_steps, initial=start, disable=not (progress if progress is not None else t.progress), desc=run.run_id, unit="step")
    t0, tok0 = time.perf_counter(), 0
    first: Optional[tuple[float, int]] = None  # (seconds, tokens) of the first step: torch.compile compiles there
    for step in range(start, total_steps):
        ids = schedule[step * b : (step + 1) * b]
        tokens = torch.from_numpy(pool[ids].astype(np.int64)).to(device)
        lr = lr_at(step, total_steps, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = accumulate_gradients(fwd, model, tokens, numerics, t.micro_batch_size)
        numerics.unscale(opt)
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        numerics.step(opt)
        opt.zero_grad(set_to_none=True)

        s, tokens_seen = step + 1, min((step + 1) * b, len(schedule)) * seq_len
        loss_val = loss.item()
        if not math.isfinite(loss_val) or (s in ckpt_steps and not all(p.isfinite().all() for p in model.parameters())):
            bar.close()
            kept = run.checkpoints()[-1].step if run.checkpoints() else None
            what = f"loss became {loss_val}" if not math.isfinite(loss_val) else "weights became non-finite"
            raise TrainingError(f"{run.path}: {what} at step {s}; stopped, last good checkpoint is step {kept} (try a lower train.lr)")
        tok0 += tokens.numel()
        if first is None:
            first = (time.perf_counter() - t0, tok0)
        if s % t.log_every == 0 or s == total_steps:
            rows.append({"step": s, "tokens_seen": tokens_seen, "split": "train", "loss": loss_val})
            rate = tok0 / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{loss_val:.3f}", tok_s=f"{rate:,.0f}", lr=f"{lr:.1e}")
            if wandb_run:
                wandb_run.log({"loss/train": loss_val, "lr": lr, "tokens_per_s": rate, "tokens_seen": tokens_seen}, step=s)
        if s in ckpt_steps:
            checkpoint(s, tokens_seen)
        elif t.eval_every and s % t.eval_every == 0:
            evaluate(s, tokens_seen)
        bar.update(1)
        if stop_after is not None and s - start >= stop_after:
            bar.close()
            return run
    bar.close()
    elapsed = time.perf_counter() - t0
    first_s, first_tok = first if first is not None else (0.0, 0)
    atomic_write_json(
        run.complete_path,
        {
            "step": total_steps,
            "tokens_seen": min(total_steps * b, len(schedule)) * seq_len,
            "seconds": elapsed,
            "tokens_per_s": tok0 / max(elapsed, 1e-9),
            # without the first step of this process (compilation, allocator warm-up)
            "first_step_seconds": first_s,
            "steady_tokens_per_s": (tok0 - first_tok) / max(elapsed - first_s, 1e-9),
            "device": device,
            "environment": env,
        },
    )
    if wandb_run:
        wandb_run.finish()
    return run


def accumulate_gradients(fwd: Callable, model, tokens: Int[Tensor, "batch pos"], numerics: Precision, micro: Optional[int]) -> Tensor:
    """Forward and backward ``tokens`` in micro-batches of at most ``micro`` rows (all at once
    when None), in ``numerics``' precision, adding each micro-batch's mean loss times its share
    of the rows into the gradients: those of the whole batch's mean loss, up to float rounding.

    Returns:
        The batch's mean next-token loss, detached.
    """
    loss: Tensor = torch.zeros((), device=tokens.device)
    for part, share in micro_batches(tokens, micro):
        with numerics.autocast():
            part_loss = next_token_loss(fwd(model, part), part)
        if share == 1.0:  # the whole batch at once: the loss as it always was
            numerics.backward(part_loss)
            return part_loss.detach()
        numerics.backward(part_loss * share)
        loss = loss + part_loss.detach() * share
    return loss


def _write_metrics(run: RunDir, rows: list[dict[str, Any]]) -> None:
    from repeatlens.io import atomic_write

    # rows of a run resumed from before loss_se was recorded, and the train rows, read NaN there
    df = pd.DataFrame(rows, columns=["step", "tokens_seen", "split", "loss", "loss_se"]).astype(
        {"step": "int64", "tokens_seen": "int64", "split": "string", "loss": "float64", "loss_se": "float64"}
    )
    atomic_write(run.metrics_path, lambda p: df.to_parquet(p, index=False))


def _wandb_init(cfg: RunConfig, run: RunDir, start: int):
    try:
        import wandb
    except ImportError:
        raise ConfigError("train.wandb.enabled = true but wandb is not installed; pip install 'repeatlens[wandb]'") from None
    try:
        return wandb.init(
            project=cfg.train.wandb.project,
            mode=cfg.train.wandb.mode,
            dir=str(run.path),
            name=run.run_id,
            id=run.run_id.replace("/", "_"),
            resume="allow",
            config=cfg.model_dump(mode="json"),
        )
    except wandb.errors.Error as e:  # no credentials after all, a refused login …: before the first step
        raise ConfigError(f"train.wandb: wandb could not start ({first_line(e)}); set train.wandb.mode: offline or fix the W&B set-up") from None
