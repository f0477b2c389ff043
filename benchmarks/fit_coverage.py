"""Coverage of the scaling fits' bootstrap intervals on simulated sweeps with a known answer.

The t intervals' coverage is tested in CI (``tests/results/test_fits.py``, 200 sweeps each);
the bootstrap refits every peak ``--boot`` times per size, too slow for CI, so its coverage is
measured here, beside the t intervals on the SAME simulated sweeps:

* design: 6 sizes over 64x in N (1e4 ... 6.4e5), E = 1, 2, 4, ..., 8192, 2 seeds per point,
  independent N(0, sigma^2) noise per run (sigma 0.03 nats) on a 0.3-nat bump of width 0.5
  decades centred at log10 E* = 2.5 + alpha log10(N / 1e4), alpha = -0.5;
* ``--seed-sd S`` adds a per-seed offset shared by every E of a seed (as seeds share an
  initialisation), which the fits do not model: a robustness check.

Prints, per interval (the peak centre at the middle size, alpha), the coverage of the t and
the bootstrap intervals with its binomial 95% range, and the median widths. Usage::

    python benchmarks/fit_coverage.py [--sims 200] [--boot 200] [--seed 0] [--seed-sd 0]

The last line is ``coverage=X``: the bootstrap alpha interval's coverage.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from repeatlens.results.fits import fit_scaling  # noqa: E402
from tests.results.test_fits import simulate  # noqa: E402


def _binomial_range(p: float, n: int) -> tuple[float, float]:
    from scipy import stats

    return stats.binom.ppf(0.025, n, p) / n, stats.binom.ppf(0.975, n, p) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sims", type=int, default=200)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seed-sd", type=float, default=0.0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    alpha, mid = -0.5, 2
    hits = {"t": {"alpha": 0, "centre": 0}, "bootstrap": {"alpha": 0, "centre": 0}}
    widths = {"t": [], "bootstrap": []}
    identified = {"t": 0, "bootstrap": 0}
    t0 = time.perf_counter()
    for i in range(args.sims):
        sweep = simulate(rng, controls=False)
        if args.seed_sd:
            offsets = rng.normal(0, args.seed_sd, (sweep["N"].nunique(), 2))
            codes = {n: k for k, n in enumerate(sorted(sweep["N"].unique()))}
            sweep["test_loss"] += [offsets[codes[n], s] for n, s in zip(sweep["N"], sweep["seed"])]
        truth = 2.5 + alpha * math.log10(sorted(sweep["N"].unique())[mid] / 1e4)
        for kind, fit in (("t", fit_scaling(sweep, "test_loss")),
                          ("bootstrap", fit_scaling(sweep, "test_loss", bootstrap=args.boot, seed=i))):
            lo, hi = fit.peaks[mid].e_star_ci95
            hits[kind]["centre"] += math.log10(lo) <= truth <= math.log10(hi)
            if fit.identified:
                identified[kind] += 1
                hits[kind]["alpha"] += fit.alpha_ci95[0] <= alpha <= fit.alpha_ci95[1]
                widths[kind].append(fit.alpha_ci95[1] - fit.alpha_ci95[0])
        if (i + 1) % 20 == 0:
            print(f"{i + 1}/{args.sims} sweeps, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    lo, hi = _binomial_range(0.95, args.sims)
    print(f"{args.sims} simulated sweeps (seed {args.seed}, per-seed offset sd {args.seed_sd:g}), bootstrap {args.boot} refits per size; "
          f"a calibrated 95% interval covers in [{lo:.3f}, {hi:.3f}] of them (binomial 95% range)")
    for kind in ("t", "bootstrap"):
        n = identified[kind]
        print(f"{kind:9s}: peak centre at N = {sorted(sweep['N'].unique())[mid]:,.0f} covered {hits[kind]['centre'] / args.sims:.3f}; "
              f"alpha identified {n}/{args.sims}, covered {hits[kind]['alpha'] / max(n, 1):.3f}, "
              f"median width {np.median(widths[kind]) if widths[kind] else float('nan'):.3f}")
    print(f"{time.perf_counter() - t0:.0f} s")
    print(f"coverage={hits['bootstrap']['alpha'] / max(identified['bootstrap'], 1):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
