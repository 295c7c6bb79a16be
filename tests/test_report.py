"""The production-vs-shadow text table (`shadow.report`, the summary at exit): what its words and numbers say."""

from __future__ import annotations

import dataclasses
import json

from shadow_addon import report, routing, words
from shadow_addon.mappings import build_mapping
from shadow_addon.metrics import BUCKETS, SHADOW, Metrics


def test_words_count_and_clip() -> None:
    assert [words.plural(n, "group") for n in (0, 1, 2)] == ["0 groups", "1 group", "2 groups"]
    assert words.plural(1, "more endpoint") == "1 more endpoint"
    assert words.clip("abcdef", 6) == "abcdef" and words.clip("abcdefg", 6) == "abc..."


def _table_with_drops() -> tuple[list[report.Row], Metrics]:
    t = routing.build_table(
        [
            build_mapping("api", "default", "t", {"prefix": "/api/", "service": "api"}),
            build_mapping("api-next", "default", "t", {"prefix": "/api/", "service": "next", "shadow": True}),
        ]
    )
    m = Metrics()
    for _ in range(15):  # 15 copies sent, whose connection failed; 42 more dropped unsent while backing off
        m.record_upstream("api-next", "next", SHADOW, "error", 0.001)
    for _ in range(57):
        m.record_drop("api-next", "connect_error")
    return report.comparison(t, m), m


def test_the_table_says_what_requests_and_drops_count() -> None:
    rows, _ = _table_with_drops()
    text = report.text_table(rows)
    assert "dropped    connect_error:57" in text
    assert "(shadow requests: copies sent, answered with a status or `error` when the attempt failed; dropped: " in text
    assert "so drops can exceed requests)" in text


def test_mismatches_by_endpoint_cut_with_an_ellipsis_and_counted_in_words() -> None:
    rows, _ = _table_with_drops()
    long_diff = "/items/0/description: 'a long text value that goes on and on' -> 'another long text value, also long'"
    groups = [
        {"mapping": "api-next", "endpoint": f"GET /api/e{i}", "mismatches": 1, "compared": 2, "rate": 0.5}
        for i in range(3)
    ]
    diffs = {"groups": groups, "records": [{"mapping": "api-next", "endpoint": "GET /api/e0", "diffs": [long_diff]}]}
    text = report.text_table(rows, diffs=diffs, most=2)
    line = next(x for x in text.splitlines() if "GET /api/e0" in x)
    assert line.endswith("...") and len(line.split("  ")[-1]) == 90
    assert "... and 1 more endpoint (GET /diffs)" in text


def test_a_report_row_round_trips_through_json() -> None:
    rows, _ = _table_with_drops()
    (row,) = rows
    doc = row.to_json()
    assert report.to_json(rows) == [doc] and json.loads(json.dumps(doc)) == doc
    assert list(doc) == [f.name for f in dataclasses.fields(row)]
    assert {k: v for k, v in doc.items() if k not in ("production", "shadow")} == {
        "resource": "/api/",
        "production_mappings": ["api"],
        "shadow_mapping": "api-next",
        "shadow_service": "next",
        "shadow_address": "http://next:80",
        "weight": 100,
        "copies": True,
        "drops": {"connect_error": 57},
    }
    side = doc["shadow"]
    assert list(side) == [
        *("grpc", "grpc_errors", "requests", "errors", "error_rate", "codes", "p50", "p90", "p99", "histogram"),
    ]
    assert (side["requests"], side["errors"], side["error_rate"], side["codes"]) == (15, 15, 1.0, {"error": 15})
    counts = [0] * (len(BUCKETS) + 1)
    counts[BUCKETS.index(0.001)] = 15  # each failed copy recorded at 1 ms: in the bucket whose bound it is
    assert side["histogram"] == {"le": list(BUCKETS), "counts": counts}
    assert doc["production"]["p50"] is None and doc["production"]["histogram"]["counts"] == [0] * (len(BUCKETS) + 1)
