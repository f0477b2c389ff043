"""The registry's metric facts: declared once on each ``@register`` line, snapshotted for the
torch-free readers, and enough for a new score (one function, one decorator) to reach the
scores table, the figures and the report."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import pytest

from repeatlens.results import builtin_facts
from repeatlens.results.metric_facts import UNIFORM_ATTENTION, MetricFacts, metric_facts
from repeatlens.scores import REGISTRY, chance_levels, get_probes, register, unregister
from repeatlens.scores.registry import facts_snapshot


def test_the_facts_snapshot_equals_the_register_lines() -> None:
    """What ``repeatlens figures`` knows without importing the scores is what they declare."""
    assert Path(builtin_facts.__file__).read_text(encoding="utf-8") == facts_snapshot(), (
        "src/repeatlens/results/builtin_facts.py is stale: regenerate it with "
        "python -c 'from repeatlens.scores.registry import write_facts_snapshot; write_facts_snapshot()'"
    )


def test_every_built_in_score_declares_its_facts() -> None:
    undeclared = [n for n, f in REGISTRY.items() if f.fn.__module__.startswith("repeatlens.") and f.facts is None]
    assert not undeclared
    # the chance levels the study reads are the attention scores' own, and none else
    assert {n for n, f in REGISTRY.items() if f.facts.chance == UNIFORM_ATTENTION} == {
        "previous_token", "duplicate_token", "induction", "prefix_matching", "shifted_induction"}
    assert not [n for n, f in REGISTRY.items() if f.facts.level and (f.per_offset or n.endswith(("_shift", "_se")))]


def test_a_uniform_attention_chance_level_needs_an_attention_level() -> None:
    with pytest.raises(ValueError, match="uniform-attention chance level"):
        register("not_attention", kind="behaviour", per_head=False, facts=MetricFacts("x", chance=UNIFORM_ATTENTION))
    assert "not_attention" not in REGISTRY


TOY = "bos_attention"
TOY_FACTS = MetricFacts("attention to BOS", "attention", range=(0.0, 1.0), higher_is_better=False, chance=UNIFORM_ATTENTION)


def register_toy() -> None:
    """The whole of adding a score: one function, one decorator."""

    @register(TOY, kind="attention", per_head=True, facts=TOY_FACTS)
    def bos_attention(pattern, probes):
        return pattern[:, :, 1:, 0].float().mean(dim=(0, 2))


@pytest.fixture
def toy_score():
    register_toy()
    try:
        yield TOY_FACTS
    finally:
        if TOY in REGISTRY:
            unregister(TOY)


def test_a_toy_score_reaches_the_table_the_figures_and_the_report(toy_score, mixed_run, tmp_path: Path) -> None:
    from repeatlens import analyze
    from repeatlens.plots import build_figures
    from repeatlens.report import write_report
    from repeatlens.checkpoints import RunDir
    from repeatlens.results import get_quantity, load_scores, write_sweep_tables

    # its chance level: uniform attention gives key 0 1/(i+1) from query i; the toy averages queries 1..T-1
    probes = get_probes(64, 64)
    T = probes.seq_len
    assert chance_levels(probes)[TOY] == pytest.approx(sum(1 / (i + 1) for i in range(1, T)) / (T - 1))

    run = Path(shutil.copytree(mixed_run.path, tmp_path / "run"))
    analyze(run, metrics=[TOY, "test_loss"], progress=False, device="cpu")
    unregister(TOY)  # from here on, this process knows the score only from the table it wrote
    assert metric_facts(TOY).label == "bos attention"

    scores = load_scores(run)
    rows = scores[scores["metric"] == TOY]
    cfg = mixed_run.config().model
    per_checkpoint = rows.groupby(["step", "probe", "probe_len"]).size()  # every probe family scored
    assert len(per_checkpoint) == scores["step"].nunique() * len(scores.attrs["probes"]) > 0
    assert set(per_checkpoint) == {cfg.n_layers * cfg.n_heads} and rows["value"].between(0, 1).all()
    assert scores.attrs["metric_facts"][TOY] == TOY_FACTS.to_json()
    assert metric_facts(TOY, scores) == MetricFacts("attention to BOS", "attention", range=(0.0, 1.0), higher_is_better=False,
                                                    chance=UNIFORM_ATTENTION)
    assert get_quantity(TOY, scores).sign == 1  # higher is worse: damage is its rise
    write_sweep_tables(tmp_path, [RunDir(run)])  # a sweep's joined table carries its runs' facts
    assert metric_facts(TOY, load_scores(tmp_path)).axis_label == "attention to BOS (attention)"

    figures, skipped = build_figures(scores)
    trajectory, heatmap = figures[f"score_trajectories_{TOY}"], figures[f"head_heatmap_{TOY}"]
    assert trajectory.layout.title.text.startswith("attention to BOS over training (max over heads)")
    assert trajectory.layout.yaxis.title.text == "attention to BOS<br>(attention; max over heads)"
    assert heatmap.layout.title.text.startswith("attention to BOS (attention) per head")
    assert rows["value"].max() < 1.0  # so a colour range read off the data would end below 1
    assert (heatmap.data[0].zmin, heatmap.data[0].zmax) == (0.0, 1.0)  # its declared range

    page = write_report(run, scores, figures={k: figures[k] for k in (f"score_trajectories_{TOY}", f"head_heatmap_{TOY}")})
    text = page.read_text(encoding="utf-8")
    assert f'<p class="caption">One line per run, coloured by repeat count; the dashed black line is the f = 0 control. ' \
           f'{html.escape(TOY_FACTS.describe())}</p>' in text
    assert "attention to BOS (attention): lower is better, from 0 to 1, chance level: uniform attention on the probe." in \
           html.unescape(text)
