"""``repeatlens verify``: is a run directory what it says it is, and does it reproduce?

Checks, each failure one :class:`Finding` (one line, naming the file):

* the pool: for a run stored by reference, ``data/rows.npy`` and ``data/is_synthetic.npy``
  against their sha256s in ``manifest.json``, the corpus stream's tokens against
  ``corpus.stream.sha256`` (missing: one line saying how to rebuild it), and the synthetic
  rows regenerated from the manifest's seeds and settings (and any cached copy) against
  ``pool.synthetic.sha256``; for a run written before, ``data/pool.npy`` against
  ``pool.sha256``;
* ``data/schedule.npy``: its hash (:func:`repeatlens.data.mixture.schedule_hash`) and slot
  count against the manifest, and the schedule ``config.yaml``'s mixture gives with today's
  code (:func:`~repeatlens.data.mixture.build_schedule`) against the same hash;
* every checkpoint: its sidecar is readable and names its own step, its weights and its
  training state hash to the sidecar's sha256s; every step the manifest declares (up to the
  last one saved, all of them for a complete run) has a checkpoint;
* ``replay=[K, ...]``: retrains from the last checkpoint before step K to step K with the
  trainer itself (:func:`repeatlens.train.train` resuming a scratch copy of the run that
  holds only that checkpoint), at the thread count and on the device recorded for step K,
  and compares the weights, the optimizer state and the losses logged on the way with the saved ones
  bit for bit.

Only a replay imports torch and TransformerLens; the hash checks read files and JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from repeatlens.checkpoints import CKPT_DIR, CheckpointInfo, RunDir, load_run, step_name
from repeatlens.errors import CheckpointError, RepeatlensError
from repeatlens.io import sha256_file
from repeatlens.results.schema import Manifest

__all__ = ["Finding", "VerifyResult", "verify_run", "replay"]


@dataclass(frozen=True)
class Finding:
    """One thing wrong: where (a file, or ``replay step K``) and what."""

    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass
class VerifyResult:
    """What :func:`verify_run` checked (``checked``, for the summary) and found."""

    run: Path
    findings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        verdict = "no findings" if self.ok else f"{len(self.findings)} finding(s)"
        return f"verified {self.run}: {', '.join(self.checked)}: {verdict}"


def verify_run(path: str | Path, replay_steps: Sequence[int] = ()) -> VerifyResult:
    """Check the run directory ``path`` (see the module docstring); replay ``replay_steps``.

    Raises:
        CheckpointError: ``path`` is not a run directory, or a replay step is not a saved
            checkpoint with an earlier checkpoint to start from (a request that cannot be
            carried out, not a finding).
    """
    run = load_run(path)
    res = VerifyResult(run.path)
    man = run.manifest()
    res.findings += _check_data(run, man)
    res.checked.append("pool and schedule")
    sidecars, found = _read_sidecars(run)
    res.findings += found
    res.findings += _check_checkpoints(run, man, sidecars)
    res.checked.append(f"{len(sidecars)} checkpoint(s)")
    ckpts = [CheckpointInfo(run.path, int(s["step"]), int(s["tokens_seen"]), s) for s in sidecars]
    for k in replay_steps:
        found = replay(run, k, ckpts)
        res.findings += found
        res.checked.append(f"replay of step {k}" + (" bit-identical" if not found else ""))
    return res


# --------------------------------------------------------------------------- data files


def _check_data(run: RunDir, man: Manifest) -> list[Finding]:
    from repeatlens.data.mixture import build_schedule, plan_mixture, schedule_hash

    out = []
    pool = man.pool
    if pool.get("layout") == "reference":
        out += _check_references(run, man)
    elif not run.pool_path.is_file():
        out.append(Finding(str(run.pool_path), "missing"))
    elif pool.get("sha256") and sha256_file(run.pool_path) != pool["sha256"]:
        out.append(Finding(str(run.pool_path), f"sha256 does not match manifest.json pool.sha256 ({pool['sha256'][:16]}…)"))
    sched = man.schedule
    try:
        schedule = np.load(run.schedule_path)
    except (OSError, ValueError) as e:
        return out + [Finding(str(run.schedule_path), f"unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__})")]
    if schedule_hash(schedule) != sched["sha256"]:
        out.append(Finding(str(run.schedule_path), f"schedule hash does not match manifest.json schedule.sha256 ({sched['sha256'][:16]}…)"))
    if len(schedule) != sched["slots"]:
        out.append(Finding(str(run.schedule_path), f"{len(schedule)} slots, manifest.json says {sched['slots']}"))
    cfg = run.config()
    plan = plan_mixture(cfg.mixture, cfg.data.seq_len)
    first = man.n_test
    now = build_schedule(plan, first_repeated=first, first_unique=first + man.n_repeated, seed=cfg.seed)
    if schedule_hash(now) != sched["sha256"]:
        out.append(Finding(str(run.config_path), "its mixture now gives a different schedule than manifest.json records (the schedule code changed?)"))
    return out


def _check_references(run: RunDir, man: Manifest) -> list[Finding]:
    """A pool stored by reference: its row files, the corpus stream's tokens and the
    synthetic rows (regenerated from the manifest, and any cached copy) against their sha256s."""
    from repeatlens.data.pools import SyntheticRows
    from repeatlens.data.streams import StreamRef, cache_root, token_sha256

    pool, data, where = man.pool, run.config().data, str(run.path)
    out = []
    for key in ("rows", "is_synthetic"):
        path = run.path / pool[key]
        if not path.is_file():
            out.append(Finding(str(path), "missing"))
        elif sha256_file(path) != pool.get(f"{key}_sha256"):
            out.append(Finding(str(path), f"sha256 does not match manifest.json pool.{key}_sha256 ({str(pool.get(f'{key}_sha256'))[:16]}…)"))
    if man.corpus.get("stream") is not None:
        ref = StreamRef.from_json(man.corpus["stream"])
        path = ref.locate(data)
        remedy = f"rebuild it with: repeatlens data prepare {where}" if ref.kind == "cache" else "put the run's token file back"
        if not path.is_file():
            out.append(Finding(str(path), f"missing: the run's corpus stream; {remedy}"))
        else:
            try:
                stream = ref.open(data, where)
            except RepeatlensError as e:
                out.append(Finding(str(path), str(e)))
            else:
                if token_sha256(stream) != ref.sha256:
                    out.append(Finding(str(path), f"its tokens' sha256 does not match manifest.json corpus.stream.sha256 ({ref.sha256[:16]}…); "
                                                  + ("delete it and " if ref.kind == "cache" else "") + remedy))
                elif run.rows_path.is_file():
                    refs, kinds = np.load(run.rows_path), np.load(run.is_synthetic_path)
                    n_chunks = ref.n_tokens // (man.seq_len - 1)
                    if len(refs) and (~kinds).any() and int(refs[~kinds].max()) >= n_chunks:
                        out.append(Finding(str(run.rows_path), f"names corpus row {int(refs[~kinds].max())}; the stream has {n_chunks}"))
    if pool.get("synthetic") is not None:
        spec = SyntheticRows.from_json(pool["synthetic"])
        if token_sha256(spec.generate()) != spec.sha256:
            out.append(Finding(str(run.manifest_path), "its synthetic rows, regenerated from pool.synthetic's seeds and settings, hash to "
                                                       "another sha256 (the synthetic source's code changed?)"))
        cached = cache_root(data) / spec.cache_name
        if cached.is_file() and token_sha256(np.load(cached, mmap_mode="r")) != spec.sha256:
            out.append(Finding(str(cached), "cached synthetic rows do not match their sha256; delete the file (it is regenerated)"))
    return out


# -------------------------------------------------------------------------- checkpoints


def _read_sidecars(run: RunDir) -> tuple[list[dict[str, Any]], list[Finding]]:
    """Every readable sidecar in step order, and a finding per unreadable or misnamed one."""
    sidecars, found = [], []
    for side in sorted(run.ckpt_dir.glob("step_*.json")):
        try:
            meta = json.loads(side.read_text())
            step = int(meta["step"])
            int(meta["tokens_seen"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            found.append(Finding(str(side), f"unreadable checkpoint sidecar ({type(e).__name__}: {e})"))
            continue
        if side.name != f"{step_name(step)}.json":
            found.append(Finding(str(side), f"sidecar says step {step}; expected {step_name(step)}.json"))
            continue
        sidecars.append(meta)
    return sorted(sidecars, key=lambda m: int(m["step"])), found


def _check_checkpoints(run: RunDir, man: Manifest, sidecars: list[dict[str, Any]]) -> list[Finding]:
    out = []
    for meta in sidecars:
        info = CheckpointInfo(run.path, int(meta["step"]), int(meta["tokens_seen"]), meta)
        out += _check_file(info.weights_path, meta.get("sha256"), "sidecar")
        ts = meta.get("train_state")
        if ts is not None:
            out += _check_file(info.train_state_path, ts.get("sha256"), "sidecar's train_state")
    saved = {int(m["step"]) for m in sidecars}
    last = max(saved, default=-1)
    declared = [s for s in man.checkpoint_steps if run.is_complete() or s <= last]
    for s in declared:
        if s not in saved:
            out.append(Finding(str(run.ckpt_dir / f"{step_name(s)}.json"), f"missing: manifest.json declares a checkpoint at step {s}"))
    return out


def _check_file(path: Path, sha: Optional[str], what: str) -> list[Finding]:
    if not path.is_file():
        return [Finding(str(path), "missing")]
    if not sha:
        return [Finding(str(path), f"the {what} records no sha256")]
    if sha256_file(path) != sha:
        return [Finding(str(path), f"sha256 does not match its {what} (corrupted or truncated file)")]
    return []


# ------------------------------------------------------------------------------- replay


def replay(run: RunDir, k: int, ckpts: Sequence[CheckpointInfo]) -> list[Finding]:
    """Retrain ``run`` from its last checkpoint before step ``k`` to ``k``; compare with the saved step ``k``.

    The trainer resumes a scratch copy of the run (data files linked, not copied; only the
    start checkpoint) at the thread count and device recorded for step ``k`` (where
    recorded and available), with wandb off. Returns the mismatches as findings.

    Raises:
        CheckpointError: ``k`` is not a saved step, or no earlier checkpoint has training state.
    """
    import torch

    from repeatlens import determinism
    from repeatlens.train import train

    by_step = {c.step: c for c in ckpts}
    if k not in by_step:
        raise CheckpointError(f"{run.path}: --replay {k}: no checkpoint at step {k}; steps saved: {', '.join(map(str, sorted(by_step)))}")
    target = by_step[k]
    starts = [c for c in ckpts if c.step < k and c.sidecar.get("train_state")]
    if not starts:
        kept = [c.step for c in ckpts if c.sidecar.get("train_state")]
        why = (f" (train.keep_optimizer: last keeps it at the last two checkpoints only, steps {', '.join(map(str, kept))}: replay step "
               f"{kept[-1]}, or train with train.keep_optimizer: all to replay any step)" if kept and any(c.sidecar.get("train_state_dropped") for c in ckpts) else "")
        raise CheckpointError(f"{run.path}: --replay {k}: no checkpoint with training state before step {k} to replay from{why}")
    start = starts[-1]
    where = f"replay step {k} from step {start.step}"
    recorded = target.sidecar.get("environment") or {}
    cfg = run.config()
    device = recorded.get("device") or cfg.train.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    train_cfg = cfg.train.model_copy(update={"device": device, "progress": False, "wandb": cfg.train.wandb.model_copy(update={"enabled": False})})
    cfg = cfg.model_copy(update={"train": train_cfg})

    with tempfile.TemporaryDirectory(prefix="repeatlens-replay-") as tmp, _torch_threads(recorded.get("threads")):
        copy = _scratch_copy(run, start, Path(tmp) / run.run_id, cfg.to_yaml())
        try:
            train(cfg, copy.path, progress=False, stop_after=k - start.step)
            redone = copy.checkpoint(k)
        except RepeatlensError as e:
            return [Finding(where, f"could not replay ({e})")]
        changed = determinism.environment_changes(recorded, redone.sidecar.get("environment") or {})
        note = f" (replayed with {', '.join(changed)}: bit-identity was not promised)" if changed else ""
        out = []
        try:
            saved_w, saved_t = target.load_state_dict(), _train_state(target)
        except CheckpointError as e:
            return [Finding(where, f"cannot compare: {e}")]
        for label, a, b in (("weight", saved_w, redone.load_state_dict()), ("optimizer-state", saved_t, _train_state(redone))):
            diff = _tensor_differences(a, b)
            if diff:
                out.append(Finding(where, f"{diff.replace('{what}', label)}{note}"))
        old, new = _losses(run, start.step, k), _losses(copy, start.step, k)
        if old != new:
            first = next((a, b) for a, b in zip(old + [None] * len(new), new + [None] * len(old)) if a != b)
            out.append(Finding(where, f"logged losses differ (first: saved {first[0]}, replayed {first[1]}){note}"))
        return out


@contextlib.contextmanager
def _torch_threads(n: Optional[int]) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _scratch_copy(run: RunDir, start: CheckpointInfo, dest: Path, config_yaml: str) -> RunDir:
    """A run directory at ``dest`` that holds ``run``'s data (symlinked) and only checkpoint ``start``."""
    copy = RunDir(dest)
    (dest / "data").mkdir(parents=True)
    (dest / CKPT_DIR).mkdir()
    data_files = [(f, dest / "data" / f.name) for f in (run.path / "data").iterdir() if f.is_file()]
    for src, dst in (*data_files, (start.weights_path, dest / CKPT_DIR / start.weights_path.name),
                     (start.train_state_path, dest / CKPT_DIR / start.train_state_path.name)):
        os.symlink(src.resolve(), dst)  # read only: the trainer writes new files, never into these
    for src in (run.manifest_path, run.tokenizer_path, run.metrics_path, run.ckpt_dir / f"{step_name(start.step)}.json"):
        if src.is_file():
            shutil.copyfile(src, dest / src.relative_to(run.path))
    copy.config_path.write_text(config_yaml)
    return copy


def _train_state(info: CheckpointInfo) -> dict[str, Any]:
    from repeatlens.checkpoints import load_train_state

    return load_train_state(info)[0]


def _tensor_differences(a: dict[str, Any], b: dict[str, Any]) -> str:
    """'' when ``a`` and ``b`` hold the same names and bits, else one line ('{what}' left for the caller)."""
    import torch

    if a.keys() != b.keys():
        return f"{{what}} tensors differ in names ({sorted(set(a) ^ set(b))[:3]} …)"
    bad = [n for n in a if a[n].shape != b[n].shape or a[n].dtype != b[n].dtype or not torch.equal(a[n], b[n])]
    if not bad:
        return ""
    worst = max(bad, key=lambda n: _max_diff(a[n], b[n]))
    return f"{len(bad)} of {len(a)} {{what}} tensors differ (largest |diff| {_max_diff(a[worst], b[worst]):.3g} in {worst})"


def _max_diff(a, b) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def _losses(run: RunDir, after: int, upto: int) -> list[tuple[int, str, float]]:
    """The metrics rows (step, split, loss) logged in ``after < step <= upto``."""
    met = run.metrics()
    rows = met[(met.step > after) & (met.step <= upto)].sort_values(["step", "split"])
    return [(int(r.step), str(r.split), float(r.loss)) for r in rows.itertuples()]
