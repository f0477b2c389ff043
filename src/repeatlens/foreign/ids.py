"""The special ids of someone else's checkpoint, from its config or a tokenizer beside it, validated (:func:`config_special_ids`)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Optional


NO_BOS = 0
"""The id the probes start with when neither a checkpoint's config nor a tokenizer beside it
names a BOS or EOS id; said in one warning line, which names the file to add."""


def config_special_ids(config: Any, vocab: int, where: str, tokenizer: Optional[Path] = None) -> tuple[int, tuple[int, ...], list[str]]:
    """Validated special ids of a config: ``(bos, exclude, warnings)``.

    ``bos_token_id``, ``eos_token_id`` and ``pad_token_id`` (an int, a list of ints or
    None) are kept when ``0 <= id < vocab``; any other value is ignored, with one warning
    line naming ``where`` and the fields. The probes' BOS is the BOS id, else the (first) EOS
    id; when the config names neither, the ``tokenizer`` (a ``tokenizer.json`` beside the
    checkpoint, read by :func:`repeatlens.data.special.from_tokenizer`) decides; failing that,
    :data:`NO_BOS`, with a warning saying so. Every kept id is excluded from the probes'
    random tokens.
    """
    kept: dict[str, list[int]] = {}
    bad = []
    for fld in ("bos_token_id", "eos_token_id", "pad_token_id"):
        raw = config.get(fld) if isinstance(config, dict) else getattr(config, fld, None)
        if raw is None:
            continue
        values = raw if isinstance(raw, (list, tuple)) else [raw]
        good = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < vocab]
        if len(good) != len(values):
            bad.append(f"{fld} {raw!r}")
        kept[fld] = good
    named = kept.get("bos_token_id", []) + kept.get("eos_token_id", [])
    extra: set[int] = set()
    from_tok = None
    if not named and tokenizer is not None and tokenizer.is_file():
        from repeatlens.data.special import from_token_file
        from repeatlens.errors import DataError

        try:
            from_tok = from_token_file(str(tokenizer), str(tokenizer))
        except DataError:
            from_tok = None
        if from_tok is not None and from_tok.bos < vocab:
            named, extra = [from_tok.bos], {i for i in from_tok.special if i < vocab}
    bos = named[0] if named else NO_BOS
    exclude = tuple(sorted({bos, *extra, *(v for vs in kept.values() for v in vs)}))
    notes = []
    if bad:
        verb = "is" if len(bad) == 1 else "are"
        notes.append(f"{where}: {' and '.join(bad)} {verb} outside the vocabulary (vocab_size {vocab}); ignored, probes use BOS {bos}")
    elif not named:
        beside = f"no {tokenizer.name} beside it" if tokenizer is not None else "no tokenizer"
        notes.append(f"{where}: names no BOS or EOS id and {beside} names one; the probes start with id {bos} "
                     f"(put the tokenizer.json the model was trained with beside the checkpoint)")
    return bos, exclude, notes


def _ids_source(config: Any, bos: int, where: str, tokenizer: Optional[Path] = None) -> tuple[str, str]:
    """Where the BOS :func:`config_special_ids` chose came from: ``("config", "<where> <field>")``,
    ``("tokenizer", "<tokenizer.json>")`` for one beside the checkpoint, or ``("default",
    why)`` when neither gave it (:data:`NO_BOS`)."""
    for fld in ("bos_token_id", "eos_token_id"):
        raw = config.get(fld) if isinstance(config, dict) else getattr(config, fld, None)
        values = raw if isinstance(raw, (list, tuple)) else [raw]
        if any(isinstance(v, int) and not isinstance(v, bool) and v == bos for v in values):
            return "config", f"{where} {fld}"
    if tokenizer is not None and tokenizer.is_file():
        from repeatlens.data.special import from_token_file
        from repeatlens.errors import DataError

        with contextlib.suppress(DataError):
            if from_token_file(str(tokenizer), str(tokenizer)).bos == bos:
                return "tokenizer", str(tokenizer)
    return "default", f"{where} names no bos_token_id or eos_token_id inside the vocabulary and no tokenizer.json beside it names a BOS: id {bos}"
