"""Other people's checkpoints, offline: TransformerLens model_{step}.pt folders and
Hugging Face GPT-2 / GPT-NeoX step folders (tiny random models built here)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from repeatlens import scores as scores_pkg
from repeatlens.analysis import analyze
from repeatlens.results.schema import SCORE_COLUMNS as COLUMNS
from repeatlens.results.store import load_scores
from repeatlens.cli import main
from repeatlens.foreign import discover, load_tl_state_dict
from repeatlens.model import ModelConfig, build_model, hooked_config, model_from_hf_folder

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


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


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
    assert list(df.columns) == COLUMNS
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


def save_hf(folder: Path, arch: str, seed: int):
    import transformers

    torch.manual_seed(seed)
    if arch == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
        model = transformers.GPT2LMHeadModel(cfg)
    else:
        cfg = transformers.GPTNeoXConfig(
            vocab_size=64, max_position_embeddings=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, rotary_pct=0.25, bos_token_id=0, eos_token_id=0,
        )
        model = transformers.GPTNeoXForCausalLM(cfg)
    model.eval().save_pretrained(folder)
    return model


@pytest.mark.parametrize("arch", ["gpt2", "neox"])
def test_hf_checkpoint_converts_exactly_offline(tmp_path: Path, arch: str, no_network) -> None:
    hf = save_hf(tmp_path / "step100", arch, seed=1)
    tl = model_from_hf_folder(tmp_path / "step100")
    x = torch.randint(0, 64, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(tl(x), hf(x).logits, rtol=1e-4, atol=1e-5)


def test_hf_step_folders_with_bad_revisions(tmp_path: Path, capsys: pytest.CaptureFixture, no_network) -> None:
    pythia = tmp_path / "pythia-tiny"
    for step in (0, 1000, 2000):
        save_hf(pythia / f"step{step}", "neox", seed=step)
    broken = pythia / "step3000"
    save_hf(broken, "neox", seed=3)
    w = broken / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    (pythia / "step4000").mkdir()  # no config, no weights

    folder = discover(pythia, tokens_per_step=2_097_152)
    assert folder.kind == "huggingface" and [c.step for c in folder.checkpoints] == [0, 1000, 2000, 3000]
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(pythia), "-q", "-m", "induction", "-m", "copying_ov", "--tokens-per-step", "2097152"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if str(broken) in ln]) == 1
    assert len([ln for ln in err.splitlines() if str(pythia / "step4000") in ln]) == 1
    df = load_scores(pythia)
    assert sorted(df.step.unique()) == [0, 1000, 2000]
    assert df[df.step == 2000].tokens_seen.iloc[0] == 2000 * 2_097_152
    assert set(df.metric) == {"induction", "copying_ov"}
