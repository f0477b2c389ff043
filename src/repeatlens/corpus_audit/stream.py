"""A corpus read as the trainer reads it: documents as token ids, in one streaming pass.

Text sources (a bundled name, text, jsonl, parquet, a Hugging Face dataset folder, a folder
or a glob) go through :func:`repeatlens.data.corpus.iter_documents` and the project's
tokenizer (``data.tokenizer``, or the BPE that :func:`repeatlens.data.streams.load_corpus`
trains and caches), encoded as :func:`repeatlens.data.tokenizer.encode_stream` encodes them:
the flat stream is ``[BOS, doc0..., BOS, doc1..., ...]`` with BOS from the tokenizer.

A pre-tokenized ``.bin`` file is that flat stream already; its documents are the stretches
that start at ``data.bin_bos_id`` (the first stretch, if the file does not open with one,
is a document too), so concatenating the documents gives back the file exactly.

Each document comes with a 64-bit key for exact-duplicate counting: xxh3-64 of its text
after :func:`normalize` (text sources), or of its token ids (``.bin``); and a short preview
(its first words, or its first ids) for the figure's hover text.
"""

from __future__ import annotations

import hashlib
import itertools
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from jaxtyping import Integer

from repeatlens.config import DataConfig
from repeatlens.errors import DataError

PREVIEW_WORDS = 12
PREVIEW_CHARS = 90
_ENCODE_BATCH = 256
_BIN_BLOCK = 1 << 24  # tokens of a .bin file scanned for BOS at a time


def normalize(text: str) -> str:
    """The text an exact-duplicate key hashes: Unicode NFC, whitespace runs collapsed to
    one space, no leading or trailing whitespace (case is kept: it changes the tokens).

    >>> normalize("  To be,\\n\\tor  not ")
    'To be, or not'
    """
    return unicodedata.normalize("NFC", " ".join(text.split()))


def preview(text: str) -> str:
    """The first words of a document, on one line, for hover text.

    >>> preview("ACT I.\\n\\nSCENE I. Rousillon. A room in the Countess's palace.")
    "ACT I. SCENE I. Rousillon. A room in the Countess's palace."
    """
    words = text[: PREVIEW_CHARS * 4].split()[:PREVIEW_WORDS]
    out = " ".join(words)
    return out if len(out) <= PREVIEW_CHARS else out[: PREVIEW_CHARS - 1] + "…"


@dataclass(frozen=True)
class Document:
    """One document: its token ids (BOS excluded), exact-duplicate key and preview.

    ``bos`` says whether a BOS opens it in the flat stream: always for text sources; for a
    ``.bin`` file, not for a first stretch that precedes the file's first BOS.
    """

    ids: Integer[np.ndarray, "n"]
    key: int
    preview: str
    bos: bool = True

    @property
    def n_tokens(self) -> int:
        """Its tokens in the flat stream: its ids and its BOS."""
        return len(self.ids) + int(self.bos)


@dataclass
class CorpusReader:
    """How a corpus is read: its token ids' dtype, BOS, vocabulary and provenance.

    Attributes:
        data: the data settings (source, format, tokenizer, seq_len, ``.bin`` options).
        bos: the id that opens every document and every training sequence.
        dtype: the ids' dtype (uint16, or uint32 for vocabularies above 65,536).
        vocab_size: the tokenizer's vocabulary (``.bin``: ``data.bin_vocab_size`` or None).
        fingerprint: the corpus's cache key (:func:`repeatlens.data.corpus.corpus_fingerprint`).
        tokenizer_hash: :func:`repeatlens.data.tokenizer.tokenizer_hash`, None for ``.bin``
            without a tokenizer.
        tokenizer: the ``tokenizers.Tokenizer`` (None for ``.bin`` without one).
        kind: ``"text"`` or ``"bin"``.
    """

    data: DataConfig
    bos: int
    dtype: np.dtype
    vocab_size: Optional[int]
    fingerprint: str
    tokenizer_hash: Optional[str]
    tokenizer: object
    kind: str

    def documents(self) -> Iterator[Document]:
        """Every document of the corpus, in the trainer's order, streamed."""
        return self._bin_documents() if self.kind == "bin" else self._text_documents()

    def decode(self, ids: Integer[np.ndarray, "n"]) -> str:
        """Text of some ids (the ids themselves when there is no tokenizer)."""
        if self.tokenizer is None:
            shown = ", ".join(str(int(i)) for i in ids[:PREVIEW_WORDS])
            return f"[{shown}{', …' if len(ids) > PREVIEW_WORDS else ''}]"
        return self.tokenizer.decode([int(i) for i in ids])  # type: ignore[attr-defined]

    def _text_documents(self) -> Iterator[Document]:
        import xxhash

        from repeatlens.data.corpus import iter_documents

        docs = iter_documents(self.data.source, self.data.format, self.data.text_field, self.data.extensions)
        encode = getattr(self.tokenizer, "encode_batch_fast", None) or self.tokenizer.encode_batch  # type: ignore[attr-defined]
        while batch := list(itertools.islice(docs, _ENCODE_BATCH)):
            for text, enc in zip(batch, encode(batch, add_special_tokens=False)):
                key = xxhash.xxh3_64_intdigest(normalize(text).encode("utf-8"))
                yield Document(np.asarray(enc.ids, dtype=self.dtype), key, preview(text))

    def _bin_documents(self) -> Iterator[Document]:
        import xxhash

        from repeatlens.data.corpus import load_token_bin

        stream = load_token_bin(self.data.source, self.data.bin_dtype, self.data.bin_vocab_size)
        start = 0  # first token of the current document (its BOS, if it has one)
        for block in range(0, len(stream), _BIN_BLOCK):
            bos_at = block + np.flatnonzero(np.asarray(stream[block : block + _BIN_BLOCK]) == self.bos)
            for cut in bos_at.tolist():
                if cut > start:
                    yield self._bin_document(stream, start, cut, xxhash)
                start = cut
        yield self._bin_document(stream, start, len(stream), xxhash)

    def _bin_document(self, stream: np.ndarray, start: int, end: int, xxhash: object) -> Document:
        ids = np.asarray(stream[start:end])
        opens = bool(len(ids)) and ids[0] == self.bos
        ids = np.ascontiguousarray(ids[1:] if opens else ids)
        key = xxhash.xxh3_64_intdigest(ids.tobytes())  # type: ignore[attr-defined]
        shown = preview(self.decode(ids[: 4 * PREVIEW_WORDS])) if self.tokenizer is not None else self.decode(ids)
        return Document(ids, key, shown, bool(opens))


def _is_bin(data: DataConfig) -> bool:
    return data.format == "bin" or (data.format == "auto" and str(data.source).endswith(".bin"))


def _bin_fingerprint(data: DataConfig) -> str:
    """Resolved path, size and modification time of a ``.bin`` file, and its dtype."""
    path = Path(data.source).expanduser()
    if not path.is_file():
        raise DataError(f"data.source: no token file at '{path}'")
    st = path.stat()
    key = f"bin\0{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{data.bin_dtype}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def open_corpus(data: DataConfig) -> CorpusReader:
    """Resolve a corpus and its tokenizer, as the trainer would, without reading it yet
    (a text corpus without ``data.tokenizer`` and no cached BPE is read once to train it).

    Raises:
        DataError: the source is missing, or the tokenizer file is not a tokenizer.
    """
    from repeatlens.data import tokenizer as tok_mod

    if data.synthetic_only:
        raise DataError("data.source 'synthetic' is generated, not a corpus; name a corpus to audit")
    if _is_bin(data):
        tok = tok_mod.load_tokenizer(data.tokenizer) if data.tokenizer else None
        dtype = np.dtype(data.bin_dtype)
        return CorpusReader(data, data.bin_bos_id, dtype, data.bin_vocab_size, _bin_fingerprint(data),
                            tok_mod.tokenizer_hash(tok) if tok is not None else None, tok, "bin")
    from repeatlens.data.corpus import corpus_fingerprint
    from repeatlens.data.special import from_tokenizer
    from repeatlens.data.streams import corpus_tokenizer

    fp = corpus_fingerprint(data.source, data.format, data.text_field, data.extensions)
    tok, where = corpus_tokenizer(data, fp)
    return CorpusReader(data, from_tokenizer(tok, where, data.bos_token).bos, tok_mod.token_dtype(tok), tok.get_vocab_size(), fp,
                        tok_mod.tokenizer_hash(tok), tok, "text")
