"""Near-duplicate documents: MinHash signatures and LSH through ``datasketch``.

Each distinct document (exact copies are counted once, by :mod:`.count`) is reduced to the
set of its token ``shingle``-grams; :class:`datasketch.MinHash` (``num_perm`` permutations,
``seed``) estimates the Jaccard similarity J of two such sets as the share of equal
signature entries, with standard deviation √(J(1−J)/num_perm) (Broder 1997).
:class:`datasketch.MinHashLSH` at ``threshold`` returns candidate pairs (a pair at
similarity s becomes a candidate with probability 1 − (1 − s^r)^b for its b bands of r
rows; b and r chosen by datasketch with misses weighted 9:1 over false candidates); a
candidate is kept when its estimated J reaches ``threshold`` (so a pair exactly at the
threshold is kept about half the time, one well above it nearly always). Kept pairs are joined
transitively (union-find) into clusters: a near-duplicate cluster is the ``near_document``
unit's item, its copies the copies of all its members.

Signatures go to a file in the work folder (4 · num_perm bytes per distinct document), so
memory holds only the LSH index: datasketch's in-memory storage keeps one dict entry and one
set per band and document, about 4.3 KB per indexed document at threshold 0.8 and 128
permutations (14 bands; measured on 50,000 documents, analyses/corpus_audit/RESULTS.md),
i.e. about 4 GB per million distinct documents. Larger corpora: ``--no-near``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Optional

import numpy as np
from jaxtyping import Integer, UInt32

from repeatlens.corpus_audit.count import UnitCounts
from repeatlens.errors import optional_import

_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: the polynomial's base
LSH_WEIGHTS = (0.1, 0.9)
"""datasketch's (false-positive, false-negative) weights for choosing bands and rows: misses
weigh more, since every candidate is verified on its signature anyway."""


def _require_datasketch():  # noqa: ANN202 - module object
    return optional_import("datasketch", "near-duplicate search", "audit", hint=" (or pass --no-near)")


def shingle_hashes(ids: Integer[np.ndarray, "n"], shingle: int) -> UInt32[np.ndarray, "m"]:
    """The distinct 32-bit hashes of a document's ``shingle``-grams of token ids.

    A document shorter than ``shingle`` ids is one shingle (its ids); an empty one has none.
    The hash of ``(t_0, …, t_{k-1})`` is the polynomial Σ (t_j + 1)·B^(k−1−j) mod 2⁶⁴ in an odd
    base B, folded to 32 bits (datasketch mixes it again before permuting).

    >>> a = shingle_hashes(np.array([1, 2, 3, 4, 1, 2, 3]), 3)
    >>> len(a)  # 123, 234, 341, 412 (the second 123 is the same shingle)
    4
    >>> len(shingle_hashes(np.array([7, 8]), 3)), len(shingle_hashes(np.array([], dtype=np.uint16), 3))
    (1, 0)
    """
    if len(ids) == 0:
        return np.empty(0, dtype=np.uint32)
    k = min(shingle, len(ids))
    x = ids.astype(np.uint64) + np.uint64(1)
    n = len(x) - k + 1
    h = np.zeros(n, dtype=np.uint64)
    for j in range(k):  # k is small (the shingle size): k vector passes
        h = h * _MIX + x[j : j + n]
    folded = ((h >> np.uint64(32)) ^ h).astype(np.uint32)
    return np.unique(folded)


def _identity(value: np.integer) -> np.integer:
    return value


class NearDuplicates:
    """MinHash every distinct document as it streams by; cluster them at the end."""

    def __init__(self, workdir: Path, *, threshold: float, num_perm: int, shingle: int, seed: int = 1):
        ds = _require_datasketch()
        self.threshold, self.num_perm, self.shingle, self.seed = threshold, num_perm, shingle, seed
        self.lsh = ds.MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
        self._minhash = ds.MinHash
        self._lean = ds.LeanMinHash
        self._template = ds.MinHash(num_perm=num_perm, seed=seed, hashfunc=_identity)
        self._path = workdir / "signatures.bin"
        self._file: Optional[BinaryIO] = open(self._path, "wb")
        self.n = 0
        self.indexed: list[int] = []
        self.candidates = 0
        self.kept = 0

    def add(self, idx: int, ids: Integer[np.ndarray, "n"]) -> None:
        """Sign distinct document ``idx`` (0, 1, 2, … in order) and index it."""
        if idx != self.n:
            raise ValueError(f"distinct documents must be added in order: got {idx}, expected {self.n}")
        m = self._minhash(num_perm=self.num_perm, seed=self.seed, hashfunc=_identity,
                          permutations=self._template.permutations, scheme=self._template.scheme)
        hashes = shingle_hashes(ids, self.shingle)
        if len(hashes):
            m.update_batch(hashes)
            self.lsh.insert(idx, m, check_duplication=False)
            self.indexed.append(idx)
        assert self._file is not None
        self._file.write(np.ascontiguousarray(m.hashvalues, dtype=np.uint32).tobytes())
        self.n += 1

    def clusters(self, progress: bool = False) -> Integer[np.ndarray, "distinct"]:
        """Cluster label of each distinct document (the smallest index in its cluster)."""
        from tqdm.auto import tqdm

        if self._file is not None:
            self._file.close()
            self._file = None
        parent = np.arange(self.n)
        if not self.n:
            return parent
        sigs = np.memmap(self._path, dtype=np.uint32, mode="r", shape=(self.n, self.num_perm))

        def find(i: int) -> int:
            root = i
            while parent[root] != root:
                root = parent[root]
            while parent[i] != root:
                parent[i], i = root, parent[i]
            return int(root)

        for i in tqdm(self.indexed, desc="near duplicates", unit="doc", disable=not progress):
            sig = np.asarray(sigs[i])
            query = self._lean(seed=self.seed, hashvalues=sig, scheme=self._template.scheme)
            for j in self.lsh.query(query):
                if j <= i:
                    continue
                self.candidates += 1
                ri, rj = find(i), find(j)
                if ri == rj:
                    continue
                if float(np.mean(sig == sigs[j])) >= self.threshold:
                    self.kept += 1
                    parent[max(ri, rj)] = min(ri, rj)
        return np.array([find(i) for i in range(self.n)])

    def settings(self) -> dict:
        """What the output records about the search (its options and its error rates)."""
        b, r = self.lsh.b, self.lsh.r
        t = self.threshold

        def candidate(s: float) -> float:
            return 1 - (1 - s**r) ** b

        return {
            "method": "datasketch MinHash + MinHashLSH, candidates kept at estimated Jaccard >= threshold, "
                      "joined transitively",
            "threshold": t,
            "num_perm": self.num_perm,
            "shingle_tokens": self.shingle,
            "seed": self.seed,
            "lsh_weights": list(LSH_WEIGHTS),
            "lsh_bands": b,
            "lsh_rows": r,
            "candidate_probability_at_threshold": candidate(t),
            "candidate_probability_halfway_to_1": candidate((1 + t) / 2),
            "candidate_probability_at_jaccard_0.5": candidate(0.5),
            "jaccard_estimate_sd_at_threshold": float(np.sqrt(t * (1 - t) / self.num_perm)),
            "documents_indexed": len(self.indexed),
            "candidate_pairs": self.candidates,
            "pairs_joined": self.kept,
        }


def near_counts(docs: UnitCounts, labels: Integer[np.ndarray, "distinct"], near: NearDuplicates) -> UnitCounts:
    """The ``near_document`` unit: clusters of distinct documents, with all their copies."""
    roots, cluster = np.unique(labels, return_inverse=True)
    copies = np.bincount(cluster, weights=docs.copies, minlength=len(roots)).astype(np.int64)
    tokens = np.bincount(cluster, weights=docs.tokens, minlength=len(roots)).astype(np.int64)
    members = np.bincount(cluster, minlength=len(roots))
    describe: Optional[Callable[[int], str]] = None
    if docs.describe is not None:
        base = docs.describe

        def describe(item: int) -> str:
            extra = int(members[item]) - 1
            return base(int(roots[item])) + (f" (+{extra} near-copies)" if extra else "")

    t = near.threshold
    note = (f"clusters of documents whose token {near.shingle}-gram sets have estimated Jaccard >= {t:g} "
            f"({near.num_perm} permutations), with their exact copies")
    return UnitCounts("near_document", copies, tokens, int(tokens.sum()), describe=describe, notes=(note,))
