"""The one adapter between repeatlens and TransformerLens.

Everything TransformerLens-specific lives here: building a ``HookedTransformer`` from our
typed :class:`ModelConfig`, the names of hook points, rebuilding a model from saved
weights, and a fused attention path for training. Moving to a later TransformerLens means
changing this file only.

TransformerLens 3.9 marks ``HookedTransformer`` deprecated (4.0 keeps only
``TransformerBridge``). The warning is silenced here, locally, around our own calls; the
user's global warning filters are left alone.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator, Literal, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from repeatlens.errors import ConfigError


@contextlib.contextmanager
def _quiet_tl() -> Iterator[None]:
    """Silence TransformerLens' HookedTransformer deprecation warning, locally."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HookedTransformer is deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="transformer_lens")
        yield


with _quiet_tl():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

__all__ = [
    "HookedTransformer",
    "HookedTransformerConfig",
    "ModelConfig",
    "PRESETS",
    "build_model",
    "hooked_config",
    "hooked_config_from_dict",
    "model_from_state_dict",
    "pattern_hook_name",
    "is_pattern_hook",
    "has_hooks",
    "fast_forward",
    "supports_fast_path",
    "n_params",
]

# Named shapes. CPU presets train in minutes on 2 cores; GPU presets are for a real study.
PRESETS: dict[str, dict[str, Any]] = {
    # CPU
    "attn1-tiny": dict(n_layers=1, d_model=32, n_heads=4, d_head=8, n_ctx=64, attn_only=True),
    "attn2-tiny": dict(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=64, attn_only=True),
    "attn2-small": dict(n_layers=2, d_model=64, n_heads=4, d_head=16, n_ctx=128, attn_only=True),
    "attn2-base": dict(n_layers=2, d_model=128, n_heads=8, d_head=16, n_ctx=256, attn_only=True),
    "mlp2-small": dict(n_layers=2, d_model=64, n_heads=4, d_head=16, n_ctx=128, attn_only=False),
    # GPU
    "attn2-gpu": dict(n_layers=2, d_model=256, n_heads=8, d_head=32, n_ctx=512, attn_only=True),
    "mlp4-gpu": dict(n_layers=4, d_model=512, n_heads=8, d_head=64, n_ctx=1024, attn_only=False),
    "mlp8-gpu": dict(n_layers=8, d_model=768, n_heads=12, d_head=64, n_ctx=1024, attn_only=False),
}


class ModelConfig(BaseModel):
    """Shape and initialisation of a model, validated once, mapped onto TransformerLens.

    Either name a ``preset`` (its values fill every field you leave out) or give the
    fields. ``d_vocab`` is normally left empty: it is filled from the tokenizer/data.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    preset: Optional[str] = None
    n_layers: int = Field(2, ge=1)
    d_model: int = Field(64, ge=1)
    n_heads: int = Field(4, ge=1)
    d_head: int = Field(16, ge=1)
    n_ctx: int = Field(128, ge=2)
    d_vocab: Optional[int] = Field(None, ge=2)
    attn_only: bool = True
    d_mlp: Optional[int] = Field(None, ge=1, description="default 4*d_model")
    act_fn: Literal["gelu", "gelu_new", "relu", "silu", "solu_ln"] = "gelu"
    positional_embedding: Literal["standard", "rotary", "shortformer"] = "standard"
    normalization: Optional[Literal["LN", "LNPre", "RMS", "RMSPre"]] = "LN"
    init_mode: Literal["gpt2", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"] = "gpt2"
    init_range: Optional[float] = Field(None, gt=0, description="default 0.8/sqrt(d_model) (gpt2 init)")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if name not in PRESETS:
                raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
            return {**PRESETS[name], **data}
        return data


def hooked_config(cfg: ModelConfig, d_vocab: Optional[int] = None, device: str = "cpu", seed: Optional[int] = None) -> HookedTransformerConfig:
    """Map a :class:`ModelConfig` onto TransformerLens' ``HookedTransformerConfig``."""
    vocab = d_vocab if d_vocab is not None else cfg.d_vocab
    if vocab is None:
        raise ConfigError("model.d_vocab: not set and no tokenizer/data to take it from; expected an integer >= 2")
    kwargs: dict[str, Any] = dict(
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        d_head=cfg.d_head,
        n_ctx=cfg.n_ctx,
        d_vocab=vocab,
        attn_only=cfg.attn_only,
        positional_embedding_type=cfg.positional_embedding,
        normalization_type=cfg.normalization,
        init_mode=cfg.init_mode,
        device=device,
        seed=seed,
        default_prepend_bos=True,
        tokenizer_prepends_bos=False,
    )
    if not cfg.attn_only:
        kwargs["d_mlp"] = cfg.d_mlp or 4 * cfg.d_model
        kwargs["act_fn"] = cfg.act_fn
    if cfg.init_range is not None:
        kwargs["initializer_range"] = cfg.init_range
    if cfg.positional_embedding == "rotary":
        kwargs["rotary_dim"] = cfg.d_head
    with _quiet_tl():
        return HookedTransformerConfig(**kwargs)


def hooked_config_from_dict(d: dict[str, Any]) -> HookedTransformerConfig:
    """Rebuild a ``HookedTransformerConfig`` from its ``to_dict()`` (other people's runs)."""
    d = {k: v for k, v in d.items() if k not in _DERIVED_CFG_KEYS}
    with _quiet_tl():
        return HookedTransformerConfig(**d)


# Keys of HookedTransformerConfig.to_dict() that __post_init__ derives or that are not
# constructor arguments; passing them back is either an error or overrides a derivation.
_DERIVED_CFG_KEYS = {"n_params", "device", "tokenizer_name"}


def build_model(
    cfg: ModelConfig | HookedTransformerConfig,
    d_vocab: Optional[int] = None,
    *,
    tokenizer: Any = None,
    device: str = "cpu",
    seed: Optional[int] = None,
) -> HookedTransformer:
    """Build a freshly initialised ``HookedTransformer``.

    Args:
        cfg: our :class:`ModelConfig` (or an already-built ``HookedTransformerConfig``).
        d_vocab: vocabulary size, when ``cfg.d_vocab`` is not set.
        tokenizer: optional HF tokenizer (see :func:`repeatlens.data.tokenizer.hf_tokenizer`).
        device: torch device string.
        seed: seeds the initialisation (TransformerLens calls ``torch.manual_seed``).
    """
    hcfg = cfg if isinstance(cfg, HookedTransformerConfig) else hooked_config(cfg, d_vocab, device, seed)
    with _quiet_tl():
        model = HookedTransformer(hcfg, tokenizer=tokenizer, move_to_device=True)
    return model


def model_from_state_dict(
    hcfg: HookedTransformerConfig,
    state_dict: dict[str, Tensor],
    *,
    tokenizer: Any = None,
    device: str = "cpu",
) -> HookedTransformer:
    """Rebuild a model from a config and saved weights, exactly (no weight processing)."""
    hcfg.device = device
    with _quiet_tl():
        model = HookedTransformer(hcfg, tokenizer=tokenizer, move_to_device=False)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    # Buffers TransformerLens recreates itself (causal mask, IGNORE) may be absent.
    missing = [k for k in missing if not k.endswith((".mask", ".IGNORE"))]
    if missing or unexpected:
        raise ValueError(f"weights do not match the config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    # nn.Module.to: HookedTransformer.to would print a 'Moving model' line per load.
    return torch.nn.Module.to(model, device).eval()


def n_params(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------- hook names


def pattern_hook_name(layer: int) -> str:
    """Name of the attention-pattern hook of ``layer`` ([batch, head, query_pos, key_pos])."""
    return f"blocks.{layer}.attn.hook_pattern"


def is_pattern_hook(name: str) -> bool:
    """Filter for ``run_with_cache(names_filter=...)`` caching only attention patterns."""
    return name.endswith("attn.hook_pattern")


def hook_layer(name: str) -> int:
    """Layer index of a ``blocks.{layer}.…`` hook name."""
    return int(name.split(".")[1])


def has_hooks(model: HookedTransformer) -> bool:
    """True when any hook point of ``model`` has a forward or backward hook attached."""
    return any(hp._forward_hooks or hp._backward_hooks or hp._forward_pre_hooks for hp in model.hook_dict.values())


# ------------------------------------------------------------------------ fused training path


def supports_fast_path(model: HookedTransformer) -> bool:
    """Whether :func:`fast_forward` reproduces this model's forward pass exactly."""
    c = model.cfg
    return (
        c.positional_embedding_type in ("standard", "rotary")
        and _plain_rotary(c)
        and (c.attn_types is None or all(t == "global" for t in c.attn_types))
        and c.normalization_type in ("LN", "LNPre", "RMS", "RMSPre", None)
        and c.attention_dir == "causal"
        and not c.use_attn_result
        and not c.use_split_qkv_input
        and not c.use_hook_mlp_in
        and not c.use_attn_in
        and c.n_key_value_heads is None
        and not c.parallel_attn_mlp
        and c.use_attn_scale
        and not getattr(c, "use_attention_sinks", False)
        and not getattr(c, "use_qk_norm", False)
        and getattr(c, "clip_qkv", None) is None
        and c.attn_scores_soft_cap < 0
        and c.output_logits_soft_cap < 0
    )


def _plain_rotary(c: HookedTransformerConfig) -> bool:
    """Rotary variants :func:`_rotate` reproduces: fixed tables, no NTK/YaRN rescaling, one base."""
    if c.positional_embedding_type != "rotary":
        return True
    return (
        c.rotary_dim is not None
        and not getattr(c, "use_dynamic_ntk_rope", False)
        and not getattr(c, "use_yarn_rope", False)
        and getattr(c, "rotary_base_local", None) is None
    )


def _rotate(attn: torch.nn.Module, x: Float[Tensor, "batch head pos d_head"], rotary_dim: int, adjacent: bool) -> Tensor:
    """Rotary embedding of queries or keys, the same maths as TransformerLens' ``apply_rotary``.

    ``x_rot * cos + rotate(x_rot) * sin`` on the first ``rotary_dim`` dimensions, with
    ``rotate`` mapping ``[x1, x2] -> [-x2, x1]`` over halves (GPT-NeoX) or adjacent pairs
    (GPT-J). The sin/cos tables are the attention module's own buffers (Su et al. 2021).
    """
    p = x.shape[-2]
    cos, sin = attn.rotary_cos[:p], attn.rotary_sin[:p]  # [pos, rotary_dim]
    x_rot, x_pass = x[..., :rotary_dim], x[..., rotary_dim:]
    if adjacent:
        flip = torch.stack((-x_rot[..., 1::2], x_rot[..., ::2]), dim=-1).flatten(-2)
    else:
        half = rotary_dim // 2
        flip = torch.cat((-x_rot[..., half:], x_rot[..., :half]), dim=-1)
    out = x_rot * cos + flip * sin
    return torch.cat((out, x_pass), dim=-1) if x_pass.shape[-1] else out


def fast_forward(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits of ``model`` computed with fused ``scaled_dot_product_attention``.

    Same parameters, same maths as ``model(tokens)``, but attention never materialises the
    [batch, head, pos, pos] pattern and Q, K, V come from one matmul. Hook points are
    bypassed, so this is used for training only while no hooks are attached (see
    :func:`logits`); analysis always goes through the hooked forward.
    """
    c = model.cfg
    b, p = tokens.shape
    rotary = c.positional_embedding_type == "rotary"
    x = model.embed.W_E[tokens] if rotary else model.embed.W_E[tokens] + model.pos_embed.W_pos[:p]
    for block in model.blocks:
        attn = block.attn
        h = _norm(block.ln1, x, c)
        w_qkv = torch.cat([attn.W_Q, attn.W_K, attn.W_V], dim=0)  # [3*heads, d_model, d_head]
        w_qkv = w_qkv.permute(1, 0, 2).reshape(c.d_model, -1)  # [d_model, 3*heads*d_head]
        b_qkv = torch.cat([attn.b_Q, attn.b_K, attn.b_V], dim=0).reshape(-1)
        qkv = torch.addmm(b_qkv, h.reshape(b * p, c.d_model), w_qkv)
        q, k, v = qkv.view(b, p, 3, c.n_heads, c.d_head).permute(2, 0, 3, 1, 4).unbind(0)
        if rotary:
            q = _rotate(attn, q, c.rotary_dim, c.rotary_adjacent_pairs)
            k = _rotate(attn, k, c.rotary_dim, c.rotary_adjacent_pairs)
        scale = 1.0 / attn.attn_scale
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)  # [b, h, p, dh]
        z = z.transpose(1, 2).reshape(b * p, c.n_heads * c.d_head)
        attn_out = torch.addmm(attn.b_O, z, attn.W_O.reshape(c.n_heads * c.d_head, c.d_model))
        x = x + attn_out.view(b, p, c.d_model)
        if not c.attn_only:
            x = x + block.mlp(_norm(block.ln2, x, c))
    x = _norm(model.ln_final, x, c) if c.normalization_type is not None else x
    return F.linear(x, model.unembed.W_U.T, model.unembed.b_U)


def _norm(module: torch.nn.Module, x: Tensor, c: HookedTransformerConfig) -> Tensor:
    """TransformerLens' LayerNorm as one fused kernel; other norms through their module."""
    if c.normalization_type == "LN":
        return F.layer_norm(x, (c.d_model,), module.w, module.b, c.eps)
    if c.normalization_type is None:
        return x
    return module(x)


def hooked_logits(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits through TransformerLens' own (hooked) forward."""
    return model(tokens, return_type="logits")


def logits_from_resid(model: HookedTransformer, resid: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab"]:
    """Finish a forward pass stopped after the last block (``stop_at_layer=n_layers``).

    The tail of ``HookedTransformer.forward``: final norm, unembedding, logit soft-cap.
    """
    from transformer_lens.utilities import apply_softcap

    x = model.ln_final(resid) if model.cfg.normalization_type is not None else resid
    return apply_softcap(model.unembed(x), model.cfg.output_logits_soft_cap)


def forward_fn(model: HookedTransformer, fast: bool = True):
    """The forward to use for ``model`` now: fused when allowed (no hooks, supported config), else hooked."""
    return fast_forward if fast and supports_fast_path(model) and not has_hooks(model) else hooked_logits


def logits(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], fast: bool = True) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits through the fused path when allowed (no hooks, supported config), else hooked."""
    return forward_fn(model, fast)(model, tokens)


# --- scores


def z_hook_name(layer: int) -> str:
    """Name of the per-head attention output hook of ``layer`` ([batch, pos, head, d_head])."""
    return f"blocks.{layer}.attn.hook_z"


# --- other people's checkpoints
#
# Models trained elsewhere, loaded offline: TransformerLens state dicts with the
# HookedTransformerConfig they were built from (``config.json``, its ``to_dict()``), and
# Hugging Face GPT-2 / GPT-NeoX (Pythia) checkpoint folders on local disk. The HF config
# is mapped onto HookedTransformerConfig the way TransformerLens'
# ``loading_from_pretrained.convert_hf_model_config`` does for these two architectures
# (that function reads ``hf_config.n_ctx``, which transformers 5 no longer sets on a new
# GPT2Config), and the weights go through TransformerLens' own
# ``convert_gpt2_weights`` / ``convert_neox_weights``. No weight processing (no LayerNorm
# folding, no centring): the model is the checkpoint, exactly.

HF_ARCHITECTURES = ("GPT2LMHeadModel", "GPTNeoXForCausalLM")
"""Hugging Face architectures :func:`model_from_hf_folder` converts."""


def hooked_config_from_json(d: dict[str, Any]) -> HookedTransformerConfig:
    """A ``HookedTransformerConfig`` from its ``to_dict()`` as saved in JSON by someone else.

    ``to_dict()`` holds ``dtype`` as a ``torch.dtype``; written with ``json.dumps(...,
    default=str)`` it comes back as ``"torch.float32"``, which is turned back into a dtype
    here. Weights are not initialised (they are loaded next).

    Raises:
        ValueError: one line naming the keys TransformerLens does not accept, or the bad value.
    """
    import dataclasses

    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object of HookedTransformerConfig fields, got {type(d).__name__}")
    d = dict(d)
    dtype = d.get("dtype")
    if isinstance(dtype, str):
        dt = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(dt, torch.dtype):
            raise ValueError(f"dtype {dtype!r} is not a torch dtype")
        d["dtype"] = dt
    known = {f.name for f in dataclasses.fields(HookedTransformerConfig)}
    unknown = sorted(k for k in d if k not in known and k not in _DERIVED_CFG_KEYS)
    if unknown:
        raise ValueError(f"not HookedTransformerConfig fields: {', '.join(unknown[:5])}")
    for key in ("d_model", "n_layers", "n_ctx", "d_vocab"):
        if key not in d:
            raise ValueError(f"field {key!r} is missing")
    d["init_weights"] = False
    try:
        return hooked_config_from_dict(d)
    except (TypeError, ValueError, AssertionError, AttributeError) as e:
        raise ValueError(f"TransformerLens rejects it ({_first_line(e)})") from None


def model_from_foreign_state_dict(hcfg: HookedTransformerConfig, state_dict: Any, device: str = "cpu") -> HookedTransformer:
    """:func:`model_from_state_dict` for weights made elsewhere, with one-line errors.

    Raises:
        ValueError: the object is not a flat ``{name: tensor}`` dict, or its names/shapes do
            not match ``hcfg`` (the first mismatching parameter is named).
    """
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(f"not a state dict: expected a mapping of parameter names to tensors, got {type(state_dict).__name__}")
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        k = bad[0]
        raise ValueError(f"not a plain state dict: entry {k!r} holds a {type(state_dict[k]).__name__}, expected a tensor")
    hcfg.device = device
    with _quiet_tl():
        model = HookedTransformer(hcfg, move_to_device=False)
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln]
        raise ValueError(f"weights do not match the config: {lines[0] if lines else _first_line(e)}") from None
    # Buffers TransformerLens derives from the config (causal mask, rotary tables) may be absent.
    buffers = {name for name, _ in model.named_buffers()}
    missing = [k for k in missing if k not in buffers]
    if missing or unexpected:
        raise ValueError(f"weights do not match the config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return torch.nn.Module.to(model, device).eval()


def hf_hooked_config(hf_config: Any) -> HookedTransformerConfig:
    """Map a GPT-2 or GPT-NeoX ``transformers`` config onto ``HookedTransformerConfig``.

    Mirrors TransformerLens' ``convert_hf_model_config`` for ``GPT2LMHeadModel`` and
    ``GPTNeoXForCausalLM``, from the config object in hand (no hub lookup).
    """
    arch = _hf_architecture(hf_config)
    c = hf_config
    if arch == "GPT2LMHeadModel":
        d: dict[str, Any] = dict(
            d_model=c.n_embd,
            d_head=c.n_embd // c.n_head,
            n_heads=c.n_head,
            d_mlp=getattr(c, "n_inner", None) or 4 * c.n_embd,
            n_layers=c.n_layer,
            n_ctx=getattr(c, "n_ctx", None) or c.n_positions,
            eps=c.layer_norm_epsilon,
            d_vocab=c.vocab_size,
            act_fn=c.activation_function,
            use_attn_scale=getattr(c, "scale_attn_weights", True),
            use_local_attn=False,
            scale_attn_by_inverse_layer_idx=getattr(c, "scale_attn_by_inverse_layer_idx", False),
            normalization_type="LN",
        )
    else:
        from transformer_lens.utilities.hf_utils import get_rotary_pct_from_config

        d = dict(
            d_model=c.hidden_size,
            d_head=c.hidden_size // c.num_attention_heads,
            n_heads=c.num_attention_heads,
            d_mlp=c.intermediate_size,
            n_layers=c.num_hidden_layers,
            n_ctx=c.max_position_embeddings,
            eps=c.layer_norm_eps,
            d_vocab=c.vocab_size,
            act_fn=c.hidden_act,
            use_attn_scale=True,
            use_local_attn=False,
            scale_attn_by_inverse_layer_idx=False,
            parallel_attn_mlp=getattr(c, "use_parallel_residual", True),
            positional_embedding_type="rotary",
            rotary_adjacent_pairs=False,
            normalization_type="LN",
            default_prepend_bos=False,
        )
        d["rotary_dim"] = round(get_rotary_pct_from_config(c) * d["d_head"])
        base = _rope_theta(c)
        if base is not None:
            d["rotary_base"] = base
    d.update(original_architecture=arch, init_weights=False, model_name=str(getattr(c, "_name_or_path", "") or "custom"))
    with _quiet_tl():
        return HookedTransformerConfig(**d)


def model_from_hf_folder(folder: Any, device: str = "cpu") -> HookedTransformer:
    """Convert one local Hugging Face GPT-2 / GPT-NeoX checkpoint folder into a HookedTransformer.

    The folder is what ``save_pretrained`` writes (``config.json`` plus
    ``model.safetensors`` or ``pytorch_model.bin``, possibly sharded). It is read with
    ``local_files_only=True`` (``.bin`` files through ``torch.load(weights_only=True)``),
    converted with TransformerLens' weight conversion and freed; only the converted
    model is returned.

    Raises:
        ValueError: one line for an unsupported architecture or an unreadable folder.
    """
    import transformers
    from transformers.utils import logging as hf_logging

    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights, convert_neox_weights

    try:
        hf_config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # an unreadable config.json, in whatever way transformers reports it
        raise ValueError(f"unreadable config.json ({_first_line(e)})") from None
    hcfg = hf_hooked_config(hf_config)
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        hf_model = transformers.AutoModelForCausalLM.from_pretrained(
            str(folder), config=hf_config, local_files_only=True, dtype=torch.float32
        )
    except Exception as e:  # missing / truncated / mismatched weight files
        raise ValueError(f"unreadable Hugging Face weights ({_first_line(e)})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_was_on:
            hf_logging.enable_progress_bar()
    convert = convert_gpt2_weights if hcfg.original_architecture == "GPT2LMHeadModel" else convert_neox_weights
    with torch.no_grad():
        state_dict = {k: v.detach().clone() for k, v in convert(hf_model, hcfg).items()}
    del hf_model
    if "unembed.b_U" not in state_dict:  # GPT-2 has no unembedding bias (TL's fill_missing_keys)
        state_dict["unembed.b_U"] = torch.zeros(hcfg.d_vocab_out, dtype=hcfg.dtype)
    return model_from_foreign_state_dict(hcfg, state_dict, device=device)


def _hf_architecture(hf_config: Any) -> str:
    archs = list(getattr(hf_config, "architectures", None) or [])
    by_type = {"gpt2": "GPT2LMHeadModel", "gpt_neox": "GPTNeoXForCausalLM"}
    arch = next((a for a in archs if a in HF_ARCHITECTURES), None) or by_type.get(getattr(hf_config, "model_type", None))
    if arch is None:
        what = ", ".join(archs) or getattr(hf_config, "model_type", None) or "unknown"
        raise ValueError(f"architecture {what} is not supported; expected one of {', '.join(HF_ARCHITECTURES)}")
    return arch


def _rope_theta(hf_config: Any) -> Optional[float]:
    theta = getattr(hf_config, "rotary_emb_base", None)
    params = getattr(hf_config, "rope_parameters", None) or {}
    if theta is None and isinstance(params, dict):
        theta = params.get("rope_theta")
    return theta if theta is None else float(theta)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]
