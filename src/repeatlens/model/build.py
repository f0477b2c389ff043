"""Our typed :class:`~repeatlens.config.ModelConfig` mapped onto TransformerLens: building a
``HookedTransformer``, rebuilding one from saved weights, hook names, the tail of a forward.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor

from repeatlens.config import ModelConfig
from repeatlens.errors import ConfigError
from repeatlens.model._tl import HookedTransformer, HookedTransformerConfig, quiet_tl as _quiet_tl


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
    """Rebuild a model from a config and saved weights, exactly (no weight processing).
    The model gets a copy of ``hcfg`` on ``device``; the caller's config is left as it was."""
    hcfg = copy.copy(hcfg)
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


def z_hook_name(layer: int) -> str:
    """Name of the per-head attention output hook of ``layer`` ([batch, pos, head, d_head])."""
    return f"blocks.{layer}.attn.hook_z"



def hooked_logits(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits through TransformerLens' own (hooked) forward."""
    return model(tokens, return_type="logits")


class LayerRun:
    """One clean forward pass kept layer by layer, to re-run from any layer with hooks.

    ``resid_pre[l]`` is the residual stream entering block ``l`` (what ``blocks.{l}.hook_resid_pre``
    records), ``resid_final`` the stream after the last block, and ``inputs`` what a forward
    started past the embedding needs besides the residual (a shortformer positional
    embedding, an attention mask; None for most models), exactly as ``input_to_embed`` made
    them for these tokens.
    """

    def __init__(self, model: HookedTransformer, tokens: Int[Tensor, "batch pos"]):
        with torch.inference_mode():
            resid, _, shortformer, mask = model.input_to_embed(tokens)
            self.inputs = {"shortformer_pos_embed": shortformer, "attention_mask": mask}
            self.resid_pre: list[Tensor] = []
            for layer in range(model.cfg.n_layers):
                self.resid_pre.append(resid)
                resid = model(resid, start_at_layer=layer, stop_at_layer=layer + 1, **self.inputs)
        self.resid_final: Float[Tensor, "batch pos d_model"] = resid
        self.model = model

    def rerun(self, layer: int, fwd_hooks: list, copies: int = 1) -> Float[Tensor, "batch_copies pos d_model"]:
        """The residual after the last block when blocks ``layer..`` run again with ``fwd_hooks``
        on ``copies`` stacked copies of the batch (rows ``i * batch .. (i + 1) * batch - 1`` are
        copy ``i``, so a hook can treat each copy differently); blocks before ``layer`` are
        not run again."""
        def stack(t: Optional[Tensor]) -> Optional[Tensor]:
            return t if t is None or copies == 1 else t.repeat(copies, *([1] * (t.ndim - 1)))

        inputs = {k: stack(v) for k, v in self.inputs.items()}
        resid = stack(self.resid_pre[layer])
        with torch.inference_mode():
            return self.model.run_with_hooks(resid, start_at_layer=layer, stop_at_layer=self.model.cfg.n_layers,
                                             fwd_hooks=fwd_hooks, **inputs)


class Unembedding:
    """The tail of a forward (final norm, unembedding, logit soft-cap) set up once for many
    chunks of positions, and for column ranges of the vocabulary: the maths of
    :func:`logits_from_resid` (TransformerLens' ``Unembed`` is ``F.linear(x, W_U.T.contiguous(),
    b_U)``), with ``W_U.T`` made contiguous once rather than at every call (a copy of the
    whole unembedding: 12.9 MB at GPT-2's vocabulary). The unembedding's own hook points
    are not run (no score hooks them).
    """

    def __init__(self, model: HookedTransformer):
        self.model = model
        self.weight = model.unembed.W_U.detach().T.contiguous()  # [d_vocab, d_model]
        self.bias = model.unembed.b_U.detach()
        self.d_vocab = int(self.weight.shape[0])

    def normed(self, resid: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_model"]:
        """The final norm of each row (the identity for a model without one)."""
        return self.model.ln_final(resid[None])[0] if self.model.cfg.normalization_type is not None else resid

    def logits(self, normed: Float[Tensor, "n d_model"], columns: slice = slice(None)) -> Float[Tensor, "n n_columns"]:
        """Logits of ``columns`` of the vocabulary for rows already through :meth:`normed`."""
        from transformer_lens.utilities import apply_softcap

        out = torch.nn.functional.linear(normed, self.weight[columns], self.bias[columns])
        return apply_softcap(out, self.model.cfg.output_logits_soft_cap)

    def target_logits(self, normed: Float[Tensor, "n d_model"], targets: Int[Tensor, "n"]) -> Float[Tensor, "n"]:
        """The logit of each row's own target id only."""
        from transformer_lens.utilities import apply_softcap

        out = (normed * self.weight[targets]).sum(-1) + self.bias[targets]
        return apply_softcap(out, self.model.cfg.output_logits_soft_cap)

    def __call__(self, resid: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_vocab"]:
        return self.logits(self.normed(resid))


def logits_from_resid(model: HookedTransformer, resid: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab"]:
    """Finish a forward pass stopped after the last block (``stop_at_layer=n_layers``).

    The tail of ``HookedTransformer.forward``: final norm, unembedding, logit soft-cap.
    """
    from transformer_lens.utilities import apply_softcap

    x = model.ln_final(resid) if model.cfg.normalization_type is not None else resid
    return apply_softcap(model.unembed(x), model.cfg.output_logits_soft_cap)
