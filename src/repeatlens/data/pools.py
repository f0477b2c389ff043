"""A run's pool of sequences, stored by reference into the corpus stream and the synthetic source.

A run's pool is the rows it reads, laid out as::

    [ test (held out) | repeated subset | unique ]

and is stored by reference, not copied: ``data/rows.npy`` holds, per pool row, the index of
its row in the corpus's token stream (:mod:`repeatlens.data.streams`) or, where
``data/is_synthetic.npy`` says it is synthetic, its index among the run's synthetic rows,
which the manifest says how to regenerate (seeds, settings, ids, sha256:
:class:`SyntheticRows`); they are regenerated once and kept in the cache as
``synthetic-<sha256>.npy``. Disk per run grows with the number of rows, not with the
tokens: :class:`PoolView` reads the rows on access. Runs written before this layout hold
``data/pool.npy``, the rows themselves, and are read as they are.

Test rows are chosen from the corpus (and the synthetic source) independently of f and E,
so every run of a sweep with the same seed and data config is evaluated on the same test
sequences. Training rows are drawn from the remaining chunks, never overlapping the test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from jaxtyping import Bool, Int64

from repeatlens.config import DataConfig, SyntheticConfig
from repeatlens.data.mixture import MixturePlan
from repeatlens.data.seeds import rng, stream_seed
from repeatlens.data.special import SpecialIds
from repeatlens.data.streams import Corpus, StreamRef, _BosView, _chunk, cache_root, rebuild_stream, token_sha256
from repeatlens.data.synthetic import synthetic_sequences
from repeatlens.errors import DataError, WriteError
from repeatlens.io import atomic_save_npy

if TYPE_CHECKING:
    from repeatlens.checkpoints import RunDir
    from repeatlens.checkpoints.manifest import Manifest

__all__ = ["SyntheticRows", "Pool", "PoolView", "build_pool", "open_pool", "rebuild_run_cache"]

# ------------------------------------------------------------------------------ synthetic rows


@dataclass(frozen=True)
class SyntheticRows:
    """How to regenerate a run's synthetic rows: ``n_test`` from the seed stream
    ``test_synthetic``, then ``n_train`` from ``train_synthetic``
    (:func:`~repeatlens.data.synthetic.synthetic_sequences` over the ordinary ids of the
    vocabulary, the first ``token_ids`` of them when set), and their sha256."""

    n_test: int
    n_train: int
    seq_len: int
    seeds: tuple[int, int]
    vocab_size: int
    token_ids: Optional[int]
    bos: int
    special: tuple[int, ...]
    settings: dict[str, Any]
    dtype: str
    sha256: str = ""

    @property
    def ids(self) -> Int64[np.ndarray, "n_ids"]:
        return SpecialIds(self.bos, self.special).ordinary_ids(self.vocab_size, self.token_ids)

    @property
    def cache_name(self) -> str:
        return f"synthetic-{self.sha256[:16]}.npy"

    def generate(self) -> np.ndarray:
        """The rows ``[n_test + n_train, seq_len]``, regenerated (seconds for ~10^5 rows)."""
        cfg, ids = SyntheticConfig.model_validate(self.settings), self.ids
        dtype = np.dtype(self.dtype)
        parts = [synthetic_sequences(n, self.seq_len, cfg, ids=ids, bos=self.bos, seed=s, dtype=dtype)[0]
                 for n, s in zip((self.n_test, self.n_train), self.seeds) if n]
        return np.concatenate(parts) if parts else np.zeros((0, self.seq_len), dtype)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "seeds": list(self.seeds), "special": list(self.special), "cache": self.cache_name}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SyntheticRows":
        return cls(int(d["n_test"]), int(d["n_train"]), int(d["seq_len"]), tuple(d["seeds"]), int(d["vocab_size"]),  # type: ignore[arg-type]
                   d.get("token_ids"), int(d["bos"]), tuple(int(i) for i in d["special"]), dict(d["settings"]), str(d["dtype"]),
                   str(d["sha256"]))

    def load(self, data: DataConfig, where: str) -> np.ndarray:
        """The rows: from the cache (``synthetic-<sha256>.npy``), else regenerated, checked
        against :attr:`sha256` and written to the cache for the next reader (a cache this
        user cannot write is left alone: the rows are then kept in this process, and
        regenerated, in seconds, by the next one).

        Raises:
            DataError: the regenerated rows do not hash to :attr:`sha256` (the synthetic
                source's code changed since the run was prepared).
        """
        memo = _SYNTHETIC_MEMO.get(self.sha256)
        if memo is not None:
            return memo
        path = cache_root(data) / self.cache_name
        try:  # is_file() itself raises PermissionError in a cache folder this user may not search
            rows = np.load(path, mmap_mode="r") if path.is_file() else None
            if rows is not None and rows.shape == (self.n_test + self.n_train, self.seq_len) and rows.dtype == np.dtype(self.dtype):
                return rows
        except (OSError, ValueError):  # unreadable or damaged: regenerated below
            pass
        rows = self.generate()
        sha = token_sha256(rows)
        if sha != self.sha256:
            raise DataError(
                f"{where}: its synthetic rows, regenerated from the manifest's seeds and settings, hash to {sha[:16]}…, not the "
                f"recorded {self.sha256[:16]}… (did the synthetic source's code change since the run was prepared?)"
            )
        try:
            atomic_save_npy(path, rows)
        except (OSError, WriteError):  # a cache this user may read but not write (a shared one): keep them in this process
            _SYNTHETIC_MEMO.clear()
            _SYNTHETIC_MEMO[self.sha256] = rows
        return rows


_SYNTHETIC_MEMO: dict[str, np.ndarray] = {}


# ------------------------------------------------------------------------------------ pools


class PoolView:
    """A run's pool rows ``[test | repeated | unique]``, read on access: corpus rows from the
    memory-mapped stream, synthetic rows from their (cached) array. Indexes like the
    ``[n_rows, seq_len]`` array it stands for (an int, a slice or an index array) and
    converts with ``np.asarray``."""

    def __init__(
        self,
        rows: Int64[np.ndarray, "n_rows"],
        is_synthetic: Bool[np.ndarray, "n_rows"],
        chunks: "Optional[_BosView]",
        synthetic: Optional[np.ndarray],
        seq_len: int,
        dtype: np.dtype,
    ):
        self.rows, self.kinds, self.chunks, self.synthetic = rows, is_synthetic, chunks, synthetic
        self.dtype = np.dtype(dtype)
        self.shape = (len(rows), int(seq_len))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: Any) -> np.ndarray:
        refs, kinds = self.rows[idx], self.kinds[idx]
        scalar = np.ndim(refs) == 0
        refs, kinds = np.atleast_1d(refs), np.atleast_1d(kinds)
        out = np.empty((len(refs), self.shape[1]), dtype=self.dtype)
        if (~kinds).any():
            out[~kinds] = self.chunks[refs[~kinds]]
        if kinds.any():
            out[kinds] = self.synthetic[refs[kinds]]
        return out[0] if scalar else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


@dataclass
class Pool:
    """A run's sequences by reference: rows [test | repeated | unique], plus provenance.

    Attributes:
        rows: per pool row, its corpus row (index into ``corpus.chunks``) or, where
            ``is_synthetic``, its synthetic row (index into ``synthetic_tokens``).
        is_synthetic: per row, whether it came from the synthetic source (else the corpus).
        synthetic_ids: ``(low, high)``: synthetic tokens are drawn from ``[low, high)``
            less the special ids (None when the run has no synthetic share).
        synthetic: how to regenerate the synthetic rows (None without any).
        synthetic_tokens: those rows.
    """

    rows: Int64[np.ndarray, "n_rows"]
    is_synthetic: Bool[np.ndarray, "n_rows"]
    n_test: int
    n_repeated: int
    n_unique: int
    n_synthetic: int
    vocab_size: int
    seq_len: int
    corpus: Corpus
    synthetic_ids: Optional[tuple[int, int]] = None
    synthetic: Optional[SyntheticRows] = None
    synthetic_tokens: Optional[np.ndarray] = None

    @property
    def first_repeated(self) -> int:
        return self.n_test

    @property
    def first_unique(self) -> int:
        return self.n_test + self.n_repeated

    def view(self) -> PoolView:
        return PoolView(self.rows, self.is_synthetic, self.corpus.chunks, self.synthetic_tokens, self.seq_len, self.corpus.dtype)

    @property
    def tokens(self) -> np.ndarray:
        """Every row, materialized ``[n_rows, seq_len]`` (small pools and tests; runs read :meth:`view`)."""
        return self.view()[:]

    def test(self) -> np.ndarray:
        return self.view()[: self.n_test]

    def repeated(self) -> np.ndarray:
        return self.view()[self.first_repeated : self.first_unique]


def _split(n: int, frac: float) -> tuple[int, int]:
    n_syn = int(round(frac * n))
    return n - n_syn, n_syn


def build_pool(data: DataConfig, plan: MixturePlan, corpus: Corpus, seed: int, source: str = "any") -> Pool:
    """Draw a run's test, repeated and unique sequences from ``corpus`` and the synthetic source.

    ``source`` (``mixture.repeated_source``) says where the repeated subset comes from:
    ``"any"`` draws it like every training row (in proportion to the synthetic share);
    ``"corpus"`` takes it from the corpus only and ``"synthetic"`` from the synthetic
    source only, while the unique rows keep ``data.synthetic_fraction``. Corpus rows are
    taken in the order of one seeded permutation (test rows first), so runs that differ in
    f, E or source share their test rows, and a run's corpus rows start with the same
    chunks as every other run's of the seed. Synthetic rows draw from the ordinary
    (non-special) ids of the vocabulary, the first ``data.synthetic.token_ids`` of them
    when set, and start with the corpus's BOS.

    Raises:
        DataError: when the corpus has fewer sequences than the spec needs (naming the
            numbers; wrapping around would itself be unplanned repetition), or
            ``data.synthetic.token_ids`` exceeds the ordinary ids.
    """
    frac = data.synthetic_share
    n_train = plan.n_repeated + plan.n_unique
    test_corp, test_syn = _split(data.test_sequences, frac)
    train_corp, train_syn = _split(n_train, frac)
    if source != "any" and plan.n_repeated:  # the repeated subset from one source, the unique rows keep the share
        uni_corp, uni_syn = _split(plan.n_unique, frac)
        rep_corp, rep_syn = (plan.n_repeated, 0) if source == "corpus" else (0, plan.n_repeated)
        train_corp, train_syn = rep_corp + uni_corp, rep_syn + uni_syn
    need = test_corp + train_corp
    if need > corpus.n_chunks:
        raise DataError(
            f"data.source '{data.source}': has {corpus.n_chunks:,} sequences of {data.seq_len} tokens, but the spec needs "
            f"{need:,} from it ({test_corp:,} test + {train_corp:,} training = {plan.n_repeated:,} repeated + "
            f"{plan.n_unique:,} unique, less the synthetic share); lower mixture.total_tokens or raise data.synthetic_fraction"
        )
    synthetic = synthetic_tokens = None
    synthetic_ids = None
    if frac > 0:
        token_ids = data.synthetic.token_ids if not data.synthetic_only else None
        ids = corpus.special.ordinary_ids(corpus.vocab_size, token_ids)
        synthetic_ids = (int(ids[0]), int(ids[-1]) + 1)
        spec = SyntheticRows(test_syn, train_syn, data.seq_len, (stream_seed(seed, "test_synthetic"), stream_seed(seed, "train_synthetic")),
                             corpus.vocab_size, token_ids, corpus.special.bos, corpus.special.special,
                             data.synthetic.model_dump(mode="json"), str(corpus.dtype))
        synthetic_tokens = spec.generate()
        synthetic = SyntheticRows(**{**asdict(spec), "sha256": token_sha256(synthetic_tokens)})
    # References: corpus rows first, then synthetic ones, in each of test and train (the
    # order the rows were concatenated in before they were stored by reference).
    test_ref, train_ref = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    if need:
        perm = rng(seed, "pool").permutation(corpus.n_chunks)
        test_ref.append(np.sort(perm[:test_corp]))
        train_ref.append(np.sort(perm[test_corp:need]))
    test_ref.append(np.arange(test_syn, dtype=np.int64))
    train_ref.append(test_syn + np.arange(train_syn, dtype=np.int64))
    test, train = np.concatenate(test_ref).astype(np.int64), np.concatenate(train_ref).astype(np.int64)
    syn_test = np.arange(len(test)) >= len(test) - test_syn
    syn_train = np.arange(len(train)) >= len(train) - train_syn
    order_test = rng(seed, "test_rows").permutation(len(test))
    if source == "any" or not plan.n_repeated:
        order_train = rng(seed, "train_rows").permutation(len(train))
    else:  # rows [0, train_corp) are corpus, the rest synthetic; the repeated subset first, then the shuffled unique rows
        corp, syn_rows = np.arange(train_corp), np.arange(train_corp, len(train))
        rep = corp[: plan.n_repeated] if source == "corpus" else syn_rows[: plan.n_repeated]
        uni = np.setdiff1d(np.arange(len(train)), rep)
        order_train = np.concatenate([rep, uni[rng(seed, "train_rows").permutation(len(uni))]])
    return Pool(
        rows=np.concatenate([test[order_test], train[order_train]]),
        is_synthetic=np.concatenate([syn_test[order_test], syn_train[order_train]]),
        n_test=len(test),
        n_repeated=plan.n_repeated,
        n_unique=plan.n_unique,
        n_synthetic=test_syn + train_syn,
        vocab_size=corpus.vocab_size,
        seq_len=data.seq_len,
        corpus=corpus,
        synthetic_ids=synthetic_ids,
        synthetic=synthetic,
        synthetic_tokens=synthetic_tokens,
    )


def open_pool(root: Path, man: "Manifest", data: DataConfig, where: str) -> PoolView:
    """The pool of a run stored by reference (manifest ``pool.layout == "reference"``).

    Args:
        root: the run directory.
        man: its manifest (``pool``, ``corpus``, ``seq_len``, ``special_ids``).
        data: the run's data config (for the cache directory).
        where: how messages name the run.

    Raises:
        DataError: the corpus stream or the synthetic rows cannot be had (one line saying
            how to rebuild them).
    """
    pool, corpus = man.pool, man.corpus
    rows, kinds = np.load(root / pool["rows"]), np.load(root / pool["is_synthetic"])
    chunks = synthetic = None
    if corpus.get("stream") is not None:
        chunks = _chunk(StreamRef.from_json(corpus["stream"]).open(data, where), man.seq_len, man.special().bos)
    if pool.get("synthetic") is not None:
        synthetic = SyntheticRows.from_json(pool["synthetic"]).load(data, where)
    return PoolView(rows, kinds, chunks, synthetic, man.seq_len, np.dtype(pool["dtype"]))


def rebuild_run_cache(run: "RunDir", progress: bool = True) -> list[str]:
    """What ``repeatlens data prepare RUN`` does: put back in the cache the token stream and
    the synthetic rows the run references, each checked against the run's sha256.

    Returns:
        One line per thing done (for the command to print).

    Raises:
        DataError: a stream or rows cannot be rebuilt as recorded (see :func:`rebuild_stream`).
    """
    man, data, where = run.manifest(), run.config().data, str(run.path)
    if man.pool.get("layout") != "reference":
        return [f"{where}: nothing to rebuild; the run holds its rows in data/pool.npy"]
    lines = []
    stream = man.corpus.get("stream")
    if stream is not None and stream["kind"] == "cache":
        path = rebuild_stream(man, data, run.tokenizer_path, where, progress=progress)
        lines.append(f"corpus stream {path}: {int(stream['n_tokens']):,} tokens, sha256 {stream['sha256'][:16]}… as the run recorded")
    elif stream is not None:
        StreamRef.from_json(stream).open(data, where)
        lines.append(f"corpus token file {stream['path']}: in place")
    if man.pool.get("synthetic") is not None:
        spec = SyntheticRows.from_json(man.pool["synthetic"])
        spec.load(data, where)
        lines.append(f"synthetic rows {cache_root(data) / spec.cache_name}: {spec.n_test + spec.n_train:,} rows, sha256 {spec.sha256[:16]}…")
    return lines or [f"{where}: nothing to rebuild"]
