"""The one import of TransformerLens, with its deprecation warning silenced locally.

TransformerLens 3.9 marks ``HookedTransformer`` deprecated (4.0 keeps only
``TransformerBridge``). The warning is silenced here, around our own calls; the user's
global warning filters are left alone.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator


@contextlib.contextmanager
def quiet_tl() -> Iterator[None]:
    """Silence TransformerLens' HookedTransformer deprecation warning, locally."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HookedTransformer is deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="transformer_lens")
        yield


with quiet_tl():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

__all__ = ["quiet_tl", "HookedTransformer", "HookedTransformerConfig"]
