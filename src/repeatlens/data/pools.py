"""Token pools: corpus → tokenizer → cached token stream → a run's pool of sequences.

The tokenized corpus is cached once per (corpus, tokenizer) under the cache directory
(``data.cache_dir``, ``$REPEATLENS_CACHE`` or ``~/.cache/repeatlens``) as
``stream-<fingerprint>.npy`` (beside it ``stream-<fingerprint>.json``: its sha256, token
count and dtype) and memory-mapped, so a second run never re-tokenizes; a pre-tokenized
``.bin`` corpus is memory-mapped where it lies. Either stream is cut into rows
``[BOS, seq_len - 1 tokens]`` (the BOS from :mod:`repeatlens.data.special`).

A run's pool is the rows it reads, laid out as::

    [ test (held out) | repeated subset | unique ]

and is stored by reference, not copied: ``data/rows.npy`` holds, per pool row, the index of
its row in the corpus stream or, where ``data/is_synthetic.npy`` says it is synthetic, its
index among the run's synthetic rows, which the manifest says how to regenerate (seeds,
settings, ids, sha256); they are regenerated once and kept in the cache as
``synthetic-<sha256>.npy``. Disk per run grows with the number of rows, not with the
tokens: :class:`PoolView` reads the rows on access. Runs written before this layout hold
``data/pool.npy``, the rows themselves, and are read as they are.

Test rows are chosen from the corpus (and the synthetic source) independently of f and E,
so every run of a sweep with the same seed and data config is evaluated on the same test
sequences. Training rows are drawn from the remaining chunks, never overlapping the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from jaxtyping import Bool, Int64

from repeatlens.config import DataConfig, SyntheticConfig
from repeatlens.data.mixture import MixturePlan
from repeatlens.data.seeds import rng, stream_seed
from repeatlens.data.special import SYNTHETIC_BOS, SpecialIds
from repeatlens.data.synthetic import synthetic_sequences
from repeatlens.errors import DataError
from repeatlens.io import atomic_save_npy, atomic_write_json, sha256_file

if TYPE_CHECKING:
    from repeatlens.checkpoints import RunDir
    from repeatlens.results.schema import Manifest

__all__ = ["cache_root", "Corpus", "StreamRef", "SyntheticRows", "Pool", "PoolView", "load_corpus", "build_pool", "open_pool",
           "rebuild_stream", "rebuild_run_cache", "token_sha256"]

_HASH_CHUNK = 1 << 24  # tokens per sha256 update when hashing a memory-mapped stream


def cache_root(data: DataConfig) -> Path:
    root = data.cache_dir or os.environ.get("REPEATLENS_CACHE") or Path.home() / ".cache" / "repeatlens"
    return Path(root).expanduser()


def token_sha256(tokens: np.ndarray) -> str:
    """sha256 of a token array's little-endian bytes, read in chunks (a memory map is never
    loaded whole). For a ``.bin`` file this is the sha256 of the file."""
    flat = tokens.reshape(-1)
    h = hashlib.sha256()
    for start in range(0, len(flat), _HASH_CHUNK):
        part = np.ascontiguousarray(flat[start : start + _HASH_CHUNK])
        h.update(part.astype(part.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class StreamRef:
    """Where a corpus's token stream lives, and what it must hash to.

    Attributes:
        kind: ``"cache"`` (``name`` under the cache directory, an ``.npy``) or ``"bin"``
            (the user's ``.bin`` token file at ``path``).
        name: the file's name (under the cache directory for ``"cache"``).
        path: the file's absolute path when the run was prepared.
        sha256: of the tokens' bytes (:func:`token_sha256`).
        n_tokens: tokens in the stream.
        dtype: ``uint16`` or ``uint32``.
    """

    kind: str
    name: str
    path: str
    sha256: str
    n_tokens: int
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "StreamRef":
        return cls(str(d["kind"]), str(d["name"]), str(d["path"]), str(d["sha256"]), int(d["n_tokens"]), str(d["dtype"]))

    def locate(self, data: DataConfig) -> Path:
        """The file now: under today's cache directory (a cache stream), else the recorded path."""
        if self.kind == "cache":
            here = cache_root(data) / self.name
            if here.is_file():
                return here
        return Path(self.path)

    def open(self, data: DataConfig, where: str) -> np.ndarray:
        """Memory-map the stream, checking its length and dtype (not its hash: ``verify`` does).

        Raises:
            DataError: the file is missing (one line saying how to rebuild it) or is not the
                stream the run recorded.
        """
        path = self.locate(data)
        if not path.is_file():
            if self.kind == "cache":
                raise DataError(
                    f"{where}: its tokenized corpus '{cache_root(data) / self.name}' is missing (the cache was deleted or moved?); "
                    f"rebuild it with: repeatlens data prepare {where}"
                )
            raise DataError(f"{where}: its corpus token file '{self.path}' is missing; put it back there (sha256 {self.sha256[:16]}…)")
        stream = np.load(path, mmap_mode="r") if self.kind == "cache" else np.memmap(path, dtype=np.dtype(self.dtype), mode="r")
        if len(stream) != self.n_tokens or stream.dtype != np.dtype(self.dtype):
            raise DataError(
                f"{where}: the corpus stream '{path}' holds {len(stream):,} {stream.dtype} tokens, the run recorded {self.n_tokens:,} "
                f"{self.dtype}; it is not the stream the run was prepared from"
                + (f" (rebuild it with: repeatlens data prepare {where})" if self.kind == "cache" else "")
            )
        return stream


@dataclass
class Corpus:
    """A tokenized corpus cut into BOS-prefixed chunks of ``seq_len`` tokens.

    Attributes:
        chunks: [n_chunks, seq_len] memory-mapped view (None for the synthetic-only source).
        vocab_size: number of token ids the model needs.
        tokenizer_json: serialized tokenizer (None for synthetic-only corpora and ``.bin``
            corpora given no ``data.tokenizer``).
        fingerprint: identifies corpus + tokenizer (cache key, recorded in the manifest).
        special: the special ids (:mod:`repeatlens.data.special`): the BOS of every row,
            the ids the synthetic source never draws.
        stream: where the token stream lives (None for the synthetic-only source).
    """

    chunks: "Optional[_BosView]"
    vocab_size: int
    tokenizer_json: Optional[str]
    fingerprint: str
    special: SpecialIds
    stream: Optional[StreamRef] = None

    @property
    def n_chunks(self) -> int:
        return 0 if self.chunks is None else len(self.chunks)

    @property
    def dtype(self) -> np.dtype:
        return _row_dtype(self.vocab_size)


def _row_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 65536 else np.uint32)


def _is_bin(data: DataConfig) -> bool:
    return data.format == "bin" or (data.format == "auto" and str(data.source).endswith(".bin"))


def _chunk(stream: np.ndarray, seq_len: int, bos: int) -> "_BosView":
    """Cut a flat stream into rows ``[bos, seq_len-1 tokens]`` (a view, plus the BOS column)."""
    body = seq_len - 1
    n = len(stream) // body
    return _BosView(stream[: n * body].reshape(n, body), bos)


class _BosView:
    """Rows of a memory-mapped [n, seq_len-1] array with a BOS column prepended on access."""

    def __init__(self, body: np.ndarray, bos: int):
        self.body, self.bos = body, bos
        self.dtype = body.dtype
        self.shape = (body.shape[0], body.shape[1] + 1)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: Any) -> np.ndarray:
        rows = np.asarray(self.body[idx])
        out = np.empty(rows.shape[:-1] + (self.shape[1],), dtype=self.dtype)
        out[..., 0] = self.bos
        out[..., 1:] = rows
        return out


def synthetic_special() -> SpecialIds:
    """The synthetic-only source's special ids: its vocabulary reserves id 0 for BOS."""
    return SpecialIds(SYNTHETIC_BOS, (SYNTHETIC_BOS,), source="the synthetic source (id 0 of its vocabulary is BOS)")


def load_corpus(data: DataConfig, *, progress: bool = True) -> Corpus:
    """Tokenize (or load from the cache) the corpus named by ``data``.

    Raises:
        DataError: the corpus or tokenizer is missing or unreadable, or the tokenizer has
            no BOS-like token and ``data.bos_token`` names none.
    """
    if data.synthetic_only:
        v = data.synthetic.vocab_size
        return Corpus(chunks=None, vocab_size=v, tokenizer_json=None, fingerprint=f"synthetic-v{v}", special=synthetic_special())
    if _is_bin(data):
        return _load_bin(data)

    from repeatlens.data import corpus as corpus_mod
    from repeatlens.data import special as special_mod
    from repeatlens.data import tokenizer as tok_mod

    corpus_fp = corpus_mod.corpus_fingerprint(data.source, data.format, data.text_field, data.extensions)
    if data.tokenizer:
        tok, where = tok_mod.load_tokenizer(data.tokenizer), f"data.tokenizer '{data.tokenizer}'"
    else:
        tok_dir = cache_root(data) / f"tok-{corpus_fp}-v{data.vocab_size}"
        tok_path = tok_dir / "tokenizer.json"
        if tok_path.is_file():
            tok = tok_mod.load_tokenizer(tok_path)
        else:
            docs = corpus_mod.iter_documents(data.source, data.format, data.text_field, data.extensions)
            tok = tok_mod.train_bpe(docs, data.vocab_size)
            tok_dir.mkdir(parents=True, exist_ok=True)
            tok_mod.save_tokenizer(tok, tok_path)
        where = f"tokenizer '{tok_path}'"
    special = special_mod.from_tokenizer(tok, where, data.bos_token)
    key = f"{corpus_fp}:{tok_mod.tokenizer_hash(tok)}" + (f":bos={special.bos}" if data.bos_token else "")
    fp = hashlib.sha256(key.encode()).hexdigest()[:16]
    stream_path = cache_root(data) / f"stream-{fp}.npy"
    if not stream_path.is_file():
        docs = corpus_mod.iter_documents(data.source, data.format, data.text_field, data.extensions)
        stream = tok_mod.encode_stream(tok, docs, progress=progress, bos=special.bos)
        atomic_save_npy(stream_path, stream)
        _write_stream_meta(stream_path, stream)
    stream = np.load(stream_path, mmap_mode="r")
    ref = _stream_ref(stream_path, stream)
    return Corpus(_chunk(stream, data.seq_len, special.bos), tok.get_vocab_size(), tok.to_str(), fp, special, ref)


def _meta_path(stream_path: Path) -> Path:
    return stream_path.with_suffix(".json")


def _write_stream_meta(stream_path: Path, stream: np.ndarray) -> dict[str, Any]:
    meta = {"sha256": token_sha256(stream), "n_tokens": int(len(stream)), "dtype": str(stream.dtype)}
    atomic_write_json(_meta_path(stream_path), meta)
    return meta


def _stream_ref(stream_path: Path, stream: np.ndarray) -> StreamRef:
    """The stream's record, its sha256 read from beside it (hashed once, for a cache written before it was)."""
    meta = None
    try:
        meta = json.loads(_meta_path(stream_path).read_text())
    except (OSError, ValueError):
        pass
    if not isinstance(meta, dict) or meta.get("n_tokens") != len(stream) or meta.get("dtype") != str(stream.dtype):
        meta = _write_stream_meta(stream_path, stream)
    return StreamRef("cache", stream_path.name, str(stream_path.resolve()), str(meta["sha256"]), len(stream), str(stream.dtype))


def _load_bin(data: DataConfig) -> Corpus:
    """A pre-tokenized ``.bin`` corpus: memory-mapped in place; BOS is ``data.bin_bos_id``
    (checked against ``data.tokenizer``'s special tokens when one is given)."""
    from repeatlens.data import corpus as corpus_mod

    tok = None
    if data.tokenizer:
        from repeatlens.data.tokenizer import load_tokenizer

        tok = load_tokenizer(data.tokenizer)
    vocab = data.bin_vocab_size or (tok.get_vocab_size() if tok is not None else None)
    stream = corpus_mod.load_token_bin(data.source, data.bin_dtype, vocab)
    if vocab is None:
        vocab = corpus_mod.max_token(data.source, data.bin_dtype) + 1
    bos = int(data.bin_bos_id)
    if bos >= vocab:
        raise DataError(f"data.bin_bos_id = {bos} is outside the vocabulary of {data.source} ({vocab} ids)")
    special = SpecialIds(bos, (bos,), source="data.bin_bos_id")
    if tok is not None:
        declared = {int(i) for i, t in tok.get_added_tokens_decoder().items() if t.special}
        if bos not in declared:
            names = ", ".join(f"{tok.id_to_token(i)} = {i}" for i in sorted(declared)[:6]) or "none"
            raise DataError(
                f"data.bin_bos_id = {bos} is {tok.id_to_token(bos)!r} in data.tokenizer '{data.tokenizer}', not one of its special "
                f"tokens ({names}); set data.bin_bos_id to the id that opens a document"
            )
        special = SpecialIds(bos, tuple(declared), tok.id_to_token(bos), f"data.bin_bos_id, data.tokenizer '{data.tokenizer}'")
    path = Path(data.source).expanduser().resolve()
    meta_path = cache_root(data) / f"bin-{corpus_mod.token_file_fingerprint(path, data.bin_dtype)}.json"
    try:
        sha = json.loads(meta_path.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        sha = sha256_file(path)  # the file is the tokens' little-endian bytes
        atomic_write_json(meta_path, {"path": str(path), "sha256": sha})
    ref = StreamRef("bin", path.name, str(path), sha, len(stream), str(stream.dtype))
    return Corpus(_chunk(stream, data.seq_len, bos), vocab, tok.to_str() if tok is not None else None, f"bin-{sha[:16]}", special, ref)


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
        against :attr:`sha256` and written to the cache for the next reader.

        Raises:
            DataError: the regenerated rows do not hash to :attr:`sha256` (the synthetic
                source's code changed since the run was prepared).
        """
        memo = _SYNTHETIC_MEMO.get(self.sha256)
        if memo is not None:
            return memo
        path = cache_root(data) / self.cache_name
        if path.is_file():
            try:
                rows = np.load(path, mmap_mode="r")
                if rows.shape == (self.n_test + self.n_train, self.seq_len) and rows.dtype == np.dtype(self.dtype):
                    return rows
            except (OSError, ValueError):
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
        except OSError as e:  # a read-only cache: keep them in this process
            print(f"warning: could not cache the synthetic rows at {path} ({e}); they are regenerated per process", file=sys.stderr)
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
    frac = 1.0 if data.synthetic_only else data.synthetic_fraction
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


def rebuild_stream(man: "Manifest", data: DataConfig, tokenizer_path: Optional[Path], where: str, progress: bool = True) -> Path:
    """Re-tokenize a run's corpus into the cache, with the run's own tokenizer, and check
    that it hashes to what the run recorded (``repeatlens data prepare RUN``).

    Returns:
        The stream's path (nothing is done when it is already there and intact).

    Raises:
        DataError: the run's stream is a ``.bin`` file (nothing to rebuild), its tokenizer
            is missing, or the corpus now tokenizes to other tokens (the corpus changed).
    """
    from repeatlens.data import corpus as corpus_mod
    from repeatlens.data import tokenizer as tok_mod

    if man.corpus.get("stream") is None:
        raise DataError(f"{where}: the run reads no corpus stream (synthetic data only, or written before runs referenced it)")
    ref = StreamRef.from_json(man.corpus["stream"])
    if ref.kind != "cache":
        raise DataError(f"{where}: its corpus is the token file '{ref.path}' itself; there is no cache to rebuild")
    dest = cache_root(data) / ref.name
    if dest.is_file():
        stream = np.load(dest, mmap_mode="r")
        if len(stream) == ref.n_tokens and token_sha256(stream) == ref.sha256:
            _write_stream_meta(dest, stream)
            return dest
    if tokenizer_path is None or not tokenizer_path.is_file():
        raise DataError(f"{where}: no tokenizer.json in the run directory to re-tokenize its corpus with")
    tok = tok_mod.load_tokenizer(tokenizer_path)
    docs = corpus_mod.iter_documents(data.source, data.format, data.text_field, data.extensions)
    stream = tok_mod.encode_stream(tok, docs, progress=progress, bos=man.special().bos)
    sha = token_sha256(stream)
    if sha != ref.sha256 or len(stream) != ref.n_tokens:
        raise DataError(
            f"{where}: re-tokenizing '{data.source}' gives {len(stream):,} tokens hashing to {sha[:16]}…, not the {ref.n_tokens:,} "
            f"tokens ({ref.sha256[:16]}…) the run was prepared from; the corpus changed since"
        )
    atomic_save_npy(dest, stream)
    _write_stream_meta(dest, stream)
    return dest


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
