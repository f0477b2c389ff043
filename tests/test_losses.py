"""The one loss and its batched loop (repeatlens.losses), against the direct full forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repeatlens.losses import batched_losses, copy_losses, token_losses
from repeatlens.model import logits
from repeatlens.scores import reference
from repeatlens.scores.behaviour import data_pass, memorized
from tests.scores.conftest import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(d_vocab=64, n_ctx=32, seed=3)


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(0, 64, (7, 20), generator=torch.Generator().manual_seed(0))


def test_token_losses_is_minus_log_softmax_at_the_next_token() -> None:
    lg = torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(1))
    t = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(2))
    want = -torch.log_softmax(lg, -1)[:, :-1].gather(-1, t[:, 1:, None])[..., 0]
    assert torch.allclose(token_losses(lg, t), want, atol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 50])
def test_batched_losses_equal_the_whole_forward(model, tokens: torch.Tensor, batch_size: int) -> None:
    with torch.inference_mode():
        whole = token_losses(logits(model, tokens), tokens)
        got = batched_losses(lambda x: token_losses(logits(model, x), x), tokens, batch_size)
    assert got.shape == (7, 19) and torch.allclose(got, whole, atol=1e-5)


def test_numpy_rows_and_tuples_and_the_row_dimension(model, tokens: torch.Tensor) -> None:
    rows = tokens.numpy().astype(np.uint16)  # as the evaluation sets are stored
    with torch.inference_mode():
        whole = token_losses(logits(model, tokens), tokens)
        mean, first = batched_losses(lambda x: (token_losses(logits(model, x), x).double().mean(-1), x[:, 0]), rows, 2)
    assert mean.dtype == torch.float64 and torch.allclose(mean, whole.double().mean(-1), atol=1e-6)
    assert first.dtype == torch.int64 and torch.equal(first, tokens[:, 0])
    assert torch.equal(batched_losses(lambda x: x.T, tokens, 2, row_dim=1), tokens.T)  # rows along the last dimension
    with pytest.raises(RuntimeError):  # ... which concatenating along dimension 0 cannot join
        batched_losses(lambda x: x.T, tokens, 2)


def test_no_rows_give_the_shape_of_a_batch_with_none(model) -> None:
    empty = torch.zeros(0, 20, dtype=torch.long)
    with torch.inference_mode():
        got = batched_losses(lambda x: token_losses(logits(model, x), x), empty, 4)
    assert got.shape == (0, 19)
    assert data_pass(model, empty).losses.shape == (0, 19) and data_pass(model, empty).greedy.shape == (0, 19)
    assert memorized(model, empty, 4, 4).shape == (0,)
    with reference.full_logits():
        assert memorized(model, empty, 4, 4).shape == (0,)


def test_every_caller_gives_the_whole_forwards_numbers(model, tokens: torch.Tensor) -> None:
    """The data pass (fused, tiled unembedding), the reference path and training's
    evaluation all equal one full forward of every row."""
    from repeatlens.train import eval_loss_se

    with torch.inference_mode():
        whole = token_losses(logits(model, tokens, fast=False), tokens)
    assert torch.allclose(data_pass(model, tokens, batch_size=3).losses, whole, atol=1e-5)
    assert torch.allclose(reference.sequence_losses(model, tokens, 2), whole, atol=1e-5)
    assert torch.allclose(reference.ablated_sequence_losses(model, tokens, [], 5), whole.double().mean(-1), atol=1e-5)
    mean, se = eval_loss_se(model, tokens.numpy().astype(np.uint16), 3, "cpu")
    per_seq = whole.double().mean(-1)
    assert mean == pytest.approx(float(per_seq.mean()), abs=1e-5)
    assert se == pytest.approx(float(per_seq.std(unbiased=True) / np.sqrt(7)), rel=1e-4)


def test_copy_losses_read_the_two_copies() -> None:
    loss = torch.arange(10.0)[None].repeat(2, 1)  # copy_len 5: loss indices 1..4 and 6..9
    assert copy_losses(loss, 5) == (pytest.approx(2.5), pytest.approx(7.5))
