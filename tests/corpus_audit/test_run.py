"""``repeatlens.audit`` end to end on a corpus with known duplication, in every format.

The counts are checked against independent re-implementations (a Counter over normalized
texts, the trainer's own chunks from ``load_corpus``, brute force over every K-gram) and
against how the corpus was built (documents copied exactly 1, 10 and 100 times, four
near-copies, one passage shared by five documents).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import repeatlens
from repeatlens.config import DataConfig
from repeatlens.corpus_audit.stream import normalize
from repeatlens.data.streams import load_corpus
from repeatlens.data.tokenizer import encode_stream, load_tokenizer
from repeatlens.errors import RepeatlensError
from tests.corpus_audit.conftest import KnownCorpus
from tests.corpus_audit.test_spans import brute_force_repeats, brute_force_stretches

SEQ_LEN, K = 32, 50


def rows_of(table: pd.DataFrame, unit: str) -> dict[int, tuple[int, int]]:
    """{repeat count: (items, tokens)} of one unit of an exact-bins table."""
    t = table[table.unit == unit]
    return {int(e): (int(n), int(k)) for e, n, k in zip(t.repeat_count, t["items"], t.tokens)}


def expected_rows(pairs: list[tuple[int, int]]) -> dict[int, tuple[int, int]]:
    """{copies: (items, tokens)} from (copies, tokens) per distinct item."""
    out: dict[int, tuple[int, int]] = {}
    for copies, tokens in pairs:
        items, total = out.get(copies, (0, 0))
        out[copies] = (items + 1, total + tokens)
    return out


@pytest.fixture(scope="module")
def exact(known_files: dict[str, Path]) -> repeatlens.corpus_audit.AuditResult:
    return repeatlens.audit(known_files["jsonl"], tokenizer=str(known_files["tokenizer"]), seq_len=SEQ_LEN,
                            bins="exact", progress=False)


def test_documents_counted_exactly(known: KnownCorpus, known_files: dict[str, Path], exact) -> None:
    tok = load_tokenizer(known_files["tokenizer"])
    copies: Counter = Counter()
    tokens: Counter = Counter()
    for d in known.docs:
        copies[normalize(d)] += 1
        tokens[normalize(d)] += len(tok.encode(d).ids) + 1
    assert rows_of(exact.table, "document") == expected_rows([(copies[k], tokens[k]) for k in copies])
    # and as built: 49 documents once (40 unique, 4 near-copies, 5 sharing a passage), 3 x 10, 2 x 100
    got = rows_of(exact.table, "document")
    assert sorted(got) == [1, 10, 100]
    assert got[1][0] == 49 and got[10][0] == 3 and got[100][0] == 2
    assert got[100][1] == sum(100 * (len(tok.encode(d).ids) + 1) for d in known.hundred)


def test_near_copies_found_and_no_unique_document_flagged(known: KnownCorpus, known_files: dict[str, Path], exact) -> None:
    tok = load_tokenizer(known_files["tokenizer"])
    got = rows_of(exact.table, "near_document")
    near_tokens = sum(len(tok.encode(d).ids) + 1 for d in known.near)
    assert got[4] == (1, near_tokens)  # the document and its three edited copies: one cluster of 4
    assert got[1][0] == 40 + 5  # every unique and every passage-sharing document stays alone
    assert got[10][0] == 3 and got[100][0] == 2
    assert exact.record["near_duplicates"]["threshold"] == 0.8 and exact.record["near_duplicates"]["num_perm"] == 128
    strict = repeatlens.audit(known_files["jsonl"], tokenizer=str(known_files["tokenizer"]), seq_len=SEQ_LEN, bins="exact",
                              threshold=0.99, spans=False, progress=False)
    assert 4 not in rows_of(strict.table, "near_document")  # two edits in 150 words are below Jaccard 0.99


def test_sequences_are_the_trainers_chunks(known_files: dict[str, Path], exact) -> None:
    corpus = load_corpus(DataConfig(source=str(known_files["jsonl"]), tokenizer=str(known_files["tokenizer"]), seq_len=SEQ_LEN),
                         progress=False)
    chunks = corpus.chunks[np.arange(corpus.n_chunks)]
    counts = Counter(row.tobytes() for row in chunks)
    assert rows_of(exact.table, "sequence") == expected_rows([(c, c * SEQ_LEN) for c in counts.values()])


def test_spans_match_brute_force_and_find_the_passage(known: KnownCorpus, known_files: dict[str, Path], exact) -> None:
    tok = load_tokenizer(known_files["tokenizer"])
    stream = encode_stream(tok, known.docs).tolist()
    e = brute_force_repeats(stream, K)
    pairs = [(copies, length) for (copies, length), n in brute_force_stretches(stream, e).items() for _ in range(n)]
    assert rows_of(exact.table, "span") == expected_rows(pairs)
    passage = len(tok.encode(" " + known.passage + " ").ids)
    items, tokens = rows_of(exact.table, "span")[5]  # the passage, in five documents (and a stray token at
    assert abs(tokens - 5 * passage) <= 5 * 3            # a document boundary whose covering K-grams happen to be 5)


def test_every_format_gives_the_same_table(known_files: dict[str, Path], exact) -> None:
    for fmt in ("text", "jsonl.gz", "parquet", "hf", "folder", "glob", "bin"):
        got = repeatlens.audit(known_files[fmt], tokenizer=str(known_files["tokenizer"]), seq_len=SEQ_LEN, bins="exact",
                               progress=False)
        pd.testing.assert_frame_equal(got.table, exact.table, obj=fmt)
        assert got.record["corpus"]["kind"] == ("bin" if fmt == "bin" else "text")


def test_a_corpus_without_a_tokenizer_is_read_with_the_trainers_bpe(known_files: dict[str, Path]) -> None:
    res = repeatlens.audit(known_files["jsonl"], seq_len=SEQ_LEN, vocab_size=300, near=False, spans=False, bins="exact",
                           progress=False)
    corpus = load_corpus(DataConfig(source=str(known_files["jsonl"]), vocab_size=300, seq_len=SEQ_LEN), progress=False)
    counts = Counter(row.tobytes() for row in corpus.chunks[np.arange(corpus.n_chunks)])
    assert rows_of(res.table, "sequence") == expected_rows([(c, c * SEQ_LEN) for c in counts.values()])
    assert res.record["tokenizer"]["trained"] and res.record["tokenizer"]["vocab_size"] == corpus.vocab_size


def test_outputs_settings_epochs_and_the_damage_map(known: KnownCorpus, known_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = repeatlens.audit(known_files["jsonl"], out, tokenizer=str(known_files["tokenizer"]), seq_len=SEQ_LEN, epochs=2,
                           model_size="2e8", region="published", span_max_tokens=1000, progress=False,
                           write_sweep=tmp_path / "sweep.yaml")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["audit.csv", "audit.html", "audit.json", "audit.parquet", "damage.csv", "summary.txt"]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "audit.parquet"), res.table)
    assert pd.read_csv(out / "audit.csv").equals(res.table)
    record = json.loads((out / "audit.json").read_text())
    assert record["seq_len"] == SEQ_LEN and record["epochs"] == 2 and record["near_duplicates"]["threshold"] == 0.8
    assert record["tokenizer"]["hash"] and record["corpus"]["fingerprint"]
    assert "over the suffix array's limit of 1,000" in record["skipped"]["span"]
    doc = res.damage[res.damage.unit == "document"]
    # E = copies x 2; at N = 2e8 the published region is E = 94-3,606
    assert doc.repeat_count.tolist() == [2, 20, 200] and doc.region.tolist() == ["below", "below", "inside"]
    assert doc.repeat_count_mean.tolist() == [2.0, 20.0, 200.0]  # each bucket holds one copy count here
    f = doc.token_fraction.iloc[2]
    assert res.summary[0].endswith(f"{100 * f:.3g}% of tokens (2 documents) sit in documents copied 100–199 times, "
                                   "inside the predicted region E = 94–3,606 for N = 200M.")
    assert (out / "summary.txt").read_text().splitlines() == res.summary
    assert "doc #" in (out / "audit.html").read_text()  # hover names example documents
    from repeatlens.sweep import load_sweep

    assert load_sweep(tmp_path / "sweep.yaml").grid["mixture.repeat_count"] == [2, 20, 200]  # E = copies x 2 epochs
    assert record["sweep"]["path"] == str(tmp_path / "sweep.yaml")


def test_tokens_set_the_epochs(known_files: dict[str, Path]) -> None:
    res = repeatlens.audit(known_files["jsonl"], tokenizer=str(known_files["tokenizer"]), seq_len=SEQ_LEN, near=False,
                           spans=False, progress=False, tokens=1e6)
    seq_tokens = res.record["units"]["sequence"]["total_tokens"]
    assert res.record["epochs"] == pytest.approx(1e6 / seq_tokens) and res.record["planned_tokens"] == 1e6


def test_the_audit_imports_neither_torch_nor_transformer_lens(known_files: dict[str, Path], tmp_path: Path) -> None:
    code = ("import sys, repeatlens, repeatlens.cli; "
            f"repeatlens.audit({str(known_files['jsonl'])!r}, {str(tmp_path / 'o')!r}, tokenizer={str(known_files['tokenizer'])!r}, "
            "seq_len=32, model_size=1e7, progress=False); "
            "print(sorted(m for m in ('torch', 'transformer_lens', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_an_interrupted_or_failed_audit_writes_nothing(known_files: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from repeatlens.corpus_audit import count

    out = tmp_path / "out"
    calls = {"n": 0}
    real_add = count.DocumentCounter.add

    def interrupt(self, doc):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 100:
            raise KeyboardInterrupt
        return real_add(self, doc)

    monkeypatch.setattr(count.DocumentCounter, "add", interrupt)
    with pytest.raises(KeyboardInterrupt):
        repeatlens.audit(known_files["jsonl"], out, tokenizer=str(known_files["tokenizer"]), seq_len=SEQ_LEN, progress=False)
    assert not out.exists()
    monkeypatch.setattr(count.DocumentCounter, "add", real_add)
    import repeatlens.plots.export as export

    monkeypatch.setattr(export, "find_chromium", lambda: None)
    with pytest.raises(RepeatlensError, match="needs Chromium"):
        repeatlens.audit(known_files["jsonl"], out, tokenizer=str(known_files["tokenizer"]), seq_len=SEQ_LEN, png=True,
                         spans=False, progress=False)
    assert not out.exists() or list(out.iterdir()) == []


def test_a_run_config_gives_the_data_settings_and_the_model_size(known_files: dict[str, Path], tmp_path: Path) -> None:
    import yaml

    from repeatlens.config import ModelConfig

    cfg = {"data": {"source": "shakespeare", "seq_len": 64, "tokenizer": str(known_files["tokenizer"])},
           "mixture": {"total_tokens": 100_000}, "model": {"preset": "rot2-d64"}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    res = repeatlens.audit(known_files["jsonl"], config=tmp_path / "run.yaml", near=False, spans=False, progress=False)
    vocab = load_tokenizer(known_files["tokenizer"]).get_vocab_size()
    assert res.record["seq_len"] == 64 and res.record["corpus"]["source"] == str(known_files["jsonl"])
    assert res.record["model"]["N"] == ModelConfig(preset="rot2-d64").n_params(vocab, embeddings=False) == 33664
    assert "non-embedding" in res.record["model"]["from"]
    by_preset = repeatlens.audit(known_files["jsonl"], tokenizer=str(known_files["tokenizer"]), preset="attn2-small",
                                 near=False, spans=False, progress=False)
    assert by_preset.record["model"]["N"] == ModelConfig(preset="attn2-small").n_params(vocab, embeddings=False)
    with pytest.raises(RepeatlensError, match="--model-size and --preset are both set"):
        repeatlens.audit(known_files["jsonl"], preset="attn2-small", model_size="1M", progress=False)
    with pytest.raises(RepeatlensError, match="unknown preset 'huge'"):
        repeatlens.audit(known_files["jsonl"], preset="huge", progress=False)


def test_a_scaling_fit_json_gives_the_region(known_files: dict[str, Path], tmp_path: Path) -> None:
    from tests.corpus_audit.test_region import fit_json

    # log10 E_left = 6 - 0.5 log10 N, E_right = 8 - 0.5 log10 N: at N = 1e8, E = 100-10,000
    (tmp_path / "fit.json").write_text(json.dumps(fit_json(n_range=[1e6, 1e8])))
    res = repeatlens.audit(known_files["jsonl"], tokenizer=str(known_files["tokenizer"]), seq_len=SEQ_LEN, near=False,
                           spans=False, model_size="1e8", region=str(tmp_path / "fit.json"), progress=False)
    assert res.region is not None and res.region.left == pytest.approx(100) and res.region.right == pytest.approx(1e4)
    doc = res.damage[res.damage.unit == "document"]
    assert doc.region.tolist() == ["below", "below", "inside"]
    assert res.record["region"]["source"] == str(tmp_path / "fit.json")
    assert any("your planned D" in n for n in res.record["region"]["notes"])  # the corpus's D is not the fit's 8M
