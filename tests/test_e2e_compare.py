"""Response comparison with real production and shadow servers that differ in controlled ways."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from support import Seen, mapping, metric_sum, metrics_of, wait_until, write_mappings

BIG = hashlib.sha256(b"seed").digest() * (3 * 1024 * 1024 // 32)  # 3 MiB of binary, over the 1 MiB limit


def app(version: str):  # noqa: ANN201
    """Two releases of one service: identical except where the path says otherwise."""
    calls = {"n": 0}

    def respond(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        calls["n"] += 1
        path = seen.path.split("?")[0]
        js = {"content-type": "application/json"}
        if path == "/status":
            return (500 if version == "v2" else 200), js, b'{"ok": true}'
        if path == "/field":
            return 200, js, json.dumps({"id": 7, "price": 12 if version == "v2" else 10}).encode()
        if path == "/order":
            return 200, js, json.dumps({"items": [2, 1] if version == "v2" else [1, 2]}).encode()
        if path == "/header":
            return 200, {"content-type": "text/plain" if version == "v2" else "application/json"}, b'{"a": 1}'
        if path == "/time":  # a timestamp that varies per call, in both releases
            return 200, js, json.dumps({"id": 1, "ts": calls["n"] + (1000 if version == "v2" else 0)}).encode()
        if path == "/big-same":
            return 200, {"content-type": "application/octet-stream"}, BIG
        if path == "/big-diff":
            return 200, {"content-type": "application/octet-stream"}, BIG[:-1] + (b"x" if version == "v2" else b"y")
        return 200, js, b'{"same": [1, 2, 3]}'

    return respond


def test_comparison_classifies_each_difference(tmp_path: Path, upstream, proxy) -> None:
    reverse, v1, v2 = upstream("reverse"), upstream("v1"), upstream("v2")
    v1.behaviour.responder, v2.behaviour.responder = app("v1"), app("v2")
    report = tmp_path / "mismatches.jsonl"
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("svc", prefix="/", service="v1", rewrite=""),
        mapping("svc-next", prefix="/", service="v2", shadow=True),
    )
    p = proxy(
        f"http://{reverse.address}",
        sets={
            "mappings": str(m),
            "mapping_services": [f"v1={v1.address}", f"v2={v2.address}"],
            "shadow_compare": "true",
            "shadow_compare_report": str(report),
            "shadow_response_limit": "4m",  # the 3 MiB answers are read whole, to be compared by size and hash
        },
    )
    paths = ["/status", "/field", "/order", "/header", "/same", "/big-same", "/big-diff"]
    for path in paths:
        assert p.request("GET", path)[0] == 200
    for _ in range(3):
        assert p.request("GET", "/time?x=1")[0] == 200
    n = len(paths) + 3
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_compare_total") == n, 15, 0.2)

    diffs = json.loads(p.admin("/diffs")[1])
    groups = {g["endpoint"]: g for g in diffs["groups"]}
    for ep in ("status", "field", "order", "header", "big-diff"):
        assert groups[f"GET /{ep}"]["mismatches"] == 1, (ep, groups[f"GET /{ep}"])
    for ep in ("same", "big-same"):
        assert groups[f"GET /{ep}"]["mismatches"] == 0 and groups[f"GET /{ep}"]["compared"] == 1
    # The timestamp differs from the first call, but production itself answered /time?x=1 differently twice:
    # it is learned as noise, with no extra request to production.
    assert groups["GET /time"]["noise"] >= 2 and groups["GET /time"]["compared"] == 3
    by_endpoint = {r["endpoint"]: r for r in diffs["records"]}
    assert "/price: 10 -> 12" in by_endpoint["GET /field"]["diffs"]
    assert "status: 200 -> 500" in by_endpoint["GET /status"]["diffs"]
    assert any(
        d.startswith("header content-type: application/json -> text/plain") for d in by_endpoint["GET /header"]["diffs"]
    )
    assert by_endpoint["GET /order"]["kinds"] == ["body"]

    mt = metrics_of(p)
    assert metric_sum(mt, "shadow_compare_mismatch_total", mapping="svc-next", kind="status") == 1
    assert metric_sum(mt, "shadow_compare_mismatch_total", mapping="svc-next", kind="header") == 1
    assert metric_sum(mt, "shadow_compare_total", mapping="svc-next", result="match") == 2
    assert metric_sum(mt, "shadow_compare_pending") == 0
    lines = [json.loads(x) for x in report.read_text().splitlines()]
    assert sorted(r["endpoint"] for r in lines) == sorted(e for e, g in groups.items() if g["mismatches"])
    assert "compared" in p.admin("/report")[1].decode()
    page = p.admin("/")[1].decode()  # the dashboard lists mismatches by endpoint with their rates
    assert '<section id="diffs">' in page and 'data-endpoint="GET /field"' in page


def test_black_holed_shadow_releases_held_replies(tmp_path: Path, upstream, proxy, fault) -> None:
    reverse, v1 = upstream("reverse"), upstream("v1")
    hole = fault("blackhole")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("svc", prefix="/", service="v1", rewrite=""),
        mapping("svc-next", prefix="/", service="hole", shadow=True),
    )
    p = proxy(
        f"http://{reverse.address}",
        sets={
            "mappings": str(m),
            "mapping_services": [f"v1={v1.address}", f"hole={hole.address}"],
            "shadow_compare": "true",
            "shadow_timeout": "0.5",
            "shadow_max_inflight": "4",
        },
    )
    for i in range(20):
        assert p.request("GET", f"/x/{i}")[0] == 200  # never held back
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_compare_total", result="skipped") == 20, 20, 0.2)
    assert metric_sum(metrics_of(p), "shadow_compare_pending") == 0  # every held reply was released
