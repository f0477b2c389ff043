"""The one next-token loss: what training minimises, what its evaluations log and what the
behaviour scores read, so ``metrics.parquet``'s test loss and ``scores.parquet``'s
``test_loss`` are the same number.

TransformerLens' convention: ``logits[:, t]`` predicts ``tokens[:, t + 1]``; losses are
computed in float32 whatever the logits' dtype.
"""

from __future__ import annotations

import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["token_losses", "next_token_loss"]


def token_losses(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos_minus_1"]:
    """Next-token cross-entropy at every position: ``-log softmax(logits[:, t])[tokens[:, t+1]]``."""
    b, p, v = logits.shape
    flat = F.cross_entropy(logits[:, :-1].reshape(-1, v).float(), tokens[:, 1:].reshape(-1), reduction="none")
    return flat.view(b, p - 1)


def next_token_loss(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, ""]:
    """Mean next-token cross-entropy over every position of every sequence (the training loss)."""
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v).float(), tokens[:, 1:].reshape(-1))
