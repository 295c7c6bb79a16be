"""Fault injection: nothing a shadow does reaches production. Each case checks production's answers, the
reason the copy was counted under, and that no connection, file descriptor or log flood is left behind."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from support import (
    Proxy,
    fd_count,
    free_port,
    mapping,
    metric_sum,
    metrics_of,
    names_resolve_on_host_files_only,
    wait_until,
    write_mappings,
)


def setup(
    tmp_path: Path, upstream, proxy, shadow_address: str, sets: dict | None = None, prefix: list[str] | None = None
) -> tuple[Proxy, object]:
    reverse, api = upstream("reverse"), upstream("api")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("api", prefix="/api/", service="api", rewrite="/v1/"),
        mapping("api-shadow", prefix="/api/", service="cand", shadow=True),
    )
    p = proxy(
        f"http://{reverse.address}",
        prefix=prefix,
        sets={
            "mappings": str(m),
            "mapping_services": [f"api={api.address}", f"cand={shadow_address}"],
            "shadow_timeout": "1",
            **(sets or {}),
        },
    )
    return p, api


def drive(p: Proxy, api, n: int, body: bytes | None = None) -> None:
    for i in range(n):
        s, _, out = p.request("POST" if body else "GET", f"/api/{i}", body=body)
        assert s == 200 and json.loads(out)["path"] == f"/v1/{i}"
    assert api.count() == n


def settled(p: Proxy, n: int) -> bool:
    """Every copy has an outcome: all answered (the healthy modes) or all dropped under one reason (copies
    dropped while a service is backed off are never attempted, so they have no request count)."""
    m = metrics_of(p)
    done = max(metric_sum(m, "shadow_upstream_requests_total", role="shadow"), metric_sum(m, "shadow_dropped_total"))
    return done >= n and metric_sum(m, "shadow_inflight") == 0 and metric_sum(m, "shadow_backlog") == 0


def shadow_log_lines(p: Proxy) -> list[str]:
    return [line for line in p.log.splitlines() if "shadow http" in line]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("dribble", None),  # answers, one byte every 20 ms: slow but within the timeout
        ("continue", None),  # 100 Continue first, then the answer
        ("huge", "response_limit"),  # 32 MiB answer: read up to shadow_response_limit, then the copy is dropped
        ("endless", "response_limit"),  # chunked answer that never ends: stopped at the same limit
        ("blackhole", "timeout"),
    ],
)
def test_misbehaving_shadow(tmp_path: Path, upstream, proxy, fault, mode: str, reason: str | None) -> None:
    f = fault(mode, delay=0.02)
    sets = {"shadow_timeout": "5"} if mode in ("huge", "dribble", "endless") else {}
    p, api = setup(tmp_path, upstream, proxy, f.address, sets)
    baseline = fd_count(p)
    n = 6
    drive(p, api, n)
    assert wait_until(lambda: settled(p, n), 20, 0.2)
    m = metrics_of(p)
    if reason is None:
        assert metric_sum(m, "shadow_upstream_requests_total", role="shadow", code="200") == n
        assert metric_sum(m, "shadow_dropped_total") == 0
    else:
        assert metric_sum(m, "shadow_dropped_total", reason=reason) == n
    assert metric_sum(m, "shadow_upstream_requests_total", role="production", code="200") == n
    # Connections to failed shadows are closed; healthy ones are kept alive, at most one per copy in flight.
    allowed = baseline + (n if reason is None else 0) + 2
    assert wait_until(lambda: fd_count(p) <= allowed, 10, 0.2), (fd_count(p), baseline)
    assert len(shadow_log_lines(p)) <= 1


def test_unresolvable_shadow_name(tmp_path: Path, upstream, proxy) -> None:
    prefix = names_resolve_on_host_files_only(tmp_path)  # the lookup never leaves this host
    p, api = setup(tmp_path, upstream, proxy, "shadow-that-does-not-exist.invalid:80", prefix=prefix)
    drive(p, api, 5)
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_dropped_total", reason="dns_error") == 5, 15, 0.2)
    assert len(shadow_log_lines(p)) <= 1


def test_client_disconnects_before_production_answers(tmp_path: Path, upstream, proxy) -> None:
    sh = upstream("shadow")
    p, api = setup(tmp_path, upstream, proxy, sh.address)
    api.behaviour.delay = 1.0
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"GET /api/gone HTTP/1.1\r\nHost: x\r\n\r\n")
    assert api.wait_for(1)  # production got it; the client leaves before the answer
    s.close()
    api.behaviour.delay = 0.0
    assert sh.wait_for(1) and sh.seen[0].path == "/v1/gone"  # the complete request was copied
    drive_after = p.request("GET", "/api/after")
    assert drive_after[0] == 200
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_upstream_requests_total", role="shadow") == 2, 10)


def test_production_failing_while_shadow_is_fine(tmp_path: Path, upstream, proxy) -> None:
    reverse, sh = upstream("reverse"), upstream("shadow")
    dead = f"127.0.0.1:{free_port()}"
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("api", prefix="/api/", service="api"),
        mapping("api-shadow", prefix="/api/", service="cand", shadow=True),
    )
    p = proxy(
        f"http://{reverse.address}",
        sets={"mappings": str(m), "mapping_services": [f"api={dead}", f"cand={sh.address}"]},
    )
    for _ in range(3):
        assert p.request("GET", "/api/x")[0] == 502  # mitmproxy's own answer for an unreachable upstream
    assert sh.wait_for(3)  # copies go out regardless: they are taken before production is reached
    m = metrics_of(p)
    assert metric_sum(m, "shadow_upstream_requests_total", role="production", code="error") == 3
    assert metric_sum(m, "shadow_upstream_requests_total", role="shadow", code="200") == 3


def test_thousands_of_distinct_paths_keep_metric_cardinality_bounded(tmp_path: Path, upstream, proxy) -> None:
    sh = upstream("shadow")
    p, api = setup(tmp_path, upstream, proxy, sh.address)
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
    try:
        for i in range(2000):
            conn.request("GET", f"/api/item/{i}?session={i * 7919}")
            r = conn.getresponse()
            r.read()
            assert r.status == 200
    finally:
        conn.close()

    def accounted() -> float:  # every copy either answered or dropped, so the scrape below sees them all
        m = metrics_of(p)
        return metric_sum(m, "shadow_upstream_requests_total", role="shadow") + metric_sum(m, "shadow_dropped_total")

    done = wait_until(lambda: accounted() >= 2000, 180, 0.5)
    assert done, f"{accounted():g} of 2000 copies accounted for after 180 s; the shadow received {sh.count()}"
    status, body = p.admin("/metrics")
    series = [line for line in body.decode().splitlines() if line and not line.startswith("#")]
    assert len(series) < 80, len(series)  # a fixed set: mappings x services x codes x buckets
    assert "item" not in body.decode() and "session" not in body.decode()


def test_two_proxies_shadowing_into_each_other_do_not_amplify(tmp_path: Path, upstream, proxy) -> None:
    reverse_a, reverse_b = upstream("reverse-a"), upstream("reverse-b")
    port_a, port_b = free_port(), free_port()
    # A shadow mirrors a production route (Emissary): each proxy routes / to its own reverse target, by name.
    prod = mapping("prod", prefix="/", service="own", rewrite="")
    ma = write_mappings(tmp_path / "a.yaml", prod, mapping("to-b", prefix="/", service="b", rewrite="", shadow=True))
    mb = write_mappings(tmp_path / "b.yaml", prod, mapping("to-a", prefix="/", service="a", rewrite="", shadow=True))
    a = proxy(
        f"http://{reverse_a.address}",
        port=port_a,
        sets={"mappings": str(ma), "mapping_services": [f"b=127.0.0.1:{port_b}", f"own={reverse_a.address}"]},
    )
    b = proxy(
        f"http://{reverse_b.address}",
        port=port_b,
        sets={"mappings": str(mb), "mapping_services": [f"a=127.0.0.1:{port_a}", f"own={reverse_b.address}"]},
    )
    for _ in range(5):
        assert a.request("GET", "/ping")[0] == 200
    # a's copy reaches b (served by b's reverse target); b does not copy it back, since it carries the marker.
    assert reverse_b.wait_for(5)

    def settled(p: Proxy) -> bool:  # b copies before it forwards: an echo would be in flight or done by now
        m = metrics_of(p)
        return metric_sum(m, "shadow_inflight") == 0 and metric_sum(m, "shadow_backlog") == 0

    assert wait_until(lambda: settled(a) and settled(b), 10)
    assert reverse_a.count() == 5 and reverse_b.count() == 5
    assert metric_sum(metrics_of(b), "shadow_dropped_total", reason="loop") == 5


def test_admin_serves_only_gets_of_its_own_paths(tmp_path: Path, upstream, proxy) -> None:
    sh = upstream("shadow")
    p, _ = setup(tmp_path, upstream, proxy, sh.address)
    assert p.admin("/metrics")[0] == 200 and p.admin("/diag")[0] == 200 and p.admin("/")[0] == 200
    assert p.admin("/../etc/passwd")[0] == 404 and p.admin("/flows")[0] == 404
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", p.admin_port, timeout=5)
    try:
        conn.request("POST", "/metrics", body=b"x")
        r = conn.getresponse()
        assert r.status == 405
    finally:
        conn.close()
    with socket.create_connection(("127.0.0.1", p.admin_port), timeout=5) as s:  # garbage is shrugged off
        s.sendall(b"\x16\x03\x01garbage\r\n\r\n")
        s.recv(100)
    assert p.admin("/metrics")[0] == 200
