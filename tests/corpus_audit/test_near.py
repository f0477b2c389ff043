"""Near-duplicate documents: shingles, MinHash LSH through datasketch, clusters."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from repeatlens.corpus_audit.count import UnitCounts
from repeatlens.corpus_audit.near import NearDuplicates, near_counts, shingle_hashes


def _jaccard(a: np.ndarray, b: np.ndarray, k: int) -> float:
    sa = {tuple(a[i : i + k]) for i in range(len(a) - k + 1)}
    sb = {tuple(b[i : i + k]) for i in range(len(b) - k + 1)}
    return len(sa & sb) / len(sa | sb)


def test_shingle_hashes_are_the_distinct_kgrams() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, 500)
    k = 4
    assert len(shingle_hashes(ids, k)) == len({tuple(ids[i : i + k]) for i in range(len(ids) - k + 1)})


def test_edited_copies_cluster_and_unique_documents_do_not(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    base = rng.integers(1, 3000, 300)
    variants = [base.copy() for _ in range(3)]
    for v, doc in enumerate(variants):
        doc[rng.choice(300, 3, replace=False)] = 3000 + v  # three edits each
    unique = [rng.integers(1, 3000, int(rng.integers(100, 400))) for _ in range(60)]
    docs = [base, *variants, *unique]
    assert min(_jaccard(base, v, 5) for v in variants) > 0.85  # the truth the estimate is checked against
    near = NearDuplicates(tmp_path, threshold=0.8, num_perm=128, shingle=5)
    for i, d in enumerate(docs):
        near.add(i, d)
    labels = near.clusters()
    assert labels[:4].tolist() == [0, 0, 0, 0]
    assert labels[4:].tolist() == list(range(4, len(docs)))  # no unique document joins anything
    settings = near.settings()
    assert settings["pairs_joined"] == 3 and settings["documents_indexed"] == len(docs)
    b, r = settings["lsh_bands"], settings["lsh_rows"]
    assert settings["candidate_probability_at_threshold"] == 1 - (1 - 0.8**r) ** b
    # the cluster unit: copies and tokens of the members added up
    copies = np.array([2, 1, 1, 5] + [1] * 60)
    tokens = np.array([len(d) + 1 for d in docs]) * copies
    unit = near_counts(UnitCounts("document", copies, tokens, int(tokens.sum())), labels, near)
    assert unit.copies.tolist() == [9] + [1] * 60 and unit.tokens[0] == tokens[:4].sum()
    assert unit.total_tokens == tokens.sum()


def test_a_stricter_threshold_than_the_edits_allow_keeps_them_apart(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    base = rng.integers(1, 3000, 300)
    edited = base.copy()
    edited[[50, 150, 250]] = 3001
    assert _jaccard(base, edited, 5) < 0.95
    near = NearDuplicates(tmp_path, threshold=0.99, num_perm=128, shingle=5)
    near.add(0, base)
    near.add(1, edited)
    assert near.clusters().tolist() == [0, 1]


def test_an_empty_document_is_signed_but_never_indexed(tmp_path: Path) -> None:
    near = NearDuplicates(tmp_path, threshold=0.8, num_perm=16, shingle=5)
    near.add(0, np.array([], dtype=np.uint16))
    near.add(1, np.array([1, 2, 3], dtype=np.uint16))
    assert near.clusters().tolist() == [0, 1] and near.indexed == [1]
