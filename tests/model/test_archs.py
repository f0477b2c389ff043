"""Hugging Face configs mapped onto HookedTransformerConfig: refusals, windows, nanoGPT args."""

from __future__ import annotations

import pytest

from repeatlens.model import UnsupportedArchitecture, hooked_spec, is_post_norm, nanogpt_spec
from repeatlens.model.archs import ARCHITECTURES, MAX_PROBE_LENGTH, architecture_of, probe_length
from repeatlens.scores.probes import make_probes
from tests.model.tiny_hf import ARCHS, hf_config


def test_every_listed_architecture_has_a_tiny_model() -> None:
    assert sorted(architecture_of(hf_config(a)) for a in ARCHS) == sorted(ARCHITECTURES)


def test_probe_length_is_the_probes_row_length() -> None:
    for n_ctx in (5, 8, 17, 64, 101, 102, 2048):
        assert make_probes(64, n_ctx, batch=1).seq_len == probe_length(n_ctx) <= n_ctx
    assert probe_length(10**6) == MAX_PROBE_LENGTH


def _config(name: str, **kw):
    import transformers as T

    base = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    kw.setdefault("architectures", [name.replace("Config", "ForCausalLM")])
    return getattr(T, name)(**{**base, **kw})


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: _config("Gemma2Config"), "Gemma2ForCausalLM is not supported: Gemma-2's attention and logit soft-capping"),
        (lambda: _config("MixtralConfig"), "MixtralForCausalLM is not supported: a mixture-of-experts model"),
        (lambda: _config("BertConfig", architectures=["BertForMaskedLM"]), "BertForMaskedLM is not supported: a masked"),
        (lambda: _config("LlamaConfig", attention_bias=True), "attention_bias=true is not supported"),
        (lambda: _config("LlamaConfig", mlp_bias=True), "mlp_bias=true is not supported"),
        (lambda: _config("LlamaConfig", rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}), "rope_type 'linear' is not supported"),
        (lambda: _config("PhiConfig", qk_layernorm=True), "qk_layernorm=true is not supported"),
        (lambda: _config("OlmoConfig", num_key_value_heads=1), "num_key_value_heads != num_attention_heads is not supported for OLMo"),
        (lambda: _config("Qwen3Config", attention_bias=True, head_dim=8), "attention_bias=true is not supported"),
        (lambda: _config("LlamaConfig", hidden_act="tanh"), "activation 'tanh' (hidden_act) has no TransformerLens equivalent"),
    ],
)
def test_refused_configs_say_why_in_one_line(make, expected: str) -> None:
    with pytest.raises(UnsupportedArchitecture) as e:
        hooked_spec(make())
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_opt_variants_the_conversion_would_get_wrong_are_refused() -> None:
    import transformers as T

    base = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, ffn_dim=32, num_attention_heads=2)
    with pytest.raises(UnsupportedArchitecture, match="do_layer_norm_before=false"):
        hooked_spec(T.OPTConfig(**base, do_layer_norm_before=False))
    with pytest.raises(UnsupportedArchitecture, match="word_embed_proj_dim 8 != hidden_size 16"):
        hooked_spec(T.OPTConfig(**base, word_embed_proj_dim=8))


def test_unknown_architecture_lists_the_supported_ones() -> None:
    class Cfg:
        architectures = ["MambaForCausalLM"]
        model_type = "mamba"

    with pytest.raises(UnsupportedArchitecture, match="MambaForCausalLM is not supported; expected one of GPT2LMHeadModel, GPTNeoForCausalLM"):
        hooked_spec(Cfg())


def test_layer_types_make_sliding_layers_local() -> None:
    cfg = hf_config("qwen2", use_sliding_window=True, sliding_window=128, max_window_layers=1, layer_types=["full_attention", "sliding_attention"])
    k = hooked_spec(cfg).kwargs
    assert k["use_local_attn"] and k["window_size"] == 128 and k["attn_types"] == ["global", "local"]


def test_llama3_rope_scaling_maps_to_ntk_by_parts() -> None:
    rope = {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}
    k = hooked_spec(hf_config("llama", rope_parameters=rope)).kwargs
    assert k["use_NTK_by_parts_rope"] and k["NTK_by_parts_factor"] == 8.0 and k["rotary_base"] == 5e5 and k["NTK_original_ctx_len"] == 8192


def test_post_norm_is_olmo2_only() -> None:
    from repeatlens.model import hooked_config_from_spec

    assert is_post_norm(hooked_config_from_spec(hooked_spec(hf_config("olmo2"))))
    assert not any(is_post_norm(hooked_config_from_spec(hooked_spec(hf_config(a)))) for a in ARCHS if a != "olmo2")


def test_nanogpt_args() -> None:
    k = nanogpt_spec({"n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 64, "vocab_size": 65, "bias": False, "dropout": 0.0}).kwargs
    assert (k["n_layers"], k["n_heads"], k["d_head"], k["d_mlp"], k["n_ctx"], k["d_vocab"], k["act_fn"]) == (2, 4, 8, 128, 64, 65, "gelu")
    with pytest.raises(UnsupportedArchitecture, match="n_embd 30 is not a multiple of n_head 4"):
        nanogpt_spec({"n_layer": 2, "n_head": 4, "n_embd": 30, "block_size": 64, "vocab_size": 65})
