"""Hugging Face decoder architectures mapped onto ``HookedTransformerConfig``, offline.

TransformerLens 3.9 converts the weights of many Hugging Face causal LMs
(``transformer_lens/pretrained/weight_conversions/``), but maps their configs in
``loading_from_pretrained.convert_hf_model_config``, which looks models up by their
official hub name (a network call for an unknown name, and several branches that only
know fixed names: Gemma, OLMo) and reads attributes transformers 5 no longer sets
(``GPT2Config.n_ctx``). So the config mapping is done here, per architecture, from the
config object in hand, mirroring that function's branch for the architecture field by
field; the weights then go through TransformerLens' own conversion function, named in
:data:`ARCHITECTURES`.

A feature an architecture's TransformerLens conversion would drop or get wrong (biases it
does not read, post-LayerNorm OPT, rope scaling other than llama3's, grouped-query
attention where the conversion assumes full heads, QK LayerNorm in Phi, ...) is refused
with a one-line :class:`UnsupportedArchitecture` naming the config field, never
converted approximately.

What the scores need to know about an architecture (see :mod:`repeatlens.scores`):

* **grouped-query attention** (Llama, Mistral, Qwen2/3, Gemma): TransformerLens repeats
  each key/value head for the query heads that share it (``attn.W_K``/``W_V`` are the
  expanded ``[n_heads, d_model, d_head]`` weights), so every query head has its own
  pattern and OV circuit and the per-head scores apply unchanged.
* **parallel blocks** (GPT-J, GPT-NeoX, Phi): attention and MLP read the same residual;
  attention patterns come from the forward pass and the OV circuit's direct path
  (embedding, head, unembedding) does not pass through the MLP, so nothing changes.
* **local attention windows** (GPT-Neo's local layers, Mistral's sliding window, Qwen
  ``layer_types``): a window at least as long as the probe batch's rows sees the whole
  row, so the attention scores are those of global attention. A window shorter than the
  probe rows would cut off the earlier copy the induction and prefix-matching scores
  look for; then the converted model's ``n_ctx`` is cut to the window (learned position
  tables are trimmed to it by the conversion, as TransformerLens does for TinyStories),
  so probes are built to fit inside it and every score reads attention the window
  allows; a note says so (:attr:`HookedSpec.notes`).
* **post-norm blocks** (OLMo-2): the block norms act on each sublayer's output; the
  weight scores fold them accordingly (:func:`repeatlens.scores.weights.head_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

__all__ = [
    "ARCHITECTURES",
    "REFUSED",
    "HookedSpec",
    "UnsupportedArchitecture",
    "architecture_of",
    "hooked_spec",
    "probe_length",
    "nanogpt_spec",
    "is_post_norm",
]

#: Longest probe row the attention scores use: BOS + 4 x 25 tokens (Olsson's prefix block).
MAX_PROBE_LENGTH = 101


class UnsupportedArchitecture(ValueError):
    """A config this adapter does not convert (one line naming the field or architecture)."""


@dataclass
class HookedSpec:
    """What a foreign config maps to: ``HookedTransformerConfig`` keyword arguments, the
    TransformerLens weight-conversion function to use, and notes for the user."""

    kwargs: dict[str, Any]
    convert: str
    notes: list[str] = field(default_factory=list)

    @property
    def signature(self) -> tuple:
        """(architecture, layers, d_model, heads, vocabulary): revisions of one model share it."""
        k = self.kwargs
        return (k.get("original_architecture"), k["n_layers"], k["d_model"], k["n_heads"], k["d_vocab"])


def is_post_norm(cfg: Any) -> bool:
    """Whether TransformerLens runs ``cfg``'s blocks post-norm (``ln1``/``ln2`` on each sublayer's
    output, before the residual add: OLMo-2/3), from its ``original_architecture``."""
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

    return getattr(cfg, "original_architecture", None) in POST_NORM_ARCHITECTURES


def probe_length(n_ctx: int) -> int:
    """Length ``1 + 4P`` of the probe rows for context ``n_ctx`` (``P = min(25, (n_ctx-1)//4)``,
    as :func:`repeatlens.scores.probes.make_probes` builds them)."""
    return 1 + 4 * min(25, (int(n_ctx) - 1) // 4)


def _get(c: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        v = getattr(c, n, None)
        if v is not None:
            return v
    return default


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise UnsupportedArchitecture(what)


def _act(c: Any, *names: str) -> str:
    from transformer_lens.utilities.activation_functions import SUPPORTED_ACTIVATIONS

    act = _get(c, *names)
    act = {"swish": "silu", "gelu_python": "gelu", "gelu_accurate": "gelu_fast"}.get(act, act)
    _require(act in SUPPORTED_ACTIVATIONS, f"activation {_get(c, *names)!r} ({'/'.join(names)}) has no TransformerLens equivalent")
    return act


def _rope(c: Any, d: dict[str, Any]) -> None:
    """Rotary base and scaling from ``rope_parameters`` (transformers 5) or ``rope_theta``."""
    params = getattr(c, "rope_parameters", None) or {}
    _require(
        not (isinstance(params, dict) and any(isinstance(v, dict) for v in params.values())),
        "rope_parameters differ per layer type; not supported",
    )
    theta = params.get("rope_theta") if isinstance(params, dict) else None
    theta = theta if theta is not None else _get(c, "rope_theta", "rotary_emb_base")
    if theta is not None:
        d["rotary_base"] = float(theta)
    kind = (params.get("rope_type") or params.get("type") or "default") if isinstance(params, dict) else "default"
    if kind == "llama3":
        d.update(
            use_NTK_by_parts_rope=True,
            NTK_original_ctx_len=int(params.get("original_max_position_embeddings", c.max_position_embeddings)),
            NTK_by_parts_low_freq_factor=float(params.get("low_freq_factor", 1.0)),
            NTK_by_parts_high_freq_factor=float(params.get("high_freq_factor", 4.0)),
            NTK_by_parts_factor=float(params.get("factor", 1.0)),
        )
    else:
        _require(kind == "default", f"rope_parameters.rope_type {kind!r} is not supported (only default and llama3)")


def _windows(c: Any, d: dict[str, Any], n_layers: int) -> None:
    """Sliding-window layers from ``layer_types`` (+ ``sliding_window``) when the config has them."""
    types = getattr(c, "layer_types", None)
    window = getattr(c, "sliding_window", None)
    if not types or window is None:
        return
    unknown = sorted({t for t in types if t not in ("full_attention", "sliding_attention")})
    _require(not unknown, f"layer_types {unknown} are not supported (only full_attention and sliding_attention)")
    if "sliding_attention" in types:
        d.update(use_local_attn=True, window_size=int(window), attn_types=["local" if t == "sliding_attention" else "global" for t in types][:n_layers])


def _heads(c: Any, n_heads: int) -> Optional[int]:
    kv = getattr(c, "num_key_value_heads", None)
    return None if kv is None or kv == n_heads else int(kv)


# ------------------------------------------------------------------- one mapper per architecture


def _gpt2(c: Any) -> dict[str, Any]:
    return dict(
        d_model=c.n_embd, d_head=c.n_embd // c.n_head, n_heads=c.n_head, d_mlp=c.n_inner or 4 * c.n_embd,
        n_layers=c.n_layer, n_ctx=_get(c, "n_ctx", "n_positions"), eps=c.layer_norm_epsilon, d_vocab=c.vocab_size,
        act_fn=_act(c, "activation_function"), use_attn_scale=bool(getattr(c, "scale_attn_weights", True)),
        scale_attn_by_inverse_layer_idx=bool(getattr(c, "scale_attn_by_inverse_layer_idx", False)), normalization_type="LN",
    )


def _neo(c: Any) -> dict[str, Any]:
    return dict(
        d_model=c.hidden_size, d_head=c.hidden_size // c.num_heads, n_heads=c.num_heads, d_mlp=c.intermediate_size or 4 * c.hidden_size,
        n_layers=c.num_layers, n_ctx=c.max_position_embeddings, eps=c.layer_norm_epsilon, d_vocab=c.vocab_size,
        act_fn=_act(c, "activation_function"), use_attn_scale=False, use_local_attn=True, window_size=int(c.window_size),
        attn_types=list(c.attention_layers), normalization_type="LN",
    )


def _gptj(c: Any) -> dict[str, Any]:
    d_head = c.n_embd // c.n_head
    return dict(
        d_model=c.n_embd, d_head=d_head, n_heads=c.n_head, d_mlp=c.n_inner or 4 * c.n_embd, n_layers=c.n_layer,
        n_ctx=c.n_positions, eps=c.layer_norm_epsilon, d_vocab=c.vocab_size, act_fn=_act(c, "activation_function"),
        parallel_attn_mlp=True, positional_embedding_type="rotary", rotary_dim=c.rotary_dim or d_head,
        rotary_adjacent_pairs=True, normalization_type="LN",
    )


def _opt(c: Any) -> dict[str, Any]:
    _require(c.do_layer_norm_before, "do_layer_norm_before=false (post-LayerNorm OPT) is not supported")
    _require(c.word_embed_proj_dim in (None, c.hidden_size), f"word_embed_proj_dim {c.word_embed_proj_dim} != hidden_size {c.hidden_size} (projected embeddings) is not supported")
    _require(getattr(c, "enable_bias", True), "enable_bias=false is not supported (the conversion reads the biases)")
    _require(getattr(c, "layer_norm_elementwise_affine", True), "layer_norm_elementwise_affine=false is not supported")
    _require(not getattr(c, "_remove_final_layer_norm", False), "_remove_final_layer_norm=true is not supported")
    return dict(
        d_model=c.hidden_size, d_head=c.hidden_size // c.num_attention_heads, n_heads=c.num_attention_heads, d_mlp=c.ffn_dim,
        n_layers=c.num_hidden_layers, n_ctx=c.max_position_embeddings, eps=1e-5, d_vocab=c.vocab_size,
        act_fn=_act(c, "activation_function"), normalization_type="LN",
    )


def _neox(c: Any) -> dict[str, Any]:
    from transformer_lens.utilities.hf_utils import get_rotary_pct_from_config

    _require(getattr(c, "attention_bias", True), "attention_bias=false is not supported (the conversion reads the biases)")
    d_head = c.hidden_size // c.num_attention_heads
    d = dict(
        d_model=c.hidden_size, d_head=d_head, n_heads=c.num_attention_heads, d_mlp=c.intermediate_size,
        n_layers=c.num_hidden_layers, n_ctx=c.max_position_embeddings, eps=c.layer_norm_eps, d_vocab=c.vocab_size,
        act_fn=_act(c, "hidden_act"), parallel_attn_mlp=bool(getattr(c, "use_parallel_residual", True)),
        positional_embedding_type="rotary", rotary_adjacent_pairs=False, normalization_type="LN", default_prepend_bos=False,
    )
    d["rotary_dim"] = round(get_rotary_pct_from_config(c) * d_head)
    _rope(c, d)
    return d


def _llama_like(c: Any, *, gqa_always: bool = False, qk_norm: bool = False, biases_ok: bool = False) -> dict[str, Any]:
    """Llama and its descendants: RMSNorm, gated MLP, rotary (halves), no biases."""
    if not biases_ok:
        _require(not getattr(c, "attention_bias", False), "attention_bias=true is not supported (the conversion drops the biases)")
    _require(not getattr(c, "mlp_bias", False), "mlp_bias=true is not supported (the conversion drops the biases)")
    n_heads = c.num_attention_heads
    d_head = _get(c, "head_dim", default=c.hidden_size // n_heads)
    kv = _heads(c, n_heads)
    d = dict(
        d_model=c.hidden_size, d_head=d_head, n_heads=n_heads, d_mlp=c.intermediate_size, n_layers=c.num_hidden_layers,
        n_ctx=c.max_position_embeddings, eps=c.rms_norm_eps, d_vocab=c.vocab_size, act_fn=_act(c, "hidden_act"),
        normalization_type="RMS", positional_embedding_type="rotary", rotary_adjacent_pairs=False, rotary_dim=d_head,
        final_rms=True, gated_mlp=True, n_key_value_heads=(kv or n_heads) if gqa_always else kv, use_qk_norm=qk_norm,
    )
    _rope(c, d)
    _windows(c, d, c.num_hidden_layers)
    return d


def _mistral(c: Any) -> dict[str, Any]:
    d = _llama_like(c, gqa_always=True)
    window = getattr(c, "sliding_window", None)
    if window:
        d.update(use_local_attn=True, window_size=int(window), attn_types=["local"] * c.num_hidden_layers)
    return d


def _gemma(c: Any) -> dict[str, Any]:
    d = _llama_like(c, gqa_always=True)
    return d


def _phi(c: Any) -> dict[str, Any]:
    _require(not getattr(c, "qk_layernorm", False), "qk_layernorm=true is not supported (the conversion drops it)")
    n_heads = c.num_attention_heads
    _require(_heads(c, n_heads) is None, "num_key_value_heads != num_attention_heads is not supported for Phi (the conversion assumes full heads)")
    d_head = c.hidden_size // n_heads
    d = dict(
        d_model=c.hidden_size, d_head=d_head, n_heads=n_heads, d_mlp=c.intermediate_size, n_layers=c.num_hidden_layers,
        n_ctx=c.max_position_embeddings, eps=c.layer_norm_eps, d_vocab=c.vocab_size, act_fn=_act(c, "hidden_act"),
        normalization_type="LN", positional_embedding_type="rotary", rotary_adjacent_pairs=False,
        parallel_attn_mlp=True, default_prepend_bos=False,
    )
    params = getattr(c, "rope_parameters", None) or {}
    factor = params.get("partial_rotary_factor") if isinstance(params, dict) else None
    factor = factor if factor is not None else _get(c, "partial_rotary_factor", default=0.5)
    d["rotary_dim"] = round(float(factor) * d_head)
    _rope(c, d)
    return d


def _phi3(c: Any) -> dict[str, Any]:
    params = getattr(c, "rope_parameters", None) or {}
    factor = params.get("partial_rotary_factor", 1.0) if isinstance(params, dict) else 1.0
    _require(float(factor) == 1.0, f"partial_rotary_factor {factor} is not supported for Phi-3 (the conversion rotates whole heads)")
    d = _llama_like(c)
    d["final_rms"] = False
    window = getattr(c, "sliding_window", None)
    if window:
        d.update(use_local_attn=True, window_size=int(window), attn_types=["local"] * c.num_hidden_layers)
    return d


def _olmo(c: Any) -> dict[str, Any]:
    n_heads = c.num_attention_heads
    _require(_heads(c, n_heads) is None, "num_key_value_heads != num_attention_heads is not supported for OLMo (the conversion assumes full heads)")
    _require(not getattr(c, "attention_bias", False), "attention_bias=true is not supported (the conversion drops the biases)")
    d_head = c.hidden_size // n_heads
    d = dict(
        d_model=c.hidden_size, d_head=d_head, n_heads=n_heads, d_mlp=c.intermediate_size, n_layers=c.num_hidden_layers,
        n_ctx=c.max_position_embeddings, eps=1e-5,  # OlmoLayerNorm: weightless, eps fixed at 1e-5
        d_vocab=c.vocab_size, act_fn=_act(c, "hidden_act"), normalization_type="LN", positional_embedding_type="rotary",
        rotary_adjacent_pairs=False, rotary_dim=d_head, gated_mlp=True, clip_qkv=getattr(c, "clip_qkv", None),
    )
    _rope(c, d)
    return d


def _olmo2(c: Any) -> dict[str, Any]:
    n_heads = c.num_attention_heads
    _require(_heads(c, n_heads) is None, "num_key_value_heads != num_attention_heads is not supported for OLMo-2 (the conversion assumes full heads)")
    d = _llama_like(c)
    d.update(final_rms=False, n_key_value_heads=None, use_qk_norm=False)  # TL builds OLMo-2's q/k norms from original_architecture
    return d


def _bloom(c: Any) -> dict[str, Any]:
    _require(not getattr(c, "apply_residual_connection_post_layernorm", False), "apply_residual_connection_post_layernorm=true is not supported")
    return dict(
        d_model=c.hidden_size, d_head=c.hidden_size // c.n_head, n_heads=c.n_head, d_mlp=4 * c.hidden_size, n_layers=c.n_layer,
        n_ctx=2048,  # ALiBi has no position table; TransformerLens' BLOOM branch uses 2048 too
        eps=c.layer_norm_epsilon, d_vocab=c.vocab_size, act_fn="gelu_fast", normalization_type="LN", post_embedding_ln=True,
        positional_embedding_type="alibi", default_prepend_bos=False,
    )


@dataclass(frozen=True)
class _Arch:
    mapper: Callable[[Any], dict[str, Any]]
    convert: str  # function name in transformer_lens.pretrained.weight_conversions


ARCHITECTURES: dict[str, _Arch] = {
    "GPT2LMHeadModel": _Arch(_gpt2, "convert_gpt2_weights"),
    "GPTNeoForCausalLM": _Arch(_neo, "convert_neo_weights"),
    "GPTJForCausalLM": _Arch(_gptj, "convert_gptj_weights"),
    "OPTForCausalLM": _Arch(_opt, "convert_opt_weights"),
    "GPTNeoXForCausalLM": _Arch(_neox, "convert_neox_weights"),
    "LlamaForCausalLM": _Arch(_llama_like, "convert_llama_weights"),
    "MistralForCausalLM": _Arch(_mistral, "convert_mistral_weights"),
    "Qwen2ForCausalLM": _Arch(lambda c: _llama_like(c, gqa_always=True, biases_ok=True), "convert_qwen2_weights"),
    "Qwen3ForCausalLM": _Arch(lambda c: _llama_like(c, qk_norm=True), "convert_qwen3_weights"),
    "GemmaForCausalLM": _Arch(_gemma, "convert_gemma_weights"),
    "PhiForCausalLM": _Arch(_phi, "convert_phi_weights"),
    "Phi3ForCausalLM": _Arch(_phi3, "convert_phi3_weights"),
    "OlmoForCausalLM": _Arch(_olmo, "convert_olmo_weights"),
    "Olmo2ForCausalLM": _Arch(_olmo2, "convert_olmo2_weights"),
    "BloomForCausalLM": _Arch(_bloom, "convert_bloom_weights"),
}
"""Hugging Face architectures converted, with the TransformerLens weight conversion each uses."""

_MODEL_TYPES = {
    "gpt2": "GPT2LMHeadModel", "gpt_neo": "GPTNeoForCausalLM", "gptj": "GPTJForCausalLM", "opt": "OPTForCausalLM",
    "gpt_neox": "GPTNeoXForCausalLM", "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "gemma": "GemmaForCausalLM", "phi": "PhiForCausalLM",
    "phi3": "Phi3ForCausalLM", "olmo": "OlmoForCausalLM", "olmo2": "Olmo2ForCausalLM", "bloom": "BloomForCausalLM",
}

REFUSED: dict[str, str] = {
    "Gemma2ForCausalLM": "Gemma-2's attention and logit soft-capping and its norms around each sublayer are not mapped",
    "Gemma3ForCausalLM": "Gemma-3's per-layer rotary bases and norms around each sublayer are not mapped",
    "Gemma3ForConditionalGeneration": "a multimodal model",
    "MixtralForCausalLM": "a mixture-of-experts model; the per-head scores do not cover its routed MLPs",
    "OlmoeForCausalLM": "a mixture-of-experts model; the per-head scores do not cover its routed MLPs",
    "GptOssForCausalLM": "a mixture-of-experts model with attention sinks",
    "Olmo3ForCausalLM": "OLMo-3's per-layer rope and YaRN are not mapped",
    "QWenLMHeadModel": "Qwen-1 needs remote code",
    "T5ForConditionalGeneration": "an encoder-decoder model, not a decoder-only one",
    "BertForMaskedLM": "a masked (bidirectional) model, not a decoder-only one",
}
"""Architectures TransformerLens knows that are refused here, with the reason."""


def architecture_of(hf_config: Any) -> str:
    """The Hugging Face architecture class name of a config (``architectures[0]`` or its model type)."""
    archs = list(getattr(hf_config, "architectures", None) or [])
    known = next((a for a in archs if a in ARCHITECTURES or a in REFUSED), None)
    return known or (archs[0] if archs else _MODEL_TYPES.get(getattr(hf_config, "model_type", None), str(getattr(hf_config, "model_type", None) or "unknown")))


def hooked_spec(hf_config: Any) -> HookedSpec:
    """Map a ``transformers`` config onto ``HookedTransformerConfig`` keyword arguments.

    Raises:
        UnsupportedArchitecture: one line naming the architecture or the config field.
    """
    arch = architecture_of(hf_config)
    if arch in REFUSED:
        raise UnsupportedArchitecture(f"architecture {arch} is not supported: {REFUSED[arch]}")
    if arch not in ARCHITECTURES:
        raise UnsupportedArchitecture(f"architecture {arch} is not supported; expected one of {', '.join(ARCHITECTURES)}")
    entry = ARCHITECTURES[arch]
    try:
        kwargs = entry.mapper(hf_config)
    except AttributeError as e:
        raise UnsupportedArchitecture(f"{arch} config lacks a field the mapping reads ({e})") from None
    kwargs.update(original_architecture=arch, init_weights=False, model_name=str(getattr(hf_config, "_name_or_path", "") or "custom"))
    spec = HookedSpec(kwargs, entry.convert)
    _fit_window(spec)
    return spec


def _fit_window(spec: HookedSpec) -> None:
    """Cut ``n_ctx`` to the shortest local window when that window is shorter than the probe rows."""
    k = spec.kwargs
    if not k.get("use_local_attn") or "local" not in (k.get("attn_types") or []):
        return
    window, n_ctx = int(k["window_size"]), int(k["n_ctx"])
    if window < probe_length(n_ctx):
        k["n_ctx"] = window
        spec.notes.append(
            f"local attention window {window} is shorter than the probe rows ({probe_length(n_ctx)} tokens at n_ctx {n_ctx}); "
            f"n_ctx is cut to {window} so every probe row fits inside the window"
        )


def nanogpt_spec(model_args: dict[str, Any]) -> HookedSpec:
    """``HookedTransformerConfig`` arguments for a nanoGPT ``model_args`` dict (karpathy/nanoGPT ``model.py``:
    pre-LayerNorm GPT with exact GELU, learned positions, tied embeddings).

    Raises:
        UnsupportedArchitecture: a required key is missing or not a positive integer.
    """
    need = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")
    bad = [k for k in need if not isinstance(model_args.get(k), int) or isinstance(model_args.get(k), bool) or model_args[k] < 1]
    _require(not bad, f"model_args lacks a positive integer {', '.join(bad)}; expected nanoGPT's {', '.join(need)}")
    n_embd, n_head = model_args["n_embd"], model_args["n_head"]
    _require(n_embd % n_head == 0, f"model_args n_embd {n_embd} is not a multiple of n_head {n_head}")
    kwargs = dict(
        d_model=n_embd, d_head=n_embd // n_head, n_heads=n_head, d_mlp=4 * n_embd, n_layers=model_args["n_layer"],
        n_ctx=model_args["block_size"], d_vocab=model_args["vocab_size"], act_fn="gelu", normalization_type="LN", eps=1e-5,
        original_architecture="nanoGPT", init_weights=False, model_name="nanoGPT",
    )
    return HookedSpec(kwargs, "convert_nanogpt_weights")
