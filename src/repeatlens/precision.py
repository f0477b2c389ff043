"""Training numerics: the autocast dtype, fp16's gradient scaler, TF32 matmuls, accumulation.

``train.precision`` chooses the dtype of the forward pass: ``fp32`` (no autocast: the
training every run before this option had, bit for bit), ``bf16`` or ``fp16`` through
``torch.autocast`` on the run's device. The weights, the optimizer state and every
checkpoint stay float32 (autocast casts copies for the matmuls; the loss is computed in
float32, :mod:`repeatlens.losses`); ``fp16`` adds a gradient scaler
(``torch.amp.GradScaler``), whose scale is saved with the optimizer state so that a resume
continues it. Evaluations and scores always run in float32.

``train.tf32`` (default on) lets CUDA run float32 matmuls and convolutions on TF32 tensor
cores (10 mantissa bits in the products); it changes nothing on the CPU.

``train.micro_batch_size`` splits each batch into micro-batches whose gradients are
accumulated before the optimizer step, each micro-batch's mean loss weighted by its share of
the batch's sequences: the same update as the whole batch, up to float rounding (every
sequence has the same number of tokens, so the batch's mean over tokens is the weighted
mean of the micro-batches' means).

Determinism: under ``train.deterministic`` a run is bit-identical to a rerun on the same
device and thread count at every precision (tested on the CPU for fp32 and bf16, including a
resume); runs at different precisions, with and without accumulation, or with TF32 on and
off differ by float rounding.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch import Tensor

__all__ = ["AUTOCAST_DTYPES", "Precision", "matmul_settings", "micro_batches"]

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """The forward-pass dtype of one training run, and fp16's gradient scaler.

    Args:
        precision: ``fp32``, ``bf16`` or ``fp16`` (``train.precision``).
        device: the torch device the run trains on.
    """

    def __init__(self, precision: str, device: str):
        self.name = precision
        self.device_type = torch.device(device).type
        self.dtype = AUTOCAST_DTYPES[precision]
        self.scaler: Optional[torch.amp.GradScaler] = torch.amp.GradScaler(self.device_type) if precision == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context of a forward pass (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()``, scaled for fp16."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, opt: torch.optim.Optimizer) -> None:
        """Bring fp16's scaled gradients back to their size (before clipping)."""
        if self.scaler is not None:
            self.scaler.unscale_(opt)

    def step(self, opt: torch.optim.Optimizer) -> None:
        """``opt.step()``; for fp16 the scaler's (which skips a step with inf/NaN gradients) and its update."""
        if self.scaler is None:
            opt.step()
        else:
            self.scaler.step(opt)
            self.scaler.update()

    def state(self) -> dict[str, Tensor]:
        """The scaler's state as tensors for the checkpoint (empty unless fp16)."""
        if self.scaler is None:
            return {}
        sd = self.scaler.state_dict()
        return {"scaler.scale": torch.tensor(float(sd["scale"]), dtype=torch.float64),
                "scaler.growth_tracker": torch.tensor(int(sd["_growth_tracker"]), dtype=torch.int64)}

    def load_state(self, tensors: dict[str, Tensor]) -> None:
        """Put back :meth:`state` (a checkpoint without it leaves the scaler fresh)."""
        if self.scaler is None or "scaler.scale" not in tensors:
            return
        sd = self.scaler.state_dict()
        sd.update(scale=float(tensors["scaler.scale"]), _growth_tracker=int(tensors["scaler.growth_tracker"]))
        self.scaler.load_state_dict(sd)


@contextlib.contextmanager
def matmul_settings(device: str, tf32: bool) -> Iterator[None]:
    """Run the block with TF32 allowed (or not) for CUDA matmuls and cuDNN; put the caller's
    settings back afterwards. Nothing changes off CUDA."""
    if torch.device(device).type != "cuda":
        yield
        return
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(tf32)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def micro_batches(tokens: Tensor, micro: Optional[int]) -> list[tuple[Tensor, float]]:
    """``tokens`` split into micro-batches of at most ``micro`` rows, each with its share of
    the batch's rows (the weight of its mean loss); one part of weight 1 when ``micro`` is
    None or covers the batch."""
    n = tokens.shape[0]
    if micro is None or micro >= n:
        return [(tokens, 1.0)]
    return [(part, part.shape[0] / n) for part in tokens.split(int(micro))]
