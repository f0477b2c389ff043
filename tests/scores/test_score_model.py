"""score_model: registry, tidy schema, one forward pass, probes reuse, chance levels."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from repeatlens.errors import ConfigError
from repeatlens.scores import REGISTRY, SCORE_VERSION, make_probes, model_probes, register, score_model, uniform_pattern
from repeatlens.scores.registry import rows

METRICS = [
    "previous_token",
    "duplicate_token",
    "induction",
    "prefix_matching",
    "offset_profile",
    "shifted_induction",
    "shifted_induction_shift",
    "copying_ov",
    "copying_top1",
    "copying_top1_se",
    "k_composition",
    "q_composition",
    "v_composition",
    "copying_loss",
    "copying_gain",
    "icl_score",
    "test_loss",
    "repeated_loss",
    "memorization",
    "ablation_copying_loss",
    "ablation_repeated_loss",
    "ablation_repeated_text_loss",
    "ablation_repeated_synthetic_loss",
    "ablation_test_loss",
    "ablation_test_text_loss",
    "ablation_test_synthetic_loss",
    "zero_ablation_repeated_loss",
    "zero_ablation_test_loss",
    "memorization_share",
    "llc_test",
    "llc_repeated",
]
ATTRIBUTION = {m for m in METRICS if "ablation_" in m and m != "ablation_copying_loss"} | {"memorization_share"}
MODEL_LEVEL = {"copying_loss", "copying_gain", "icl_score", "test_loss", "repeated_loss", "memorization", "llc_test", "llc_repeated"}
NEEDS_DATA = {"icl_score", "test_loss", "repeated_loss", "memorization", "llc_test", "llc_repeated"} | ATTRIBUTION
ATTENTION = ["previous_token", "duplicate_token", "induction", "prefix_matching"]


def test_registry_names_versions_and_docstrings() -> None:
    assert sorted(REGISTRY) == sorted(METRICS)
    assert SCORE_VERSION.keys() == REGISTRY.keys() and all(v >= 1 for v in SCORE_VERSION.values())
    for name, score in REGISTRY.items():
        assert score.per_head == (name not in MODEL_LEVEL)
        doc = score.fn.__doc__ or ""
        assert "et al." in doc, f"{name}: docstring must cite its paper"


def test_register_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="twice"):
        register("induction", kind="attention", per_head=True)(lambda p, pr: p)


def test_all_metrics_on_a_vocab_64_model_without_data(tiny) -> None:
    model = tiny(d_vocab=64, n_ctx=32)
    assert model.tokenizer is None
    df = score_model(model)
    assert list(df.columns) == ["metric", "layer", "head", "offset", "probe", "probe_len", "probe_batch", "probe_seed", "value"]
    assert all(str(df[c].dtype) == "Int64" for c in ("layer", "head", "offset", "probe_len")) and df["value"].dtype == "float64"
    reads_probe = df.metric.map(lambda m: REGISTRY[m].reads_probe)
    assert (df.probe[reads_probe] == "uniform").all() and (df.probe[~reads_probe] == "").all()
    assert (df.probe_len[reads_probe] == 14).all() and df.probe_len[~reads_probe].isna().all()  # n_ctx 32: L = 2P = 14
    assert set(df.metric) == set(METRICS) - NEEDS_DATA  # data metrics skipped, no row
    for name in set(METRICS) - NEEDS_DATA:
        sub = df[df.metric == name]
        if name in MODEL_LEVEL:
            assert len(sub) == 1 and sub["layer"].isna().all() and sub["head"].isna().all()
        elif name.endswith("_composition"):
            assert sorted(sub["layer"].tolist()) == [1] * 4  # later heads only
        elif name == "offset_profile":
            assert len(sub) == 8 * 15 and sorted(sub.offset.unique()) == list(range(15))  # offsets 0..L
        else:
            assert len(sub) == 8 and not sub["layer"].isna().any() and sub["offset"].isna().all()
    assert df.value.notna().all()


def test_metric_selection_order_and_errors(tiny) -> None:
    model = tiny(d_vocab=64, n_ctx=32)
    df = score_model(model, ["copying_gain", "induction"])
    assert df.metric.tolist() == ["copying_gain"] + ["induction"] * 8
    with pytest.raises(ConfigError, match="'nope'"):
        score_model(model, ["induction", "nope"])
    assert score_model(model, ["test_loss"]).empty


def test_one_forward_pass_for_all_attention_scores(tiny, monkeypatch) -> None:
    model = tiny(d_vocab=64, n_ctx=32)
    calls = []
    forward = model.forward

    def counting(*args, **kwargs):
        calls.append(args[0].shape if args else None)
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting)
    df = score_model(model, ATTENTION + ["copying_loss", "copying_gain"])
    assert len(calls) == 1, calls
    probes = model_probes(model)
    assert calls[0] == probes.tokens.shape  # the whole probe batch, once
    assert set(df.metric) == set(ATTENTION) | {"copying_loss", "copying_gain"}
    calls.clear()
    score_model(model, ["copying_ov", "copying_top1", "k_composition", "q_composition", "v_composition"])
    assert calls == []  # weight scores run no forward pass


def test_probes_are_built_once_per_vocabulary(tiny) -> None:
    a, b = tiny(d_vocab=64, n_ctx=32, seed=0), tiny(d_vocab=64, n_ctx=32, seed=1)
    assert model_probes(a) is model_probes(b)
    assert model_probes(a) is not model_probes(tiny(d_vocab=80, n_ctx=32))
    # explicit probes are used as given
    pr = make_probes(64, 32, seed=3, batch=2)
    df = score_model(a, ["induction"], probes=pr)
    assert len(df) == 8


def test_random_init_scores_near_chance(tiny) -> None:
    model = tiny(d_vocab=64, n_ctx=64)
    probes = model_probes(model)
    df = score_model(model, ATTENTION + ["copying_loss", "copying_gain"])
    uniform = uniform_pattern(probes.tokens.shape[0], 1, probes.seq_len)
    for name in ATTENTION:
        chance = REGISTRY[name].fn(uniform, probes).item()
        vals = df[df.metric == name].value
        assert (vals - chance).abs().max() < 0.2 * chance + 0.005, (name, chance, vals.tolist())
    val = dict(zip(df.metric, df.value))
    assert abs(val["copying_gain"]) < 0.1
    assert val["copying_loss"] > torch.log(torch.tensor(64.0)).item() - 0.1  # no better than uniform


def test_rows_schema() -> None:
    empty = rows("x", None)
    assert empty.empty and list(empty.columns) == ["metric", "layer", "head", "offset", "value"]
    scalar = rows("x", 1.5)
    assert scalar["layer"].isna().all() and scalar.value.tolist() == [1.5]
    per_head = rows("x", torch.tensor([[1.0, float("nan")], [3.0, 4.0]]))
    assert per_head[["layer", "head"]].values.tolist() == [[0, 0], [1, 0], [1, 1]] and per_head.offset.isna().all()
    per_offset = rows("x", torch.arange(12.0).reshape(2, 2, 3))
    assert per_offset[["layer", "head", "offset"]].values.tolist()[:4] == [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0]]
    assert per_offset.value.tolist() == list(range(12))
    assert isinstance(pd.concat([empty, scalar, per_head]), pd.DataFrame)


def test_the_per_head_ablation_leaves_the_default_battery_of_large_models(tiny) -> None:
    """One forward pass per head: in the default battery up to 64 heads, by name on any model."""
    from repeatlens.scores import default_metrics

    assert default_metrics(64)[1] == [] and default_metrics(65)[1] == ["ablation_copying_loss"]
    big = tiny(d_vocab=40, n_ctx=16, d_model=68, n_heads=17, n_layers=4)  # 68 heads
    names = set(score_model(big).metric)
    assert "ablation_copying_loss" not in names and "induction" in names
    assert set(score_model(big, ["ablation_copying_loss"]).metric) == {"ablation_copying_loss"}


def _where(model) -> tuple[set[str], object]:
    return {str(p.device) for p in model.parameters()}, model.cfg.device


def test_score_model_leaves_the_callers_model_where_it_was() -> None:
    """Scoring on another device moves the model there for the call and back after it (the
    weights and ``cfg.device``), also when a score fails; ``cpu:0`` is a device distinct from
    ``cpu`` to torch, so this runs on any machine (the weights half on CUDA below)."""
    from tests.scores.conftest import tiny_model

    model = tiny_model()
    before = _where(model)
    score_model(model, ["copying_ov", "previous_token"], device="cpu:0")
    assert _where(model) == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_score_model_on_cuda_moves_the_model_back() -> None:
    from tests.scores.conftest import tiny_model

    model = tiny_model()
    cpu_rows = score_model(model, ["copying_ov", "previous_token"])
    cuda_rows = score_model(model, ["copying_ov", "previous_token"], device="cuda")
    assert _where(model) == ({"cpu"}, model.cfg.device) and str(model.cfg.device) == "cpu"
    pd.testing.assert_series_equal(cpu_rows.value, cuda_rows.value, atol=1e-4, rtol=0)


def test_score_model_failing_midway_still_moves_the_model_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from tests.scores.conftest import tiny_model

    def broken(model):
        raise RuntimeError("a score failed")

    monkeypatch.setitem(REGISTRY, "copying_ov", dataclasses.replace(REGISTRY["copying_ov"], fn=broken))
    model = tiny_model()
    before = _where(model)
    with pytest.raises(RuntimeError, match="a score failed"):
        score_model(model, ["copying_ov"], device="cpu:0")
    assert _where(model) == before
