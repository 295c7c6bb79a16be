"""Response comparison with real production and shadow servers that differ in controlled ways."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from bombs import br_bomb, gzip_bomb
from support import Proxy, Seen, Upstream, free_port, mapping, metric_sum, metrics_of, wait_until, write_mappings

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


def compare_proxy(
    tmp_path: Path, proxy: Callable[..., Proxy], reverse: Upstream, prod: str, shadow: str, **sets: str
) -> Proxy:
    """mitmdump comparing: `svc` routes everything to `prod` ("name=host:port"), `svc-next` shadows it to `shadow`."""
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("svc", prefix="/", service=prod.split("=")[0], rewrite=""),
        mapping("svc-next", prefix="/", service=shadow.split("=")[0], shadow=True),
    )
    return proxy(
        f"http://{reverse.address}",
        sets={"mappings": str(m), "mapping_services": [prod, shadow], "shadow_compare": "true", **sets},
    )


def test_comparison_classifies_each_difference(tmp_path: Path, upstream, proxy) -> None:
    reverse, v1, v2 = upstream("reverse"), upstream("v1"), upstream("v2")
    v1.behaviour.responder, v2.behaviour.responder = app("v1"), app("v2")
    report = tmp_path / "mismatches.jsonl"
    p = compare_proxy(
        tmp_path,
        proxy,
        reverse,
        f"v1={v1.address}",
        f"v2={v2.address}",
        shadow_compare_report=str(report),
        shadow_response_limit="4m",  # the 3 MiB answers are read whole, to be compared by size and hash
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
    p = compare_proxy(
        tmp_path,
        proxy,
        reverse,
        f"v1={v1.address}",
        f"hole={hole.address}",
        shadow_timeout="0.5",
        shadow_max_inflight="4",
    )
    for i in range(20):
        assert p.request("GET", f"/x/{i}")[0] == 200  # never held back
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_compare_total", result="skipped") == 20, 20, 0.2)
    assert metric_sum(metrics_of(p), "shadow_compare_pending") == 0  # every held reply was released


def peak_rss_mib(p: Proxy) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    status = Path(f"/proc/{p.proc.pid}/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return kib / 1024


@pytest.fixture(scope="module")
def bomb_bodies() -> dict[str, bytes]:
    """Per coding: a body of about 1 MiB (gzip, 1 GiB of zeros) or 6.5 KB (br, 4 GiB of zeros) on the wire."""
    return {"gzip": gzip_bomb(), "br": br_bomb()}


OK = gzip.compress(b'{"ok": true}', mtime=0)


def bomb_app(bodies: dict[str, bytes], bombs: bool):  # noqa: ANN201
    """Answers GET /<coding>/...: the bomb for that coding, or a small gzip JSON body."""

    def respond(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        coding = seen.path.split("/")[1]
        headers = {"content-type": "application/json"}
        if bombs:
            return 200, {**headers, "content-encoding": coding}, bodies[coding]
        return 200, {**headers, "content-encoding": "gzip"}, OK

    return respond


@pytest.mark.parametrize("side", ["shadow", "production"])
def test_compression_bombs_are_compared_as_sent_never_inflated(
    tmp_path: Path, upstream, proxy, bomb_bodies: dict[str, bytes], side: str
) -> None:
    reverse, prod, shadow = upstream("reverse"), upstream("prod"), upstream("shadow")
    prod.behaviour.responder = bomb_app(bomb_bodies, bombs=side == "production")
    shadow.behaviour.responder = bomb_app(bomb_bodies, bombs=side == "shadow")
    p = compare_proxy(tmp_path, proxy, reverse, f"prod={prod.address}", f"shadow={shadow.address}")
    rounds = 3
    for i in range(rounds):
        for coding, bomb in bomb_bodies.items():
            status, headers, body = p.request("GET", f"/{coding}/{i}")
            # Production's answer reaches the client byte for byte, as production sent it.
            assert status == 200 and headers["content-encoding"] == (coding if side == "production" else "gzip")
            assert body == (bomb if side == "production" else OK)
    n = rounds * len(bomb_bodies)
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_compare_total") == n, 60, 0.2), p.log
    mt = metrics_of(p)
    # One side could not be decoded within the limit: both compare by size and hash as sent, and they differ.
    assert metric_sum(mt, "shadow_compare_total", mapping="svc-next", result="mismatch") == n
    assert metric_sum(mt, "shadow_compare_mismatch_total", mapping="svc-next", kind="body") == n
    records = json.loads(p.admin("/diffs")[1])["records"]
    sizes = {len(b) for b in bomb_bodies.values()}
    for r in records:
        bomb_side = r[side]
        assert bomb_side["body_size"] in sizes and bomb_side["body_preview"] is None
        assert r["diffs"][0].startswith("body: ") and "bytes sha256" in r["diffs"][0]
    assert p.proc.poll() is None
    assert peak_rss_mib(p) < 400  # inflating even one bomb would take 1 to 4 GiB


def test_identical_bombs_on_both_sides_match_by_hash(tmp_path: Path, upstream, proxy, bomb_bodies) -> None:
    reverse, prod, shadow = upstream("reverse"), upstream("prod"), upstream("shadow")
    prod.behaviour.responder = shadow.behaviour.responder = bomb_app(bomb_bodies, bombs=True)
    p = compare_proxy(tmp_path, proxy, reverse, f"prod={prod.address}", f"shadow={shadow.address}")
    for coding, bomb in bomb_bodies.items():
        status, _, body = p.request("GET", f"/{coding}/x")
        assert status == 200 and body == bomb
    n = len(bomb_bodies)
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_compare_total") == n, 60, 0.2), p.log
    assert metric_sum(metrics_of(p), "shadow_compare_total", result="match") == n
    assert peak_rss_mib(p) < 400


def instance(node: str, price: int):  # noqa: ANN201
    """One instance of a release: its answers name the node that served them (a field that differs between any two
    instances, whatever their version) and carry the release's price."""

    def respond(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        path = seen.path.split("?")[0]
        doc: dict[str, object] = {"node": node, "path": path}
        if path.startswith("/item/"):
            doc["price"] = price
        return 200, {"content-type": "application/json"}, json.dumps(doc).encode()

    return respond


def test_the_secondary_tells_noise_from_a_candidate_difference(tmp_path: Path, upstream, proxy) -> None:
    """Production, a second instance of production's version and the candidate, three real servers: the field
    every instance answers differently is noise from the first pair on; the candidate's own change is reported."""
    reverse, prod, sec, cand = upstream("reverse"), upstream("prod"), upstream("secondary"), upstream("cand")
    prod.behaviour.responder = instance("a", 10)
    sec.behaviour.responder = instance("b", 10)
    cand.behaviour.responder = instance("c", 12)
    p = compare_proxy(
        tmp_path, proxy, reverse, f"v1={prod.address}", f"v2={cand.address}", shadow_compare_secondary=sec.address
    )
    n = 6
    for i in range(n):  # requests that never repeat: production alone could not learn the noise
        assert p.request("GET", f"/item/{i}")[0] == 200
        assert p.request("GET", f"/about/{i}")[0] == 200
    assert p.request("GET", "/x", headers={"Canonical-Resource": "about page"})[0] == 200
    total = 2 * n + 1
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_compare_total") == total, 15, 0.2)
    assert sec.count() == total and cand.count() == total and prod.count() == total
    assert {s.header("host") for s in sec.seen} == {s.header("host") for s in prod.seen}  # production's Host

    mt = metrics_of(p)
    # /about differs only in the node: noise from the very first pair; /item also in the price: mismatches.
    assert metric_sum(mt, "shadow_compare_total", mapping="svc-next", result="mismatch") == n
    assert metric_sum(mt, "shadow_compare_total", mapping="svc-next", result="noise") == n + 1
    assert metric_sum(mt, "shadow_upstream_requests_total", mapping="svc-next/secondary", code="200") == total

    diffs = json.loads(p.admin("/diffs")[1])
    judged = {e["endpoint"]: e for e in diffs["judgement"]["endpoints"]}
    assert set(judged) == {"GET /item/{id}", "GET /about/{id}", "about page"}
    item = {f["field"]: f for f in judged["GET /item/{id}"]["fields"]}
    assert item["/price"]["reported"] and item["/price"]["candidate"] == n and item["/price"]["noise"] == 0
    assert not item["/node"]["reported"] and item["/node"]["noise"] == n
    assert judged["GET /about/{id}"]["reported"] == 0 and not judged["GET /about/{id}"]["provisional"]
    assert all(r["endpoint"] == "GET /item/{id}" for r in diffs["records"])

    page = p.admin("/")[1].decode()  # the per-field view
    assert 'data-field="/price" data-reported="true"' in page and 'data-field="/node" data-reported="false"' in page


def test_shadow_methods_keeps_writes_away_and_the_dashboard_says_when_they_are_not(
    tmp_path: Path, upstream, proxy
) -> None:
    reverse, prod, cand = upstream("reverse"), upstream("prod"), upstream("cand")
    everything = compare_proxy(tmp_path, proxy, reverse, f"v1={prod.address}", f"v2={cand.address}")
    assert everything.request("POST", "/orders", body=b'{"n": 1}')[0] == 200
    assert cand.wait_for(1) and cand.seen[0].method == "POST"  # Emissary's default: every method is copied
    note = everything.admin("/")[1].decode()
    assert '<section id="writes"' in note and 'data-mapping="svc-next" data-value="1"' in note

    reads = compare_proxy(
        tmp_path, proxy, reverse, f"v1={prod.address}", f"v2={cand.address}", shadow_methods=["GET", "HEAD"]
    )
    assert reads.request("POST", "/orders", body=b'{"n": 2}')[0] == 200
    assert reads.request("GET", "/orders")[0] == 200
    assert cand.wait_for(2)
    assert wait_until(lambda: metric_sum(metrics_of(reads), "shadow_dropped_total", reason="method") == 1)
    assert [s.method for s in cand.seen] == ["POST", "GET"] and prod.count() == 3  # production got all three
    assert '<section id="writes"' not in reads.admin("/")[1].decode()


def test_a_secondary_that_is_down_leaves_comparison_as_without_one(tmp_path: Path, upstream, proxy) -> None:
    reverse, prod, cand = upstream("reverse"), upstream("prod"), upstream("cand")
    prod.behaviour.responder = instance("a", 10)
    cand.behaviour.responder = instance("a", 12)
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    p = compare_proxy(
        tmp_path, proxy, reverse, f"v1={prod.address}", f"v2={cand.address}", shadow_compare_secondary=down
    )
    for i in range(4):
        assert p.request("GET", f"/item/{i}")[0] == 200
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_compare_total", result="mismatch") == 4, 15, 0.2)
    mt = metrics_of(p)
    assert metric_sum(mt, "shadow_dropped_total", mapping="svc-next/secondary") == 4
    assert metric_sum(mt, "shadow_compare_pending") == 0
    [e] = json.loads(p.admin("/diffs")[1])["judgement"]["endpoints"]
    assert e["provisional"] and e["noise_samples"] == 0 and "secondary" in e["hint"]
