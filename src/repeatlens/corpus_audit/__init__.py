"""``repeatlens audit``: a corpus in the paper's (f, E) coordinates, beside the predicted damage.

How much of a corpus is repeated, how often, and where that falls against the
poor-performance region of Hernandez et al. (2022) for a model of a given size:

* :mod:`.stream`: the corpus read as the trainer reads it (documents as token ids);
* :mod:`.count`: exact repeats of documents and of the trainer's ``seq_len`` sequences;
* :mod:`.near`: near-duplicate documents (datasketch MinHash + LSH);
* :mod:`.spans`: repeated spans of at least K tokens (a suffix array, pydivsufsort);
* :mod:`.table`: the tidy table (unit, repeat_count, repeat_count_max, repeat_count_mean, items, tokens, token_fraction);
* :mod:`.region`: the predicted region at size N (published edges, or a scaling-fit JSON);
* :mod:`.damage`: which buckets fall inside it, and the plain-text summary;
* :mod:`.figure`: the interactive figure; :mod:`.bridge`: a sweep over the corpus's buckets;
* :mod:`.run`: :func:`audit`, which ties them together and writes the outputs.

Nothing here imports torch or TransformerLens.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["audit", "AuditOptions", "AuditResult", "ScalingFit", "read_scaling_fit", "region_source"]

_LAZY = {
    "audit": "repeatlens.corpus_audit.run",
    "AuditOptions": "repeatlens.corpus_audit.run",
    "AuditResult": "repeatlens.corpus_audit.run",
    "ScalingFit": "repeatlens.corpus_audit.region",
    "read_scaling_fit": "repeatlens.corpus_audit.region",
    "region_source": "repeatlens.corpus_audit.region",
}


def __getattr__(name: str) -> Any:
    """Import on first use, so that the CLI (which imports :mod:`.command`) starts fast."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'repeatlens.corpus_audit' has no attribute {name!r}")
