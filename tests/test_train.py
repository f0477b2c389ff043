"""Training and run directories: round trip, exact resume, health checks, learning."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from repeatlens.checkpoints import RunDir, load_run
from repeatlens.errors import CheckpointError, ConfigError
from repeatlens.train import TrainingError, train
from tests.conftest import tiny_config


def test_run_directory_layout_and_checkpoint_schedule(tmp_path) -> None:
    cfg = tiny_config()
    run = train(cfg, tmp_path / "run")
    assert run.is_complete()
    for name in ("config.yaml", "manifest.json", "metrics.parquet", "data/rows.npy", "data/is_synthetic.npy", "data/schedule.npy", "complete.json"):
        assert (run.path / name).is_file(), name
    man = run.manifest()
    steps = [c.step for c in run.checkpoints()]
    assert steps == man.checkpoint_steps == cfg.train.checkpoints.steps(man.total_steps)
    assert steps[0] == 0 and steps[-1] == man.total_steps == 12  # 96 sequences / batch 8
    side = run.checkpoints()[-1].sidecar
    assert side["tokens_seen"] == 96 * 32 and len(side["sha256"]) == 64 and "torch" in side["versions"]
    met = run.metrics()
    assert set(met.split) == {"train", "test", "repeated"}
    assert sorted(met[met.split == "test"].step.unique().tolist()) == steps
    done = json.loads((run.path / "complete.json").read_text())
    assert done["tokens_seen"] == 96 * 32 and 0 < done["first_step_seconds"] < done["seconds"]
    # steady rate = the 11 steps after the first, over their time
    expected = 11 * 8 * 32 / (done["seconds"] - done["first_step_seconds"])
    assert done["steady_tokens_per_s"] == pytest.approx(expected)


def test_checkpoint_schedule_is_log_plus_linear() -> None:
    from repeatlens.config import CheckpointSchedule

    s = CheckpointSchedule(log_count=5, every=250).steps(1000)
    assert s == [0, 1, 6, 32, 178, 250, 500, 750, 1000]


def test_model_rebuilt_from_run_dir_gives_bit_identical_logits(tmp_path) -> None:
    cfg = tiny_config()
    run = train(cfg, tmp_path / "run")
    tokens = torch.from_numpy(run.test_tokens()[:4].astype(np.int64))
    for step in (5, 12):
        m1 = run.load_model(step)
        m2 = load_run(tmp_path / "run").load_model(step)
        assert torch.equal(m1(tokens), m2(tokens))
    # and the saved weights are those the trainer ended with: same as retraining from scratch
    again = train(cfg, tmp_path / "again")
    assert torch.equal(run.load_model()(tokens), again.load_model()(tokens))


def test_resume_after_interruption_is_bit_identical(tmp_path) -> None:
    cfg = tiny_config()
    full = train(cfg, tmp_path / "full")
    part = train(cfg, tmp_path / "part", stop_after=7)  # stops between checkpoints 5 and 10
    assert not part.is_complete()
    resumed = train(cfg, tmp_path / "part")
    assert resumed.is_complete()
    a, b = full.checkpoints()[-1].load_state_dict(), resumed.checkpoints()[-1].load_state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = full.metrics(), resumed.metrics()
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)  # NaN-aware (loss_se is NaN on train rows)
    assert ma["loss_se"].isna().sum() == (ma["split"] == "train").sum()


def test_rerun_of_finished_run_does_nothing(tmp_path) -> None:
    run = train(tiny_config(), tmp_path / "run")
    stamp = run.complete_path.stat().st_mtime_ns
    train(tiny_config(), tmp_path / "run")
    assert run.complete_path.stat().st_mtime_ns == stamp


def test_run_dir_written_by_another_config_is_refused(tmp_path) -> None:
    train(tiny_config(), tmp_path / "run")
    with pytest.raises(ConfigError, match=r"different config \(train.lr = 0.001 there, 0.002 now\)"):
        train(tiny_config(train={"lr": 2e-3}), tmp_path / "run")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path) -> None:
    with pytest.raises(TrainingError, match=r"(loss became (nan|inf)|weights became non-finite) at step \d+; stopped, last good checkpoint is step \d+"):
        train(tiny_config(train={"lr": 10, "weight_decay": 10, "warmup_steps": 0, "grad_clip": None}), tmp_path / "run")  # the largest allowed
    run = RunDir(tmp_path / "run")
    assert not run.is_complete()
    last = run.checkpoints()[-1].load_state_dict()
    params = {k: v for k, v in last.items() if not k.endswith((".IGNORE", ".mask"))}  # IGNORE is -inf by design
    assert params and all(torch.isfinite(t).all() for t in params.values())


def test_corrupted_checkpoint_is_detected(tmp_path) -> None:
    run = train(tiny_config(), tmp_path / "run")
    path = run.checkpoints()[-1].weights_path
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"step_0000012.safetensors: sha256 does not match its sidecar"):
        run.load_model()


def test_iter_models_is_lazy(tmp_path) -> None:
    run = train(tiny_config(), tmp_path / "run")
    it = run.iter_models()
    info, model = next(it)
    assert info.step == 0 and model.cfg.d_vocab == 64
    assert [i.step for i, _ in it] == [c.step for c in run.checkpoints()][1:]


def test_wandb_offline_logging(tmp_path, monkeypatch) -> None:
    wandb = pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = train(tiny_config(train={"wandb": {"enabled": True, "mode": "offline", "project": "t"}}), tmp_path / "run")
    logs = list((run.path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(logs) == 1 and logs[0].stat().st_size > 0
    assert wandb.run is None  # finished


def test_a_second_trainer_on_the_same_run_is_refused_and_the_lock_is_released(tmp_path) -> None:
    """One trainer per run directory: while another process holds the run's train lock,
    ``train`` refuses at once with a one-line error (and deletes nothing of the holder's)."""
    from repeatlens.errors import LockTimeout
    from repeatlens.io import file_lock
    from repeatlens.train import TRAIN_LOCK

    cfg = tiny_config()
    run = train(cfg, tmp_path / "run", stop_after=3)  # an unfinished run to resume
    holder_tmp = run.path / ".step_0000009.safetensors.abc.tmp"  # a write in progress by the holder
    with file_lock(run.path / TRAIN_LOCK):
        holder_tmp.write_bytes(b"partial")
        with pytest.raises(LockTimeout, match=r"run: another process is training this run already; wait for it or stop it"):
            train(cfg, run.path)
        assert holder_tmp.exists()  # the refused trainer did not clean up the holder's temporaries
    holder_tmp.unlink()
    assert train(cfg, run.path).is_complete()  # once released, training resumes and finishes
    assert train(cfg, run.path).is_complete()  # and a finished run is a no-op, lock and all


def test_a_mixed_run_evaluates_natural_text_and_synthetic_sequences_separately(tmp_path) -> None:
    """Splits test_text / test_synthetic (and repeated_*) each read only their kind of row."""
    from repeatlens.train import eval_loss

    cfg = tiny_config(
        data={"source": "shakespeare", "vocab_size": 300, "seq_len": 32, "synthetic_fraction": 0.5, "test_sequences": 16,
              "synthetic": {"token_ids": 20}},
        mixture={"total_tokens": 32 * 8 * 6, "repeated_fraction": 0.5, "repeat_count": 2},
    )
    run = train(cfg, tmp_path / "mix")
    met = run.metrics()
    assert set(met.split) == {"train", "test", "test_text", "test_synthetic", "repeated", "repeated_text", "repeated_synthetic"}
    man = run.manifest()
    kinds, pool = run.is_synthetic(), run.pool()
    low, high = man.synthetic_ids
    assert (low, high) == (1, 21)
    body = np.asarray(pool)[:, 1:]
    in_range = ((body >= low) & (body < high)).all(axis=1)
    assert np.array_equal(in_range, kinds)  # synthetic rows draw only from [1, 21); text rows never fit that range
    assert kinds[: man.n_test].sum() == 8 and kinds.sum() == man.n_synthetic
    model = run.load_model(0, tokenizer=False)
    n_test = man.n_test
    step0 = met[met.step == 0].set_index("split").loss
    text_rows = np.asarray(pool[:n_test])[~kinds[:n_test]]
    syn_rows = np.asarray(pool[:n_test])[kinds[:n_test]]
    assert step0["test_text"] == pytest.approx(eval_loss(model, text_rows, 8, "cpu"), rel=1e-6)
    assert step0["test_synthetic"] == pytest.approx(eval_loss(model, syn_rows, 8, "cpu"), rel=1e-6)
    n = cfg.train.eval_sequences  # 8: the plain split reads the first 8 test rows, each kind its first 8
    assert len(text_rows) == len(syn_rows) == n
    assert step0["test"] == pytest.approx(eval_loss(model, np.asarray(pool[:n]), 8, "cpu"), rel=1e-6)
    # loss_se: the standard error of the per-sequence mean losses, recomputed by hand
    from repeatlens import model as adapter
    from repeatlens.losses import token_losses

    with torch.no_grad():
        t = torch.from_numpy(text_rows.astype(np.int64))
        per_seq = token_losses(adapter.logits(model, t), t).double().mean(dim=1).numpy()
    se0 = met[met.step == 0].set_index("split").loss_se
    assert se0["test_text"] == pytest.approx(per_seq.std(ddof=1) / np.sqrt(len(per_seq)), rel=1e-5)
    assert per_seq.mean() == pytest.approx(step0["test_text"], rel=1e-6) and met[met.split == "train"].loss_se.isna().all()
    # a run without a synthetic share has only the plain splits
    assert set(train(tiny_config(), tmp_path / "plain").metrics().split) == {"train", "test", "repeated"}


# ------------------------------------------------------------ issue 26: the run directory as a contract


def _files(path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")}


def test_the_train_lock_is_taken_before_anything_is_written(tmp_path) -> None:
    """Issue 26, case 1 (deterministically): while another process holds a new run's train
    lock, ``train`` writes nothing at all into it (prepare_run ran before the lock was taken)."""
    from repeatlens.errors import LockTimeout
    from repeatlens.io import file_lock
    from repeatlens.train import TRAIN_LOCK

    out = tmp_path / "run"
    out.mkdir()
    with file_lock(out / TRAIN_LOCK):
        with pytest.raises(LockTimeout, match="another process is training this run already"):
            train(tiny_config(seed=1), out)
        assert [p.name for p in out.iterdir()] == [TRAIN_LOCK]


def test_a_trainer_that_finishes_while_another_draws_its_data_wins_and_the_run_agrees_with_itself(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26, case 1: ``train C --out D --set seed=0 & train C --out D --set seed=1`` left
    config and manifest of one seed with the other seed's step-0 weights (3 trials of 3).

    The interleaving made explicit: trainer 1 (seed 1) runs to the end while trainer 0
    (seed 0) is still drawing its data. Before, trainer 0 then wrote seed 0's config, manifest
    and pool over the finished seed-1 run and exited 0; now it finds a run of another config
    under the lock and is refused, and the run is seed 1's throughout."""
    import repeatlens.train as train_mod
    from repeatlens import model as adapter
    from repeatlens.verify import verify_run

    out = tmp_path / "run"
    draw = train_mod.load_corpus

    def slow_draw(*args, **kwargs):
        monkeypatch.setattr(train_mod, "load_corpus", draw)
        train(tiny_config(seed=1), out)  # the other process, start to finish
        return draw(*args, **kwargs)

    monkeypatch.setattr(train_mod, "load_corpus", slow_draw)
    with pytest.raises(ConfigError, match=r"run: run directory was written by a different config \(seed = 1 there, 0 now\)"):
        train(tiny_config(seed=0), out)
    run = load_run(out)
    assert run.config().seed == run.manifest().seeds["seed"] == 1
    model = adapter.build_model(run.config().model, d_vocab=run.manifest().vocab_size, device="cpu", seed=1)
    saved = run.checkpoint(0).load_state_dict()
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items() if k in saved)
    assert verify_run(out).ok


def test_a_lost_config_and_a_retrain_never_rewrite_the_runs_data(tmp_path) -> None:
    """Issue 26, case 2: ``rm RUN/config.yaml; train C --out RUN --set seed=1`` rewrote the pool,
    schedule and manifest and kept the old checkpoints and complete.json."""
    run = train(tiny_config(), tmp_path / "run")
    run.config_path.unlink()
    before = _files(run.path)
    with pytest.raises(CheckpointError, match=r"run/config\.yaml: missing, but the run directory holds complete\.json, "
                                              r"metrics\.parquet, 6 checkpoint\(s\); its data is not rewritten"):
        train(tiny_config(seed=1), run.path)
    assert _files(run.path) == before


def test_resume_refuses_a_pool_edited_since_the_run_was_written(tmp_path) -> None:
    """Issue 26, case 3: edited ids in an interrupted run's data/pool.npy (now its row
    references, data/rows.npy) were trained on to the end."""
    cfg = tiny_config()
    run = train(cfg, tmp_path / "run", stop_after=3)
    rows = np.load(run.rows_path)
    rows[:] = rows[0]  # every training row the same: an easy, different dataset
    np.save(run.rows_path, rows)
    before = _files(run.path)
    with pytest.raises(CheckpointError, match=r"run/data/rows\.npy: sha256 does not match manifest\.json"):
        train(cfg, run.path)
    assert _files(run.path) == before and not run.is_complete()


def test_a_failed_set_up_leaves_no_directory_and_a_lost_out_parent_is_created(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails while a new run is set up removes the directory it created (the
    fixed config then trains there); an existing folder's other files are refused, untouched."""
    import repeatlens.train as train_mod
    from repeatlens.errors import WriteError

    def full_disk(path, text):
        raise WriteError(f"{path}: could not be written (No space left on device)")

    monkeypatch.setattr(train_mod, "atomic_write_text", full_disk)
    with pytest.raises(WriteError):
        train(tiny_config(), tmp_path / "a" / "run")
    assert not (tmp_path / "a" / "run").exists()
    monkeypatch.undo()
    assert train(tiny_config(), tmp_path / "a" / "run").is_complete()
    from repeatlens.train import prepare_run

    unstarted = prepare_run(tiny_config(train={"lr": 3e-3}), tmp_path / "unstarted", progress=False)  # set up, never trained
    assert train(tiny_config(), unstarted.path).config().train.lr == 1e-3  # set up again for the fixed config, not blocked by it
    assert load_run(unstarted.path).is_complete()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    with pytest.raises(CheckpointError, match=r"notes: directory exists and holds files that are not a repeatlens run's \(mine\.txt\)"):
        train(tiny_config(), tmp_path / "notes")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep"
@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_run_trains_on_cuda_and_resumes_bit_identically(tmp_path, precision: str) -> None:
    """Device placement, autocast on CUDA, the CUDA RNG state saved and restored, TF32 set only while training."""
    cfg = tiny_config(train={"device": "cuda", "precision": precision})
    tf32_before = torch.backends.cuda.matmul.allow_tf32
    full = train(cfg, tmp_path / "full")
    assert torch.backends.cuda.matmul.allow_tf32 == tf32_before
    train(cfg, tmp_path / "part", stop_after=7)
    resumed = train(cfg, tmp_path / "part")
    a, b = full.checkpoints()[-1].load_state_dict(), resumed.checkpoints()[-1].load_state_dict()
    assert all(v.device.type == "cpu" and (not v.is_floating_point() or v.dtype == torch.float32) for v in a.values())
    assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(full.metrics(), resumed.metrics(), check_exact=True)  # NaN (train rows' loss_se) equal to NaN
    side = full.checkpoints()[-1].sidecar
    assert side["environment"]["device"] == "cuda" and side["environment"]["deterministic"]
    from repeatlens.checkpoints import load_train_state

    assert "rng.cuda" in load_train_state(full.checkpoints()[-1])[0]
    # the CPU loads what the GPU trained
    tokens = torch.from_numpy(full.test_tokens()[:2].astype(np.int64))
    torch.testing.assert_close(full.load_model(device="cpu")(tokens), full.load_model(device="cuda")(tokens.cuda()).cpu(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("data", [{}, {"source": "shakespeare", "vocab_size": 300, "synthetic_fraction": 0.5}])
def test_the_memory_check_counts_drawing_the_synthetic_rows(tmp_path, monkeypatch: pytest.MonkeyPatch, data) -> None:
    """A synthetic-only run (data.source: synthetic, whose synthetic_fraction stays 0) and a mix both count
    their synthetic rows and the draws behind them (9 bytes a token: int64 draws and a copy mask) before
    anything is drawn: a fuzzed 2**31-token synthetic run once passed the check and was killed by the
    out-of-memory killer while drawing."""
    import repeatlens.train as train_mod
    from repeatlens.data.mixture import plan_mixture
    from repeatlens.data.synthetic import GENERATION_BYTES_PER_TOKEN
    from repeatlens.errors import ResourceError

    cfg = tiny_config(data=data, mixture={"total_tokens": 32 * 2**18})
    plan = plan_mixture(cfg.mixture, cfg.data.seq_len)
    rows = plan.n_repeated + plan.n_unique + cfg.data.test_sequences
    drawing = int(rows * cfg.data.synthetic_share) * cfg.data.seq_len * GENERATION_BYTES_PER_TOKEN
    budget = 2**24 + 2**23
    assert drawing > budget  # alone over the budget below
    monkeypatch.setattr(train_mod, "_host_memory", lambda: budget)
    with pytest.raises(ResourceError, match=rf"drawing the synthetic rows \(data.synthetic_fraction, data.seq_len\): {drawing / 2**30:,.1f} GiB"):
        train_mod.check_memory(cfg, plan, 300 if data else cfg.data.synthetic.vocab_size)
    with pytest.raises(ResourceError, match="drawing the synthetic rows"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_synthetic_rows_are_the_ids_of_one_int64_draw() -> None:
    """The in-place lookup draws the same rows as indexing ``ids`` with the draw, as the
    generator did before (the rows every run written before it recorded by sha256): against
    that code, re-implemented here."""
    from repeatlens.config import SyntheticConfig
    from repeatlens.data.synthetic import synthetic_sequences

    def before(n: int, seq_len: int, cfg: SyntheticConfig, ids: np.ndarray, bos: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        tokens = ids[rng.integers(0, len(ids), size=(n, seq_len), dtype=np.int64)]
        tokens[:, 0] = bos
        for i in range(n):
            pos = 1 + int(rng.integers(0, ((seq_len - 1) // 4 if cfg.max_prefix is None else cfg.max_prefix) + 1))
            while pos < seq_len - cfg.min_len:
                length = int(rng.integers(cfg.min_len, cfg.max_len + 1))
                reps = int(rng.integers(cfg.min_repeats, cfg.max_repeats + 1))
                seg = tokens[i, pos : pos + length].copy()
                end = min(pos + length * reps, seq_len)
                tokens[i, pos:end] = np.resize(seg, end - pos)
                pos = end + int(rng.integers(0, cfg.max_gap + 1))
        return tokens

    ids = np.array([3, 5, 8, 13, 21, 34, 55])
    for cfg, seed in ((SyntheticConfig(vocab_size=64, min_len=2, max_len=5), 7), (SyntheticConfig(vocab_size=64, max_gap=3), 1)):
        tokens, _ = synthetic_sequences(40, 24, cfg, ids=ids, bos=1, seed=seed, dtype=np.dtype(np.int64))
        assert np.array_equal(tokens, before(40, 24, cfg, ids, 1, seed))
