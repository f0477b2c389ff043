"""Other people's checkpoints: find them, validate them, load them offline.

:func:`discover` turns a folder (or ``hf:ORG/NAME``, see :mod:`repeatlens.hub`) into a
:class:`ForeignFolder`: its checkpoints, each with a training step, tokens seen, a validated
BOS id for the probes and a loader, plus the problems and warnings found on the way.
Layouts understood:

* **TransformerLens** (what TransformerLens' own ``train.py`` writes): state-dict files
  ``model_{step}.pt`` with the model's ``HookedTransformerConfig`` beside them as
  ``config.json`` (its ``to_dict()``, e.g. ``json.dumps(cfg.to_dict(), default=str)``).
* **Hugging Face**: one subfolder per revision, each what ``save_pretrained`` writes
  (``config.json`` plus ``model.safetensors`` / ``pytorch_model.bin``, possibly sharded),
  for every architecture in :data:`repeatlens.model.HF_ARCHITECTURES`. Converted by
  :func:`repeatlens.model.model_from_hf_folder` with ``local_files_only=True``.
* **nanoGPT**: ``ckpt.pt`` files as karpathy/nanoGPT's ``train.py`` saves them (``model``,
  ``model_args``, ``iter_num``, ...): one ``ckpt.pt`` in the folder, several files
  (``ckpt_1000.pt``, ``step1000.pt``), or one per revision subfolder (``step1000/ckpt.pt``).
  The step is ``iter_num``.
* **one checkpoint folder** passed itself (e.g. a Trainer's ``checkpoint-1000/``): its step
  from its name or from ``trainer_state.json``'s ``global_step``.

Revision names, as people publish them (:func:`parse_revision`): ``step1000``,
``step_1000``, ``global_step1000``, ``step1000-tokens4B`` and ``stage1-step1000-tokens4B``
(OLMo; tokens seen taken from the name), ``checkpoint-1000`` (Hugging Face Trainer),
``iter_0001000`` (Megatron / GPT-NeoX), ``ckpt_1000``.

Every ``.pt`` file is read ONLY through ``torch.load(weights_only=True)``: a pickle that is
anything but plain tensors and containers is refused before any of its code can run.

A bad revision never stops the others: what discovery can tell (no config, no weights, a
missing shard, an unsupported architecture, a revision of another model than the rest,
two revisions claiming one step) is in :attr:`ForeignFolder.problems`; what only loading
tells (a config that disagrees with its weights, a truncated file) is a one-line
:class:`~repeatlens.errors.CheckpointError` from :meth:`ForeignFolder.load_model`.

Tokens seen: ``step * tokens_per_step`` when the caller gives ``tokens_per_step``
(Pythia: 2,097,152), else the count in the revision name when it has one (OLMo's
``tokens4B``: rounded as published), else a Trainer checkpoint's
``trainer_state.json`` ``num_input_tokens_seen`` (recorded when it trained with
``include_num_input_tokens_seen``), else unknown: ``tokens_seen`` then holds the step, and
:meth:`ForeignFolder.axis` says so (the table records it, the figures plot against the step).

Special ids: each checkpoint's probe BOS and excluded ids, and where they came from
(:attr:`ForeignCheckpoint.special`, a :class:`~repeatlens.probe_ids.SpecialIds`).

The package by concern: :mod:`.revisions` (names and steps), :mod:`.ids` (special ids),
:mod:`.loading` (safe loading), :mod:`.digests` (tensor hashes), :mod:`.layouts` (the
layouts and their scan), :mod:`.folder` (:class:`ForeignFolder`) and :mod:`.discovery`
(:func:`discover`, the hub cache); every name is importable from here.
"""

from __future__ import annotations

from repeatlens.deprecation import renamed
from repeatlens.foreign.revisions import (
    DIGEST_CACHE,
    HF_WEIGHTS,
    Kind,
    NANOGPT_FILE,
    Revision,
    TL_CONFIG,
    TL_FILE,
    parse_revision,
)
from repeatlens.foreign.ids import NO_BOS, config_special_ids
from repeatlens.foreign.loading import load_pt, load_tl_state_dict
from repeatlens.foreign.digests import weights_digest
from repeatlens.foreign.folder import ForeignCheckpoint, ForeignFolder
from repeatlens.foreign.layouts import looks_foreign
from repeatlens.foreign.discovery import discover

__all__ = [
    "ForeignCheckpoint",
    "ForeignFolder",
    "Revision",
    "discover",
    "looks_foreign",
    "parse_revision",
    "config_special_ids",
    "load_tl_state_dict",
    "load_pt",
    "weights_digest",
    "TL_CONFIG",
]

__getattr__ = renamed(__name__, {"special_ids": "config_special_ids"})  # scores.special_ids reads a model
