"""The TransformerLens adapter: config mapping, presets, fused path == hooked path."""

from __future__ import annotations

import warnings

import pytest
import torch

from repeatlens import model as adapter
from repeatlens.config import RunConfig
from repeatlens.errors import ConfigError
from repeatlens.model import ModelConfig, build_model, fast_forward, hooked_config


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(preset="attn2-tiny", d_model=32),
        ModelConfig(preset="mlp2-small", d_model=32, d_head=8, n_ctx=32),
        ModelConfig(n_layers=1, d_model=24, n_heads=3, d_head=8, n_ctx=16, normalization="LNPre"),
        ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, n_ctx=16, normalization=None),
        ModelConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, n_ctx=16, normalization="RMS", attn_only=False, act_fn="relu"),
        ModelConfig(preset="attn2-tiny", d_model=32, n_ctx=64, positional_embedding="rotary"),
        ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, n_ctx=24, attn_only=False, positional_embedding="rotary"),
    ],
    ids=["attn2", "mlp2", "lnpre", "nonorm", "rms-relu", "rotary", "rotary-mlp"],
)
def test_fast_path_matches_hooked_logits(cfg: ModelConfig) -> None:
    torch.manual_seed(0)
    model = build_model(cfg, d_vocab=50, seed=1)
    with torch.no_grad():  # perturb every parameter so biases and norms matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tokens = torch.randint(0, 50, (3, cfg.n_ctx))
    assert adapter.supports_fast_path(model)
    torch.testing.assert_close(fast_forward(model, tokens), model(tokens), rtol=1e-5, atol=1e-5)


def test_fast_path_is_bypassed_while_hooks_are_attached() -> None:
    model = build_model(ModelConfig(preset="attn2-tiny"), d_vocab=40, seed=0)
    tokens = torch.randint(0, 40, (2, 16))
    seen = []
    model.add_hook(adapter.pattern_hook_name(1), lambda t, hook: seen.append(t.shape))
    assert adapter.has_hooks(model)
    adapter.logits(model, tokens)
    assert seen == [torch.Size([2, 4, 16, 16])]
    model.reset_hooks()
    assert not adapter.has_hooks(model)
    adapter.logits(model, tokens)
    assert len(seen) == 1


@pytest.mark.parametrize("adjacent", [False, True], ids=["neox-halves", "gptj-pairs"])
def test_fast_path_matches_partial_rotary(adjacent: bool) -> None:
    """rotary_dim < d_head (Pythia-style partial rotary) in both pair conventions."""
    hcfg = hooked_config(ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, n_ctx=20, positional_embedding="rotary"), d_vocab=30, seed=0)
    hcfg.rotary_dim, hcfg.rotary_adjacent_pairs = 8, adjacent
    model = build_model(hcfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tokens = torch.randint(0, 30, (2, 20))
    assert adapter.supports_fast_path(model)
    torch.testing.assert_close(fast_forward(model, tokens), model(tokens), rtol=1e-5, atol=1e-5)


def test_unsupported_rotary_variant_falls_back_to_hooked_path() -> None:
    model = build_model(ModelConfig(preset="attn2-tiny", positional_embedding="rotary"), d_vocab=40, seed=0)
    model.cfg.use_dynamic_ntk_rope = True  # rescaled tables at inference: only TransformerLens' forward knows them
    assert not adapter.supports_fast_path(model)
    assert adapter.forward_fn(model) is adapter.hooked_logits
    tokens = torch.randint(0, 40, (2, 16))
    torch.testing.assert_close(adapter.logits(model, tokens), model(tokens))


def test_presets_fill_fields_and_explicit_fields_win() -> None:
    cfg = ModelConfig(preset="attn2-small", n_ctx=64)
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.n_ctx) == (2, 64, 4, 16, 64)
    hcfg = hooked_config(cfg, d_vocab=123)
    assert hcfg.d_vocab == 123 and hcfg.attn_only and hcfg.n_ctx == 64


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(Exception, match="unknown preset 'attn9'; expected one of attn1-tiny"):
        ModelConfig(preset="attn9")


def test_missing_vocab_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.d_vocab"):
        hooked_config(ModelConfig())


def test_deprecation_warning_is_silenced_locally_only() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_model(ModelConfig(preset="attn1-tiny"), d_vocab=20)
    assert not [w for w in caught if "deprecated" in str(w.message).lower()]
    # the user's global filters are untouched: TransformerLens still warns when used directly
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapter.HookedTransformer(hooked_config(ModelConfig(preset="attn1-tiny"), d_vocab=20))
    assert any("deprecated" in str(w.message).lower() for w in caught)


def test_seq_len_above_n_ctx_is_rejected() -> None:
    from repeatlens.config import config_from_dict

    with pytest.raises(ConfigError, match=r"data.seq_len = 256 exceeds model.n_ctx = 128"):
        config_from_dict({"mixture": {"total_tokens": 10_000}, "data": {"seq_len": 256}, "model": {"n_ctx": 128}})
    assert RunConfig  # the type users build


def test_forward_choice_follows_config_and_hooks() -> None:
    plain = build_model(ModelConfig(preset="attn2-tiny"), d_vocab=40, seed=0)
    rotary = build_model(ModelConfig(preset="attn2-tiny", positional_embedding="rotary"), d_vocab=40, seed=0)
    assert adapter.forward_fn(plain) is adapter.fast_forward
    assert adapter.forward_fn(plain, fast=False) is adapter.hooked_logits
    assert adapter.forward_fn(rotary) is adapter.fast_forward  # fused rotary since the adapter rotates q, k itself
    plain.add_hook(adapter.pattern_hook_name(0), lambda t, hook: None)
    assert adapter.forward_fn(plain) is adapter.hooked_logits


def test_logits_from_resid_finishes_a_stopped_forward() -> None:
    model = build_model(ModelConfig(preset="attn2-tiny", d_model=32), d_vocab=50, seed=3)
    tokens = torch.randint(0, 50, (2, 16))
    resid = model(tokens, stop_at_layer=model.cfg.n_layers)
    torch.testing.assert_close(adapter.logits_from_resid(model, resid), model(tokens))


def test_model_from_state_dict_leaves_the_callers_config_alone() -> None:
    from repeatlens.model import model_from_state_dict

    model = build_model(ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=8, d_vocab=11, attn_only=True), seed=0)
    hcfg = model.cfg
    hcfg.device = "cuda:7"  # where the caller's config says; the rebuilt model goes where asked
    rebuilt = model_from_state_dict(hcfg, model.state_dict(), device="cpu")
    assert hcfg.device == "cuda:7" and rebuilt.cfg is not hcfg and str(rebuilt.cfg.device) == "cpu"
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values()))


def test_model_from_foreign_state_dict_leaves_the_callers_config_alone() -> None:
    from repeatlens.model import model_from_foreign_state_dict

    model = build_model(ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=8, d_vocab=11, attn_only=True), seed=0)
    hcfg = model.cfg
    hcfg.device = "cuda:7"
    rebuilt = model_from_foreign_state_dict(hcfg, dict(model.state_dict()), device="cpu")
    assert hcfg.device == "cuda:7" and rebuilt.cfg is not hcfg and str(rebuilt.cfg.device) == "cpu"
