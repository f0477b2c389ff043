"""Other people's checkpoints, offline: TransformerLens model_{step}.pt folders, Hugging Face
revision folders of every converted architecture, nanoGPT ckpt.pt layouts, revision names,
special ids, duplicates and bad input (tiny random models built here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from repeatlens import scores as scores_pkg
from repeatlens.analysis import analyze
from repeatlens.results.schema import SCORE_COLUMNS as COLUMNS
from repeatlens.results.store import load_scores
from repeatlens.cli import main
from repeatlens.foreign import config_special_ids, discover, load_tl_state_dict, parse_revision, weights_digest
from repeatlens.model import ModelConfig, build_model, hooked_config, model_from_hf_folder, model_from_nanogpt
from repeatlens.scores import REGISTRY, get_probes
from tests.model.nanogpt_ref import nanogpt_checkpoint
from tests.model.tiny_hf import ARCHS, save_as_bin, save_tiny

TOKEN_FREE = ["induction", "previous_token", "copying_ov", "copying_loss"]
STEPS = [0, 10, 20]


def tl_config(**over):
    return hooked_config(ModelConfig(**{"preset": "attn2-tiny", "n_ctx": 32, "d_model": 16, "n_heads": 2, **over}), d_vocab=64)


def save_tl_folder(folder: Path, steps=STEPS) -> dict[int, torch.nn.Module]:
    """What TransformerLens' train.py leaves: model_{step}.pt state dicts + config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    hcfg = tl_config()
    models = {}
    for step in steps:
        torch.manual_seed(step)
        models[step] = build_model(hcfg)
        torch.save(models[step].state_dict(), folder / f"model_{step}.pt")
    (folder / "config.json").write_text(json.dumps(hcfg.to_dict(), default=str))
    return models


class Evil:
    """A pickle whose unpickling would create a file."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


# -------------------------------------------------------------------- TransformerLens


def test_tl_folder_scores_exactly_the_saved_models(tmp_path: Path, no_network) -> None:
    folder = tmp_path / "tl"
    models = save_tl_folder(folder)
    res = analyze(folder, TOKEN_FREE, progress=False, tokens_per_step=1000)
    assert res.ok and res.kind == "transformerlens" and res.tables == [folder / "scores.parquet"]
    df = load_scores(folder)
    assert list(df.columns) == COLUMNS and COLUMNS[-1] == "duplicate_of" and df.duplicate_of.isna().all()
    assert sorted(df.step.unique()) == STEPS and (df.run_id == "tl").all()
    assert dict(df.drop_duplicates("step").set_index("step").tokens_seen) == {s: s * 1000 for s in STEPS}
    assert set(df.metric) == set(TOKEN_FREE)

    direct = scores_pkg.score_model(models[10], TOKEN_FREE)
    got = df[df.step == 10][["metric", "layer", "head", "value"]].reset_index(drop=True)
    key = ["metric", "layer", "head"]
    want = direct.sort_values(key).reset_index(drop=True)
    np.testing.assert_allclose(got.sort_values(key).value.to_numpy(), want.value.to_numpy(), rtol=1e-6)


def test_foreign_folder_scores_behaviour_only_with_a_tokens_file(tmp_path: Path) -> None:
    folder = tmp_path / "tl"
    save_tl_folder(folder, steps=[0, 5])
    analyze(folder, ["previous_token", "test_loss"], progress=False)
    assert set(load_scores(folder).metric) == {"previous_token"}  # no test data: no test loss

    tokens = np.random.default_rng(0).integers(1, 64, size=(6, 32))
    np.save(tmp_path / "tokens.npy", tokens)
    analyze(folder, ["previous_token", "test_loss"], tokens=tmp_path / "tokens.npy", force=True, progress=False)
    df = load_scores(folder)
    assert set(df.metric) == {"previous_token", "test_loss"}
    assert (df[df.metric == "test_loss"].value > 0).all()


def test_bad_tl_files_are_named_and_the_good_ones_scored(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "tl"
    save_tl_folder(folder)
    good = (folder / "model_10.pt").read_bytes()
    (folder / "model_30.pt").write_bytes(good[: len(good) // 2])  # truncated
    torch.save(build_model(tl_config(d_model=24)).state_dict(), folder / "model_40.pt")  # other shapes
    target = tmp_path / "pwned.txt"
    torch.save({"embed.W_E": Evil(target)}, folder / "model_50.pt")  # code in a pickle
    torch.save({"step": 3, "embed.W_E": torch.zeros(2)}, folder / "model_60.pt")  # not plain weights
    torch.save([torch.zeros(2)], folder / "model_70.pt")  # not a state dict

    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(folder), "-q", "-m", "previous_token"])
    assert exc.value.code == 1
    out = capsys.readouterr()
    assert not target.exists()
    assert "Traceback" not in out.err + out.out
    bad_lines = {n: [ln for ln in out.err.splitlines() if f"model_{n}.pt" in ln] for n in (30, 40, 50, 60, 70)}
    assert all(len(lines) == 1 for lines in bad_lines.values()), bad_lines
    assert "truncated" in bad_lines[30][0]
    assert "do not match" in bad_lines[40][0] and "size mismatch" in bad_lines[40][0]
    assert "refused to unpickle" in bad_lines[50][0] and "open" in bad_lines[50][0]
    assert "'step'" in bad_lines[60][0]
    assert "list" in bad_lines[70][0]
    assert sorted(load_scores(folder).step.unique()) == STEPS


def test_tl_folder_without_config_lists_every_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "tl"
    save_tl_folder(folder)
    (folder / "config.json").unlink()
    res = analyze(folder, ["previous_token"], progress=False)
    assert sorted(Path(f.path).name for f in res.failures) == [f"model_{s}.pt" for s in STEPS]
    assert all("no config.json" in f.reason for f in res.failures)
    assert not (folder / "scores.parquet").exists()
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(folder), "-q"])
    assert exc.value.code == 1
    assert len([ln for ln in capsys.readouterr().err.splitlines() if "no config.json" in ln]) == len(STEPS)


def test_tl_config_with_bad_fields_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "tl"
    save_tl_folder(folder, steps=[0])
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "not_a_field": 1}))
    res = analyze(folder, ["previous_token"], progress=False)
    assert len(res.failures) == 1 and "not_a_field" in res.failures[0].reason


def test_load_tl_state_dict_uses_weights_only(tmp_path: Path) -> None:
    target = tmp_path / "created.txt"
    torch.save(Evil(target), tmp_path / "x.pt")
    with pytest.raises(ValueError, match="refused to unpickle"):
        load_tl_state_dict(tmp_path / "x.pt")
    assert not target.exists()


# ------------------------------------------------------------------------ Hugging Face

KEY = ["metric", "layer", "head"]


def per_step(df: pd.DataFrame, step: int) -> pd.DataFrame:
    return df[df.step == step].sort_values(KEY).reset_index(drop=True)


def save_gpt2_defaults(folder: Path, seed: int):
    """What a new user saves: GPT2Config keeps the library's bos/eos_token_id 50256."""
    import transformers

    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=256, n_positions=64, n_embd=32, n_layer=2, n_head=4))
    model.eval().save_pretrained(folder)
    return model


def test_gpt2_with_default_special_ids_is_scored(tmp_path: Path, capsys: pytest.CaptureFixture, no_network) -> None:
    """The issue's report: bos_token_id 50256 in a 256-token vocabulary crashed the probes."""
    folder = tmp_path / "my-gpt2"
    for step in (0, 100, 200):
        save_gpt2_defaults(folder / f"step{step}", seed=step)
    main(["analyze", str(folder), "-q", "-m", "induction", "-m", "copying_ov"])  # exit 0: no SystemExit
    err = capsys.readouterr().err
    assert "Traceback" not in err
    warn = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1, err
    assert str(folder / "step0" / "config.json") in warn[0] and "bos_token_id 50256 and eos_token_id 50256" in warn[0]
    assert "vocab_size 256" in warn[0] and "probes use BOS 0" in warn[0] and "2 other revisions" in warn[0]
    df = load_scores(folder)
    assert sorted(df.step.unique()) == [0, 100, 200]
    # the rows are the scores of the converted model on the default probes (BOS 0)
    model = model_from_hf_folder(folder / "step100")
    direct = scores_pkg.score_model(model, ["induction", "copying_ov"], probes=get_probes(256, 64, 0, 0, (0,)))
    np.testing.assert_allclose(per_step(df, 100).value, direct.sort_values(KEY).value, rtol=1e-6)


def test_special_ids_are_validated() -> None:
    assert config_special_ids({"bos_token_id": 5, "eos_token_id": 7, "pad_token_id": 1}, 10, "c.json") == (5, (1, 5, 7), [])
    bos, exclude, notes = config_special_ids({"bos_token_id": 50256, "eos_token_id": [3, 99]}, 10, "c.json")
    assert (bos, exclude) == (3, (3,))  # BOS invalid: the valid EOS is the probes' BOS
    assert notes == ["c.json: bos_token_id 50256 and eos_token_id [3, 99] are outside the vocabulary (vocab_size 10); ignored, probes use BOS 3"]
    assert config_special_ids({"bos_token_id": -1, "pad_token_id": True}, 10, "c.json")[:2] == (0, (0,))
    assert config_special_ids({}, 10, "c.json") == (0, (0,), [
        "c.json: names no BOS or EOS id and no tokenizer names one; the probes start with id 0 (put the tokenizer.json the model was "
        "trained with beside the checkpoint)"])


def test_a_tokenizer_beside_the_checkpoint_decides_the_bos_when_the_config_names_none(tmp_path: Path, no_network) -> None:
    """A GPT-2-layout tokenizer.json (<|endoftext|> its last id) beside a GPT-2 whose config keeps 50256 for a smaller vocabulary."""
    import transformers

    from tests.data.factories import gpt2_layout_tokenizer, word_documents

    tok = gpt2_layout_tokenizer(tmp_path / "tokenizer.json", word_documents(20))
    vocab = json.loads(tok.read_text())["added_tokens"][0]["id"] + 1
    assert config_special_ids({}, vocab, "c.json", tok) == (vocab - 1, (vocab - 1,), [])
    folder = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=4)).save_pretrained(
        folder / "step10")
    shutil.copy(tok, folder / "step10" / "tokenizer.json")
    (ckpt,) = discover(folder).checkpoints
    assert (ckpt.bos, ckpt.exclude) == (vocab - 1, (vocab - 1,))  # not 0, and not the config's out-of-range 50256
    assert (ckpt.special.kind, ckpt.special.source) == ("tokenizer", str(folder / "step10" / "tokenizer.json"))


@pytest.mark.parametrize(
    "name, step, tokens",
    [
        ("step1000", 1000, None), ("step_1000", 1000, None), ("global_step1000", 1000, None),
        ("step1000-tokens4B", 1000, 4 * 10**9), ("step20000-tokens84B", 20000, 84 * 10**9),
        ("stage1-step140000-tokens588B", 140000, 588 * 10**9), ("step5-tokens2.5M", 5, 2_500_000),
        ("step7-tokens123", 7, 123), ("checkpoint-1000", 1000, None), ("iter_0001000", 1000, None),
        ("ckpt_500.pt", 500, None), ("step300.pt", 300, None),
    ],
)
def test_revision_names(name: str, step: int, tokens) -> None:
    rev = parse_revision(name)
    assert rev is not None and (rev.step, rev.tokens) == (step, tokens)


@pytest.mark.parametrize("name", ["main", "final", "v1.0", "ckpt.pt", "model_10.pt", "steps", "checkpoint-best"])
def test_names_without_a_step(name: str) -> None:
    assert parse_revision(name) is None


def test_olmo_names_give_tokens_seen_and_trainer_folders_read(tmp_path: Path, no_network) -> None:
    olmo = tmp_path / "olmo"
    for step, tok in ((0, 0), (1000, 4), (2000, 8)):
        save_tiny(olmo / f"step{step}-tokens{tok}B", "olmo2", seed=step)
    folder = discover(olmo)
    assert [(c.step, c.tokens_seen) for c in folder.checkpoints] == [(0, 0), (1000, 4 * 10**9), (2000, 8 * 10**9)]
    assert [c.tokens_seen for c in discover(olmo, tokens_per_step=4_194_304).checkpoints] == [0, 4_194_304_000, 8_388_608_000]

    trainer = tmp_path / "trainer-out"
    for step in (500, 1000):
        save_tiny(trainer / f"checkpoint-{step}", "llama", seed=step)
        (trainer / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        torch.save({"state": {}}, trainer / f"checkpoint-{step}" / "optimizer.pt")
    (trainer / "runs").mkdir()
    res = analyze(trainer, ["induction"], progress=False)
    assert res.ok and res.kind == "huggingface" and sorted(load_scores(trainer).step.unique()) == [500, 1000]

    # one checkpoint folder on its own: step from its name, else from trainer_state.json
    res = analyze(trainer / "checkpoint-500", ["induction"], out=tmp_path / "one", progress=False)
    assert res.ok and load_scores(tmp_path / "one").step.unique().tolist() == [500]
    shutil.copytree(trainer / "checkpoint-1000", tmp_path / "final")
    analyze(tmp_path / "final", ["induction"], progress=False)
    assert load_scores(tmp_path / "final").step.unique().tolist() == [1000]
    (tmp_path / "final" / "trainer_state.json").unlink()
    res = analyze(tmp_path / "final", ["induction"], progress=False, force=True)
    assert len(res.failures) == 1 and "gives no step" in res.failures[0].reason


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_scores_as_its_own_attention(tmp_path: Path, arch: str, no_network) -> None:
    """Attention scores of the converted model equal the same scores computed on the
    transformers model's own attention probabilities (grouped-query heads, local windows,
    parallel and post-norm blocks included); weight scores run."""
    hf = save_tiny(tmp_path / "run" / "step10", arch, seed=3, attn_implementation="eager")
    metrics = ["previous_token", "induction", "prefix_matching", "copying_ov", "copying_top1", "k_composition"]
    res = analyze(tmp_path / "run", metrics, progress=False)
    assert res.ok, res.failures
    df = load_scores(tmp_path / "run")
    ckpt = discover(tmp_path / "run").checkpoints[0]
    probes = get_probes(hf.config.vocab_size, model_from_hf_folder(tmp_path / "run" / "step10").cfg.n_ctx, 0, ckpt.bos, ckpt.exclude)
    with torch.no_grad():
        patterns = hf(probes.tokens, output_attentions=True).attentions
    for metric in ("previous_token", "induction", "prefix_matching"):
        expected = torch.stack([REGISTRY[metric].fn(p, probes) for p in patterns])  # [layer, head]
        got = df[df.metric == metric].sort_values(["layer", "head"]).value.to_numpy()
        np.testing.assert_allclose(got, expected.flatten().numpy(), atol=1e-5)
    assert set(df.metric) == set(metrics) and df.value.notna().all()


# ------------------------------------------------------------------------------ nanoGPT


def nanogpt_layouts(root: Path) -> dict[str, dict[int, torch.nn.Module]]:
    """The three ways nanoGPT output is kept: one ckpt.pt, several files, one per folder."""
    refs: dict[str, dict[int, torch.nn.Module]] = {"single": {}, "files": {}, "folders": {}}
    ref, ckpt = nanogpt_checkpoint(seed=0, iter_num=5000, compiled=True)
    (root / "single").mkdir(parents=True)
    torch.save(ckpt, root / "single" / "ckpt.pt")
    refs["single"][5000] = ref
    for it in (0, 250, 500):
        ref, ckpt = nanogpt_checkpoint(seed=it + 1, iter_num=it, bias=False)
        (root / "files").mkdir(exist_ok=True)
        torch.save(ckpt, root / "files" / f"ckpt_{it}.pt")
        refs["files"][it] = ref
        (root / "folders" / f"iter_{it:07d}").mkdir(parents=True)
        torch.save(ckpt, root / "folders" / f"iter_{it:07d}" / "ckpt.pt")
        refs["folders"][it] = ref
    return refs


def test_nanogpt_layouts(tmp_path: Path, no_network) -> None:
    refs = nanogpt_layouts(tmp_path)
    metrics = ["previous_token", "induction", "copying_ov"]
    for layout, models in refs.items():
        res = analyze(tmp_path / layout, metrics, progress=False)
        assert res.ok and res.kind == "nanogpt", (layout, res.failures)
        df = load_scores(tmp_path / layout)
        assert sorted(df.step.unique()) == sorted(models), layout
        step = max(models)
        folder = discover(tmp_path / layout)
        converted = folder.load_model(next(c for c in folder.checkpoints if c.step == step))
        x = torch.randint(0, 96, (2, 64), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(converted(x), models[step](x), atol=1e-4, rtol=1e-4)
        direct = scores_pkg.score_model(converted, metrics)
        np.testing.assert_allclose(per_step(df, step).value, direct.sort_values(KEY).value, rtol=1e-6)


def test_nanogpt_pickle_with_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, ckpt = nanogpt_checkpoint(iter_num=10)
    folder = tmp_path / "out"
    (folder / "step10").mkdir(parents=True)
    torch.save(ckpt, folder / "step10" / "ckpt.pt")
    target = tmp_path / "pwned.txt"
    (folder / "step20").mkdir()
    torch.save({**ckpt, "iter_num": 20, "config": Evil(target)}, folder / "step20" / "ckpt.pt")
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(folder), "-q", "-m", "induction"])
    assert exc.value.code == 1 and not target.exists()
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "step20" in ln]
    assert len(lines) == 1 and "refused to unpickle" in lines[0]
    assert sorted(load_scores(folder).step.unique()) == [10]


# ---------------------------------------------------------------------------- duplicates


def test_duplicate_revisions_are_named(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "pythia-tiny"
    for step in (0, 1000, 2000):
        save_tiny(folder / f"step{step}", "gpt_neox", seed=step)
    final = save_tiny(folder / "step3000", "gpt_neox", seed=3000)
    shutil.rmtree(folder / "step1000")
    save_as_bin(final, folder / "step1000")  # the same weights as step3000, as a pickled .bin
    shutil.copytree(folder / "step3000", folder / "step4000")  # byte-identical copy

    main(["analyze", str(folder), "-q", "-m", "induction"])
    err = capsys.readouterr().err
    dup = [ln for ln in err.splitlines() if ln.startswith("duplicate:")]
    assert dup == [
        "duplicate: revision step3000 has the same weights as step1000 (equal tensor hashes); one of them is probably mislabelled",
        "duplicate: revision step4000 has the same weights as step1000 (equal tensor hashes); one of them is probably mislabelled",
    ]
    df = load_scores(folder)
    assert df.groupby("step").duplicate_of.first().fillna("-").to_dict() == {0: "-", 1000: "-", 2000: "-", 3000: "step1000", 4000: "step1000"}
    np.testing.assert_allclose(per_step(df, 3000).value, per_step(df, 1000).value)

    # a re-run reads the digests from the cache instead of the weights again
    import repeatlens.foreign.folder as foreign_mod  # where ForeignFolder.duplicates looks it up

    calls = []
    monkeypatch.setattr(foreign_mod, "weights_digest", lambda *a, **k: calls.append(a) or "x")
    assert discover(folder).duplicates() == {"step3000": "step1000", "step4000": "step1000"} and calls == []


def test_weights_digest_ignores_the_file_format(tmp_path: Path) -> None:
    model = save_tiny(tmp_path / "a", "gpt2", seed=0)
    save_as_bin(model, tmp_path / "b")
    other = save_tiny(tmp_path / "c", "gpt2", seed=1)
    a = weights_digest([tmp_path / "a" / "model.safetensors"])
    assert a == weights_digest([tmp_path / "b" / "pytorch_model.bin"])
    assert a != weights_digest([tmp_path / "c" / "model.safetensors"])
    with torch.no_grad():
        other.transformer.h[0].ln_1.bias[3] += 1e-3  # one element of one tensor
    other.save_pretrained(tmp_path / "d")
    assert weights_digest([tmp_path / "c" / "model.safetensors"]) != weights_digest([tmp_path / "d" / "model.safetensors"])


# ---------------------------------------------------------------------------- bad input


def test_bad_revisions_are_named_and_the_good_ones_scored(tmp_path: Path, capsys: pytest.CaptureFixture, no_network) -> None:
    folder = tmp_path / "mixed"
    for step in (0, 1000, 2000):
        save_tiny(folder / f"step{step}", "gpt_neox", seed=step)
    save_tiny(folder / "step3000", "gpt2", seed=1)  # another architecture
    save_tiny(folder / "step4000", "gpt_neox", seed=4)  # its config disagrees with its weights
    cfg = json.loads((folder / "step4000" / "config.json").read_text())
    (folder / "step4000" / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 64}))
    sharded = save_tiny(tmp_path / "tmp", "gpt_neox", seed=5)
    sharded.save_pretrained(folder / "step5000", max_shard_size="20KB")  # sharded, then one shard lost
    shards = sorted((folder / "step5000").glob("model-*.safetensors"))
    assert len(shards) > 2
    shards[1].unlink()
    import transformers

    transformers.Gemma2ForCausalLM(transformers.Gemma2Config(
        vocab_size=96, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
    )).save_pretrained(folder / "step6000")  # an unsupported architecture
    w = folder / "step7000"
    save_tiny(w, "gpt_neox", seed=7)
    (w / "model.safetensors").write_bytes((w / "model.safetensors").read_bytes()[:300])  # truncated
    save_tiny(folder / "checkpoint-1000", "gpt_neox", seed=8)  # a second revision claiming step 1000
    (folder / "iter_0008000").mkdir()  # Megatron's layout: no config.json
    (folder / "iter_0008000" / "mp_rank_00").mkdir()

    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(folder), "-q", "-m", "induction", "-m", "copying_ov", "--tokens-per-step", "2097152"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err

    def line(name: str) -> str:
        found = [ln for ln in err.splitlines() if f"{folder / name}" in ln and not ln.startswith("warning")]
        assert len(found) == 1, (name, err)
        return found[0]

    assert "GPT2LMHeadModel (2 layers, d_model 32" in line("step3000") and "differs from the other revisions' GPTNeoXForCausalLM" in line("step3000")
    assert "config.json disagrees with the weights" in line("step4000") and "mlp" in line("step4000")
    assert "missing shard " + shards[1].name in line("step5000")
    assert "Gemma2ForCausalLM is not supported" in line("step6000")
    assert "unreadable Hugging Face weights" in line("step7000")
    same = [ln for ln in err.splitlines() if "step 1000 is also revision" in ln]
    assert len(same) == 1 and "checkpoint-1000" in same[0] and f"{folder / 'step1000'}" in same[0]
    assert "no config.json" in line("iter_0008000")
    df = load_scores(folder)
    assert sorted(df.step.unique()) == [0, 1000, 2000]
    assert df[df.step == 2000].tokens_seen.iloc[0] == 2000 * 2_097_152


def test_device_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "tl"
    save_tl_folder(folder, steps=[0])
    main(["analyze", str(folder), "-q", "-m", "induction", "--device", "auto"])  # CUDA, MPS or the CPU: whatever is here
    assert len(load_scores(folder)) == 2 * 2  # 2 layers x 2 heads
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as exc:
            main(["analyze", str(folder), "-q", "-m", "induction", "--device", "cuda", "--force"])
        assert exc.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == "error: --device 'cuda': CUDA is not available on this machine; expected auto or cpu"
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(folder), "-q", "--device", "tpu"])
    assert exc.value.code == 2 and "expected auto, cpu, cuda, cuda:N or mps" in capsys.readouterr().err


# ----------------------------------------------------------------- what the table records


def test_tables_record_the_probe_ids_and_the_axis(tmp_path: Path, capsys: pytest.CaptureFixture, no_network) -> None:
    """The probes' BOS, excluded ids and their source, and whether tokens_seen counts tokens,
    are in the table's metadata, printed by analyze and info; without a token count the CLI
    says once how to give one."""
    from repeatlens.data.special import SpecialIds
    from repeatlens.results.store import table_runs

    folder = tmp_path / "gpt2-run"
    for step in (0, 10):
        save_tiny(folder / f"step{step}", "gpt2", seed=step)  # bos_token_id = eos_token_id = 0
    main(["analyze", str(folder), "-q", "-m", "induction"])
    out = capsys.readouterr()
    source = f"from the config: {folder / 'step0' / 'config.json'} bos_token_id"
    assert f"probe BOS 0, special ids excluded [0] ({source})" in out.out
    notes = [ln for ln in out.err.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "--tokens-per-step N" in notes[0] and "plot against the step" in notes[0]
    recorded = table_runs(folder)["gpt2-run"]
    assert recorded["axis"] == {"x": "step", "tokens_from": "unknown"} and recorded["source"] == "huggingface"
    assert SpecialIds.from_record(recorded["probe_ids"]) == SpecialIds(0, (0,), source=f"{folder / 'step0' / 'config.json'} bos_token_id", kind="config")
    df = load_scores(folder)
    assert df.attrs["runs"]["gpt2-run"]["axis"]["x"] == "step" and (df.tokens_seen == df.step).all()

    main(["analyze", str(folder), "-q", "-m", "induction", "--tokens-per-step", "4096", "--force"])
    out = capsys.readouterr()
    assert "note:" not in out.err and "x-axis tokens seen (from --tokens-per-step 4096)" in out.out
    assert table_runs(folder)["gpt2-run"]["axis"] == {"x": "tokens_seen", "tokens_from": "--tokens-per-step 4096"}
    assert sorted(load_scores(folder).tokens_seen.unique()) == [0, 40960]

    main(["info", str(folder)])
    info = capsys.readouterr().out
    assert f"special    probe BOS 0, special ids excluded [0] ({source}, and 1 other revision alike)" in info
    assert "gpt2-run: probe BOS 0" in info and "x-axis tokens seen (from --tokens-per-step 4096)" in info


def test_where_the_special_ids_and_token_counts_come_from(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # a nanoGPT checkpoint names no special id, and no tokenizer.json beside it does: id 0, saying what to add (no 50256 guess)
    _, ckpt = nanogpt_checkpoint(iter_num=100, vocab_size=50304, n_embd=16, n_head=2, n_layer=1, block_size=16)
    (tmp_path / "nano").mkdir()
    torch.save(ckpt, tmp_path / "nano" / "ckpt.pt")
    ids = discover(tmp_path / "nano").checkpoints[0].special
    assert (ids.bos, ids.special, ids.kind) == (0, (0,), "default") and "no tokenizer.json beside it names a BOS" in ids.source
    # a config whose special ids are outside the vocabulary: the default, saying so
    save_gpt2_defaults(tmp_path / "defaults" / "step0", seed=0)
    ids = discover(tmp_path / "defaults").checkpoints[0].special
    assert (ids.bos, ids.kind) == (0, "default") and "names no bos_token_id or eos_token_id inside the vocabulary" in ids.source
    # the EOS when the config has no valid BOS
    save_tiny(tmp_path / "eos" / "step0", "llama", seed=0, bos_token_id=None)
    ids = discover(tmp_path / "eos").checkpoints[0].special
    assert (ids.bos, ids.special, ids.kind) == (2, (0, 2), "config") and ids.source.endswith("eos_token_id")
    # a TransformerLens folder names none
    save_tl_folder(tmp_path / "tl", steps=[0])
    assert discover(tmp_path / "tl").checkpoints[0].special.kind == "default"

    # tokens seen from a Trainer's trainer_state.json, when it counted them; else unknown
    trainer = tmp_path / "trainer"
    for step in (500, 1000):
        save_tiny(trainer / f"checkpoint-{step}", "llama", seed=step)
        (trainer / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step, "num_input_tokens_seen": step * 2048}))
    folder = discover(trainer)
    assert [(c.tokens_seen, c.tokens_from) for c in folder.checkpoints] == [(500 * 2048, "trainer_state.json num_input_tokens_seen"),
                                                                              (1000 * 2048, "trainer_state.json num_input_tokens_seen")]
    assert folder.axis() == {"x": "tokens_seen", "tokens_from": "trainer_state.json num_input_tokens_seen"} and not folder.warnings
    (trainer / "checkpoint-1000" / "trainer_state.json").write_text(json.dumps({"global_step": 1000, "num_input_tokens_seen": 0}))
    folder = discover(trainer)
    assert folder.axis() == {"x": "step", "tokens_from": "unknown"} and folder.checkpoints[1].tokens_seen == 1000
    assert len(folder.warnings) == 1 and "tokens seen are known for 1 of 2 revisions (not for checkpoint-1000)" in folder.warnings[0]
    assert [c.tokens_from for c in discover(trainer, tokens_per_step=10).checkpoints] == ["--tokens-per-step 10"] * 2
