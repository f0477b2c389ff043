"""Mixed precision and gradient accumulation (repeatlens.precision), on the CPU: bf16 and fp16
autocast train to the fp32 loss within a stated tolerance, resume bit-identically, keep fp32
checkpoints; four micro-batches give the updates of one batch up to float rounding."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from repeatlens.config import config_from_dict
from repeatlens.errors import ConfigError
from repeatlens.precision import micro_batches
from repeatlens.train import train
from tests.conftest import TINY_SYNTHETIC, tiny_config

LONGER = {"mixture": {"total_tokens": 32 * 8 * 60}, "train": {"checkpoints": {"log_count": 0, "every": 20}}}  # 60 steps


def _weights(run, step=None) -> dict[str, torch.Tensor]:
    """The float tensors of a checkpoint that are finite (attention masks hold -inf)."""
    sd = run.checkpoint(step).load_state_dict()
    return {k: v for k, v in sd.items() if v.is_floating_point() and v.isfinite().all()}


def _final_test_loss(run) -> float:
    m = run.metrics()
    return float(m[(m.split == "test") & (m.step == m.step.max())].loss.iloc[0])


def test_four_micro_batches_give_the_gradients_of_one_batch() -> None:
    """The trainer's own step (accumulate_gradients) on one batch of 8 sequences, whole and as
    4 micro-batches of 2: the same loss and gradients up to float rounding."""
    from repeatlens import model as adapter
    from repeatlens.precision import Precision
    from repeatlens.train import accumulate_gradients

    cfg = tiny_config()
    model = adapter.build_model(cfg.model, d_vocab=64, seed=0)
    fwd = adapter.forward_fn(model, True)
    tokens = torch.randint(1, 64, (8, 32), generator=torch.Generator().manual_seed(0))
    grads = {}
    for micro in (None, 2):
        model.zero_grad(set_to_none=True)
        loss = accumulate_gradients(fwd, model, tokens, Precision("fp32", "cpu"), micro)
        grads[micro] = (float(loss), {n: p.grad.clone() for n, p in model.named_parameters()})
    (l1, g1), (l4, g4) = grads[None], grads[2]
    assert l1 == pytest.approx(l4, rel=1e-6)
    for n in g1:
        torch.testing.assert_close(g4[n], g1[n], rtol=1e-5, atol=1e-7)
    assert any(not torch.equal(g1[n], g4[n]) for n in g1)  # really summed in another order


def test_four_micro_batches_train_like_one_batch(tmp_path: Path) -> None:
    """Weights after 3 AdamW steps, batch 8 whole against 4 x 2: equal up to float rounding
    (measured: at most 3e-8 apart, against moves of 2.5e-3). Except the key biases b_K:
    adding a constant to every key shifts a query's scores equally, which softmax ignores, so
    their exact gradient is 0 and what the float sums leave is rounding noise, which AdamW
    divides by its own size into steps of lr: those differ whichever way the sums go."""
    w0 = _weights(train(tiny_config(), tmp_path / "init", stop_after=0), 0)
    whole = _weights(train(tiny_config(), tmp_path / "whole", stop_after=3), 3)
    acc = _weights(train(tiny_config(train={"micro_batch_size": 2}), tmp_path / "acc", stop_after=3), 3)
    for k in w0:
        if k.endswith("attn.b_K"):
            continue
        assert float((whole[k] - w0[k]).abs().max()) > 1e-3, k  # it moved
        torch.testing.assert_close(acc[k], whole[k], rtol=0, atol=1e-6, msg=k)


def test_micro_batches_split_rows_and_weigh_them_by_their_share() -> None:
    x = torch.arange(10 * 3).view(10, 3)
    parts = micro_batches(x, 4)
    assert [p.shape[0] for p, _ in parts] == [4, 4, 2] and [w for _, w in parts] == [0.4, 0.4, 0.2]
    assert torch.equal(torch.cat([p for p, _ in parts]), x)
    assert micro_batches(x, None) == micro_batches(x, 10) and micro_batches(x, None)[0][1] == 1.0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_on_cpu_trains_to_the_fp32_loss_within_001_nats(tmp_path: Path, precision: str) -> None:
    """60 steps of the tiny model: the final test loss (~4.28 nats) within 0.01 nats of fp32's
    (measured: bf16 +0.00008, fp16 +0.000002); weights and checkpoints stay float32."""
    fp32 = train(tiny_config(**LONGER), tmp_path / "fp32")
    half = train(tiny_config(mixture=LONGER["mixture"], train={**LONGER["train"], "precision": precision}), tmp_path / precision)
    assert abs(_final_test_loss(half) - _final_test_loss(fp32)) < 0.01
    a, b = _weights(fp32), _weights(half)
    assert all(v.dtype == torch.float32 for v in b.values())
    assert any(not torch.equal(a[k], b[k]) for k in a)  # autocast did act: not the fp32 run's bits


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_resumes_bit_identically(tmp_path: Path, precision: str) -> None:
    cfg = tiny_config(train={"precision": precision})
    full = train(cfg, tmp_path / "full")
    train(cfg, tmp_path / "part", stop_after=7)
    resumed = train(cfg, tmp_path / "part")
    a, b = full.checkpoints()[-1].load_state_dict(), resumed.checkpoints()[-1].load_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(full.metrics(), resumed.metrics(), check_exact=True)  # NaN (train rows' loss_se) equal to NaN
    from repeatlens.checkpoints import load_train_state

    state = load_train_state(resumed.checkpoints()[-1])[0]
    assert ("scaler.scale" in state) == (precision == "fp16")  # fp16's gradient scale travels with the optimizer state
    if precision == "fp16":
        assert float(state["scaler.scale"]) > 0


def test_a_micro_batch_larger_than_the_batch_is_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({**TINY_SYNTHETIC, "train": {**TINY_SYNTHETIC["train"], "micro_batch_size": 16}})
    assert "micro_batch_size = 16 exceeds batch_size = 8" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"train.precision"):
        config_from_dict({**TINY_SYNTHETIC, "train": {**TINY_SYNTHETIC["train"], "precision": "fp8"}})
