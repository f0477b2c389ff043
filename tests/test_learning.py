"""A real learning check: in-context copying that generalises to unseen repeat lengths.

The session's ``induction_run`` (tests/conftest.py: INDUCTION_RUN) is trained through the
real pipeline: config, synthetic source, mixture schedule, ``repeatlens.train``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from repeatlens.data.synthetic import synthetic_sequences
from repeatlens.scores import score_model


def _token_losses(model, tokens: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(tokens.astype(np.int64))
    with torch.inference_mode():
        logits = model(t)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), t[:, 1:].flatten(), reduction="none").view(len(t), -1)


def test_repeats_are_predicted_from_context(induction_run) -> None:
    cfg = induction_run.config()
    model = induction_run.load_model()
    toks, is_copy = synthetic_sequences(128, cfg.data.seq_len, cfg.data.synthetic, ids=np.arange(1, 64), bos=0, seed=12345)
    lp = _token_losses(model, toks)
    copy = torch.from_numpy(is_copy[:, 1:])
    first, repeat = lp[~copy].mean().item(), lp[copy].mean().item()
    assert first > 3.5  # random tokens: about ln 63 = 4.14 nats
    assert repeat < 0.5 * first, (first, repeat)


def test_copying_survives_a_repeat_length_never_seen_in_training(induction_run) -> None:
    """Training repeats have length 2-30; the probe repeats 31 random tokens: [BOS, r, r]."""
    model = induction_run.load_model()
    L = 31
    assert L > induction_run.config().data.synthetic.max_len
    r = np.random.default_rng(7).integers(1, 64, (128, L))
    toks = np.concatenate([np.zeros((128, 1), dtype=np.int64), r, r], axis=1)
    lp = _token_losses(model, toks)
    first = lp[:, 1:L].mean().item()  # predicting r[1:] the first time
    second = lp[:, L + 1 : 2 * L].mean().item()  # predicting r[1:] again
    assert first > 3.5
    assert second < 0.5 * first, (first, second)
    # the random-init checkpoint could not do this
    lp0 = _token_losses(induction_run.load_model(step=0), toks)
    assert lp0[:, L + 1 : 2 * L].mean().item() > 3.5


def test_the_mechanism_is_an_induction_circuit(induction_run) -> None:
    """A layer-1 head scores induction > 0.5 and a layer-0 head previous-token > 0.5."""
    df = score_model(induction_run.load_model(), ["induction", "previous_token"])
    ind = df[(df.metric == "induction") & (df["layer"] == 1)].value.max()
    prev = df[(df.metric == "previous_token") & (df["layer"] == 0)].value.max()
    assert ind > 0.5 and prev > 0.5, (ind, prev)
    start = score_model(induction_run.load_model(step=0), ["induction"]).value.max()
    assert start < 0.1
