"""The one adapter between repeatlens and TransformerLens (the only code importing it).

* :mod:`.build`: our :class:`~repeatlens.config.ModelConfig` mapped onto
  ``HookedTransformerConfig``, building and rebuilding models, hook names;
* :mod:`.fused`: the fused SDPA forward used for training while no hooks are attached;
* :mod:`.archs`: Hugging Face (and nanoGPT) configs mapped onto ``HookedTransformerConfig``,
  per architecture;
* :mod:`.convert`: other people's checkpoints (TransformerLens state dicts, Hugging Face
  folders, nanoGPT ``ckpt.pt``) converted offline through TransformerLens' weight conversions.

Moving to a later TransformerLens means changing this package only. ``ModelConfig`` and
the presets live in the torch-free config layer (:mod:`repeatlens.config`) and are
re-exported here.
"""

from repeatlens.config import PRESETS, ModelConfig
from repeatlens.model._tl import HookedTransformer, HookedTransformerConfig
from repeatlens.model.build import (
    LayerRun,
    Unembedding,
    build_model,
    has_hooks,
    hook_layer,
    hooked_config,
    hooked_config_from_dict,
    hooked_logits,
    is_pattern_hook,
    logits_from_resid,
    model_from_state_dict,
    n_params,
    pattern_hook_name,
    z_hook_name,
)
from repeatlens.model.archs import UnsupportedArchitecture, hooked_spec, is_post_norm, nanogpt_spec
from repeatlens.model.convert import (
    HF_ARCHITECTURES,
    hf_hooked_config,
    hooked_config_from_json,
    hooked_config_from_spec,
    model_from_foreign_state_dict,
    model_from_hf_folder,
    model_from_nanogpt,
    read_hf_config,
)
from repeatlens.model.fused import fast_forward, fast_residual, final_residual, forward_fn, logits, supports_fast_path

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
    "hook_layer",
    "z_hook_name",
    "has_hooks",
    "hooked_logits",
    "logits_from_resid",
    "LayerRun",
    "Unembedding",
    "fast_forward",
    "fast_residual",
    "final_residual",
    "forward_fn",
    "logits",
    "supports_fast_path",
    "n_params",
    "HF_ARCHITECTURES",
    "hf_hooked_config",
    "hooked_config_from_json",
    "model_from_foreign_state_dict",
    "model_from_hf_folder",
    "model_from_nanogpt",
    "read_hf_config",
    "hooked_config_from_spec",
    "hooked_spec",
    "nanogpt_spec",
    "UnsupportedArchitecture",
    "is_post_norm",
]
