"""Per-head attribution of memorization against generalization (scores/attribution.py).

Hand-built one-layer models with known roles, checked against an independent plain-torch
re-implementation of the same model; attribution patching against its own definition.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from repeatlens.model import HookedTransformer, HookedTransformerConfig, z_hook_name
from repeatlens.model.build import _quiet_tl
from repeatlens.errors import ConfigError
from repeatlens.scores import REGISTRY, default_metrics, resolve_metrics, score_model
from repeatlens.scores.attribution import memorization_share_index, patched_sequence_deltas, sequence_deltas
from repeatlens.scores.behaviour import z_means
from tests.scores.conftest import TrainSettings, synthetic_batch, train_tiny

V, T, C, BETA = 12, 10, 4.0, 30.0
ATTRIBUTION = [
    "ablation_repeated_loss", "ablation_repeated_text_loss", "ablation_repeated_synthetic_loss", "ablation_test_loss",
    "ablation_test_text_loss", "ablation_test_synthetic_loss", "zero_ablation_repeated_loss", "zero_ablation_test_loss",
    "memorization_share",
]


def hand_built(memorizer: bool) -> HookedTransformer:
    """One attention-only layer, two heads, no LayerNorm; tokens embedded one-hot in the
    first ``V`` dims, heads writing into the last ``V``, which alone are unembedded (``C``).

    Head 0 copies: uniform causal attention (``W_Q = W_K = 0``), ``OV`` = identity, so on a
    constant sequence ``a a a …`` it predicts ``a``. Head 1 is either irrelevant
    (``W_O = 0``) or a memorizer: it attends to the query's own token (``QK = BETA I``) and
    writes the token's successor ``a + 1 mod V``, the rule of the repeated sequences.
    """
    cfg = HookedTransformerConfig(
        n_layers=1, d_model=2 * V, n_heads=2, d_head=V, n_ctx=T, d_vocab=V, attn_only=True,
        normalization_type=None, positional_embedding_type="standard", act_fn="relu", seed=0,
    )
    with _quiet_tl():
        model = HookedTransformer(cfg)
    eye, succ = torch.eye(V), torch.roll(torch.eye(V), 1, dims=1)  # e_a @ succ = e_{a+1}
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.W_E[:, :V] = eye
        attn = model.blocks[0].attn
        attn.W_V[0, :V] = eye
        attn.W_O[0, :, V:] = eye
        if memorizer:
            attn.W_Q[1, :V] = BETA * eye
            attn.W_K[1, :V] = eye
            attn.W_V[1, :V] = succ
            attn.W_O[1, :, V:] = eye
        model.unembed.W_U[V:] = C * eye
    return model.eval()


def reference_losses(model: HookedTransformer, tokens: torch.Tensor, ablate: dict[int, torch.Tensor | None]) -> torch.Tensor:
    """Per-sequence mean next-token loss of the one-layer model, written out in plain torch
    (no hooks): ``ablate[h]`` replaces head ``h``'s ``z`` (None: zero)."""
    attn = model.blocks[0].attn
    x = model.embed.W_E[tokens] + model.pos_embed.W_pos[: tokens.shape[1]]
    out = torch.zeros(*tokens.shape, model.cfg.d_model)
    causal = torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool).tril()
    for h in range(model.cfg.n_heads):
        q, k, v = x @ attn.W_Q[h] + attn.b_Q[h], x @ attn.W_K[h] + attn.b_K[h], x @ attn.W_V[h] + attn.b_V[h]
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(model.cfg.d_head)
        z = torch.softmax(scores.masked_fill(~causal, -torch.inf), -1) @ v
        if h in ablate:
            z = torch.zeros_like(z) + (0.0 if ablate[h] is None else ablate[h])
        out = out + z @ attn.W_O[h]
    logits = (x + out + attn.b_O) @ model.unembed.W_U + model.unembed.b_U
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1), reduction="none")
    return loss.view(tokens.shape[0], -1).mean(-1)


def reference_means(model: HookedTransformer, tokens: torch.Tensor) -> list[torch.Tensor]:
    """Each head's mean ``z`` over every position of ``tokens``, in plain torch."""
    attn = model.blocks[0].attn
    x = model.embed.W_E[tokens] + model.pos_embed.W_pos[: tokens.shape[1]]
    causal = torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool).tril()
    means = []
    for h in range(model.cfg.n_heads):
        scores = (x @ attn.W_Q[h]) @ (x @ attn.W_K[h]).transpose(-1, -2) / math.sqrt(model.cfg.d_head)
        means.append((torch.softmax(scores.masked_fill(~causal, -torch.inf), -1) @ (x @ attn.W_V[h])).mean(dim=(0, 1)))
    return means


def constant_rows(n: int, seed: int) -> torch.Tensor:
    """``n`` sequences each repeating one random token: only copying predicts them."""
    a = torch.randint(0, V, (n, 1), generator=torch.Generator().manual_seed(seed))
    return a.expand(n, T).clone()


def successor_rows(n: int, seed: int) -> torch.Tensor:
    """``n`` sequences ``a, a+1, a+2, …`` (mod V): the memorizer's rule."""
    a = torch.randint(0, V, (n, 1), generator=torch.Generator().manual_seed(seed))
    return (a + torch.arange(T)) % V


def per_head(df: pd.DataFrame, metric: str, n_layers: int = 1, n_heads: int = 2) -> torch.Tensor:
    out = torch.full((n_layers, n_heads), float("nan"), dtype=torch.float64)
    sub = df[df.metric == metric]
    out[sub["layer"].to_numpy(int), sub["head"].to_numpy(int)] = torch.tensor(sub["value"].to_numpy())
    return out


def expected_delta(model, tokens, reference, head: int, zero: bool = False) -> float:
    with torch.no_grad():
        value = None if zero else reference_means(model, reference)[head]
        return float((reference_losses(model, tokens, {head: value}) - reference_losses(model, tokens, {})).mean())


def test_the_copying_head_is_singled_out_and_the_silent_head_scores_zero() -> None:
    model = hand_built(memorizer=False)
    test, rep = constant_rows(24, 0), constant_rows(16, 1)
    df = score_model(model, ATTRIBUTION, test_tokens=test, repeated_tokens=rep, batch_size=7)
    assert set(df.metric) == {"ablation_repeated_loss", "ablation_test_loss", "zero_ablation_repeated_loss",
                              "zero_ablation_test_loss", "memorization_share"}  # no splits given: no split rows
    assert df["layer"].notna().all() and df["head"].notna().all() and (df.probe == "").all()
    for metric, tokens, zero in [("ablation_test_loss", test, False), ("ablation_repeated_loss", rep, False),
                                 ("zero_ablation_test_loss", test, True), ("zero_ablation_repeated_loss", rep, True)]:
        d = per_head(df, metric)[0]
        assert d[1] == pytest.approx(0.0, abs=1e-6), metric  # writes nothing: ablating it changes nothing
        assert d[0] > 0.5 and d[0] == pytest.approx(expected_delta(model, tokens, test, 0, zero), abs=1e-5), metric
    # known answer for zero ablation: logit C on the right token becomes 0 -> log V - the loss with it
    assert per_head(df, "zero_ablation_test_loss")[0, 0] == pytest.approx(
        math.log(V) - math.log(1 + (V - 1) * math.exp(-C)), abs=1e-5)
    share = per_head(df, "memorization_share")[0]
    assert share[0] == pytest.approx(0.5, abs=0.05) and math.isnan(share[1])  # copying helps both alike; the silent head: no row


def test_the_memorizer_has_share_one_and_the_copier_share_zero() -> None:
    model = hand_built(memorizer=True)
    test, rep = constant_rows(24, 0), successor_rows(16, 1)
    df = score_model(model, ATTRIBUTION, test_tokens=test, repeated_tokens=rep)
    d_rep, d_test = per_head(df, "ablation_repeated_loss")[0], per_head(df, "ablation_test_loss")[0]
    for h in (0, 1):
        assert d_rep[h] == pytest.approx(expected_delta(model, rep, test, h), abs=1e-5)
        assert d_test[h] == pytest.approx(expected_delta(model, test, test, h), abs=1e-5)
    assert d_rep[1] > 1.0 and d_test[1] < 0  # the memorizer carries the repeated rule and hurts held-out copying
    assert d_test[0] > 0.3 and d_rep[0] < d_test[0]
    share = per_head(df, "memorization_share")[0]
    assert share[1] == 1.0 and share[0] == pytest.approx(float(memorization_share_index(d_rep[:1], d_test[:1])[0]))
    assert share[0] < 0.1


def test_splits_average_only_their_rows_and_the_share_reads_natural_text() -> None:
    model = hand_built(memorizer=True)
    test = torch.cat([constant_rows(10, 0), successor_rows(6, 2)])
    rep = torch.cat([successor_rows(8, 1), constant_rows(4, 3)])
    test_syn = torch.tensor([False] * 10 + [True] * 6)
    rep_syn = torch.tensor([True] * 8 + [False] * 4)
    df = score_model(model, ATTRIBUTION, test_tokens=test, repeated_tokens=rep, test_synthetic=test_syn, repeated_synthetic=rep_syn)
    assert set(df.metric) == set(ATTRIBUTION)
    for h in (0, 1):
        with torch.no_grad():
            m = reference_means(model, test)[h]  # one reference: the whole test set
            d_test = reference_losses(model, test, {h: m}) - reference_losses(model, test, {})
            d_rep = reference_losses(model, rep, {h: m}) - reference_losses(model, rep, {})
        assert per_head(df, "ablation_test_text_loss")[0, h] == pytest.approx(float(d_test[~test_syn].mean()), abs=1e-5)
        assert per_head(df, "ablation_test_synthetic_loss")[0, h] == pytest.approx(float(d_test[test_syn].mean()), abs=1e-5)
        assert per_head(df, "ablation_test_loss")[0, h] == pytest.approx(float(d_test.mean()), abs=1e-5)
        assert per_head(df, "ablation_repeated_text_loss")[0, h] == pytest.approx(float(d_rep[~rep_syn].mean()), abs=1e-5)
        assert per_head(df, "ablation_repeated_synthetic_loss")[0, h] == pytest.approx(float(d_rep[rep_syn].mean()), abs=1e-5)
    expected = memorization_share_index(per_head(df, "ablation_repeated_text_loss")[0], per_head(df, "ablation_test_text_loss")[0])
    assert torch.allclose(per_head(df, "memorization_share")[0], expected, equal_nan=True)


def test_no_rows_without_the_data_and_weights_untouched() -> None:
    model = hand_built(memorizer=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert score_model(model, ATTRIBUTION, repeated_tokens=successor_rows(4, 0)).empty  # no test set: no reference
    only_test = score_model(model, ATTRIBUTION, test_tokens=constant_rows(4, 0))
    assert set(only_test.metric) == {"ablation_test_loss", "zero_ablation_test_loss"}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_share_index_definition() -> None:
    r = torch.tensor([0.2, 0.0, -0.1, 1e-4, 0.3])
    g = torch.tensor([0.2, 0.5, 0.1, 1e-4, -0.3])
    out = memorization_share_index(r, g)
    assert out[:3].tolist() == [0.5, 0.0, 0.0] and math.isnan(out[3]) and out[4] == 1.0


def test_the_exact_ablations_are_opt_in_and_named_by_their_group() -> None:
    for n_heads in (8, 65):
        keep, out = default_metrics(n_heads)
        assert not set(ATTRIBUTION) & (set(keep) | set(out))  # ~13x the battery: never by default
    assert all(REGISTRY[m].per_head and REGISTRY[m].kind == "behaviour" for m in ATTRIBUTION)
    assert resolve_metrics(["attribution"]) == list(ATTRIBUTION)
    assert resolve_metrics(["induction", "attribution", "memorization_share"]) == ["induction", *ATTRIBUTION]
    with pytest.raises(ConfigError, match=r"unknown 'atribution'.*\(or a group: attribution\)"):
        resolve_metrics(["atribution"])


# ------------------------------------------------------------------ attribution patching


@pytest.fixture(scope="module")
def trained() -> tuple[HookedTransformer, torch.Tensor]:
    """A tiny 2-layer model trained 300 steps (seconds) and held-out sequences like its data."""
    s = TrainSettings(steps=300, n_ctx=32, seg_max=12)
    return train_tiny(s), synthetic_batch(s, 24, torch.Generator().manual_seed(123))


def test_attribution_patching_is_the_derivative_of_the_interpolated_ablation(trained) -> None:
    """``d/da L(z + a (m - z))`` at ``a = 0`` for each head, by central differences."""
    model, x = trained
    means = z_means(model, x)
    ap = patched_sequence_deltas(model, x, means, batch_size=10).mean(-1)
    eps = 0.02
    for layer, head in [(0, 1), (1, 2)]:
        def loss(a: float) -> float:
            def hook(z, hook):
                z[:, :, head] = z[:, :, head] + a * (means[layer][head] - z[:, :, head])
                return z
            with torch.inference_mode():
                logits = model.run_with_hooks(x, return_type="logits", fwd_hooks=[(z_hook_name(layer), hook)])
                return float(torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten()))
        fd = (loss(eps) - loss(-eps)) / (2 * eps)
        assert ap[layer, head] == pytest.approx(fd, abs=2e-4)


def test_attribution_patching_is_a_weight_gradient_that_vanishes_at_convergence(trained) -> None:
    """``AP_h = (m_h W_O[h]) . dL/db_O - <W_O[h], dL/dW_O[h]>``: the loss' gradients in the
    model's own weights, near zero where training converged, so the first-order estimate
    misses the (second-order) ablation effect: why it is not a score."""
    model, x = trained
    means = z_means(model, x)
    grads_before = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    ap = patched_sequence_deltas(model, x, means).mean(-1)
    assert all((a is None and p.grad is None) or torch.equal(a, p.grad) for a, p in zip(grads_before, model.parameters()))
    params = [p for b in model.blocks for p in (b.attn.W_O, b.attn.b_O)]
    with torch.enable_grad():
        logits = model(x, return_type="logits")
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten())
        grads = torch.autograd.grad(loss, params)
    for layer, block in enumerate(model.blocks):
        g_W, g_b = grads[2 * layer], grads[2 * layer + 1]
        W_O = block.attn.W_O.detach()
        identity = torch.stack([(means[layer][h] @ W_O[h]) @ g_b - (W_O[h] * g_W[h]).sum() for h in range(model.cfg.n_heads)])
        assert torch.allclose(ap[layer].float(), identity, atol=1e-5), (ap[layer], identity)
    exact = sequence_deltas(model, x, x, "mean").mean(-1)
    assert exact.min() > 0 and ap.abs().max() < 0.5 * exact.max()
