"""Weight scores: OV copying, top-1 copying (exact and sampled) and composition, against known answers."""

from __future__ import annotations

import pytest
import torch

from repeatlens.model import ModelConfig, build_model
from repeatlens.scores import composition_matrix, ov_copying_score, ov_eigenvalues
from repeatlens.scores.weights import (
    TOP1_EXACT_MAX_VOCAB,
    TOP1_SAMPLE_TOKENS,
    composition_scores,
    copying_ov,
    copying_top1,
    copying_top1_se,
    head_weights,
    k_composition,
    random_composition_baseline,
    top1_copying_share,
    top1_sample,
    top1_standard_error,
)


def identity_ov_model(sign: float = 1.0, normalization: str | None = "LN"):
    """d_vocab = d_model = d_head = 16, W_E = W_U = I; in every layer head 0's OV circuit is
    the identity and head 1's is ``sign`` times the identity."""
    cfg = ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=16, n_ctx=8, d_vocab=16, normalization=normalization)
    model = build_model(cfg, seed=0)
    eye = torch.eye(16)
    with torch.no_grad():
        model.embed.W_E.copy_(eye)
        model.unembed.W_U.copy_(eye)
        for block in model.blocks:
            for h in range(2):
                block.attn.W_V[h].copy_(eye)
                block.attn.W_O[h].copy_(eye * (sign if h == 1 else 1.0))
    return model


@pytest.mark.parametrize("normalization", ["LN", None])
def test_identity_ov_copies_and_negation_anticopies(normalization) -> None:
    model = identity_ov_model(sign=-1.0, normalization=normalization)
    ov = copying_ov(model)
    assert torch.allclose(ov, torch.tensor([[1.0, -1.0], [1.0, -1.0]]), atol=1e-6)
    top1 = copying_top1(model)
    assert torch.equal(top1, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))  # -I never peaks on itself


def test_ov_copying_pure_function() -> None:
    d = 12
    eye = torch.eye(d)
    assert ov_copying_score(eye, eye, eye, eye).item() == pytest.approx(1.0)
    assert ov_copying_score(eye, eye, -eye, eye).item() == pytest.approx(-1.0)
    # a 90-degree rotation in every plane: purely imaginary eigenvalues, score 0
    rot = torch.zeros(d, d)
    for i in range(0, d, 2):
        rot[i, i + 1], rot[i + 1, i] = 1.0, -1.0
    assert ov_copying_score(eye, eye, rot, eye).item() == pytest.approx(0.0, abs=1e-9)
    assert ov_copying_score(eye, eye, 0 * eye, eye).item() == 0.0
    assert top1_copying_share(eye, eye[None], eye[None], eye).item() == 1.0
    assert top1_copying_share(eye, eye[None], -eye[None], eye).item() == 0.0


def test_ov_in_d_head_space_matches_naive_vocab_eig(tiny) -> None:
    model = tiny(d_vocab=48, n_ctx=16, d_model=32)
    w = head_weights(model)
    fast = ov_copying_score(w["W_E"], w["W_V"], w["W_O"], w["W_U"])
    d_head = model.cfg.d_head
    for layer in range(2):
        for head in range(model.cfg.n_heads):
            full = w["W_E"] @ w["W_V"][layer, head] @ w["W_O"][layer, head] @ w["W_U"]  # [vocab, vocab]
            lam = torch.linalg.eigvals(full)
            naive = lam.real.sum() / lam.abs().sum()
            assert fast[layer, head].item() == pytest.approx(naive.item(), abs=1e-6)
            # the d_head nonzero eigenvalues are the same
            big = lam[lam.abs().argsort(descending=True)[:d_head]]
            small = ov_eigenvalues(w["W_E"], w["W_V"][layer, head], w["W_O"][layer, head], w["W_U"])
            dist = (big[:, None] - small[None, :]).abs()
            assert dist.min(0).values.max() < 1e-8 and dist.min(1).values.max() < 1e-8
    assert torch.allclose(copying_ov(model), fast.float())


def test_top1_chunks_match_full_argmax(tiny) -> None:
    model = tiny(d_vocab=50, n_ctx=16, d_model=32)
    w = head_weights(model)
    W_V, W_O = w["W_V"][1], w["W_O"][1]
    full = (w["W_E"] @ W_V @ W_O @ w["W_U"]).argmax(-1)  # [head, vocab]
    expected = (full == torch.arange(50)).double().mean(-1)
    for chunk in (7, 4 * 50, 1 << 24):  # one row at a time, ragged chunks, all at once
        assert torch.allclose(top1_copying_share(w["W_E"], W_V, W_O, w["W_U"], chunk_elements=chunk), expected)


def test_composition_factored_equals_dense() -> None:
    g = torch.Generator().manual_seed(0)
    A1, B1 = (torch.randn(3, 20, 5, generator=g, dtype=torch.float64) for _ in range(2))
    A2, B2 = (torch.randn(3, 5, 20, generator=g, dtype=torch.float64) for _ in range(2))
    A, B = A1 @ A2, B1 @ B2
    dense = (A @ B).norm(dim=(-2, -1)) / (A.norm(dim=(-2, -1)) * B.norm(dim=(-2, -1)))
    assert torch.allclose(composition_scores(A1, A2, B1, B2), dense)


def test_composition_matches_transformer_lens_without_layernorm() -> None:
    cfg = ModelConfig(n_layers=3, d_model=32, n_heads=4, d_head=8, n_ctx=16, d_vocab=40, normalization=None)
    model = build_model(cfg, seed=1)
    for kind in ("Q", "K", "V"):
        ours = composition_matrix(model, kind, baseline=False)  # [pair, later, earlier]
        tl = model.all_composition_scores(kind)  # [layer_e, head_e, layer_l, head_l]
        for layer in range(2):
            assert torch.allclose(ours[layer], tl[layer, :, layer + 1, :].T.float(), atol=1e-5), kind


def test_composition_rows_and_baseline(tiny) -> None:
    model = tiny(d_vocab=40, n_ctx=16, d_model=32)
    comp = composition_matrix(model, "K")
    assert comp.shape == (1, 4, 4)
    k = k_composition(model)
    assert torch.isnan(k[0]).all() and torch.allclose(k[1], comp[0].amax(-1))
    # a random model composes about as much as random matrices: near 0 after the baseline
    for kind in ("Q", "K", "V"):
        assert composition_matrix(model, kind).abs().max() < 0.1
    assert 0 < random_composition_baseline(32, 8) < 1
    assert random_composition_baseline(32, 8) == random_composition_baseline(32, 8)


def test_k_composition_detects_a_hand_built_circuit() -> None:
    """Layer-1 head 0 reads keys exactly where layer-0 head 0 writes: high K-composition;
    head 1 reads an orthogonal subspace: below the random baseline."""
    cfg = ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=4, n_ctx=8, d_vocab=20, normalization=None)
    model = build_model(cfg, seed=0)
    eye = torch.eye(16)
    with torch.no_grad():
        b0, b1 = model.blocks[0].attn, model.blocks[1].attn
        b0.W_O.zero_()
        b0.W_O[0].copy_(eye[:4])  # head 0 writes coordinates 0-3
        b0.W_O[1].copy_(eye[4:8])  # head 1 writes coordinates 4-7
        b1.W_K[0].copy_(eye[:, :4])  # later head 0 reads keys from 0-3
        b1.W_K[1].copy_(eye[:, 12:16])  # later head 1 reads keys from 12-15
    comp = composition_matrix(model, "K")
    assert comp[0, 0, 0] > 0.1
    # orthogonal write/read subspaces: raw score 0, so minus the baseline
    baseline = random_composition_baseline(16, 4)
    for later, earlier in [(0, 1), (1, 0), (1, 1)]:
        assert comp[0, later, earlier].item() == pytest.approx(-baseline, abs=1e-6)


# --------------------------------------------------------------------- top-1 copying at scale


def copying_model(d_vocab: int, noise=(0.7, 1.0, 1.3, 1.7), seed: int = 0):
    """Attention-only, no LayerNorm, d_model = d_head = 32: W_U = W_E^T and head h's OV
    circuit I + noise[h] * G, so the heads' top-1 copying shares spread over (0.1, 0.9)."""
    n = len(noise)
    cfg = ModelConfig(n_layers=1, d_model=32, n_heads=n, d_head=32, n_ctx=8, d_vocab=d_vocab, normalization=None)
    model = build_model(cfg, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.embed.W_E.copy_(torch.randn(d_vocab, 32, generator=g))
        model.unembed.W_U.copy_(model.embed.W_E.T)
        for h, s in enumerate(noise):
            model.blocks[0].attn.W_V[h].copy_(torch.eye(32))
            model.blocks[0].attn.W_O[h].copy_(torch.eye(32) + s * torch.randn(32, 32, generator=g) / 32**0.5)
    return model


def test_top1_is_exact_up_to_the_threshold() -> None:
    model = copying_model(TOP1_EXACT_MAX_VOCAB)
    w = head_weights(model)
    exact = top1_copying_share(w["W_E"], w["W_V"][0], w["W_O"][0], w["W_U"])
    assert top1_sample(TOP1_EXACT_MAX_VOCAB) is None
    assert torch.allclose(copying_top1(model)[0], exact.float())
    assert torch.equal(copying_top1_se(model), torch.zeros(1, 4))


def test_top1_estimate_against_the_exact_value() -> None:
    """Above the threshold the sampled estimate lies within 4 standard errors of the exact
    share of every head, and its standard error is the spread of estimates over seeds."""
    V = 6000
    model = copying_model(V)
    w = head_weights(model)
    exact = top1_copying_share(w["W_E"], w["W_V"][0], w["W_O"][0], w["W_U"]).float()  # every token: affordable here
    assert exact.max() - exact.min() > 0.3 and 0.05 < exact.min() and exact.max() < 0.95  # a spread worth estimating
    est, se = copying_top1(model)[0], copying_top1_se(model)[0]
    assert (se > 0).all() and ((est - exact).abs() <= 4 * se).all(), (est, exact, se)
    assert torch.allclose(se, top1_standard_error(est.double(), TOP1_SAMPLE_TOKENS, V).float(), atol=0.003)
    draws = torch.stack([
        top1_copying_share(w["W_E"], w["W_V"][0], w["W_O"][0], w["W_U"], tokens=top1_sample(V, seed=s)) for s in range(1, 41)
    ])
    ratio = draws.std(0) / top1_standard_error(exact.double(), TOP1_SAMPLE_TOKENS, V)
    assert ((0.6 < ratio) & (ratio < 1.5)).all(), ratio
    assert torch.equal(top1_sample(V), top1_sample(V)) and top1_sample(V).unique().numel() == TOP1_SAMPLE_TOKENS


def test_top1_standard_error_definition() -> None:
    share = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    assert torch.equal(top1_standard_error(share, 100, 100), torch.zeros(3))  # every token read: exact
    n, V = 512, 50257
    p = (share * n + 0.5) / (n + 1)
    assert torch.allclose(top1_standard_error(share, n, V), (p * (1 - p) / n * (V - n) / (V - 1)).sqrt())
    assert (top1_standard_error(share, n, V) > 0).all()  # a sample never claims to be exact


def test_top1_and_its_error_share_one_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    from repeatlens.scores import score_model
    from repeatlens.scores import weights as weights_mod

    model = copying_model(5000, noise=(0.0, 0.5))
    calls = []
    real = weights_mod.top1_copying_share
    monkeypatch.setattr(weights_mod, "top1_copying_share", lambda *a, **k: calls.append(1) or real(*a, **k))
    df = score_model(model, ["copying_top1", "copying_top1_se"])
    assert len(calls) == 1 and set(df.metric) == {"copying_top1", "copying_top1_se"}
    with torch.no_grad():
        model.blocks[0].attn.W_O.mul_(-1)  # new weights: computed again
    assert copying_top1(model).max() < df[df.metric == "copying_top1"].value.max() and len(calls) == 2


# ------------------------------------------------------------- norms outside the usual place


def test_post_norm_folds_the_block_norm_into_W_O(tmp_path) -> None:
    """OLMo-2 normalises each head's output: W_O' = W_O diag(w_ln1), W_V read raw; checked
    against the transformers model's own weights."""
    from repeatlens.model import model_from_hf_folder
    from tests.model.tiny_hf import save_tiny

    hf = save_tiny(tmp_path / "m", "olmo2", seed=1)
    w = head_weights(model_from_hf_folder(tmp_path / "m"))
    layer = hf.model.layers[1]
    d_head = 8
    W_V = layer.self_attn.v_proj.weight.detach().double().T.reshape(32, 4, d_head).permute(1, 0, 2)
    W_O = layer.self_attn.o_proj.weight.detach().double().T.reshape(4, d_head, 32)
    gain = layer.post_attention_layernorm.weight.detach().double()
    assert torch.allclose(w["W_V"][1], W_V) and torch.allclose(w["W_O"][1], W_O * gain)
    W_U = hf.lm_head.weight.detach().double().T * hf.model.norm.weight.detach().double()[:, None]
    assert torch.allclose(w["W_U"], W_U) and torch.allclose(w["W_E"], hf.model.embed_tokens.weight.detach().double())


def test_embedding_layernorm_is_folded_into_W_E(tmp_path) -> None:
    from repeatlens.model import model_from_hf_folder
    from tests.model.tiny_hf import save_tiny

    hf = save_tiny(tmp_path / "m", "bloom", seed=1)
    w = head_weights(model_from_hf_folder(tmp_path / "m"))
    E = hf.transformer.word_embeddings.weight.detach().double()
    gain = hf.transformer.word_embeddings_layernorm.weight.detach().double()
    assert torch.allclose(w["W_E"], (E - E.mean(-1, keepdim=True)) * gain)
