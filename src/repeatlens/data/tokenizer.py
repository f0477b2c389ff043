"""Byte-level BPE tokenizers: train, save, load, encode, and hand to TransformerLens.

Every tokenizer repeatlens trains is byte-level BPE (GPT-2 style): text is mapped to its
UTF-8 bytes before merging, so any string round-trips exactly through encode/decode and no
input is ever unknown. The one special token of the tokenizers we train, :data:`BOS_TOKEN`
(``<|endoftext|>``), has id 0 and serves as BOS, EOS and PAD, as in GPT-2. A user's tokenizer
(``data.tokenizer``) may have any layout: its BOS and special ids are decided once, by
:mod:`repeatlens.data.special`. :func:`encode_stream` places the BOS before every document,
so documents in a flat token stream are separated by it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol, runtime_checkable

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm.auto import tqdm

from repeatlens.data.special import from_tokenizer
from repeatlens.data.tokenizer_file import load_tokenizer
from repeatlens.errors import ConfigError, DataError, optional_import
from repeatlens.io import atomic_write_text

@runtime_checkable
class HasVocabSize(Protocol):
    """What :func:`token_dtype` reads of a tokenizer."""

    def get_vocab_size(self) -> int: ...


if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

BOS_TOKEN = "<|endoftext|>"
"""The single special token: BOS, EOS and PAD at once; id 0 in every tokenizer we train."""

MIN_VOCAB_SIZE = 256 + 1 + 1
"""256 byte tokens + :data:`BOS_TOKEN` + at least one merge."""

_ENCODE_BATCH = 256


def train_bpe(
    documents: Iterable[str], vocab_size: Any, min_frequency: int = 2, progress: bool = False
) -> Tokenizer:
    """Train a byte-level BPE tokenizer on a stream of documents.

    The vocabulary holds :data:`BOS_TOKEN` at id 0, then the 256 byte tokens, then merges
    in the order learned. On a small corpus the final vocabulary may be smaller than
    ``vocab_size`` (no pair left with ``min_frequency`` occurrences). Training is
    deterministic: the same documents give the same tokenizer (see :func:`tokenizer_hash`).

    Args:
        documents: The training texts, streamed once.
        vocab_size: Target vocabulary size including the special token (checked here, so
            any value may be passed: a non-integer is a ConfigError); at least
            :data:`MIN_VOCAB_SIZE` (258).
        min_frequency: A pair must occur at least this often to be merged.
        progress: Show the trainer's progress bar.

    Returns:
        The trained tokenizer.

    Raises:
        ConfigError: ``vocab_size`` is not an integer of at least 258.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB_SIZE:
        raise ConfigError(
            f"data.vocab_size: {vocab_size!r} is too small; byte-level BPE needs at least "
            f"{MIN_VOCAB_SIZE} (256 bytes + {BOS_TOKEN} + 1 merge)"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[BOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tok.train_from_iterator(documents, trainer=trainer)
    return tok


def bos_id(tok: Tokenizer, bos_token: Optional[str] = None) -> int:
    """The BOS id of ``tok`` (:func:`repeatlens.data.special.from_tokenizer`; 0 for every
    tokenizer we train).

    Raises:
        DataError: ``tok`` has no BOS-like token and ``bos_token`` names none.
    """
    return from_tokenizer(tok, "tokenizer", bos_token).bos


def save_tokenizer(tok: Tokenizer, path: str | os.PathLike) -> Path:
    """Write ``tok`` as tokenizers JSON, atomically (:func:`repeatlens.io.atomic_write_text`).

    Args:
        tok: The tokenizer.
        path: Destination file; missing parent folders are created.

    Returns:
        The destination path.
    """
    dest = Path(path)
    atomic_write_text(dest, tok.to_str())
    return dest


def token_dtype(tok: "HasVocabSize", dtype: np.dtype | type | str = np.uint16) -> np.dtype:
    """Return ``dtype``, widened to uint32 when the vocabulary does not fit in it.

    Args:
        tok: The tokenizer whose ids will be stored.
        dtype: The preferred unsigned integer dtype.

    Returns:
        ``dtype`` if every id of ``tok`` fits, else ``uint32``.
    """
    wanted = np.dtype(dtype)
    if np.iinfo(wanted).max < tok.get_vocab_size() - 1:
        return np.dtype(np.uint32)
    return wanted


def _batches(documents: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(documents)
    while batch := list(itertools.islice(it, size)):
        yield batch


def encode_stream(
    tok: Tokenizer,
    documents: Iterable[str],
    dtype: np.dtype | type | str = np.uint16,
    progress: bool = False,
    bos: Optional[int] = None,
) -> np.ndarray:
    """Encode documents into one flat array of ids, the BOS before each one.

    The layout is ``[BOS, doc0..., BOS, doc1..., ...]``: the BOS id opens every document,
    so it also separates consecutive documents.

    Args:
        tok: The tokenizer.
        documents: The texts, streamed and encoded in batches.
        dtype: Preferred id dtype; widened to uint32 automatically when the vocabulary has
            more than 65536 entries, so read the dtype from the returned array.
        progress: Show a tqdm bar counting documents.
        bos: The BOS id (:mod:`repeatlens.data.special`); default :func:`bos_id` of ``tok``.

    Returns:
        A 1-D array of token ids (empty when there are no documents).
    """
    bos = bos_id(tok) if bos is None else int(bos)
    out_dtype = token_dtype(tok, dtype)
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    parts: list[np.ndarray] = []
    with tqdm(desc="tokenizing", unit="doc", disable=not progress) as bar:
        for batch in _batches(documents, _ENCODE_BATCH):
            ids = [e.ids for e in encode(batch, add_special_tokens=False)]
            count = sum(map(len, ids)) + len(ids)
            flat = itertools.chain.from_iterable(itertools.chain((bos,), doc) for doc in ids)
            parts.append(np.fromiter(flat, dtype=out_dtype, count=count))
            bar.update(len(batch))
    return np.concatenate(parts) if parts else np.empty(0, dtype=out_dtype)


def hf_tokenizer(tok_or_path: Tokenizer | str | os.PathLike, bos_token: Optional[str] = None) -> PreTrainedTokenizerFast:
    """Wrap a tokenizer for Hugging Face / TransformerLens, fully offline.

    The wrapper prepends the BOS token when encoding and uses it as bos, eos, pad and
    unk token, so ``HookedTransformer(cfg, tokenizer=hf_tokenizer(tok))`` gives a working
    ``model.to_tokens`` (one BOS in front) and ``model.to_string`` without any download.
    ``tok`` itself is not modified.

    Args:
        tok_or_path: A tokenizer, or the path of a tokenizers JSON file.
        bos_token: The BOS token (a run records it in its manifest); default the one
            :func:`repeatlens.data.special.from_tokenizer` finds.

    Returns:
        A ``transformers.PreTrainedTokenizerFast``.

    Raises:
        DataError: ``transformers`` is not installed, or the path is not a tokenizer.
    """
    PreTrainedTokenizerFast = optional_import("transformers", "hf_tokenizer", "hf", error=DataError).PreTrainedTokenizerFast
    if isinstance(tok_or_path, Tokenizer):
        tok = Tokenizer.from_str(tok_or_path.to_str())
    else:
        tok = load_tokenizer(tok_or_path)
    special = from_tokenizer(tok, str(tok_or_path) if not isinstance(tok_or_path, Tokenizer) else "tokenizer", bos_token)
    bos, name = special.bos, tok.id_to_token(special.bos)
    # Prepending BOS in the post-processor, and saying so with add_bos_token (plus the
    # name_or_path that TransformerLens reads), makes TransformerLens use this tokenizer
    # as is instead of re-fetching it from the hub.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{name} $A", pair=f"{name} $A {name} $B", special_tokens=[(name, bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        name_or_path="repeatlens-bpe",
        bos_token=name,
        eos_token=name,
        pad_token=name,
        unk_token=name,
        add_bos_token=True,
        clean_up_tokenization_spaces=False,
    )


def tokenizer_hash(tok: Tokenizer) -> str:
    """Return a short hex digest (16 chars of sha256) of the tokenizer's JSON."""
    return hashlib.sha256(tok.to_str().encode("utf-8")).hexdigest()[:16]
