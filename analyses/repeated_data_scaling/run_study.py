"""The redesigned natural-text scaling study (issue 21), end to end: train and score every run
of ``design.py``, then write the tables, figures and RESULTS.md (T1-T6 through
``repeatlens.fit_scaling``).

    python analyses/repeated_data_scaling/run_study.py --workers 2                  # everything
    python analyses/repeated_data_scaling/run_study.py --sizes rot2-d64 --train-only # one size's runs

Runs already complete and scored under ``--out`` are not redone, so an interrupted study
resumes by running the same command. The run directories stay out of git; ``results/`` and
``RESULTS.md`` are rewritten from them on every call that reports, and ``results/runs/``
keeps every complete run's tables (committed), so the study can go on on another machine:
``report.py`` reads from there the runs whose directories are not under ``--out``. Runs
trained with ``--train-only`` enter it with ``report.py --out RUNS --archive-only``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import repeatlens  # noqa: E402
from design import SIZES, queue, sweeps  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/repeated_data_scaling_v2"), help="run directories (not committed)")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: one per core)")
    p.add_argument("--sizes", default=",".join(SIZES), help="comma-separated presets to train (default: all)")
    p.add_argument("--no-t4", action="store_true", help="leave out the T4 arm")
    p.add_argument("--train-only", action="store_true", help="train and score, write no results")
    p.add_argument("--score-device", default=None, help="where runs are scored (default: as analyze, CUDA when present)")
    args = p.parse_args()

    t0 = time.perf_counter()
    sizes = tuple(s for s in args.sizes.split(",") if s)
    unknown = sorted(set(sizes) - set(SIZES))
    if unknown:
        raise SystemExit(f"--sizes: unknown {unknown}; expected some of {', '.join(SIZES)}")
    specs = sweeps(sizes, t4=not args.no_t4)
    print("\n".join(f"== {name}: {len(spec.points)} runs" for name, spec in specs.items()), flush=True)
    res = repeatlens.run_sweep(queue(specs, args.score_device), args.out, workers=args.workers, progress=True)  # one queue: no core idles
    if res.errors:
        raise SystemExit(f"{len(res.errors)} run(s) failed: {res.errors}")
    print(f"trained and scored in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    if args.train_only:
        return
    from report import write_results  # noqa: E402

    write_results(args.out, HERE, started=t0)


if __name__ == "__main__":
    main()
