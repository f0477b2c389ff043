"""Behaviour scores: copying loss positions, ICL positions, memorization, ablation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repeatlens.scores import icl_positions, memorized, score_model, sequence_losses
from repeatlens.scores.behaviour import copy_losses
from repeatlens.scores.probes import make_probes


def test_copy_losses_read_the_right_positions() -> None:
    L = 5
    # loss index t is the loss of token t+1; tokens 1..L first copy, L+1..2L second copy
    loss = torch.arange(2 * L, dtype=torch.float32)[None].repeat(3, 1)
    first, second = copy_losses(loss, L)
    assert first == pytest.approx(torch.arange(1, L).float().mean().item())  # tokens 2..L
    assert second == pytest.approx(torch.arange(L + 1, 2 * L).float().mean().item())  # tokens L+2..2L


@pytest.mark.parametrize("T, expected", [(1024, (50, 500)), (64, (3, 31)), (128, (6, 62)), (8, (1, 4)), (3, (1, 2))])
def test_icl_positions_scale_with_context(T: int, expected) -> None:
    assert icl_positions(T) == expected


def test_data_scores_match_manual_losses(tiny) -> None:
    model = tiny(d_vocab=64, n_ctx=32)
    g = torch.Generator().manual_seed(0)
    test = torch.randint(1, 64, (10, 40), generator=g)  # longer than n_ctx: cut to 32
    rep = torch.randint(1, 64, (6, 32), generator=g)
    df = score_model(model, ["test_loss", "repeated_loss", "icl_score"], test_tokens=test, repeated_tokens=rep, batch_size=4)
    val = dict(zip(df.metric, df.value))
    with torch.no_grad():
        lt = F.cross_entropy(model(test[:, :32])[:, :-1].transpose(1, 2), test[:, 1:32], reduction="none")
        lr = F.cross_entropy(model(rep)[:, :-1].transpose(1, 2), rep[:, 1:], reduction="none")
    assert val["test_loss"] == pytest.approx(lt.mean().item(), rel=1e-4)
    assert val["repeated_loss"] == pytest.approx(lr.mean().item(), rel=1e-4)
    early, late = icl_positions(32)
    assert val["icl_score"] == pytest.approx((lt[:, late - 1].mean() - lt[:, early - 1].mean()).item(), abs=1e-4)
    custom = score_model(model, ["icl_score"], test_tokens=test, icl_positions=(2, 20))
    assert custom.value.iloc[0] == pytest.approx((lt[:, 19].mean() - lt[:, 1].mean()).item(), abs=1e-4)
    assert sequence_losses(model, test, batch_size=3).shape == (10, 31)


def greedy(model, prefix: torch.Tensor, k: int) -> torch.Tensor:
    """Plain greedy decoding: k argmax steps on the full, growing prefix."""
    x = prefix
    with torch.no_grad():
        for _ in range(k):
            x = torch.cat([x, model(x)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return x


def test_memorization_equals_a_plain_greedy_loop(tiny) -> None:
    model = tiny(d_vocab=64, n_ctx=32)
    g = torch.Generator().manual_seed(1)
    p, k = 10, 8
    seqs = greedy(model, torch.randint(1, 64, (8, p), generator=g), k)  # memorized by construction
    seqs = torch.cat([seqs, torch.randint(1, 64, (8, 4), generator=g)], dim=1)  # tail beyond p+k ignored
    seqs[4:, p + k - 1] = (seqs[4:, p + k - 1] + 1) % 64  # break the last token of half of them
    seqs[6, p] = (seqs[6, p] + 1) % 64  # row 6 also wrong from its first generated token
    hits = memorized(model, seqs, p, k, batch_size=3)
    assert hits.tolist() == [True] * 4 + [False] * 4
    for row in range(8):  # agrees with the explicit loop
        loop = greedy(model, seqs[row : row + 1, :p], k)[0, p:]
        assert bool(torch.equal(loop, seqs[row, p : p + k])) == hits[row].item()
    df = score_model(model, ["memorization"], repeated_tokens=seqs, memorization_prefix=p, memorization_k=k)
    assert df.value.iloc[0] == 0.5


def test_memorization_clamps_to_the_sequence(tiny) -> None:
    model = tiny(d_vocab=64, n_ctx=32)
    seqs = torch.randint(1, 64, (3, 12))
    assert memorized(model, seqs, prefix=32, k=32).shape == (3,)  # p -> 11, k -> 1
    df = score_model(model, ["memorization"], repeated_tokens=seqs)  # defaults p = k = 32
    assert len(df) == 1 and 0.0 <= df.value.iloc[0] <= 1.0


def test_ablating_a_silent_head_changes_nothing(tiny) -> None:
    model = tiny(d_vocab=64, n_ctx=32)
    with torch.no_grad():
        model.blocks[1].attn.W_O[2].zero_()  # head (1, 2) writes nothing
    probes = make_probes(64, 32, batch=4)
    df = score_model(model, ["ablation_copying_loss"], probes=probes)
    assert len(df) == 8
    row = df[(df["layer"] == 1) & (df["head"] == 2)]  # df.head is the method
    assert row.value.iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert df.value.abs().max() > 0  # the others do something


@pytest.mark.parametrize("positional, attn_only", [("standard", False), ("rotary", True), ("shortformer", False)])
def test_position_losses_and_layer_reruns_equal_the_full_logit_computation(positional: str, attn_only: bool, monkeypatch) -> None:
    """Every score, the loss-reading ones (copying, ablation, data, attribution) computed at
    the read positions only, re-running blocks from the ablated layer, equals the pre-issue-23
    computation (full-vocabulary logits everywhere, one complete forward per head), also
    with the vocabulary read in tiles of 64 ids x 5 positions and one head of two rows per
    re-run pass."""
    from repeatlens.model import ModelConfig, build_model
    from repeatlens.scores import REGISTRY, reference
    from repeatlens.scores import behaviour

    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=32, d_vocab=300, attn_only=attn_only,
                      positional_embedding=positional)
    model = build_model(cfg, seed=1).eval()
    g = torch.Generator().manual_seed(0)
    data = dict(test_tokens=torch.randint(1, 300, (6, 40), generator=g), repeated_tokens=torch.randint(1, 300, (4, 20), generator=g),
                test_synthetic=torch.arange(6) % 2 == 0, repeated_synthetic=torch.arange(4) % 3 == 0, batch_size=4,
                memorization_prefix=4, memorization_k=2, probes=make_probes(300, 32, batch=3))
    metrics = [m for m in REGISTRY if not m.startswith("llc")]  # the weight scores' top-1 and shared weights too
    key = ["metric", "layer", "head", "probe"]

    def table(df):
        return df.astype({"layer": "float", "head": "float"}).sort_values(key).reset_index(drop=True)

    with reference.full_logits():
        old = table(score_model(model, metrics, **data))
    new = table(score_model(model, metrics, **data))
    monkeypatch.setattr(behaviour, "VOCAB_TILE", 64)
    monkeypatch.setattr(behaviour, "ROW_TILE", 5)
    monkeypatch.setattr(behaviour, "ABLATION_PASS_BYTES", 2 * behaviour._bytes_per_row(model, 32))
    small = table(score_model(model, metrics, **data))
    assert set(old.metric) == set(metrics) and len(old) == len(new) == len(small)
    for df in (new, small):
        assert df[key].equals(old[key])
        np.testing.assert_allclose(df.value, old.value, atol=2e-5, rtol=1e-5)
    assert old[old.metric == "ablation_copying_loss"].value.abs().max() > 1e-2  # the heads do something


def test_layer_run_reruns_reproduce_the_hooked_forward(tiny) -> None:
    """LayerRun: the clean pass block by block is the forward; a re-run from layer l with a
    hook equals a complete hooked forward, for every stacked copy."""
    from repeatlens.model import LayerRun, Unembedding, logits_from_resid, z_hook_name

    model = tiny(d_vocab=64, n_ctx=32)
    x = torch.randint(1, 64, (3, 20), generator=torch.Generator().manual_seed(2))
    run = LayerRun(model, x)
    with torch.inference_mode():
        torch.testing.assert_close(logits_from_resid(model, run.resid_final), model(x), rtol=1e-5, atol=1e-5)
        assert torch.equal(Unembedding(model)(run.resid_final[1]), logits_from_resid(model, run.resid_final)[1])

        def zero(head):
            def hook(z, hook):
                z[:, :, head] = 0.0
                return z
            return hook

        def two_heads(z, hook):  # copy 0 ablates head 1, copy 1 head 3
            z[:3, :, 1] = 0.0
            z[3:, :, 3] = 0.0
            return z

        both = run.rerun(1, [(z_hook_name(1), two_heads)], copies=2)
        for i, head in enumerate((1, 3)):
            full = model.run_with_hooks(x, fwd_hooks=[(z_hook_name(1), zero(head))])
            torch.testing.assert_close(logits_from_resid(model, both[3 * i : 3 * i + 3]), full, rtol=1e-5, atol=1e-5)


def test_vocabulary_tiles_equal_the_whole_softmax(tiny, monkeypatch) -> None:
    """The tiled running log-sum-exp and first argmax against F.cross_entropy and argmax of
    the whole logits; half of the targets are the most likely id, and ids 5 and 200 (in
    different tiles) tie for the maximum of some rows: the first wins, as in argmax."""
    from repeatlens.model import Unembedding, logits_from_resid
    from repeatlens.scores import behaviour

    model = tiny(d_vocab=300, n_ctx=32)
    with torch.no_grad():
        model.unembed.W_U[:, 200] = model.unembed.W_U[:, 5]
        model.unembed.b_U[[5, 200]] = 2.0
    g = torch.Generator().manual_seed(3)
    resid = torch.randn(23, model.cfg.d_model, generator=g)
    with torch.inference_mode():
        logits = logits_from_resid(model, resid[None])[0]
        targets = torch.randint(0, 300, (23,), generator=g)
        targets[::2] = logits.argmax(-1)[::2]
        targets[logits.argmax(-1) == 5] = 200  # tied with 5, but not first: no hit
        full = F.cross_entropy(logits, targets, reduction="none"), logits.argmax(-1) == targets
        got = [behaviour._next_token_stats(Unembedding(model), resid, targets, greedy=True)]
        monkeypatch.setattr(behaviour, "VOCAB_TILE", 64)
        monkeypatch.setattr(behaviour, "ROW_TILE", 4)
        got.append(behaviour._next_token_stats(Unembedding(model), resid, targets, greedy=True))
    assert 0 < int(full[1].sum()) < 23 and (targets == 200).any()
    for loss, hit in got:
        torch.testing.assert_close(loss, full[0], rtol=1e-5, atol=1e-5)
        assert torch.equal(hit, full[1])
