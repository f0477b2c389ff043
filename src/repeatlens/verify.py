"""``repeatlens verify``: is a run directory what it says it is, and does it reproduce?

Checks, each failure one :class:`Finding` (one line, naming the file):

* every file the manifest records (``config.yaml``, ``tokenizer.json``, ``data/rows.npy`` or an older run's ``data/pool.npy``,
  ``data/schedule.npy``, ``data/is_synthetic.npy``) against its sha256 and size, the
  config against the manifest's seed, mixture, lengths and parameter count, the ``.npy``
  files' shapes against its counts (:func:`repeatlens.checkpoints.run_file_problems`); a
  run written before the manifest recorded every file has its pool and schedule checked
  against their recorded hashes and its config for truncation, and ``unchecked`` says what
  could not be checked;
* the schedule ``config.yaml``'s mixture gives with today's code
  (:func:`~repeatlens.data.mixture.build_schedule`) against the manifest's schedule hash;
* for a pool stored by reference (``data/rows.npy``), the corpus stream's tokens against
  ``corpus.stream.sha256`` (missing: one line saying how to rebuild it), and the synthetic
  rows regenerated from the manifest's seeds and settings (and any cached copy) against
  ``pool.synthetic.sha256``;
* ``metrics.parquet`` and ``complete.json`` are readable;
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
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from repeatlens.checkpoints import CKPT_DIR, CheckpointInfo, RunDir, load_npy, load_run, read_sidecar, run_file_problems, step_name
from repeatlens.errors import CheckpointError, RepeatlensError
from repeatlens.io import sha256_file
from repeatlens.checkpoints.manifest import Manifest

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
    unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        verdict = "no findings" if self.ok else f"{len(self.findings)} finding(s)"
        return f"verified {self.run}: {', '.join(self.checked) or 'nothing'}: {verdict}"


def verify_run(path: str | Path, replay_steps: Sequence[int] = ()) -> VerifyResult:
    """Check the run directory ``path`` (see the module docstring); replay ``replay_steps``.

    Raises:
        CheckpointError: ``path`` is not a run directory, or a replay step is not a saved
            checkpoint with an earlier checkpoint to start from (a request that cannot be
            carried out, not a finding).
    """
    run = load_run(path, check=False)
    res = VerifyResult(run.path)
    try:
        man = run.manifest()
        problems, res.unchecked = run_file_problems(run, full=True)
    except RepeatlensError as e:  # manifest.json or config.yaml unreadable: nothing else can be compared
        where, _, problem = str(e).partition(": ")
        res.findings.append(Finding(where, problem))
        res.checked.append("config and manifest")
        return res
    res.findings += [Finding(where, problem) for where, problem in problems]
    if not any(f.where in (str(run.schedule_path), str(run.config_path)) for f in res.findings):
        res.findings += _check_schedule_regenerates(run, man)
    if man.pool.get("layout") == "reference" and not any(f.where == str(run.config_path) for f in res.findings):
        res.findings += _check_references(run, man)
    res.checked.append("config, manifest and data files")
    sidecars, found = _read_sidecars(run)
    res.findings += _check_records(run, sidecars)
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


def _check_schedule_regenerates(run: RunDir, man: Manifest) -> list[Finding]:
    """The schedule ``config.yaml``'s mixture gives with today's code, against the manifest's hash."""
    from repeatlens.data.mixture import build_schedule, plan_mixture, schedule_hash

    cfg = run.config()
    plan = plan_mixture(cfg.mixture, cfg.data.seq_len)
    first = man.n_test
    now = build_schedule(plan, first_repeated=first, first_unique=first + man.n_repeated, seed=cfg.seed)
    if schedule_hash(now) != man.schedule["sha256"]:
        return [Finding(str(run.config_path), "its mixture now gives a different schedule than manifest.json records (the schedule code changed?)")]
    return []


def _check_records(run: RunDir, sidecars: list[dict[str, Any]]) -> list[Finding]:
    """``metrics.parquet`` and ``complete.json`` (when present) are readable, and the metrics
    hold the test loss evaluated at every saved checkpoint (written before its sidecar)."""
    out = []
    for read in (run.metrics, run.completion):
        try:
            read()
        except RepeatlensError as e:
            where, _, problem = str(e).partition(": ")
            out.append(Finding(where, problem))
    if out:
        return out
    met = run.metrics()
    evaluated = set(met.loc[met["split"] == "test", "step"].astype(int))
    missing = [m["step"] for m in sidecars if m["step"] not in evaluated]
    if missing:
        out.append(Finding(str(run.metrics_path), f"no test loss at checkpoint step(s) {', '.join(map(str, missing[:5]))}"
                                                  f"{' …' if len(missing) > 5 else ''}; every checkpoint is evaluated before it is saved"))
    return out


def _check_references(run: RunDir, man: Manifest) -> list[Finding]:
    """A pool stored by reference: the corpus stream's tokens and the synthetic rows
    (regenerated from the manifest, and any cached copy) against their sha256s (its row
    files are checked with the other recorded files, :func:`run_file_problems`)."""
    from repeatlens.data.pools import SyntheticRows
    from repeatlens.data.streams import StreamRef, cache_root, token_sha256

    pool, data, where = man.pool, run.config().data, str(run.path)
    out = []
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
                elif run.rows_path.is_file() and run.is_synthetic_path.is_file():
                    try:
                        refs, kinds = load_npy(run.rows_path), load_npy(run.is_synthetic_path)
                    except CheckpointError:  # already a finding of run_file_problems
                        return out
                    if refs.shape != kinds.shape:  # already a finding of the layout check
                        return out
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
            sidecars.append(read_sidecar(side))
        except CheckpointError as e:
            where, _, problem = str(e).partition(": ")
            found.append(Finding(where, problem))
    return sorted(sidecars, key=lambda m: m["step"]), found


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
        copy = _scratch_copy(run, start, Path(tmp) / run.run_id)
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


def _scratch_copy(run: RunDir, start: CheckpointInfo, dest: Path) -> RunDir:
    """A run directory at ``dest`` that holds ``run``'s data (symlinked), its config and
    manifest as they are (the replay's changes of device, progress and wandb are ones a
    resume may make), and only checkpoint ``start``."""
    copy = RunDir(dest)
    (dest / "data").mkdir(parents=True)
    (dest / CKPT_DIR).mkdir()
    data_files = [(f, dest / "data" / f.name) for f in (run.path / "data").iterdir() if f.is_file()]
    for src, dst in (*data_files, (start.weights_path, dest / CKPT_DIR / start.weights_path.name),
                     (start.train_state_path, dest / CKPT_DIR / start.train_state_path.name)):
        os.symlink(src.resolve(), dst)  # read only: the trainer writes new files, never into these
    for src in (run.config_path, run.manifest_path, run.tokenizer_path, run.metrics_path, run.ckpt_dir / f"{step_name(start.step)}.json"):
        if src.is_file():
            shutil.copyfile(src, dest / src.relative_to(run.path))
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
