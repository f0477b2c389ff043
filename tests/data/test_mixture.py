"""Repetition accounting: S·E repeated positions, (1−f)·D unique ones, disjoint test set."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repeatlens.config import MixtureConfig
from repeatlens.data.mixture import build_schedule, plan_mixture, schedule_hash
from repeatlens.errors import ConfigError
from repeatlens.train import prepare_run
from tests.conftest import tiny_config


def _check_accounting(D: int, f: float, E: int, seq_len: int, seed: int = 0) -> None:
    plan = plan_mixture(MixtureConfig(total_tokens=D, repeated_fraction=f, repeat_count=E), seq_len)
    n_test = 7
    sched = build_schedule(plan, first_repeated=n_test, first_unique=n_test + plan.n_repeated, seed=seed)
    counts = Counter(sched.tolist())
    rep_rows = set(range(n_test, n_test + plan.n_repeated))
    # exactly S·E repeated-token positions and the rest unique, each seen once
    assert sum(c for r, c in counts.items() if r in rep_rows) * seq_len == plan.repeated_tokens * E
    assert all(counts[r] == E for r in rep_rows)
    unique = [r for r in counts if r not in rep_rows]
    assert all(counts[r] == 1 for r in unique)
    assert len(unique) * seq_len == plan.unique_tokens == plan.total_tokens - plan.repeated_tokens * E
    # the repeated share is f up to whole-sequence rounding
    assert abs(plan.repeated_fraction - f) <= E / plan.n_total + 1e-12
    # test rows never scheduled
    assert not set(range(n_test)) & set(counts)
    assert len(sched) == plan.n_total == D // seq_len


@pytest.mark.parametrize(
    "D,f,E", [(64_000, 0.0, 1), (64_000, 0.1, 1), (64_000, 0.1, 10), (128_000, 0.5, 100), (100_000, 0.01, 3), (51_200, 0.9, 2)]
)
def test_schedule_accounting(D: int, f: float, E: int) -> None:
    _check_accounting(D, f, E, seq_len=64)


@settings(max_examples=60, deadline=None)
@given(
    n_seq=st.integers(1, 3000),
    seq_len=st.sampled_from([8, 32, 128]),
    f=st.floats(0.0, 0.95),
    E=st.integers(1, 500),
    seed=st.integers(0, 2**31),
)
def test_schedule_accounting_property(n_seq: int, seq_len: int, f: float, E: int, seed: int) -> None:
    D = n_seq * seq_len
    try:
        plan_mixture(MixtureConfig(total_tokens=D, repeated_fraction=f, repeat_count=E), seq_len)
    except ConfigError as e:  # only the two documented impossibilities
        assert "smaller than one sequence" in str(e) or "exceed" in str(e)
        assert f > 0
        return
    _check_accounting(D, f, E, seq_len, seed)


def test_repeats_spread_over_the_whole_run() -> None:
    plan = plan_mixture(MixtureConfig(total_tokens=100_000 * 16, repeated_fraction=0.2, repeat_count=50), 16)
    sched = build_schedule(plan, first_repeated=0, first_unique=plan.n_repeated, seed=1)
    is_rep = sched < plan.n_repeated
    quarters = [is_rep[i * len(sched) // 4 : (i + 1) * len(sched) // 4].mean() for i in range(4)]
    assert all(abs(q - 0.2) < 0.01 for q in quarters), quarters


def test_schedule_hash_depends_on_seed_only() -> None:
    plan = plan_mixture(MixtureConfig(total_tokens=64_000, repeated_fraction=0.1, repeat_count=10), 64)
    h = [schedule_hash(build_schedule(plan, first_repeated=5, first_unique=5 + plan.n_repeated, seed=s)) for s in (0, 0, 1)]
    assert h[0] == h[1] and h[0] != h[2]


def test_impossible_specs_are_errors_naming_the_numbers() -> None:
    with pytest.raises(ConfigError, match=r"f\*D/E = 0.01\*6400/100 = 1 tokens is smaller than one sequence \(64 tokens\)"):
        plan_mixture(MixtureConfig(total_tokens=6400, repeated_fraction=0.01, repeat_count=100), 64)


def test_run_pool_is_disjoint_and_manifest_matches(tmp_path) -> None:
    cfg = tiny_config(data={"source": "shakespeare", "vocab_size": 300, "seq_len": 32},
                      mixture={"total_tokens": 32 * 400, "repeated_fraction": 0.3, "repeat_count": 6})
    run = prepare_run(cfg, tmp_path / "r", progress=False)
    man = run.manifest()
    pool = run.pool()
    rows = {bytes(r) for r in np.asarray(pool)}
    assert len(rows) == len(pool), "a pool sequence occurs twice: test, repeated and unique must be disjoint"
    sched = np.load(run.schedule_path)
    assert man.schedule["sha256"] == schedule_hash(sched)
    assert man.repeated_ids == list(range(man.n_test, man.n_test + man.n_repeated))
    assert man.repeated_tokens == man.n_repeated * 32 and man.total_tokens == 400 * 32
    assert set(sched.tolist()).isdisjoint(range(man.n_test))
    assert (np.asarray(pool)[:, 0] == 0).all(), "every sequence starts with BOS"


def test_test_set_is_the_same_across_repetition_levels(tmp_path) -> None:
    a = prepare_run(tiny_config(mixture={"repeated_fraction": 0.0, "repeat_count": 1}), tmp_path / "a", progress=False)
    b = prepare_run(tiny_config(mixture={"repeated_fraction": 0.5, "repeat_count": 3}), tmp_path / "b", progress=False)
    np.testing.assert_array_equal(a.test_tokens(), b.test_tokens())


def test_not_enough_unique_data_is_an_error(tmp_path) -> None:
    from repeatlens.errors import DataError

    cfg = tiny_config(data={"source": "shakespeare", "vocab_size": 300, "seq_len": 32}, mixture={"total_tokens": 10**9})
    with pytest.raises(DataError, match=r"data.source 'shakespeare': has [\d,]+ sequences of 32 tokens, but the spec needs"):
        prepare_run(cfg, tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ where the repeated subset comes from

MIXED = {"source": "shakespeare", "vocab_size": 300, "seq_len": 32, "synthetic_fraction": 0.75, "test_sequences": 16}


@pytest.mark.parametrize("source", ["corpus", "synthetic"])
def test_repeated_source_draws_the_repeated_subset_from_one_source(tmp_path, source: str) -> None:
    """mixture.repeated_source: the repeated rows all come from the named source, the unique
    rows keep data.synthetic_fraction (round(0.75 * n_unique) synthetic), the test rows are
    those of every other run of the seed."""
    mix = {"total_tokens": 32 * 400, "repeated_fraction": 0.25, "repeat_count": 5, "repeated_source": source}
    run = prepare_run(tiny_config(data=MIXED, mixture=mix), tmp_path / "r", progress=False)
    man, syn = run.manifest(), np.load(run.is_synthetic_path)
    rep = syn[man.n_test : man.n_test + man.n_repeated]
    uni = syn[man.n_test + man.n_repeated :]
    assert man.n_repeated == 20 and len(uni) == man.n_unique == 300
    assert (not rep.any()) if source == "corpus" else rep.all()
    assert uni.sum() == round(0.75 * 300)
    control = prepare_run(tiny_config(data=MIXED, mixture={"total_tokens": 32 * 400, "repeated_fraction": 0.0}), tmp_path / "c", progress=False)
    np.testing.assert_array_equal(run.test_tokens(), control.test_tokens())
    sched = np.load(run.schedule_path)
    counts = Counter(sched.tolist())
    assert all(counts[r] == 5 for r in man.repeated_ids) and len(sched) == 400
    # what RESULTS.md and the demo report: 225 synthetic unique slots, plus 20 rows x 5 slots when repeated is synthetic
    rep_share = 0.0 if source == "corpus" else 1.0
    assert run.synthetic_shares() == {"trained": (225 + 100 * rep_share) / 400, "unique": 225 / 300, "repeated": rep_share}


def test_repeated_source_any_mixes_the_subset_like_every_row(tmp_path) -> None:
    mix = {"total_tokens": 32 * 400, "repeated_fraction": 0.25, "repeat_count": 2}
    run = prepare_run(tiny_config(data=MIXED, mixture=mix), tmp_path / "r", progress=False)
    man, syn = run.manifest(), np.load(run.is_synthetic_path)
    rep = syn[man.n_test : man.n_test + man.n_repeated]
    assert 0 < rep.sum() < len(rep), "'any' (the default) draws repeated rows from both sources"


def test_data_matched_control_trains_on_the_unique_tokens_of_a_run_at_f(tmp_path) -> None:
    from repeatlens.results.store import run_coordinates

    D = 32 * 400
    plan = plan_mixture(MixtureConfig(total_tokens=D, data_matched=0.25), 32)
    assert (plan.n_total, plan.n_unique, plan.n_repeated) == (300, 300, 0)
    rep = plan_mixture(MixtureConfig(total_tokens=D, repeated_fraction=0.25, repeat_count=4), 32)
    assert rep.n_unique == plan.n_unique
    dm = prepare_run(tiny_config(mixture={"total_tokens": D, "repeated_fraction": 0.0, "repeat_count": 1, "data_matched": 0.25}), tmp_path / "dm", progress=False)
    full = prepare_run(tiny_config(mixture={"total_tokens": D, "repeated_fraction": 0.0, "repeat_count": 1}), tmp_path / "full", progress=False)
    r = prepare_run(tiny_config(mixture={"total_tokens": D, "repeated_fraction": 0.25, "repeat_count": 4}), tmp_path / "r", progress=False)
    np.testing.assert_array_equal(dm.test_tokens(), full.test_tokens())
    coords = {name: run_coordinates(run) for name, run in (("dm", dm), ("full", full), ("r", r))}
    assert [coords[n]["control"] for n in ("dm", "full", "r")] == ["data_matched", "full", "none"]
    assert coords["dm"]["unique_tokens"] == coords["r"]["unique_tokens"] == 300 * 32
    assert coords["dm"]["total_tokens"] == 300 * 32 and coords["full"]["total_tokens"] == D


@pytest.mark.parametrize(
    "sections,match",
    [
        ({"mixture": {"repeated_fraction": 0.1, "repeat_count": 2, "data_matched": 0.1}}, r"data_matched = 0.1 is a control .* expected repeated_fraction = 0"),
        ({"mixture": {"repeated_fraction": 0.0, "data_matched": 1.0}}, r"mixture.data_matched"),
        ({"mixture": {"repeated_fraction": 0.1, "repeat_count": 2, "repeated_source": "corpus"}}, r"repeated_source = 'corpus' but the data are synthetic only"),
        ({"data": {**MIXED, "synthetic_fraction": 0.0}, "mixture": {"repeated_source": "synthetic", "total_tokens": 32 * 40}}, r"repeated_source = 'synthetic' but data.synthetic_fraction = 0"),
        ({"mixture": {"repeated_source": "text"}}, r"mixture.repeated_source"),
    ],
)
def test_impossible_sources_and_controls_are_one_line_errors(sections: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        tiny_config(**sections)
