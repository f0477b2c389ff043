"""A seeded fuzzer of what a user hands repeatlens: configs, run directories and sweep files.

Every case runs one ``repeatlens`` command in this process (:func:`repeatlens.cli.main`)
and is judged by one oracle (:func:`judge`), whatever produced it:

* ``ok``: exit 0;
* ``error``: exit 1 or 2; with exit 2, stderr is exactly one ``error: …`` line;
* ``traceback``: an exception escaped ``main``, or an exit code other than 0, 1, 2, 130;
* ``not one line``: exit 2 with anything but one ``error:`` line on stderr;
* ``hang``: the command ran past the case's time limit;
* ``data lost``: a file of a run directory that the case did not damage and the command
  has no business writing is gone or changed afterwards;
* ``silent mismatch``: a file whose content the run directory vouches for (the files its
  manifest records, the manifest itself, checkpoint weights and training state) was
  changed, and ``verify`` found nothing, or another command read the run and exited 0;
* ``left a directory``: a command that failed on a config left its ``--out`` behind without a checkpoint
  (half-written, or empty).

:func:`config_cases`, :func:`run_dir_cases` and :func:`sweep_cases` draw the cases from a
``random.Random(seed)``; tests/test_fuzz.py runs a bounded number of them, benchmarks/fuzz.py
the full run with its counts.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import shutil
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import yaml

from repeatlens.cli import main

#: Outcomes that are failures of repeatlens.
FAILURES = ("traceback", "not one line", "hang", "data lost", "silent mismatch", "left a directory")
#: Every outcome, in the order the counts are printed.
OUTCOMES = ("ok", "error", *FAILURES)

#: Values a field is set to: wrong types, limits, huge numbers, NaN, paths, unicode.
NASTY: list[Any] = [
    None, True, False, -1, 0, 1, 2, 3, 7, 31, 64, 1000, 2**31, 2**32, 2**53 + 1, 2**63, 10**30, -(10**30),
    0.0, 0.5, 0.999, 1.0, 1.5, -0.5, 1e-300, 1e300, -1e300, math.nan, math.inf, -math.inf,
    "", " ", "abc", "1e9", "0x10", "x" * 5000, "../../..", "/nonexistent/corpus.txt", "*.nothing", "synthetic",
    "shakespeare", "cuda", "cuda:7", "meta", "cpu", "mps", "rotary", "RMS", "gelu", "constant", "\u00e9\u4e2d\U0001f600",
    [], [1], [0.9, 1.5], ["a"], [[1]], {}, {"a": 1}, {"preset": "attn2-tiny"},
]

#: Raw ``--set`` items: not key=value, not YAML, odd keys.
RAW_SETS = ["train.lr", "=3", ".a=1", "a..b=1", "data.seq_len=[", "seed={", "train.lr=1e300", "mixture=1", "seed=1=2",
            "model.preset=[a]", "data.source=", "train.betas=[0.9", "x" * 300 + "=1", "seed=?"]

#: Config files that are not YAML mappings.
RAW_FILES: list[bytes] = [b"", b"\x00\x01\x02", b"\xff\xfe\xfd", b"- a\n- b\n", b"seed: [\n", b"\tseed: 1\n", b"[" * 1100,
                          b"a: &x [*x]\n", b"seed: 0\nseed: 1\n", "mixture: {total_tokens: 1e30}\n".encode(), b"123", b"~"]


@dataclass
class Case:
    """One command to run, and what the oracle needs to know about it."""

    kind: str  # config | run | sweep
    name: str
    argv: list[str]
    run: Optional[Path] = None  # the run directory the command reads (run cases)
    damaged: Optional[str] = None  # the file of ``run`` that was damaged (relative path)
    changed: bool = False  # whether the damage changed that file's bytes
    vouched: bool = False  # whether the run directory vouches for that file's content
    out: Optional[Path] = None  # a --out the command must not leave behind on an error (config cases)
    may_write: tuple[str, ...] = ()  # files of ``run`` the command may write (relative glob patterns)
    seconds: float = 60.0


@dataclass
class Outcome:
    case: Case
    outcome: str
    code: Any
    detail: str = ""


@dataclass
class Counts:
    """How many cases had each outcome, and the first few of each failure."""

    tried: int = 0
    by_outcome: dict[str, int] = field(default_factory=lambda: {o: 0 for o in OUTCOMES})
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, o: Outcome) -> None:
        self.tried += 1
        self.by_outcome[o.outcome] += 1
        if o.outcome in FAILURES:
            self.examples.setdefault(o.outcome, [])
            if len(self.examples[o.outcome]) < 5:
                self.examples[o.outcome].append(f"{o.case.kind} {o.case.name}: {' '.join(o.case.argv)[:300]} -> {o.code}: {o.detail[:600]}")

    @property
    def failures(self) -> int:
        return sum(self.by_outcome[o] for o in FAILURES)

    def line(self) -> str:
        return f"tried {self.tried}: " + ", ".join(f"{o} {self.by_outcome[o]}" for o in OUTCOMES)


# --------------------------------------------------------------------------------- the oracle


class _Hang(BaseException):
    """Raised by the alarm in a command that ran past its time limit (not an Exception: no handler takes it)."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`_Hang` in the block after ``seconds``; an alarm already set (pytest-timeout's) is set again after."""
    def ring(signum, frame):
        raise _Hang()

    start = time.monotonic()
    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer > 0:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 0.001))


def run_cli(argv: list[str], seconds: float) -> tuple[Any, str, str]:
    """Run ``repeatlens ARGV`` in this process: (exit code, or ``"traceback"`` / ``"hang"``; stdout; stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code: Any
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            with _time_limit(seconds):
                main(argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except _Hang:
            code = "hang"
        except BaseException:  # noqa: BLE001 - what the oracle is looking for
            code = "traceback"
            err.write(traceback.format_exc())
    return code, out.getvalue(), err.getvalue()


def _snapshot(run: Optional[Path]) -> dict[str, bytes]:
    if run is None or not run.is_dir():
        return {}
    out = {}
    for p in run.rglob("*"):
        if p.is_file() and not p.name.startswith("."):
            with contextlib.suppress(OSError):
                out[p.relative_to(run).as_posix()] = p.read_bytes()
    return out


def judge(case: Case) -> Outcome:
    """Run ``case`` and classify what happened (see the module docstring)."""
    before = _snapshot(case.run)
    code, out, err = run_cli(case.argv, case.seconds)
    # progress bars (tqdm's "..%|..| n/N") may precede the error line; warnings and notes are lines of their own
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith(("warning: ", "note: ")) and "%|" not in ln]
    if code == "traceback" or code not in (0, 1, 2, 130, "hang"):
        return Outcome(case, "traceback", code, err.strip().splitlines()[-1] if err.strip() else "")
    if code == "hang":
        return Outcome(case, "hang", code, f"over {case.seconds:g} s")
    if "Traceback (most recent call last)" in err:
        return Outcome(case, "traceback", code, err[-400:])
    if code == 2 and (len(lines) != 1 or not lines[0].startswith("error: ")):
        return Outcome(case, "not one line", code, " | ".join(lines)[:600])
    if code != 0 and case.out is not None and case.out.exists() and not any((case.out / "checkpoints").glob("step_*.json")):
        # (a run that trained and then stopped, on a NaN loss, keeps its checkpoints by design)
        return Outcome(case, "left a directory", code, f"{case.out} after: {lines[0] if lines else ''}")
    if case.run is not None:
        after = _snapshot(case.run)
        allowed = lambda rel: rel == case.damaged or any(Path(rel).match(pat) for pat in case.may_write)  # noqa: E731
        lost = [rel for rel, data in before.items() if not allowed(rel) and after.get(rel) != data]
        if lost:
            return Outcome(case, "data lost", code, f"{', '.join(lost[:5])} changed or removed")
        if case.changed and case.vouched and code == 0:
            return Outcome(case, "silent mismatch", code, f"{case.damaged} changed and `{case.argv[0]}` exited 0")
    return Outcome(case, "ok" if code == 0 else "error", code, lines[0] if lines else "")


# ------------------------------------------------------------------------------- config cases


def _flat_keys(d: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in d.items():
        keys.append(f"{prefix}{k}")
        if isinstance(v, dict):
            keys += _flat_keys(v, f"{prefix}{k}.")
    return keys


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    node = d
    parts = dotted.split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def _delete(d: dict[str, Any], dotted: str) -> None:
    node: Any = d
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.get(p) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def mutate_config(rng: random.Random, base: dict[str, Any]) -> tuple[dict[str, Any], list[str], str]:
    """A mutated copy of ``base``: 1-3 fields set to :data:`NASTY` values, deleted or
    unknown; some changes go in as ``--set`` items instead. Returns (config, --set items, what)."""
    from repeatlens.config import RunConfig

    cfg = json.loads(json.dumps(base))
    keys = _flat_keys(RunConfig.model_validate(base).model_dump(mode="json"))
    sets: list[str] = []
    what = []
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(keys)
        op = rng.random()
        if op < 0.62:
            value = rng.choice(NASTY)
            if rng.random() < 0.3 and isinstance(value, (int, float, str)) and not isinstance(value, bool):
                sets.append(f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
            else:
                _set(cfg, key, value)
            what.append(f"{key}={str(value)[:40]!r}")
        elif op < 0.75:
            _delete(cfg, key)
            what.append(f"del {key}")
        elif op < 0.85:
            _set(cfg, f"{key}.{rng.choice(['nope', 'lrr', 'x'])}" if rng.random() < 0.5 else f"{key}_", 1)
            what.append(f"unknown near {key}")
        elif op < 0.93:
            sets.append(rng.choice(RAW_SETS))
            what.append(f"--set {sets[-1][:40]!r}")
        else:  # a plausible but large value: the memory check, the cost of a real run
            big = rng.choice([("model.d_model", 10**6), ("model.n_ctx", 2**22), ("data.test_sequences", 10**9),
                              ("mixture.total_tokens", 10**14), ("train.batch_size", 10**8), ("model.n_layers", 10**5)])
            _set(cfg, *big)
            if big[0] == "model.n_ctx":
                _set(cfg, "data.seq_len", big[1])
            what.append(f"{big[0]}={big[1]}")
    return cfg, sets, "; ".join(what)


def _cheap(cfg: dict[str, Any], sets: Sequence[str] = ()) -> bool:
    """Whether a valid config, with its ``--set`` items, trains in seconds (only such configs
    are escalated to ``train``)."""
    from repeatlens.config import config_from_dict, merge, parse_overrides
    from repeatlens.errors import RepeatlensError

    try:
        c = config_from_dict(merge(cfg, parse_overrides(list(sets))))
    except RepeatlensError:
        return True  # refused before anything runs
    d = c.data
    vocab = d.synthetic.vocab_size if d.synthetic_only else d.vocab_size
    steps = c.mixture.total_tokens // d.seq_len / c.train.batch_size
    return (steps <= 64 and c.model.n_params(vocab) <= 2_000_000 and d.test_sequences <= 4096 and d.seq_len <= 256
            and c.train.batch_size * d.seq_len * vocab <= 2**24 and c.train.eval_sequences <= 4096
            and (d.synthetic_only or d.vocab_size <= 4096) and c.train.checkpoints.log_count <= 64
            and (c.train.checkpoints.every or 8) >= 1 and c.train.log_every >= 1)


def config_cases(rng: random.Random, n: int, bases: list[dict[str, Any]], tmp: Path, seconds: float = 60.0) -> Iterator[Case]:
    """``n`` config cases: a mutated base written to a YAML file (or raw bytes) and trained
    when it is cheap, else checked through ``sweep --dry-run`` (the same validation, no run)."""
    for i in range(n):
        path = tmp / f"c{i}.yaml"
        out = tmp / f"out{i}"
        if rng.random() < 0.08:
            path.write_bytes(rng.choice(RAW_FILES))
            yield Case("config", f"raw file {i}", ["train", str(path), "--out", str(out), "-q"], out=out, seconds=seconds)
            continue
        cfg, sets, what = mutate_config(rng, rng.choice(bases))
        try:
            path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        except yaml.YAMLError:
            continue
        overrides = [a for s in sets for a in ("--set", s)]
        if _cheap(cfg, sets):
            yield Case("config", what, ["train", str(path), "--out", str(out), "-q", *overrides], out=out, seconds=seconds)
        else:
            spec = tmp / f"s{i}.yaml"
            spec.write_text(yaml.safe_dump({"base_config": path.name}))
            yield Case("config", what, ["sweep", str(spec), "--out", str(out), "--dry-run"], out=out, seconds=seconds)


# ------------------------------------------------------------------------------ run cases

#: What each command is run as on a (damaged) run directory, and the files it may write.
RUN_COMMANDS: dict[str, tuple[Callable[[Path, Path], list[str]], tuple[str, ...]]] = {
    "info": (lambda run, cfg: ["info", str(run)], ()),
    "verify": (lambda run, cfg: ["verify", str(run)], ()),
    "analyze": (lambda run, cfg: ["analyze", str(run), "-m", "test_loss", "-q", "--force"], ("scores.parquet",)),  # every checkpoint read
    "report": (lambda run, cfg: ["report", str(run)], ("report.html",)),
    "score": (lambda run, cfg: ["score", str(run), "-m", "test_loss"], ("score_step_*.parquet",)),
    "train": (lambda run, cfg: ["train", str(cfg), "--out", str(run), "-q"],
              ("metrics.parquet", "complete.json", "checkpoints/*", "wandb/*")),
}

def _vouched(rel: str, command: str) -> bool:
    """Whether ``command`` must notice a change of the run's file ``rel``: every command checks
    the files the manifest records and the manifest itself (hashed by the sidecars) when it
    opens a run; ``verify`` also hashes every checkpoint, ``analyze`` the weights it scores."""
    if rel in ("config.yaml", "tokenizer.json", "manifest.json") or rel.startswith("data/"):
        return True
    if rel.endswith(".train.safetensors"):
        return command == "verify"
    return rel.endswith(".safetensors") and command in ("verify", "analyze")


def _damages(rng: random.Random, path: Path) -> list[tuple[str, Callable[[Path], None]]]:
    """Ways to damage the file at ``path`` (each a name and a function of the path)."""
    size = path.stat().st_size

    def cut(p: Path) -> None:
        p.write_bytes(p.read_bytes()[: rng.randrange(max(size, 1))])

    def flip(p: Path) -> None:
        data = bytearray(p.read_bytes())
        if data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        p.write_bytes(bytes(data))

    def append(p: Path) -> None:
        p.write_bytes(p.read_bytes() + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))))

    def as_dir(p: Path) -> None:
        p.unlink()
        p.mkdir()

    out: list[tuple[str, Callable[[Path], None]]] = [
        ("truncate", cut), ("flip a bit", flip), ("append bytes", append), ("empty", lambda p: p.write_bytes(b"")),
        ("not UTF-8", lambda p: p.write_bytes(b"\xff\xfe\xfd" + p.read_bytes()[3:])), ("delete", lambda p: p.unlink()),
        ("a directory", as_dir),
    ]
    name = path.name
    if name.endswith(".json"):
        def edit(fn: Callable[[Any], Any]) -> Callable[[Path], None]:
            return lambda p: p.write_text(json.dumps(fn(json.loads(p.read_text()))))

        def drop_key(d: Any) -> Any:
            if isinstance(d, dict) and d:
                d.pop(rng.choice(sorted(d)))
            return d

        def retype(d: Any) -> Any:
            if isinstance(d, dict) and d:
                d[rng.choice(sorted(d))] = rng.choice([None, "x", [], {}, -1, 10**30, 1.5])
            return d

        out += [("a JSON list", lambda p: p.write_text("[1, 2]")), ("drop a key", edit(drop_key)), ("retype a value", edit(retype)),
                ("same content, other layout", edit(lambda d: d))]
    if name == "config.yaml":
        def yedit(fn: Callable[[dict], None]) -> Callable[[Path], None]:
            def go(p: Path) -> None:
                d = yaml.safe_load(p.read_text())
                fn(d)
                p.write_text(yaml.safe_dump(d, sort_keys=False))
            return go

        out += [("drop a field", yedit(lambda d: _delete(d, rng.choice(_flat_keys(d))))),
                ("change a field", yedit(lambda d: _set(d, rng.choice(_flat_keys(d)), rng.choice(NASTY[:40]))))]
    if name.endswith(".npy"):
        import numpy as np

        out += [("other dtype", lambda p: np.save(p, np.load(p).astype(np.float32))),
                ("drop a row", lambda p: np.save(p, np.load(p)[:-1])),
                ("shuffled", lambda p: np.save(p, np.random.default_rng(rng.randrange(2**32)).permutation(np.load(p))))]
    if name.endswith(".parquet"):
        import pandas as pd

        out += [("other columns", lambda p: pd.DataFrame({"a": [1, 2]}).to_parquet(p)),
                ("no rows", lambda p: pd.read_parquet(p).iloc[:0].to_parquet(p))]
    return out


def run_dir_cases(rng: random.Random, n: int, bases: list[tuple[Path, Path]], tmp: Path, commands: Optional[list[str]] = None,
                  seconds: float = 120.0) -> Iterator[Case]:
    """``n`` run-directory cases: a copy of a base run (``(run, its config file)``) with one
    file damaged, and one command run on it."""
    for i in range(n):
        base, cfg = rng.choice(bases)
        run = tmp / f"run{i}"
        if run.exists():
            shutil.rmtree(run)
        shutil.copytree(base, run)
        files = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file() and not p.name.startswith("."))
        rel = rng.choice(files)
        target = run / rel
        what, damage = rng.choice(_damages(rng, target))
        before = target.read_bytes()
        damage(target)
        changed = not target.is_file() or target.read_bytes() != before
        command = rng.choice(commands or list(RUN_COMMANDS))
        argv_of, may_write = RUN_COMMANDS[command]
        yield Case("run", f"{base.name}/{rel}: {what}", argv_of(run, cfg), run=run, damaged=rel, changed=changed,
                   vouched=_vouched(rel, command), may_write=may_write, seconds=seconds)


# ----------------------------------------------------------------------------- sweep cases


def sweep_cases(rng: random.Random, n: int, base: dict[str, Any], tmp: Path, seconds: float = 60.0, escalate: float = 0.0) -> Iterator[Case]:
    """``n`` sweep files: the analyze options, the grid and the base mutated; each read with
    ``--dry-run``, or, for a share ``escalate`` of the valid ones with at most two points, run
    for real (one worker): trained and analysed."""
    analyze_keys = ["metrics", "max_sequences", "batch_size", "seed", "device", "probes", "probe_len", "probe_batch", "probe_seed", "nope"]
    grid_keys = ["mixture.repeated_fraction", "mixture.repeat_count", "seed", "model.preset", "train.lr", "mixture", "nope.x", "", "a..b"]
    for i in range(n):
        spec: dict[str, Any] = {"base": json.loads(json.dumps(base)), "grid": {"mixture.repeated_fraction": [0.0, 0.25]}, "analyze": {}}
        for _ in range(rng.randint(0, 3)):
            op = rng.random()
            if op < 0.35 and isinstance(spec.get("analyze"), dict):
                key = rng.choice(analyze_keys)
                spec["analyze"][key] = rng.choice(NASTY + ["induction", "induction,test_loss", ["synthetic"], "text", "uniform,train"])
            elif op < 0.65 and isinstance(spec.get("grid"), dict):
                values = rng.choice(NASTY + [[0.0, 0.1], list(range(rng.randint(1, 40)))])
                spec["grid"][rng.choice(grid_keys)] = values
            elif op < 0.8:
                spec[rng.choice(["grid", "analyze", "base", "base_config", "nope"])] = rng.choice(NASTY)
            else:
                spec["grid"] = {f"train.{k}": list(range(1, rng.randint(2, 12))) for k in ("log_every", "eval_sequences", "warmup_steps", "batch_size", "eval_every")[: rng.randint(1, 5)]}
        path = tmp / f"sweep{i}.yaml"
        try:
            path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
        except yaml.YAMLError:
            continue
        out = tmp / f"sweep_out{i}"
        if escalate and rng.random() < escalate and _small_valid_sweep(path):
            yield Case("sweep", f"sweep {i} (run)", ["sweep", str(path), "--out", str(out), "--workers", "1", "-q"], seconds=seconds * 5)
        else:
            yield Case("sweep", f"sweep {i}", ["sweep", str(path), "--out", str(out), "--dry-run"], out=out, seconds=seconds)


def _small_valid_sweep(path: Path) -> bool:
    from repeatlens.errors import RepeatlensError
    from repeatlens.sweep import load_sweep

    try:
        spec = load_sweep(path, progress=False)
    except RepeatlensError:
        return False
    return len(spec.points) <= 2 and all(_cheap(p.config) for p in spec.points)
