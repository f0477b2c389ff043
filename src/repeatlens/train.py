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
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from repeatlens import determinism
from repeatlens import model as adapter
from repeatlens.checkpoints import RunDir, load_train_state, prune_train_states, restore_optimizer, restore_rng, save_checkpoint
from repeatlens.config import RunConfig
from repeatlens.data.mixture import build_schedule, plan_mixture, schedule_hash
from repeatlens.data.pools import build_pool
from repeatlens.data.streams import load_corpus
from repeatlens.data.seeds import manifest_seeds
from repeatlens.errors import CheckpointError, ConfigError, LockTimeout, RepeatlensError
from repeatlens.io import atomic_save_npy, atomic_write_json, atomic_write_text, file_lock, sha256_file
from repeatlens.losses import next_token_loss, token_losses
from repeatlens.precision import Precision, matmul_settings, micro_batches
from repeatlens.results.schema import Manifest


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
    per_seq = []
    for i in range(0, len(tokens), batch_size):
        t = torch.from_numpy(np.asarray(tokens[i : i + batch_size]).astype(np.int64)).to(device)
        per_seq.append(token_losses(adapter.logits(model, t, fast), t).detach().double().mean(dim=1).cpu().numpy())
    seqs = np.concatenate(per_seq) if per_seq else np.zeros(0)
    if not len(seqs):
        return 0.0, float("nan")
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


def prepare_run(cfg: RunConfig, out: str | Path, *, progress: bool = True) -> RunDir:
    """Draw the data for ``cfg`` and write a run directory's config, manifest and pool.

    The pool is stored by reference (:mod:`repeatlens.data.pools`): ``data/rows.npy`` and
    ``data/is_synthetic.npy`` (a few bytes per row), the corpus stream's location and
    sha256, and the synthetic rows' seeds, settings and sha256 (the rows themselves go to
    the cache). All validation (config, repetition spec, corpus size, special ids) happens
    before anything is written; ``config.yaml`` is written after the data files, so a
    directory without it is not a run and is set up again on the next call.
    """
    from repeatlens.data.streams import cache_root

    run = RunDir(out)
    plan = plan_mixture(cfg.mixture, cfg.data.seq_len)
    corpus = load_corpus(cfg.data, progress=progress)
    pool = build_pool(cfg.data, plan, corpus, cfg.seed, source=cfg.mixture.repeated_source)
    schedule = build_schedule(plan, first_repeated=pool.first_repeated, first_unique=pool.first_unique, seed=cfg.seed)
    total_steps = math.ceil(plan.n_total / cfg.train.batch_size)

    if run.path.exists() and any(run.path.iterdir()) and not (run.path / "data").exists() and not run.manifest_path.exists():
        raise CheckpointError(f"{run.path}: directory exists, is not empty and is not a repeatlens run; choose another --out")
    run.path.mkdir(parents=True, exist_ok=True)
    if pool.synthetic is not None:  # the shared cache keeps the rows; the run keeps how to regenerate them
        cached = cache_root(cfg.data) / pool.synthetic.cache_name
        if not cached.is_file():
            atomic_save_npy(cached, pool.synthetic_tokens)
    atomic_save_npy(run.rows_path, pool.rows)
    atomic_save_npy(run.is_synthetic_path, pool.is_synthetic)
    atomic_save_npy(run.schedule_path, schedule)
    if corpus.tokenizer_json is not None:
        atomic_write_text(run.tokenizer_path, corpus.tokenizer_json)
    manifest = Manifest(
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
        pool={"layout": "reference", "rows": "data/rows.npy", "rows_sha256": sha256_file(run.rows_path),
              "is_synthetic": "data/is_synthetic.npy", "is_synthetic_sha256": sha256_file(run.is_synthetic_path),
              "n_rows": int(len(pool.rows)), "dtype": str(corpus.dtype),
              "synthetic": pool.synthetic.to_json() if pool.synthetic is not None else None},
        seeds=manifest_seeds(cfg.seed),
        corpus={"source": cfg.data.source, "fingerprint": corpus.fingerprint,
                "stream": corpus.stream.to_json() if corpus.stream is not None else None},
        tokenizer="tokenizer.json" if corpus.tokenizer_json is not None else None,
        special_ids=corpus.special.to_json(),
        batch_size=cfg.train.batch_size,
        total_steps=total_steps,
        checkpoint_steps=cfg.train.checkpoints.steps(total_steps),
    ).to_json()
    atomic_write_json(run.manifest_path, manifest)
    atomic_write_text(run.config_path, cfg.to_yaml())
    return run


#: Fields that may change between an interrupted run and its resumption.
_RESUMABLE_CHANGES = {"train.progress", "train.device", "train.keep_optimizer"}


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
                f"{run.path}: run directory was written by a different config ({field} = {old.get(field)!r} there, "
                f"{new.get(field)!r} now); use another --out or the same config"
            )


# ---------------------------------------------------------------------------- the loop

#: One trainer per run directory; separate from analyze's lock so a run can be scored while it trains.
TRAIN_LOCK = ".repeatlens.train.lock"


def train(cfg: RunConfig, out: str | Path, *, progress: Optional[bool] = None, stop_after: Optional[int] = None) -> RunDir:
    """Train ``cfg`` into run directory ``out`` (resuming it if it was interrupted).

    Args:
        cfg: the validated run config.
        out: run directory.
        progress: show a progress bar (default: ``cfg.train.progress``).
        stop_after: stop (as if interrupted) after this many steps; for tests.

    Raises:
        LockTimeout: another process is training the same run directory (one trainer per
            run: ``.repeatlens.train.lock``, an ``flock`` the kernel drops when its holder dies).
    """
    run = RunDir(out)
    if run.config_path.is_file():
        _check_same_config(run, cfg)
    else:  # validates the inputs before anything is written; every file it writes is atomic
        run = prepare_run(cfg, out, progress=progress if progress is not None else cfg.train.progress)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(file_lock(run.path / TRAIN_LOCK, timeout=0))
        except LockTimeout as e:
            raise LockTimeout(f"{run.path}: another process is training this run already; wait for it or stop it ({e})") from None
        device = resolve_device(cfg.train.device)
        with determinism.deterministic_algorithms(cfg.train.deterministic, device), matmul_settings(device, cfg.train.tf32):
            return _train(cfg, run, progress, stop_after)


def _train(cfg: RunConfig, run: RunDir, progress: Optional[bool], stop_after: Optional[int]) -> RunDir:
    """The loop, for the one process holding the run's train lock."""
    for tmp in run.path.rglob(".*.tmp"):  # temporaries of a write a crash interrupted (see repeatlens.io)
        tmp.unlink(missing_ok=True)
    if run.is_complete():
        return run
    t = cfg.train
    man = run.manifest()
    device = resolve_device(t.device)
    env = determinism.environment(device)  # what bit-identity is promised for: sidecars and complete.json record it
    pool, schedule = run.pool(), np.load(run.schedule_path)
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
        save_checkpoint(run, model, step, tokens_seen, opt, extra={"environment": env}, state=numerics.state())
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
    return wandb.init(
        project=cfg.train.wandb.project,
        mode=cfg.train.wandb.mode,
        dir=str(run.path),
        name=run.run_id,
        id=run.run_id.replace("/", "_"),
        resume="allow",
        config=cfg.model_dump(mode="json"),
    )
