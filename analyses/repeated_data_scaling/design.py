"""The redesigned scaling study's grid (issue 21), as data: which runs exist and why.

Every run shares ``base.yaml`` (Shakespeare, BPE 1024, three quarters of the unique
sequences synthetic over 64 ids, the repeated subset natural text only, D = 6M tokens,
2-layer attention-only rotary models, AdamW 3e-3). The points:

* **repeated runs**: f = 0.25 and a factor-2 window of seven repeat counts per size, three
  on each side of the peak the pilots located (``NOTES.md``), two seeds each;
* **full-data controls** (f = 0 on D) and **data-matched controls** (f = 0 on the
  (1-f)·D = 4.5M unique tokens a run at f = 0.25 sees), three seeds each, at every size;
* **the T4 arm**: at d_model 32, f = 0.5 at two repeat counts (below and at that size's
  f = 0.5 peak), evaluated every 50 steps on 512 held-out text sequences, with its own
  full-data and data-matched controls evaluated the same way, two seeds each.

Run names follow the sweep convention (``rot2-d64_f0.25_E128_s1``), so the pilots' runs
(``pilot/``) with the same config are the study's runs and are not trained again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from repeatlens.config import merge, read_yaml
from repeatlens.sweep import SweepSpec, expand_grid

HERE = Path(__file__).resolve().parent
SIZES = ("rot2-d16", "rot2-d24", "rot2-d32", "rot2-d48", "rot2-d64", "rot2-d128")
"""Six widths over 58x in non-embedding N (2,272 to 132,864)."""
FRACTION = 0.25
SEEDS_REPEATED = (0, 1)
SEEDS_CONTROL = (0, 1, 2)
WINDOWS: dict[str, tuple[int, ...]] = {
    "rot2-d16": (64, 128, 256, 512, 1024, 2048, 4096),
    "rot2-d24": (32, 64, 128, 256, 512, 1024, 2048),
    "rot2-d32": (32, 64, 128, 256, 512, 1024, 2048),
    "rot2-d48": (16, 32, 64, 128, 256, 512, 1024),
    "rot2-d64": (16, 32, 64, 128, 256, 512, 1024),
    "rot2-d128": (8, 16, 32, 64, 128, 256, 512),
}
"""Per size, the factor-2 repeat counts: the pilots' peak (NOTES.md) with three points either side."""
T4_SIZE = "rot2-d32"
T4_FRACTION = 0.5
T4_REPEATS = (128, 512)
T4_SEEDS = (0, 1)
T4_EVAL_EVERY = 50
ANALYZE = {"probes": "synthetic", "max_sequences": 128}


def base() -> dict[str, Any]:
    return read_yaml(HERE / "base.yaml")


def _spec(grid: dict[str, list[Any]], over: dict[str, Any] | None = None, *, data_matched: bool = False) -> SweepSpec:
    b = merge(base(), over or {})
    return SweepSpec(base=b, grid=grid, analyze=dict(ANALYZE), points=expand_grid(b, grid, where="design",
                                                                                 data_matched_controls=data_matched),
                     source=HERE / "design.py")


def sweeps(sizes: tuple[str, ...] = SIZES, *, t4: bool = True) -> dict[str, SweepSpec]:
    """The study's sweeps, in the order they run: per size its controls then its repeated runs, then the T4 arm."""
    out: dict[str, SweepSpec] = {}
    for size in sizes:
        out[f"{size} controls"] = _spec({"model.preset": [size], "mixture.repeated_fraction": [0.0], "mixture.repeat_count": [1],
                                         "seed": list(SEEDS_CONTROL)})
        out[f"{size} data-matched"] = _spec({"model.preset": [size], "mixture.data_matched": [FRACTION],
                                             "mixture.repeated_fraction": [0.0], "seed": list(SEEDS_CONTROL)})
        out[f"{size} repeated"] = _spec({"model.preset": [size], "mixture.repeated_fraction": [FRACTION],
                                         "mixture.repeat_count": list(WINDOWS[size]), "seed": list(SEEDS_REPEATED)})
    if t4 and T4_SIZE in sizes:
        t4_over = {"train": {"eval_every": T4_EVAL_EVERY}}
        out["T4 arm"] = _spec({"model.preset": [T4_SIZE], "train.eval_every": [T4_EVAL_EVERY],
                               "mixture.repeated_fraction": [0.0, T4_FRACTION], "mixture.repeat_count": list(T4_REPEATS),
                               "seed": list(T4_SEEDS)}, t4_over, data_matched=True)
    return out


def queue(specs: dict[str, SweepSpec], score_device: str | None = None) -> SweepSpec:
    """Every sweep's points as one sweep, in their order, so that a worker pool runs them as one
    queue: sweep by sweep, each 3-run control sweep left a core idle while its last run trained.
    ``score_device`` (e.g. ``cpu``) overrides where the runs are scored, not what is scored."""
    points = [p for spec in specs.values() for p in spec.points]
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ValueError(f"two sweeps of the study share a run name: {sorted({n for n in names if names.count(n) > 1})}")
    analyze = {**ANALYZE, **({"device": score_device} if score_device else {})}
    return SweepSpec(base=base(), grid={"sweeps": list(specs)}, analyze=analyze, points=points, source=HERE / "design.py")


if __name__ == "__main__":
    total = 0
    for name, spec in sweeps().items():
        total += len(spec.points)
        print(f"{name}: {len(spec.points)} runs: {', '.join(p.name for p in spec.points)}")
    print(f"{total} runs")
