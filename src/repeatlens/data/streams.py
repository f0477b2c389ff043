"""Corpus → tokenizer → token stream: the cached, memory-mapped tokens every run reads.

The tokenized corpus is cached once per (corpus, tokenizer) under the cache directory
(``data.cache_dir``, ``$REPEATLENS_CACHE`` or ``~/.cache/repeatlens``) as
``stream-<fingerprint>.npy``, with ``stream-<fingerprint>.json`` beside it (its sha256,
token count and dtype), and memory-mapped, so a second run never re-tokenizes; a
pre-tokenized ``.bin`` corpus is memory-mapped where it lies (its sha256 cached as
``bin-<fingerprint>.json``). Either stream is cut into rows ``[BOS, seq_len - 1 tokens]``,
the BOS from :mod:`repeatlens.data.special`. A run records the stream it read
(:class:`StreamRef`: where, sha256, length) and the rows it uses
(:mod:`repeatlens.data.pools`); :func:`rebuild_stream` puts a deleted cache back, checked
against that record.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from repeatlens.config import DataConfig
from repeatlens.data.special import SYNTHETIC_BOS, SpecialIds
from repeatlens.errors import DataError
from repeatlens.io import atomic_save_npy, atomic_write_json, sha256_file

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from repeatlens.checkpoints.manifest import Manifest

__all__ = ["cache_root", "token_sha256", "StreamRef", "Corpus", "corpus_tokenizer", "load_corpus", "synthetic_special", "rebuild_stream"]

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
    return SpecialIds(SYNTHETIC_BOS, (SYNTHETIC_BOS,), source="the synthetic source (id 0 of its vocabulary is BOS)", kind="synthetic")


def corpus_tokenizer(data: DataConfig, corpus_fp: str) -> "tuple[Tokenizer, str]":
    """The tokenizer a text corpus is read with, and where it came from (for messages):
    ``data.tokenizer`` if given, else the BPE of ``data.vocab_size`` trained on the corpus,
    cached beside the token streams (trained once per corpus fingerprint ``corpus_fp`` and
    vocabulary size)."""
    from repeatlens.data import corpus as corpus_mod
    from repeatlens.data import tokenizer as tok_mod

    if data.tokenizer:
        return tok_mod.load_tokenizer(data.tokenizer), f"data.tokenizer '{data.tokenizer}'"
    tok_path = cache_root(data) / f"tok-{corpus_fp}-v{data.vocab_size}" / "tokenizer.json"
    if tok_path.is_file():
        return tok_mod.load_tokenizer(tok_path), f"tokenizer '{tok_path}'"
    docs = corpus_mod.iter_documents(data.source, data.format, data.text_field, data.extensions)
    tok = tok_mod.train_bpe(docs, data.vocab_size)
    tok_mod.save_tokenizer(tok, tok_path)  # creates its folder; an unwritable cache is a one-line WriteError
    return tok, f"tokenizer '{tok_path}'"


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
    tok, where = corpus_tokenizer(data, corpus_fp)
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

    if data.bos_token is not None:
        raise DataError(f"data.bos_token = {data.bos_token!r}: a .bin corpus's BOS is data.bin_bos_id (an id); leave data.bos_token unset")
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
    special = SpecialIds(bos, (bos,), source="data.bin_bos_id", kind="bin")
    if tok is not None:
        declared = {int(i) for i, t in tok.get_added_tokens_decoder().items() if t.special}
        if bos not in declared:
            names = ", ".join(f"{tok.id_to_token(i)} = {i}" for i in sorted(declared)[:6]) or "none"
            raise DataError(
                f"data.bin_bos_id = {bos} is {tok.id_to_token(bos)!r} in data.tokenizer '{data.tokenizer}', not one of its special "
                f"tokens ({names}); set data.bin_bos_id to the id that opens a document"
            )
        special = SpecialIds(bos, tuple(declared), tok.id_to_token(bos), f"data.bin_bos_id, data.tokenizer '{data.tokenizer}'", "bin")
    path = Path(data.source).expanduser().resolve()
    meta_path = cache_root(data) / f"bin-{corpus_mod.token_file_fingerprint(path, data.bin_dtype)}.json"
    try:
        sha = json.loads(meta_path.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        sha = sha256_file(path)  # the file is the tokens' little-endian bytes
        atomic_write_json(meta_path, {"path": str(path), "sha256": sha})
    ref = StreamRef("bin", path.name, str(path), sha, len(stream), str(stream.dtype))
    return Corpus(_chunk(stream, data.seq_len, bos), vocab, tok.to_str() if tok is not None else None, f"bin-{sha[:16]}", special, ref)


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
