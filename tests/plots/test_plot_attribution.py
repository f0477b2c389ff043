"""The per-head attribution figures: heads as points, memorization share over training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from repeatlens.plots import UnsupportedFigureError, available_figures, head_attribution, memorization_share_over_training
from tests.plots.plot_factories import make_scores

RUN = {"run_id": "tiny-f0.1-E100-s0", "repeated_fraction": 0.1, "repeat_count": 100, "total_tokens": 1000,
       "model_preset": "tiny", "n_params": 1000, "seed": 0}


def table(text_splits: bool = False) -> pd.DataFrame:
    """One run, two checkpoints, 2 x 2 heads: head (1, 0) memorizes at the last checkpoint."""
    rows = []
    for step, tokens in ((10, 100), (20, 200)):
        for layer in range(2):
            for head in range(2):
                mem = step == 20 and (layer, head) == (1, 0)
                vals = {"ablation_test_loss": 0.05 if mem else 0.2 + 0.1 * head, "ablation_repeated_loss": 0.6 if mem else 0.2,
                        "induction": 0.9 if (layer, head) == (1, 1) else 0.1}
                vals["memorization_share"] = vals["ablation_repeated_loss"] / (vals["ablation_repeated_loss"] + vals["ablation_test_loss"])
                if text_splits:
                    vals["ablation_test_text_loss"] = vals["ablation_test_loss"] / 2
                    vals["ablation_repeated_text_loss"] = vals["ablation_repeated_loss"] / 2
                rows += [{"step": step, "tokens_seen": tokens, "metric": m, "layer": layer, "head": head, "value": v, **RUN}
                         for m, v in vals.items()]
    out = pd.DataFrame(rows)
    out["layer"], out["head"] = out["layer"].astype("Int64"), out["head"].astype("Int64")
    return out


def test_heads_as_points_with_a_checkpoint_slider() -> None:
    fig = head_attribution(table())
    assert len(fig.frames) == len(fig.layout.sliders[0].steps) == 2
    last = fig.frames[-1].data[0]
    pts = dict(zip(last.text, zip(last.x, last.y, last.marker.color)))
    assert pts["L1.H0"][:2] == (0.05, 0.6) and pts["L1.H1"] == (0.30000000000000004, 0.2, 0.9)
    assert "test-loss rise" in fig.layout.xaxis.title.text and "repeated-loss rise" in fig.layout.yaxis.title.text
    assert fig.layout.meta["repeatlens"]["figure"] == "head_attribution"


def test_natural_text_splits_are_preferred_when_present() -> None:
    fig = head_attribution(table(text_splits=True))
    last = fig.frames[-1].data[0]
    assert dict(zip(last.text, last.y))["L1.H0"] == 0.3 and "natural text" in fig.layout.xaxis.title.text


def test_share_heatmap_rows_are_heads_columns_checkpoints() -> None:
    fig = memorization_share_over_training(table())
    z = np.asarray(fig.data[0].z, dtype=float)
    assert list(fig.data[0].y) == ["L0.H0", "L0.H1", "L1.H0", "L1.H1"] and z.shape == (4, 2)
    assert z[2, 1] == pytest.approx(0.6 / 0.65) and z[2, 0] == pytest.approx(0.5)


def test_in_the_report_figures_only_when_scored() -> None:
    figs = available_figures(table())
    assert {"head_attribution", "memorization_share_over_training"} <= set(figs)
    assert not {"head_attribution", "memorization_share_over_training"} & set(available_figures(make_scores(seeds=(0,), models=(("tiny", 100_000),))))
    with pytest.raises(UnsupportedFigureError, match="ablation_repeated_loss"):
        head_attribution(table()[lambda d: d.metric != "ablation_repeated_loss"])
