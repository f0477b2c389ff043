"""Metric facts as the table readers see them: the JSON the tables record, the order they are
looked up in, and what the old hand-kept lists became (repeatlens.results.metric_facts)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import pandas as pd
import pytest

from repeatlens.results import metric_facts as mf
from repeatlens.results.metric_facts import UNIFORM_ATTENTION, MetricFacts, metric_facts, table_facts


def test_every_known_fact_survives_its_json() -> None:
    for name, facts in mf.known().items():
        assert MetricFacts.from_json(facts.to_json()) == facts, name
    loss = MetricFacts.loss("test loss").to_json()
    assert loss["range"] == [0.0, None] and MetricFacts.from_json(loss).range == (0.0, math.inf)


@pytest.mark.parametrize("field, value", [("label", None), ("label", ""), ("unit", 3), ("range", [1, 0]), ("range", [0]),
                                          ("range", ["a", 1]), ("higher_is_better", "yes"), ("chance", "often"),
                                          ("chance", True), ("level", "no")])
def test_a_bad_record_is_refused_naming_its_field(field: str, value: object) -> None:
    record = {**MetricFacts.attention("induction score").to_json(), field: value}
    with pytest.raises(ValueError, match=f"MetricFacts.{field}"):
        MetricFacts.from_json(record)


def test_a_callable_chance_level_is_recorded_as_not_stated() -> None:
    facts = MetricFacts("gain", chance=lambda probes: 0.0)
    assert facts.to_json()["chance"] == "callable" and MetricFacts.from_json(facts.to_json()).chance is None


def test_facts_come_from_this_process_then_the_built_ins_then_the_table_then_the_name() -> None:
    mine = MetricFacts("my score", "bits", higher_is_better=True)
    recorded = MetricFacts("recorded score", "nats")
    table = pd.DataFrame({"metric": ["mine"]})
    table.attrs[mf.TABLE_KEY] = {"mine": recorded.to_json(), "induction": recorded.to_json(), "broken": {"label": 1}}
    assert metric_facts("mine") == MetricFacts("mine")  # nothing known: the name
    assert metric_facts("mine", table) == recorded  # the table's record
    assert metric_facts("induction", table).label == "induction score"  # the built-in snapshot wins over a record
    assert metric_facts("broken", table).label == "broken" and set(table_facts(table)) == {"mine", "induction"}
    mf.declare("mine", mine)
    try:
        assert metric_facts("mine", table) == mine  # declared here: wins
        assert "mine" in mf.known()
    finally:
        mf.forget("mine")
    assert "mine" not in mf.known()


def test_a_table_records_the_facts_this_process_knows() -> None:
    meta: dict = {}
    mf.record_facts(meta, ["test_loss", "never_heard_of"])
    assert meta == {mf.TABLE_KEY: {"test_loss": MetricFacts.loss("test loss").to_json()}}


def test_the_old_metric_lists_are_views_of_the_facts() -> None:
    from repeatlens.plots import figures, theme
    from repeatlens.results.reduce import QUANTITIES, get_quantity

    assert theme.METRIC_LABELS["copying_ov"] == "OV copying score (eigenvalues, −1…1)"
    assert theme.metric_label("train_loss") == "train loss (nats/token)" and "nope" not in theme.METRIC_LABELS
    with pytest.warns(DeprecationWarning, match="ATTENTION_METRICS is deprecated"):
        attention = figures.ATTENTION_METRICS
    assert attention == {"previous_token", "duplicate_token", "induction", "prefix_matching", "shifted_induction"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert figures.SIGNED_UNIT_METRICS == {"copying_ov"}
        assert figures.NOT_A_LEVEL == {"offset_profile", "shifted_induction_shift", "copying_top1_se"}
    # the damage quantities the study compares, as they were listed by hand
    assert {q: (QUANTITIES[q].sign, QUANTITIES[q].label) for q in ("test_loss", "induction", "copying_gain", "copying_loss")} == {
        "test_loss": (1, "test-loss rise vs control"), "induction": (-1, "induction drop vs control"),
        "copying_gain": (-1, "copying-gain drop vs control"), "copying_loss": (1, "copying-loss rise vs control")}
    assert get_quantity("copying") == QUANTITIES["copying_loss"]
    assert "memorization" not in QUANTITIES and "offset_profile" not in QUANTITIES  # no direction / not a level


def test_describe_says_direction_range_and_chance() -> None:
    assert MetricFacts.attention("induction score").describe() == (
        "induction score (attention): higher is better, from 0 to 1, chance level: uniform attention on the probe.")
    assert MetricFacts.loss("test loss").describe() == "test loss (nats/token): lower is better, from 0."
    assert MetricFacts("k", chance=0.5).describe() == "k: chance level 0.5." and MetricFacts("k").describe() == "k."
    assert MetricFacts("k", chance=UNIFORM_ATTENTION).chance == UNIFORM_ATTENTION


FIGURE_OF_A_RECORDED_SCORE = """
import json, sys
import pandas as pd
from repeatlens.plots import score_trajectories, theme

n = 2
df = pd.DataFrame({"run_id": ["r"] * n, "step": [1, 2], "tokens_seen": [10, 20], "metric": ["mine"] * n,
                   "layer": [pd.NA] * n, "head": [pd.NA] * n, "value": [0.5, 0.4], "probe": [""] * n,
                   "probe_len": [pd.NA] * n, "probe_batch": [pd.NA] * n, "probe_seed": [pd.NA] * n})
df.attrs["metric_facts"] = {"mine": {"label": "my score", "unit": "bits"}}
title = score_trajectories(df, "mine").layout.title.text
heavy = [m for m in ("torch", "transformer_lens", "repeatlens.scores") if m in sys.modules]
print(json.dumps([title, theme.metric_label("induction"), heavy]))
"""


def test_reading_facts_and_building_a_figure_imports_neither_torch_nor_transformer_lens() -> None:
    """The built-in facts come from the snapshot, a table's own from its record: no score is imported."""
    done = subprocess.run([sys.executable, "-c", FIGURE_OF_A_RECORDED_SCORE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["my score over training", "induction score (attention)", []]
