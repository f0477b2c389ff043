"""The local learning coefficient through the optional devinterp extra (scores/llc.py)."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict

import numpy as np
import pytest
import torch

from repeatlens.scores import REGISTRY, default_metrics, score_model
from repeatlens.scores import llc as llc_mod
from repeatlens.scores.llc import LLC_SAMPLER, LLCSampler, local_learning_coefficient

HAS_DEVINTERP = importlib.util.find_spec("devinterp") is not None


def data(n: int, seed: int) -> torch.Tensor:
    return torch.randint(1, 64, (n, 32), generator=torch.Generator().manual_seed(seed))


def test_opt_in_with_its_sampler_settings_recorded() -> None:
    for name in ("llc_test", "llc_repeated"):
        assert REGISTRY[name].settings == asdict(LLC_SAMPLER) and not REGISTRY[name].per_head
        assert name not in default_metrics(8)[0] and name not in default_metrics(8)[1]  # named only, never left-out noise


def test_skipped_with_one_line_without_the_extra(tiny, monkeypatch, capsys) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(llc_mod.importlib.util, "find_spec", lambda name, *a: None if name == "devinterp" else real(name, *a))
    df = score_model(tiny(d_vocab=64, n_ctx=32), ["llc_test", "test_loss"], test_tokens=data(16, 0))
    assert df.metric.tolist() == ["test_loss"]
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ['llc_test: skipped: the optional devinterp extra is not installed (pip install -e ".[devinterp]")']


@pytest.mark.skipif(not HAS_DEVINTERP, reason="the devinterp extra is not installed")
def test_runs_on_a_tiny_model_seeded_and_leaves_it_as_it_was(tiny) -> None:
    model = tiny(d_vocab=64, n_ctx=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    test, rep = data(16, 0), data(16, 1)
    torch.manual_seed(7)
    np.random.seed(7)  # (python's random: beartype's runtime checks under pytest draw from it themselves)
    df = score_model(model, ["llc_test", "llc_repeated"], test_tokens=test, repeated_tokens=rep)
    assert torch.rand(1).item() == torch.rand(1, generator=torch.Generator().manual_seed(7)).item()  # global RNG restored
    assert np.random.rand() == np.random.RandomState(7).rand()
    assert df.metric.tolist() == ["llc_test", "llc_repeated"] and df["layer"].isna().all()
    assert np.isfinite(df.value).all()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    again = score_model(model, ["llc_test"], test_tokens=test)
    assert again.value.iloc[0] == df.value.iloc[0]  # seeded: the same value again
    # too few sequences for one SGLD batch: no row
    assert score_model(model, ["llc_test"], test_tokens=test[:8]).empty


@pytest.mark.skipif(not HAS_DEVINTERP, reason="the devinterp extra is not installed")
def test_the_estimate_follows_its_definition(tiny) -> None:
    """``llc = n_beta (E_SGLD[L] - L(w*))``: a sampler that does not move reads 0."""
    model, x = tiny(d_vocab=64, n_ctx=32), data(16, 0)
    still = LLCSampler(lr=1e-12, chains=1, draws=10, batch_size=8)
    assert abs(local_learning_coefficient(model, x, still)) < 1e-3
    moving = LLCSampler(lr=1e-3, chains=1, draws=20, batch_size=8)
    assert np.isfinite(local_learning_coefficient(model, x, moving))
    with pytest.raises(ValueError, match="fewer than one SGLD batch"):
        local_learning_coefficient(model, x[:4], moving)
