"""The full fuzz run of issue 26: thousands of mutated configs, damaged run directories and
sweep files through the real command line, with the counts the README quotes.

The cases and the oracle are tests/fuzzing.py's (tests/test_fuzz.py runs a few dozen of
each in CI). Here every kind runs in worker processes of its own, so that a case that kills
its process (a Rust abort, the out-of-memory killer) is seen too: the parent records the
case the worker was running as ``crashed`` (counted with the tracebacks) and starts a new
worker after it. Every case has a time limit (``hang`` past it).

Usage::

    nice -n 10 python benchmarks/fuzz.py [--configs 1500] [--runs 900] [--sweeps 400] [--seed 26] [--out DIR]

It prints one count line per kind and the total, then ``failures=N`` (tracebacks, crashes,
lines that are not one, hangs, data lost, silent mismatches, directories left behind);
exit 1 if N > 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _worker(kind: str, seed: int, start: int, n: int, tmp: Path, log: Path) -> None:
    """Run cases ``start .. n-1`` of ``kind`` (drawn from ``seed``), appending one JSON line per case to ``log``."""
    import torch

    torch.set_num_threads(1)
    from tests import fuzzing
    from tests.conftest import TINY_MIXED, TINY_SYNTHETIC

    import shutil

    rng = random.Random(seed)
    for sub in ("configs", "runs", "sweeps"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    if kind == "config":
        cases = fuzzing.config_cases(rng, n, [TINY_SYNTHETIC, TINY_MIXED], tmp / "configs", seconds=120)
    elif kind == "run":
        cases = fuzzing.run_dir_cases(rng, n, _bases(tmp), tmp / "runs", seconds=180)
    else:
        base = {**TINY_SYNTHETIC, "mixture": {"total_tokens": 32 * 8 * 8}}
        cases = fuzzing.sweep_cases(rng, n, base, tmp / "sweeps", seconds=60, escalate=0.3)
    with open(log, "a") as fh:
        for i, case in enumerate(cases):  # drawn in order from the seed: case i is the same in every worker
            if i < start:
                continue
            fh.write(json.dumps({"i": i, "start": case.name}) + "\n")
            fh.flush()
            t0 = time.perf_counter()
            o = fuzzing.judge(case)
            for left in (case.run, case.out):
                if left is not None and left.exists():  # the next cases do not need it: keep the disk small
                    shutil.rmtree(left, ignore_errors=True)
            fh.write(json.dumps({"i": i, "outcome": o.outcome, "seconds": round(time.perf_counter() - t0, 3),
                                 "example": f"{case.kind} {case.name}: {' '.join(case.argv)[:300]} -> {o.code}: {o.detail[:600]}"}) + "\n")
            fh.flush()


def _bases(tmp: Path) -> list[tuple[Path, Path]]:
    """The runs to damage (built once, shared by the workers): complete synthetic, complete
    mixed with a scores table, interrupted synthetic."""
    import yaml

    from repeatlens.analysis import analyze
    from repeatlens.config import config_from_dict
    from repeatlens.train import train
    from tests.conftest import TINY_MIXED, TINY_SYNTHETIC

    root = tmp / "bases"
    cfgs = {"synthetic": (root / "synthetic.yaml", TINY_SYNTHETIC), "mixed": (root / "mixed.yaml", TINY_MIXED)}
    if not (root / "ready").exists():
        root.mkdir(parents=True, exist_ok=True)
        for path, cfg in cfgs.values():
            path.write_text(yaml.safe_dump(cfg))
        train(config_from_dict(TINY_SYNTHETIC), root / "complete")
        train(config_from_dict(TINY_SYNTHETIC), root / "interrupted", stop_after=4)
        analyze(train(config_from_dict(TINY_MIXED), root / "mixed").path, ["test_loss"], progress=False)
        (root / "ready").write_text("")
    syn, mixed = cfgs["synthetic"][0], cfgs["mixed"][0]
    return [(root / "complete", syn), (root / "mixed", mixed), (root / "interrupted", syn)]


def _run_kind(kind: str, seed: int, n: int, tmp: Path) -> dict:
    """Run ``n`` cases of ``kind`` in worker processes, a new one after each crash; return the counts."""
    from tests import fuzzing

    log = tmp / f"{kind}.jsonl"
    log.unlink(missing_ok=True)
    counts = {o: 0 for o in fuzzing.OUTCOMES} | {"crashed": 0}
    examples: dict[str, list[str]] = {}
    seconds: list[float] = []
    start = 0
    while start < n:
        proc = subprocess.run([sys.executable, __file__, "--worker", kind, "--seed", str(seed), "--start", str(start), "--n", str(n),
                               "--tmp", str(tmp), "--log", str(log)], capture_output=True, text=True)
        if not log.is_file():
            raise SystemExit(f"{kind} worker failed before its first case (rc {proc.returncode}):\n{proc.stderr[-2000:]}")
        done, running = {}, None
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            if "outcome" in rec:
                done[rec["i"]] = rec
            else:
                running = rec
        finished = max(done, default=-1) + 1
        if proc.returncode != 0 and running is not None and running["i"] not in done:  # the worker died in a case
            counts["crashed"] += 1
            examples.setdefault("crashed", []).append(f"{kind} {running['start']}: rc {proc.returncode}: {proc.stderr.strip()[-300:]}")
            finished = running["i"] + 1
        elif proc.returncode != 0:
            raise SystemExit(f"{kind} worker failed outside a case (rc {proc.returncode}):\n{proc.stderr[-2000:]}")
        start = max(finished, start + 1)
    for rec in (json.loads(line) for line in log.read_text().splitlines()):
        if "outcome" in rec:
            counts[rec["outcome"]] += 1
            seconds.append(rec["seconds"])
            if rec["outcome"] in fuzzing.FAILURES and len(examples.setdefault(rec["outcome"], [])) < 5:
                examples[rec["outcome"]].append(rec["example"])
    return {"counts": counts, "examples": examples, "seconds": sum(seconds)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", type=int, default=1500)
    ap.add_argument("--runs", type=int, default=900)
    ap.add_argument("--sweeps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=26)
    ap.add_argument("--out", type=Path, default=None, help="working folder (default: a temporary one, removed)")
    ap.add_argument("--worker", choices=["config", "run", "sweep"], help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        os.environ.setdefault("REPEATLENS_CACHE", str(args.tmp / "cache"))
        _worker(args.worker, args.seed, args.start, args.n, args.tmp, args.log)
        return 0

    from tests import fuzzing

    with tempfile.TemporaryDirectory(prefix="repeatlens-fuzz-") as scratch:
        tmp = args.out or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        total = {o: 0 for o in fuzzing.OUTCOMES} | {"crashed": 0}
        failures = 0
        for kind, n, seed in (("config", args.configs, args.seed), ("run", args.runs, args.seed + 1), ("sweep", args.sweeps, args.seed + 2)):
            if n <= 0:
                continue
            res = _run_kind(kind, seed, n, tmp)
            c = res["counts"]
            tried = sum(c.values())
            print(f"{kind:6s} tried {tried}: " + ", ".join(f"{k} {v}" for k, v in c.items()) + f"  ({res['seconds'] / 60:.1f} min in cases)")
            for outcome, lines in res["examples"].items():
                for line in lines:
                    print(f"    {outcome}: {line}")
            for k, v in c.items():
                total[k] += v
            failures += sum(v for k, v in c.items() if k in (*fuzzing.FAILURES, "crashed"))
        print(f"total  tried {sum(total.values())}: " + ", ".join(f"{k} {v}" for k, v in total.items())
              + f"  ({(time.perf_counter() - t0) / 60:.1f} min)")
        print(f"failures={failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
