"""Knocking out one attention head: the value a mean ablation writes (:func:`z_means`) and the
``hook_z`` hook that writes it (:func:`ablate_head`).

Shared by the fast ablation and attribution scores (:mod:`.behaviour`, :mod:`.attribution`)
and the reference path they are checked against (:mod:`.reference`), so none of those
imports another for them.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor

from repeatlens.model import HookedTransformer, z_hook_name

__all__ = ["z_means", "ablate_head"]


def z_means(model: HookedTransformer, tokens: Int[Tensor, "n pos"], batch_size: Optional[int] = None, device=None) -> list[Float[Tensor, "head d_head"]]:
    """Each head's mean output before ``W_O`` (hook ``hook_z``) over every position of
    ``tokens``, per layer: the value a mean ablation writes. ``batch_size`` None: one pass."""
    cfg = model.cfg
    names = [z_hook_name(layer) for layer in range(cfg.n_layers)]
    step = batch_size or max(1, tokens.shape[0])
    sums = [torch.zeros(cfg.n_heads, cfg.d_head, dtype=torch.float64) for _ in names]
    count = 0
    with torch.inference_mode():
        for start in range(0, tokens.shape[0], step):
            x = tokens[start : start + step].to(device)
            _, cache = model.run_with_cache(x, names_filter=names, return_type=None)
            for layer, name in enumerate(names):
                sums[layer] += cache[name].double().sum(dim=(0, 1)).cpu()
            count += x.shape[0] * x.shape[1]
            del cache
    dtype = next(model.parameters()).dtype
    return [(s / max(count, 1)).to(dtype=dtype, device=device) for s in sums]


def ablate_head(head: int, value: Optional[Tensor]) -> Callable[[Tensor, Any], Tensor]:
    """A ``hook_z`` hook writing ``value`` (``[d_head]``; None: zero) into ``head`` at every position."""

    def hook(z: Tensor, hook: Any) -> Tensor:
        z[:, :, head] = 0.0 if value is None else value
        return z

    return hook
