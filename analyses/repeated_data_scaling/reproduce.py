"""Re-train some of the study's runs with this checkout and compare them with a committed archive.

    python analyses/repeated_data_scaling/reproduce.py rot2-d16_f0_E1_s0 rot2-d16_f0.25_E512_s0 --out /tmp/repro --workers 2
    python analyses/repeated_data_scaling/reproduce.py RUN ... --out DIR --archive analyses/repeated_data_scaling/gpu/results/runs

The runs (names of ``design.py``'s points, as ``results/final_runs.csv`` lists them) train and
are scored as the study trains them (runs already complete under ``--out`` are not redone);
then, per run, the last checkpoint's losses beside the archive's, and over every checkpoint
the largest difference of each loss split and each score with the first step where the two
differ. The numbers are the answer: no threshold is applied (runs are bit-identical only on
the same device, thread count and code; other kernels or a refactored reduction differ by
float rounding, which training can grow).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from report import ARCHIVE, Collected  # noqa: E402

#: Per table: the columns that name one row (the third names what a row measures: a loss split or
#: a score) and the value compared.
TABLES = {"metrics": (["run_id", "step", "split"], "loss"),
          "scores": (["run_id", "step", "metric", "layer", "head", "offset", "probe"], "value")}


def differences(new: Collected, old: Collected) -> pd.DataFrame:
    """Per run and per loss split (``metrics``) or score (``scores``): rows compared, the largest
    |new - old| (NaN on both sides counts as equal), the first step where they differ (None:
    identical) and the rows only one side has. Only runs of ``new`` are read from ``old``."""
    out = []
    runs = set(new.info["run_id"])
    for table, (key, value) in TABLES.items():
        a, b = getattr(new, table), getattr(old, table)
        b = b[b["run_id"].astype(str).isin(runs)]
        what = key[2]
        m = a[key + [value]].merge(b[key + [value]], on=key, how="outer", suffixes=("_new", "_old"), indicator=True)
        for (run, name), g in m.groupby(["run_id", what], sort=True):
            both = g[g["_merge"] == "both"]
            x, y = both[f"{value}_new"].to_numpy(float), both[f"{value}_old"].to_numpy(float)
            differ = ~((x == y) | (np.isnan(x) & np.isnan(y)))
            out.append({"run_id": run, "table": table, "name": name, "rows": len(both),
                        "max_abs_diff": float(np.abs(x - y)[differ].max()) if differ.any() else 0.0,  # NaN: one side NaN
                        "first_step": int(both["step"].to_numpy()[differ].min()) if differ.any() else None,
                        "unmatched": int((g["_merge"] != "both").sum())})
    return pd.DataFrame(out).astype({"first_step": "Int64"})


def final_losses(new: Collected, old: Collected) -> pd.DataFrame:
    """The last checkpoint's loss per run and split, new beside old."""
    pick = lambda t: t.loc[t.groupby("run_id")["step"].transform("max") == t["step"], ["run_id", "split", "loss"]]  # noqa: E731
    old_m = old.metrics[old.metrics["run_id"].astype(str).isin(set(new.info["run_id"]))]
    m = pick(new.metrics).merge(pick(old_m), on=["run_id", "split"], suffixes=("_new", "_old"))
    return m.assign(diff=m["loss_new"] - m["loss_old"]).sort_values(["run_id", "split"]).reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run names of design.py (e.g. rot2-d16_f0_E1_s0)")
    p.add_argument("--out", type=Path, required=True, help="where the runs train (their directories)")
    p.add_argument("--archive", type=Path, default=ARCHIVE, help="the committed archive to compare with (default: the 2-core set's)")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: one per core)")
    args = p.parse_args(argv)

    from report import collect, read_archive

    old = read_archive(args.archive)
    if old is None:
        raise SystemExit(f"--archive {args.archive}: no archive there (expected scores.parquet, metrics.parquet, runs.csv)")
    missing = sorted(set(args.runs) - set(old.info["run_id"]))
    if missing:
        raise SystemExit(f"{args.archive}: holds no run {', '.join(missing)}; expected names its runs.csv lists, "
                         f"such as {sorted(old.info['run_id'])[0]}")
    import dataclasses

    import repeatlens
    from design import queue, sweeps

    q = queue(sweeps())
    points = [pt for pt in q.points if pt.name in set(args.runs)]
    unknown = sorted(set(args.runs) - {pt.name for pt in points})
    if unknown:
        raise SystemExit(f"not runs of design.py: {', '.join(unknown)} (pilot-only runs train from pilot/*.yaml)")
    res = repeatlens.run_sweep(dataclasses.replace(q, points=points), args.out, workers=args.workers, progress=False)
    if res.errors:
        raise SystemExit(f"{len(res.errors)} run(s) failed: {res.errors}")
    got = collect(args.out)  # the folder may hold other runs too
    mine = lambda t: t[t["run_id"].astype(str).isin(args.runs)]  # noqa: E731
    new = Collected(mine(got.scores), mine(got.metrics), mine(got.info), [])
    print(f"trained here on: {', '.join(sorted(set(new.info['device'].astype(str))))}; torch {', '.join(sorted(set(new.info['torch'].astype(str))))}")
    print(f"archive {args.archive}: trained on {', '.join(sorted(set(old.info.get('device', pd.Series(['not recorded'])).astype(str))))}")
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print("\nThe last checkpoint's losses:\n" + final_losses(new, old).to_string(index=False, float_format="%.6f"))
        print("\nOver every checkpoint:\n" + differences(new, old).to_string(index=False, float_format="%.3g"))


if __name__ == "__main__":
    main()
