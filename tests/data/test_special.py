"""Special ids come from the tokenizer (or the .bin settings): every training row starts with
that BOS, no synthetic token is a special id, and every probe family starts with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from repeatlens.analysis import run_probe_source
from repeatlens.data.special import SpecialIds, from_tokenizer, legacy
from repeatlens.errors import DataError
from repeatlens.scores.probes import ProbeSpec, build_probes
from repeatlens.train import train
from repeatlens.verify import verify_run
from tests.conftest import tiny_config
from tests.data.factories import bare_tokenizer, gpt2_layout_tokenizer, tiny_text_run, word_documents, write_bin, write_text_corpus


def _check_run(run, bos: int, n_ordinary: int) -> None:
    """Rows, synthetic tokens and probes of ``run`` against its BOS; ``n_ordinary`` ids are not special."""
    man, pool, kinds = run.manifest(), np.asarray(run.pool()), run.is_synthetic()
    assert man.special_ids["bos"] == bos and run.special_ids().bos == bos
    assert (pool[:, 0] == bos).all()  # every row, corpus and synthetic, test and training
    synthetic = pool[kinds][:, 1:]
    assert kinds.sum() == man.n_synthetic > 0
    assert not (synthetic == bos).any()
    # the source drew from every ordinary id (so the check above saw the whole range), and from nothing else
    assert len(np.setdiff1d(np.unique(synthetic), run.special_ids().ordinary_ids(man.vocab_size))) == 0
    assert len(np.unique(synthetic)) >= 0.9 * n_ordinary
    source = run_probe_source(run)
    assert source.bos == bos and bos in source.exclude
    for family in source.families():
        probes = build_probes(ProbeSpec(family, batch=4), source)
        assert (probes.tokens[:, 0] == bos).all(), family
        if family != "text":  # random blocks never take a special id (text spans are the corpus's own tokens)
            blocks = probes.copy_tokens[:, 1:]
            assert not (blocks == bos).any(), family
    assert verify_run(run.path).ok


def test_a_tokenizer_whose_endoftext_is_its_last_id_decides_bos_everywhere(tmp_path: Path) -> None:
    docs = word_documents(40)
    corpus = write_text_corpus(tmp_path / "corpus.txt")
    tok_path = gpt2_layout_tokenizer(tmp_path / "gpt2-layout.json", docs)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_path))
    eot = tok.get_vocab_size() - 1  # <|endoftext|>; id 0 is "!"
    run = train(tiny_config(**tiny_text_run(corpus, tokenizer=str(tok_path))), tmp_path / "run")
    assert run.manifest().synthetic_ids == (0, eot)  # id 0 ("!") is an ordinary id here
    _check_run(run, eot, eot)
    model = run.load_model()
    assert int(model.to_tokens("the cat")[0, 0]) == eot  # the run's tokenizer prepends the same BOS


def test_a_bin_corpus_whose_bos_is_not_0(tmp_path: Path) -> None:
    corpus = write_bin(tmp_path / "tokens.bin", 6000, vocab=50, bos=7)
    run = train(tiny_config(**tiny_text_run(corpus, bin_bos_id=7, bin_vocab_size=50)), tmp_path / "run")
    assert run.special_ids().special == (7,) and run.manifest().synthetic_ids == (0, 50)  # 7 itself excluded
    _check_run(run, 7, 49)
    with pytest.raises(DataError, match=r"data.bos_token = '<s>': a .bin corpus's BOS is data.bin_bos_id"):
        train(tiny_config(**tiny_text_run(corpus, bin_bos_id=7, bos_token="<s>")), tmp_path / "bad")


def test_a_tokenizer_without_a_bos_like_token_is_one_line_naming_the_file_and_the_field(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bare_tokenizer(tmp_path / "bare.json", word_documents(20))))
    with pytest.raises(DataError) as err:
        from_tokenizer(tok, "data.tokenizer 'bare.json'")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("data.tokenizer 'bare.json': no BOS-like token") and "set data.bos_token" in msg
    with pytest.raises(DataError, match=r"data.bos_token = '<s>' is not a token of this tokenizer"):
        from_tokenizer(tok, "data.tokenizer 'bare.json'", "<s>")
    chosen = from_tokenizer(tok, "bare.json", tok.id_to_token(5))  # any token may be named the BOS; it becomes special
    assert chosen.bos == 5 and chosen.special == (5,)


def test_a_user_tokenizer_without_a_bos_fails_before_the_run_directory_is_written(tmp_path: Path, capsys) -> None:
    from tests.test_cli import _run, _write_cfg

    corpus = write_text_corpus(tmp_path / "corpus.txt")
    tok = bare_tokenizer(tmp_path / "bare.json", word_documents(20))
    cfg = _write_cfg(tmp_path / "c.yaml", tiny_config(**tiny_text_run(corpus, tokenizer=str(tok))).model_dump(mode="json"))
    code, _, err = _run(["train", str(cfg), "--out", str(tmp_path / "run"), "-q"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: data.tokenizer '{tok}': no BOS-like token") and "set data.bos_token" in err
    assert not (tmp_path / "run").exists()


def test_special_ids_round_trip_and_old_manifests_read_as_bos_0() -> None:
    s = SpecialIds(50256, (50256, 3), "<|endoftext|>", "tokenizer x")
    assert s.special == (3, 50256) and SpecialIds.from_json(s.to_json()) == s
    assert SpecialIds.from_json(None) == legacy() and legacy().bos == 0 and legacy().special == (0,)
    with pytest.raises(DataError, match=r"data.synthetic.token_ids = 9 exceeds the 8 non-special ids"):
        SpecialIds(3, (3, 5)).ordinary_ids(10, 9)
