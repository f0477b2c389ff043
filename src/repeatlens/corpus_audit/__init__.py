"""``repeatlens audit``: a corpus in the paper's (f, E) coordinates, beside the predicted damage.

How much of a corpus is repeated, how often, and where that falls against the
poor-performance region of Hernandez et al. (2022) for a model of a given size:

* :mod:`.stream`: the corpus read as the trainer reads it (documents as token ids);
* :mod:`.count`: exact repeats of documents and of the trainer's ``seq_len`` sequences;
* :mod:`.near`: near-duplicate documents (datasketch MinHash + LSH);
* :mod:`.spans`: repeated spans of at least K tokens (a suffix array, pydivsufsort);
* :mod:`.table`: the tidy table (unit, repeat_count, repeat_count_max, items, tokens, token_fraction);
* :mod:`.region`: the predicted region at size N (published edges, or a scaling-fit JSON);
* :mod:`.damage`: which buckets fall inside it, and the plain-text summary;
* :mod:`.figure`: the interactive figure; :mod:`.bridge`: a sweep over the corpus's buckets;
* :mod:`.run`: :func:`audit`, which ties them together and writes the outputs.

Nothing here imports torch or TransformerLens.
"""

from repeatlens.corpus_audit.region import ScalingFit, read_scaling_fit, region_source
from repeatlens.corpus_audit.run import AuditOptions, AuditResult, audit

__all__ = ["audit", "AuditOptions", "AuditResult", "ScalingFit", "read_scaling_fit", "region_source"]
