"""Production's and the shadow's latencies measured alike: the same code behind both gives the same figures."""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import Proxy, mapping, metrics_of, wait_until, write_mappings

REQUESTS = 60
# Loopback timings on a shared 2-core machine: the same code behind both measured 2.7x-3.2x at p50 on a slow day
# (this release and the one before alike; means ~1.8x), production's figure absorbing the event loop's handling of
# the copy's answer, which arrives first. The flaw this guards against was 20x.
RATIO = 4.0


class _Handler(http.server.BaseHTTPRequestHandler):
    """Python's http.server as a new user's own service would be (HTTP/1.0, a connection per request)."""

    def do_GET(self) -> None:  # noqa: N802
        body = b'{"ok": true}\n'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def services() -> Iterator[tuple[str, str]]:
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler) for _ in range(2)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        yield tuple(f"127.0.0.1:{s.server_address[1]}" for s in servers)  # type: ignore[misc]
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def _quantile(m: dict, role: str, q: float) -> float:
    """q-quantile of a role's latency histogram, interpolated in its bucket as Prometheus does."""
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in m.items()
        if name == "shadow_upstream_request_duration_seconds_bucket" and dict(labels)["role"] == role
    )
    total = buckets[-1][1]
    rank, lo, below = q * total, 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            return lo + (le - lo) * ((rank - below) / max(n - below, 1e-9)) if le != float("inf") else lo
        lo, below = le, n
    return lo


def test_identical_services_show_equal_latency(
    tmp_path: Path, services: tuple[str, str], proxy: Callable[..., Proxy]
) -> None:
    prod, shadow = services
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("svc", prefix="/", service="prod-svc", rewrite=""),
        mapping("svc-next", prefix="/", service="next-svc", shadow=True),
    )
    p = proxy(
        f"http://{prod}",
        sets={"mappings": str(m), "mapping_services": [f"prod-svc={prod}", f"next-svc={shadow}"]},
    )
    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
    try:
        for _ in range(REQUESTS):  # one keep-alive connection, as a browser or curl with several URLs
            conn.request("GET", "/a")
            r = conn.getresponse()
            assert r.status == 200 and r.read()
    finally:
        conn.close()

    def counts() -> tuple[float, float]:
        got = metrics_of(p)
        return tuple(  # type: ignore[return-value]
            sum(
                v
                for (n, ls), v in got.items()
                if n == "shadow_upstream_request_duration_seconds_count" and dict(ls)["role"] == role
            )
            for role in ("production", "shadow")
        )

    assert wait_until(lambda: counts() == (REQUESTS, REQUESTS), 10), counts()
    got = metrics_of(p)
    p50 = {role: _quantile(got, role, 0.5) for role in ("production", "shadow")}
    means = {
        role: sum(v for (n, ls), v in got.items() if n.endswith("_sum") and dict(ls).get("role") == role) / REQUESTS
        for role in ("production", "shadow")
    }
    print("p50 (s):", p50, "mean (s):", means)
    assert max(p50.values()) <= RATIO * min(p50.values()), p50
