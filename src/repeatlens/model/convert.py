"""Other people's checkpoints converted into a ``HookedTransformer``, offline.

Three sources:

* **TransformerLens** state dicts with the ``HookedTransformerConfig`` they were built from
  (``config.json``, its ``to_dict()``): :func:`hooked_config_from_json` +
  :func:`model_from_foreign_state_dict`.
* **Hugging Face** checkpoint folders on local disk (what ``save_pretrained`` writes, also
  sharded) of every decoder architecture in :data:`repeatlens.model.archs.ARCHITECTURES`:
  :func:`model_from_hf_folder`. The config is mapped by :mod:`.archs`; the weights go
  through TransformerLens' own conversion function for the architecture.
* **nanoGPT** ``ckpt.pt`` files (``model``, ``model_args``, ``iter_num``):
  :func:`model_from_nanogpt`, through TransformerLens' ``convert_nanogpt_weights``.

No weight processing (no LayerNorm folding, no centring): the model is the checkpoint,
exactly. Every fault a file can have is a one-line ``ValueError`` naming it.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator, Optional

import torch

from repeatlens.errors import damaged_file_errors, first_line
from repeatlens.model._tl import HookedTransformer, HookedTransformerConfig, quiet_tl as _quiet_tl
from repeatlens.model.archs import ARCHITECTURES, HookedSpec, UnsupportedArchitecture, hooked_spec, nanogpt_spec
from repeatlens.model.build import _DERIVED_CFG_KEYS, hooked_config_from_dict

HF_ARCHITECTURES = tuple(ARCHITECTURES)
"""Hugging Face architectures :func:`model_from_hf_folder` converts."""

__all__ = [
    "HF_ARCHITECTURES",
    "hooked_config_from_json",
    "model_from_foreign_state_dict",
    "read_hf_config",
    "hf_hooked_config",
    "hooked_config_from_spec",
    "model_from_hf_folder",
    "model_from_nanogpt",
]


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
        raise ValueError(f"TransformerLens rejects it ({first_line(e)})") from None


def model_from_foreign_state_dict(
    hcfg: HookedTransformerConfig, state_dict: Any, device: str = "cpu", *, zero_fill: bool = False
) -> HookedTransformer:
    """Build a model of ``hcfg`` holding exactly ``state_dict``, with one-line errors.

    Entries the model does not have are refused, except all-zero tensors (biases some
    TransformerLens conversions emit for modules without one, e.g. Phi-3's RMSNorm
    ``ln1.b``). Buffers TransformerLens derives from the config (masks, rotary tables)
    may be absent. ``zero_fill`` (conversions only, as TransformerLens'
    ``fill_missing_keys`` does): biases the conversion does not emit because the
    architecture has none (``b_Q``, ``b_in``, ... of OLMo, Phi-3) and the position table
    an ALiBi model never reads are zeros; a missing weight matrix is still an error.

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
    hcfg = copy.copy(hcfg)  # the caller's config (a folder's, shared by its revisions) keeps its device
    hcfg.device = device
    with _quiet_tl():
        model = HookedTransformer(hcfg, move_to_device=False)
    own = model.state_dict()
    state_dict = {k: v for k, v in state_dict.items() if k in own or bool(v.any())}
    if zero_fill:
        unused_pos = hcfg.positional_embedding_type not in ("standard", "shortformer")
        for k in own.keys() - state_dict.keys():
            if k.rsplit(".", 1)[-1].startswith(("b_", "_b_")) or (k == "pos_embed.W_pos" and unused_pos):
                state_dict[k] = torch.zeros_like(own[k])
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln]
        raise ValueError(f"weights do not match the config: {lines[0] if lines else first_line(e)}") from None
    buffers = {name for name, _ in model.named_buffers()}
    missing = [k for k in missing if k not in buffers]
    if missing or unexpected:
        raise ValueError(f"weights do not match the config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return torch.nn.Module.to(model, device).eval()


@contextlib.contextmanager
def _quiet_hf() -> Iterator[None]:
    """transformers without its progress bars and warnings (every fault is re-raised as one line)."""
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_was_on:
            hf_logging.enable_progress_bar()


def read_hf_config(folder: Any) -> Any:
    """The ``transformers`` config of a local checkpoint folder (no network, no warnings).

    Raises:
        ValueError: one line when ``config.json`` is unreadable or names no known model type.
    """
    import transformers

    try:
        with _quiet_hf():
            return transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except damaged_file_errors() as e:  # an unreadable config.json; anything else is a bug and surfaces
        raise ValueError(f"unreadable config.json ({first_line(e)})") from None


def hooked_config_from_spec(spec: HookedSpec) -> HookedTransformerConfig:
    """The ``HookedTransformerConfig`` of a :class:`~repeatlens.model.archs.HookedSpec`."""
    try:
        with _quiet_tl():
            return HookedTransformerConfig(**spec.kwargs)
    except (TypeError, ValueError, AssertionError) as e:
        raise UnsupportedArchitecture(f"TransformerLens rejects the mapped config ({first_line(e)})") from None


def hf_hooked_config(hf_config: Any) -> HookedTransformerConfig:
    """Map a ``transformers`` config onto ``HookedTransformerConfig`` (see :mod:`.archs`).

    Raises:
        ValueError: one line for an unsupported architecture or config field.
    """
    return hooked_config_from_spec(hooked_spec(hf_config))


def _converter(name: str):
    from transformer_lens.pretrained import weight_conversions

    return getattr(weight_conversions, name)


def model_from_hf_folder(folder: Any, device: str = "cpu", hf_config: Any = None) -> HookedTransformer:
    """Convert one local Hugging Face checkpoint folder into a HookedTransformer.

    The folder is what ``save_pretrained`` writes (``config.json`` plus
    ``model.safetensors`` or ``pytorch_model.bin``, possibly sharded). It is read with
    ``local_files_only=True`` (``.bin`` files through ``torch.load(weights_only=True)``),
    converted with TransformerLens' weight conversion for its architecture and freed; only
    the converted model is returned.

    A checkpoint whose tensors do not match its config is refused: transformers would
    re-initialise randomly every parameter the files lack or hold in another shape, with
    only a log line, so the loading report is checked here.

    Raises:
        ValueError: one line for an unsupported architecture, an unreadable folder, or
            weights that disagree with the config (the first such parameter named).
    """
    import transformers

    hf_config = read_hf_config(folder) if hf_config is None else hf_config
    spec = hooked_spec(hf_config)
    hcfg = hooked_config_from_spec(spec)
    try:
        with _quiet_hf():
            hf_model, info = transformers.AutoModelForCausalLM.from_pretrained(
                str(folder), config=hf_config, local_files_only=True, dtype=torch.float32,
                output_loading_info=True, ignore_mismatched_sizes=True,
            )
    except damaged_file_errors() as e:  # missing / truncated / damaged weight files; anything else is a bug
        raise ValueError(f"unreadable Hugging Face weights ({first_line(e)})") from None
    mismatched = sorted(info.get("mismatched_keys") or [], key=lambda t: str(t[0]))
    if mismatched:
        key, got, want = mismatched[0]
        raise ValueError(
            f"config.json disagrees with the weights: {key} is {list(got)} in the weights, {list(want)} by the config"
            + (f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else "")
        )
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise ValueError(
            f"config.json disagrees with the weights: {missing[0]} is not in the weights"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    hf_model.eval()
    with torch.no_grad():
        state_dict = {k: v.detach() for k, v in _converter(spec.convert)(hf_model, hcfg).items()}
    del hf_model
    return model_from_foreign_state_dict(hcfg, state_dict, device=device, zero_fill=True)


def model_from_nanogpt(ckpt: dict[str, Any], device: str = "cpu") -> HookedTransformer:
    """Convert a nanoGPT checkpoint (the dict ``train.py`` saves as ``ckpt.pt``).

    ``ckpt["model_args"]`` gives the shape (:func:`repeatlens.model.archs.nanogpt_spec`),
    ``ckpt["model"]`` the weights (with or without biases, with or without the
    ``_orig_mod.`` prefix ``torch.compile`` adds), converted by TransformerLens'
    ``convert_nanogpt_weights``.

    Raises:
        ValueError: one line: not a nanoGPT checkpoint, or weights that do not match ``model_args``.
    """
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict) or not isinstance(ckpt.get("model_args"), dict):
        raise ValueError("not a nanoGPT checkpoint: expected a dict with 'model' (a state dict) and 'model_args'")
    spec = nanogpt_spec(ckpt["model_args"])
    hcfg = hooked_config_from_spec(spec)
    weights = dict(ckpt["model"])
    if "lm_head.weight" not in weights and "transformer.wte.weight" in weights:
        weights["lm_head.weight"] = weights["transformer.wte.weight"]  # tied; some savers drop the alias
    try:
        state_dict = _converter(spec.convert)(weights, hcfg)
    except KeyError as e:
        raise ValueError(f"model_args disagree with the weights: {e.args[0]} is not in the weights") from None
    except (RuntimeError, ValueError) as e:  # einops: shapes that do not split into model_args' heads
        raise ValueError(f"model_args disagree with the weights ({first_line(e)})") from None
    state_dict = {k: v for k, v in state_dict.items() if not k.endswith(".IGNORE")}
    return model_from_foreign_state_dict(hcfg, state_dict, device=device, zero_fill=True)  # nanoGPT's lm_head has no bias

