"""A fused attention path for training: the same maths as the hooked forward, faster.

``fast_forward`` computes a ``HookedTransformer``'s logits with fused
``scaled_dot_product_attention`` on the model's own weights; it is used only while no
hooks are attached and only for configs it reproduces exactly (:func:`supports_fast_path`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from repeatlens.model._tl import HookedTransformer, HookedTransformerConfig
from repeatlens.model.build import has_hooks, hooked_logits

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


def fast_residual(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
    """The residual stream after the last block, by :func:`fast_forward`'s fused path (see there)."""
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
    return x


def fast_forward(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits of ``model`` computed with fused ``scaled_dot_product_attention``.

    Same parameters, same maths as ``model(tokens)``, but attention never materialises the
    [batch, head, pos, pos] pattern and Q, K, V come from one matmul. Hook points are
    bypassed, so this is used for training only while no hooks are attached (see
    :func:`logits`); analysis always goes through the hooked forward.
    """
    c = model.cfg
    x = fast_residual(model, tokens)
    x = _norm(model.ln_final, x, c) if c.normalization_type is not None else x
    return F.linear(x, model.unembed.W_U.T, model.unembed.b_U)


def final_residual(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], fast: bool = True) -> Float[Tensor, "batch pos d_model"]:
    """The residual stream after the last block (before the final norm): fused when allowed
    (as :func:`logits`), else TransformerLens' forward stopped there. Finish it with
    :func:`repeatlens.model.logits_from_resid`, e.g. only at the positions a score reads."""
    if fast and supports_fast_path(model) and not has_hooks(model):
        return fast_residual(model, tokens)
    return model(tokens, stop_at_layer=model.cfg.n_layers)


def _norm(module: torch.nn.Module, x: Tensor, c: HookedTransformerConfig) -> Tensor:
    """TransformerLens' LayerNorm as one fused kernel; other norms through their module."""
    if c.normalization_type == "LN":
        return F.layer_norm(x, (c.d_model,), module.w, module.b, c.eps)
    if c.normalization_type is None:
        return x
    return module(x)


def forward_fn(model: HookedTransformer, fast: bool = True):
    """The forward to use for ``model`` now: fused when allowed (no hooks, supported config), else hooked."""
    return fast_forward if fast and supports_fast_path(model) and not has_hooks(model) else hooked_logits


def logits(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], fast: bool = True) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits through the fused path when allowed (no hooks, supported config), else hooked."""
    return forward_fn(model, fast)(model, tokens)


