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
        c.positional_embedding_type == "standard"
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


def fast_forward(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits of ``model`` computed with fused ``scaled_dot_product_attention``.

    Same parameters, same maths as ``model(tokens)``, but attention never materialises the
    [batch, head, pos, pos] pattern and Q, K, V come from one matmul. Hook points are
    bypassed, so this is used for training only while no hooks are attached (see
    :func:`logits`); analysis always goes through the hooked forward.
    """
    c = model.cfg
    b, p = tokens.shape
    x = model.embed.W_E[tokens] + model.pos_embed.W_pos[:p]
    for block in model.blocks:
        attn = block.attn
        h = _norm(block.ln1, x, c)
        w_qkv = torch.cat([attn.W_Q, attn.W_K, attn.W_V], dim=0)  # [3*heads, d_model, d_head]
        w_qkv = w_qkv.permute(1, 0, 2).reshape(c.d_model, -1)  # [d_model, 3*heads*d_head]
        b_qkv = torch.cat([attn.b_Q, attn.b_K, attn.b_V], dim=0).reshape(-1)
        qkv = torch.addmm(b_qkv, h.reshape(b * p, c.d_model), w_qkv)
        q, k, v = qkv.view(b, p, 3, c.n_heads, c.d_head).permute(2, 0, 3, 1, 4).unbind(0)
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


def logits(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], fast: bool = True) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits through the fused path when allowed (no hooks, supported config), else hooked."""
    if fast and supports_fast_path(model) and not has_hooks(model):
        return fast_forward(model, tokens)
    return model(tokens, return_type="logits")
