"""The local learning coefficient (LLC) of a checkpoint, through the optional ``devinterp`` extra.

``llc_hat(w*) = n_beta * (E_w[L_n(w)] - L_n(w*))``: how much the loss rises, on average,
under SGLD samples from the tempered posterior localized at the checkpoint's weights
``w*`` (Lau et al. 2023, "Quantifying Degeneracy in Singular Models via the Learning
Coefficient"; Watanabe 2013). A lower LLC is a simpler (more degenerate) solution; its
course over training marks developmental stages (Hoogland et al. 2024, "The Developmental
Landscape of In-Context Learning"). Here it is estimated on the held-out test set
(``llc_test``) and on the repeated subset (``llc_repeated``) separately.

The estimate depends on the sampler as much as on the checkpoint, so its settings are fixed
per score version (:data:`LLC_SAMPLER`), recorded in the registry
(``REGISTRY["llc_test"].settings``) and in every scored table's metadata
(``meta["settings"]["llc_test"]``); changing them is a new version. Seeded: the same
checkpoint and data give the same value. Not in the default battery (it costs
``chains x (burn-in + draws)`` forward and backward passes, see the README): name it.
Without ``devinterp`` installed (``pip install -e ".[devinterp]"``) it is skipped with
one line.
"""

from __future__ import annotations

import functools
import importlib.util
import random
import tempfile
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from repeatlens.model import HookedTransformer
from repeatlens.results.metric_facts import MetricFacts
from repeatlens.scores.registry import ScoreContext, register

__all__ = ["LLCSampler", "LLC_SAMPLER", "devinterp_missing", "local_learning_coefficient"]


@dataclass(frozen=True)
class LLCSampler:
    """SGLD settings of the LLC estimate (devinterp's names in brackets).

    Attributes:
        lr: SGLD step size epsilon (``lr``): the one to calibrate (README).
        n_beta: inverse temperature ``n * beta`` (``n_beta``).
        localization: pull gamma towards ``w*`` (``localization``).
        chains / draws / burnin: SGLD chains, draws per chain, burn-in steps.
        batch_size: sequences per SGLD step.
        seed: devinterp's ``init_seed`` (chain ``c`` uses ``seed + c``).
    """

    lr: float = 3e-4
    n_beta: float = 10.0
    localization: float = 100.0
    chains: int = 2
    draws: int = 100
    burnin: int = 0
    batch_size: int = 16
    seed: int = 0


LLC_SAMPLER = LLCSampler()


def devinterp_missing() -> Optional[str]:
    """Why the LLC cannot be estimated here (the extra is not installed), or None."""
    if importlib.util.find_spec("devinterp") is None:
        return 'the optional devinterp extra is not installed (pip install -e ".[devinterp]")'
    return None


def local_learning_coefficient(
    model: HookedTransformer, tokens: Int[Tensor, "n pos"], sampler: LLCSampler = LLC_SAMPLER, device=None,
    progress: bool = False,
) -> float:
    """``llc_hat`` of ``model`` on ``tokens`` (cut to ``n_ctx``) with devinterp's SGLD.

    The model is deep-copied by devinterp for every chain, so its weights are unchanged;
    the global random states (torch, numpy, random) that devinterp seeds are restored.
    ``progress``: devinterp's bar per chain (quiet by default: a score runs inside the
    analysis' own bar).

    Raises:
        ValueError: fewer sequences than one SGLD batch.
    """
    x = tokens[:, : model.cfg.n_ctx]
    if x.shape[0] < sampler.batch_size:
        raise ValueError(f"llc: {x.shape[0]} sequences, fewer than one SGLD batch of {sampler.batch_size}")
    py_state, np_state = random.getstate(), np.random.get_state()
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]):  # the imports may draw too
            from unittest import mock

            import devinterp.slt.sampler as sampler_mod
            from datasets import Dataset
            from devinterp.slt.llc import llc

            dev = str(device if device is not None else next(model.parameters()).device)
            data = Dataset.from_dict({"input_ids": x.cpu().tolist()}).with_format("torch")
            quiet = mock.patch.object(sampler_mod, "trange", functools.partial(sampler_mod.trange, disable=not progress))
            with quiet, torch.inference_mode(False), torch.enable_grad(), tempfile.TemporaryDirectory() as tmp:
                out = llc(
                    model, data, {}, lr=sampler.lr, n_beta=sampler.n_beta, localization=sampler.localization,
                    num_chains=sampler.chains, num_draws=sampler.draws, num_burnin_steps=sampler.burnin,
                    batch_size=sampler.batch_size, num_init_loss_batches=max(1, x.shape[0] // sampler.batch_size),
                    init_seed=sampler.seed, device=dev, output_path=f"{tmp}/samples.zarr",
                )
                return float(out["llc_mean"].values)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        model.train(was_training)


@register("llc_test", kind="behaviour", per_head=False, default=False, settings=asdict(LLC_SAMPLER), unavailable=devinterp_missing,
          facts=MetricFacts("local learning coefficient, test set"))
def llc_test(ctx: ScoreContext) -> Optional[float]:
    """Local learning coefficient on the held-out test set.

    ``llc_hat = n_beta (E_SGLD[L_test(w)] - L_test(w*))`` with :data:`LLC_SAMPLER` (Lau et
    al. 2023, "Quantifying Degeneracy in Singular Models via the Learning Coefficient";
    Hoogland et al. 2024). Needs ``test_tokens`` (no row for fewer sequences than one SGLD
    batch) and the devinterp extra; opt-in.
    """
    if ctx.test_tokens is None or ctx.test_tokens.shape[0] < LLC_SAMPLER.batch_size:
        return None
    return local_learning_coefficient(ctx.model, ctx.test_tokens, LLC_SAMPLER, ctx.device)


@register("llc_repeated", kind="behaviour", per_head=False, default=False, settings=asdict(LLC_SAMPLER), unavailable=devinterp_missing,
          facts=MetricFacts("local learning coefficient, repeated subset"))
def llc_repeated(ctx: ScoreContext) -> Optional[float]:
    """Local learning coefficient on the repeated subset, as ``llc_test`` on
    ``repeated_tokens`` (a memorized subset sits in a sharper basin of its own loss). Lau et
    al. 2023; Hernandez et al. 2022. Needs ``repeated_tokens`` (at least one SGLD batch) and
    the devinterp extra; opt-in.
    """
    if ctx.repeated_tokens is None or ctx.repeated_tokens.shape[0] < LLC_SAMPLER.batch_size:
        return None
    return local_learning_coefficient(ctx.model, ctx.repeated_tokens, LLC_SAMPLER, ctx.device)
