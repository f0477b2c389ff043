"""A real learning check: in-context copying that generalises to unseen repeat lengths."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from repeatlens.data.synthetic import synthetic_sequences


def _token_losses(model, tokens: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(tokens.astype(np.int64))
    with torch.inference_mode():
        logits = model(t)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), t[:, 1:].flatten(), reduction="none").view(len(t), -1)


def test_repeats_are_predicted_from_context(induction_run) -> None:
    cfg = induction_run.config()
    model = induction_run.load_model()
    toks, is_copy = synthetic_sequences(128, 32, cfg.data.synthetic, low=1, high=64, seed=12345)
    lp = _token_losses(model, toks)
    copy = torch.from_numpy(is_copy[:, 1:])
    first, repeat = lp[~copy].mean().item(), lp[copy].mean().item()
    assert first > 3.5  # random tokens: about ln 63 = 4.14 nats
    assert repeat < 0.5 * first, (first, repeat)


def test_copying_survives_a_repeat_length_never_seen_in_training(induction_run) -> None:
    """Training repeats have length 3-14; the probe repeats 15 random tokens: [BOS, r, r]."""
    model = induction_run.load_model()
    L = 15
    assert L > induction_run.config().data.synthetic.max_len
    r = np.random.default_rng(7).integers(1, 64, (128, L))
    toks = np.concatenate([np.zeros((128, 1), dtype=np.int64), r, r], axis=1)[:, :32]
    lp = _token_losses(model, toks)
    first = lp[:, 1:L].mean().item()  # predicting r[1:] the first time
    second = lp[:, L + 1 : 2 * L].mean().item()  # predicting r[1:] again
    assert first > 3.5
    assert second < 0.5 * first, (first, second)
    # the random-init checkpoint could not do this
    lp0 = _token_losses(induction_run.load_model(step=0), toks)
    assert lp0[:, L + 1 : 2 * L].mean().item() > 3.5
