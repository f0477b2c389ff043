"""The audit figure: bars spanning their buckets on a log E axis, the region shaded."""

from __future__ import annotations

import math

import pandas as pd

from repeatlens.corpus_audit.damage import damage_table
from repeatlens.corpus_audit.figure import audit_figure
from repeatlens.corpus_audit.region import Region


def test_bars_span_their_buckets_and_the_region_is_shaded() -> None:
    table = pd.DataFrame({"unit": ["document", "document", "span"], "repeat_count": [1, 10, 1],
                          "repeat_count_max": [1, 19, 1], "repeat_count_mean": [1.0, 13.0, 1.0], "items": [5, 1, 3], "tokens": [90, 10, 100],
                          "token_fraction": [0.9, 0.1, 1.0]})
    region = Region(1e8, 5.0, 500.0, 50.0, "published", "")
    fig = audit_figure(damage_table(table, region), title="t", region=region,
                       examples={("document", 10): ["doc #3 ×10: “<b>hello</b>”"]})
    bars = [t for t in fig.data if t.type == "bar"]
    assert [b.name for b in bars] == ["document", "span"]
    doc = bars[0]
    # [10, 19] copies at 1 epoch spans E in [10, 20): log10 10 .. log10 20
    assert doc.x[1] - doc.width[1] / 2 == 1.0 and math.isclose(doc.x[1] + doc.width[1] / 2, math.log10(20))
    assert list(doc.y) == [90.0, 10.0]
    assert "&lt;b&gt;hello&lt;/b&gt;" in doc.hovertext[1] and "region: inside" in doc.hovertext[1]
    assert "E = 10–19 (its tokens' mean: 13)" in doc.hovertext[1] and "mean" not in doc.hovertext[0]
    band = [s for s in fig.layout.shapes if s.type == "rect"]
    assert band and math.isclose(band[0].x0, math.log10(5)) and math.isclose(band[0].x1, math.log10(500))
    assert any(s.type == "line" and math.isclose(s.x0, math.log10(50)) for s in fig.layout.shapes)  # the peak
    assert any("predicted region for N = 100M: E = 5–500" in (t.name or "") for t in fig.data)
    assert fig.layout.meta["repeatlens"]["rows"] == 2
