"""The one next-token loss: what training minimises, what its evaluations log and what the
behaviour scores read, so ``metrics.parquet``'s test loss and ``scores.parquet``'s
``test_loss`` are the same number.

TransformerLens' convention: ``logits[:, t]`` predicts ``tokens[:, t + 1]``; losses are
computed in float32 whatever the logits' dtype. :func:`batched_losses` is the one loop that
computes a loss over a set of sequences a batch at a time (training's evaluations, the data
pass of the behaviour scores, attribution patching and the reference path all call it);
:func:`copy_loss_positions` names the loss indices of the copy probe ``[BOS, r, r]``.
"""

from __future__ import annotations

from typing import Any, Callable, Union

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int, Integer
from torch import Tensor

__all__ = ["token_losses", "next_token_loss", "batched_losses", "copy_loss_positions", "copy_losses"]

Batched = Union[Tensor, tuple[Tensor, ...]]


def token_losses(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos_minus_1"]:
    """Next-token cross-entropy at every position: ``-log softmax(logits[:, t])[tokens[:, t+1]]``."""
    b, p, v = logits.shape
    flat = F.cross_entropy(logits[:, :-1].reshape(-1, v).float(), tokens[:, 1:].reshape(-1), reduction="none")
    return flat.view(b, p - 1)


def next_token_loss(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, ""]:
    """Mean next-token cross-entropy over every position of every sequence (the training loss)."""
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v).float(), tokens[:, 1:].reshape(-1))


def batched_losses(
    losses: Callable[[Int[Tensor, "batch pos"]], Batched],
    tokens: Integer[Tensor, "n pos"] | Integer[np.ndarray, "n pos"],
    batch_size: int,
    device: Any = None,
    *,
    row_dim: int = 0,
) -> Batched:
    """``losses(x)`` for each batch ``x`` of at most ``batch_size`` rows of ``tokens`` (as
    int64, on ``device``), each result moved to the CPU and concatenated along ``row_dim``
    (the dimension that indexes the rows; a tuple of results is concatenated part by part).

    ``losses`` does the forward pass and reduces it to per-row numbers, e.g.
    ``lambda x: token_losses(model(x), x)``; the caller chooses the grad mode (inference
    mode around the call, or gradients inside ``losses``). With no rows, ``losses`` is called
    once on the empty batch, so the result has the shape a batch would give, with 0 rows.
    Rows never interact, so the result equals ``losses`` of all rows at once, to float
    rounding.

    >>> t = torch.arange(12).view(4, 3)
    >>> batched_losses(lambda x: x.sum(-1), t, 3)
    tensor([ 3, 12, 21, 30])
    >>> batched_losses(lambda x: x.T, t, 3, row_dim=1).shape  # rows along the last dimension
    torch.Size([3, 4])
    >>> [p.tolist() for p in batched_losses(lambda x: (x[:, 0], x[:, -1]), t, 3)]
    [[0, 3, 6, 9], [2, 5, 8, 11]]
    """
    n = tokens.shape[0]
    out: list[Batched] = []
    for start in (range(0, n, batch_size) if n else [0]):
        rows = tokens[start : start + batch_size]
        x = (rows if isinstance(rows, Tensor) else torch.from_numpy(np.asarray(rows).astype(np.int64))).to(device)
        part = losses(x)
        out.append(tuple(p.cpu() for p in part) if isinstance(part, tuple) else part.cpu())
    if isinstance(out[0], tuple):
        return tuple(torch.cat(parts, dim=row_dim) for parts in zip(*out))
    return torch.cat(out, dim=row_dim)


def copy_loss_positions(copy_len: int) -> tuple[slice, slice]:
    """The loss indices the copying scores read in ``[BOS, r, r]``: ``(first copy, second copy)``.

    Token ``t`` is predicted by loss index ``t - 1``. Both skip the first token of their
    copy (unpredictable in the first copy; in the second it follows ``r``'s last token,
    with no earlier occurrence to copy from), so each holds ``L - 1`` targets: first copy =
    tokens ``2 .. L`` (indices ``1 .. L-1``), second copy = tokens ``L+2 .. 2L``.

    >>> copy_loss_positions(5)
    (slice(1, 5, None), slice(6, 10, None))
    """
    L = int(copy_len)
    return slice(1, L), slice(L + 1, 2 * L)


def copy_losses(loss: Float[Tensor, "batch pos_minus_1"], copy_len: int) -> tuple[float, float]:
    """Mean next-token loss on the first and the second copy of ``r`` in ``[BOS, r, r]``
    (the loss indices of :func:`copy_loss_positions`).

    Returns:
        ``(first_copy_loss, second_copy_loss)``.
    """
    first, second = copy_loss_positions(copy_len)
    return float(loss[:, first].mean()), float(loss[:, second].mean())
