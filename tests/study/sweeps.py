"""Hand-built sweep tables with known verdicts, shared by the study's tests."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd


DM = -1
"""Key of the data-matched control in the ``test_loss`` dicts (0 is the full-data control)."""


def sweep_tables(test_loss: dict[int, float], abilities: dict[int, float], noise: float = 0.01, seeds: int = 3,
            step0_induction: float = 0.03, rising: bool = True, loss_se: float | None = 0.02, zero_at: int = 60):
    """A sweep: full-data control (key 0), data-matched control (key DM, when given) + f = 0.1 at
    the given E; final checkpoint values per point.

    ``test_loss[E]`` / ``abilities[E]`` give each point's mean; seeds add +-noise. Training
    metrics every 20 steps: the controls' test loss falls as 0.3 exp(-step / 10) onto the
    final value (flattened, by :data:`repeatlens.study.FLAT_FRACTION`, at step 40); the
    repeated runs' rises by 0.2 from step 40 to 60 (``rising``) and comes back; their
    repeated-subset loss reaches a tenth of its start at step ``zero_at``. ``loss_se``: the
    evaluations' standard error (None: a table from before it was recorded).
    """
    rows, mrows = [], []
    for (e, base), s in itertools.product(test_loss.items(), range(seeds)):
        f, E, control = {0: (0.0, 1, "full"), DM: (0.0, 1, "data_matched")}.get(e, (0.1, e, "none"))
        run = {0: "control", DM: "matched"}.get(e, f"f{f}_E{E}") + f"_s{s}"
        eps = noise * (s - (seeds - 1) / 2)
        common = dict(run_id=run, repeated_fraction=f, repeat_count=E, seed=s, total_tokens=1000, model_preset="t", n_params=10,
                      control=control, unique_tokens=900 if control != "full" else 1000)
        ab = abilities.get(e, abilities[0])
        for step, scale in ((0, None), (100, 1.0)):
            vals = {
                "test_loss": (4.2 if scale is None else base + eps, None),
                "repeated_loss": (4.2 if scale is None else 0.05, None),
                "copying_gain": (0.0 if scale is None else ab + eps, None),
            }
            for m, (v, _) in vals.items():
                rows.append(dict(common, step=step, tokens_seen=step * 10, metric=m, layer=np.nan, head=np.nan, value=v))
            for layer, head in itertools.product(range(2), range(2)):
                best = layer == 1 and head == 0
                ind = step0_induction if scale is None else (ab if best else 0.01)
                pm = step0_induction if scale is None else (ab if best else 0.01)
                for m, v in (("induction", ind), ("prefix_matching", pm), ("previous_token", 0.05)):
                    rows.append(dict(common, step=step, tokens_seen=step * 10, metric=m, layer=layer, head=head, value=v))
        bump = {0: 0.3, 20: 0.1, 40: 0.0, 60: 0.2, 80: 0.15, 100: 0.0}  # up from 40 to 60, down again after
        for step in range(0, 101, 20):
            t = base + eps
            test = t + (bump[step] if rising and f > 0 else 0.3 * np.exp(-step / 10))
            rep = max(4.25 - 4.2 * step / zero_at, 0.05)  # at most a tenth of its start (0.425) from step zero_at
            extra = {} if loss_se is None else {"loss_se": loss_se}
            mrows += [dict(common, step=step, tokens_seen=step * 10, split="test", loss=test, **extra),
                      dict(common, step=step, tokens_seen=step * 10, split="repeated", loss=rep, **extra)]
    return pd.DataFrame(rows), pd.DataFrame(mrows)


CHANCE = {"induction": 0.03, "prefix_matching": 0.03, "previous_token": 0.05, "duplicate_token": 0.03}
PEAKED = {0: 2.50, DM: 2.69, 1: 2.50, 10: 2.70, 100: 3.00, 1000: 2.60}
ABIL = {0: 0.80, 1: 0.80, 10: 0.50, 100: 0.10, 1000: 0.70}
