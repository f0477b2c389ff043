"""Other people's checkpoints converted into a ``HookedTransformer``, offline.

Models trained elsewhere: TransformerLens state dicts with the ``HookedTransformerConfig``
they were built from (``config.json``, its ``to_dict()``), and Hugging Face GPT-2 /
GPT-NeoX (Pythia) checkpoint folders on local disk. The HF config is mapped onto
``HookedTransformerConfig`` the way TransformerLens'
``loading_from_pretrained.convert_hf_model_config`` does for these two architectures (that
function reads ``hf_config.n_ctx``, which transformers 5 no longer sets on a new
GPT2Config), and the weights go through TransformerLens' own ``convert_gpt2_weights`` /
``convert_neox_weights``. No weight processing (no LayerNorm folding, no centring): the
model is the checkpoint, exactly.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from repeatlens.model._tl import HookedTransformer, HookedTransformerConfig, quiet_tl as _quiet_tl
from repeatlens.model.build import _DERIVED_CFG_KEYS, hooked_config_from_dict

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
