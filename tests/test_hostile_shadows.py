"""Shadows that answer without end: each copy's answer costs a bounded amount whatever the shadow sends.

Real mitmdump, real servers on loopback. Each case checks production's answers, the reason every copy is counted
under, and the memory gauge; none measures time.
"""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest
from support import FaultServer, Proxy, mapping, metric_sum, metrics_of, wait_until, write_mappings

MB = 1_000_000
EARLY_HINTS = (
    b"HTTP/1.1 103 Early Hints\r\n"
    + b"".join(b"link: </static/%d.css>; rel=preload\r\n" % i for i in range(2000))
    + b"\r\n"
)


@dataclass
class Received:
    head: bytes
    headers: dict[str, str]
    body: bytes


class Hostile(FaultServer):
    """A loopback HTTP server that reads each request whole, records it, then answers in one chosen way:

    continue (100 Continue without end), hints (103 Early Hints of 2,000 fields, repeated), chunked (an endless
    fast chunked 200), http10 (HTTP/1.0 200 without length, streamed until the peer closes), blackhole (never
    answers), ok (200 "ok"). Every loop is bounded in count; a closed peer ends it at once."""

    def __init__(self, mode: str) -> None:
        self.received: list[Received] = []
        super().__init__(mode)

    def _read_request(self, rfile: BinaryIO) -> Received | None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = rfile.readline(65536)
            if not line:
                return None
            head += line
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            if b":" in line:
                k, v = line.split(b":", 1)
                headers[k.decode().strip().lower()] = v.decode().strip()
        body = b""
        if headers.get("transfer-encoding", "").replace(" ", "").lower().endswith("chunked"):
            for _ in range(100000):
                size = int(rfile.readline(1024).split(b";")[0], 16)
                if size == 0:
                    while rfile.readline(65536) not in (b"\r\n", b""):
                        pass
                    break
                body += rfile.read(size)
                rfile.readline(1024)
        elif "content-length" in headers:
            body = rfile.read(int(headers["content-length"]))
        return Received(head, headers, body)

    def _serve(self, c: socket.socket) -> None:
        try:
            c.settimeout(30)
            rfile = c.makefile("rb")
            while not self.stopping.is_set():
                req = self._read_request(rfile)
                if req is None:
                    return
                with self.lock:
                    self.received.append(req)
                if self.mode == "ok":
                    c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    continue
                self._misbehave(c)
                return
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    def _misbehave(self, c: socket.socket) -> None:
        if self.mode == "blackhole":
            self.stopping.wait(120)
            return
        if self.mode == "chunked":
            c.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        elif self.mode == "http10":
            c.sendall(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\n")
        block = {
            "continue": b"HTTP/1.1 100 Continue\r\n\r\n",
            "hints": EARLY_HINTS,
            "chunked": b"4000\r\n" + b"c" * 0x4000 + b"\r\n",
            "http10": b"h" * 65536,
        }[self.mode]
        for _ in range(200000):  # ends when the proxy closes the connection (or, at worst, at this count)
            if self.stopping.is_set():
                return
            c.sendall(block)

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def stop(self) -> None:
        with self.lock:
            for c in self.conns:  # wakes a thread blocked in sendall
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        super().stop()


@pytest.fixture
def hostile() -> Iterator[Callable[[str], Hostile]]:
    made: list[Hostile] = []

    def make(mode: str) -> Hostile:
        h = Hostile(mode)
        made.append(h)
        return h

    yield make
    for h in made:
        h.stop()


def shadowing(tmp_path: Path, proxy, production: str, shadows: dict[str, str], sets: dict | None = None) -> Proxy:
    """A proxy with, per prefix in `shadows` (prefix -> shadow address), a production Mapping to `production` and
    a shadow Mapping."""
    docs, services = [], [f"api={production}"]
    for i, (prefix, address) in enumerate(shadows.items()):
        docs += [
            mapping(f"prod{i}", prefix=prefix, service="api", rewrite=""),
            mapping(f"shadow{i}", prefix=prefix, service=f"cand{i}", shadow=True),
        ]
        services.append(f"cand{i}={address}")
    m = write_mappings(tmp_path / "m.yaml", *docs)
    return proxy(
        f"http://{production}",
        sets={"mappings": str(m), "mapping_services": services, "shadow_timeout": "60", **(sets or {})},
    )


@pytest.mark.parametrize(
    ("mode", "reason", "status_seen"),
    [
        ("continue", "interim_limit", False),
        ("hints", "head_limit", False),
        ("chunked", "response_limit", True),
        ("http10", "response_limit", True),
    ],
)
def test_an_answer_without_end_is_cut_at_its_cap(
    tmp_path: Path, proxy, upstream, hostile, mode: str, reason: str, status_seen: bool
) -> None:
    h = hostile(mode)
    p = shadowing(tmp_path, proxy, upstream("api").address, {"/api/": h.address})
    n = 5
    for i in range(n):
        status, _, body = p.request("GET", f"/api/{i}")
        assert status == 200 and json.loads(body)["path"] == f"/api/{i}"
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_dropped_total", reason=reason) == n, 60, 0.2)
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_inflight") == 0, 30, 0.2)
    m = metrics_of(p)
    assert metric_sum(m, "shadow_dropped_total") == n  # no copy counted under another reason
    # The status seen before the cap still counts as the shadow's answer; without one, the copy is an error.
    # After two capped answers in a row the service is backed off: the copies meanwhile are dropped under the
    # same reason without being sent, so the shadow saw from 2 to n of them.
    code = "200" if status_seen else "error"
    sent = h.count()
    assert 2 <= sent <= n
    assert metric_sum(m, "shadow_upstream_requests_total", role="shadow", code=code) == sent
    assert metric_sum(m, "shadow_upstream_requests_total", role="shadow") == sent
    assert metric_sum(m, "shadow_memory_bytes") == 0
    assert p.request("GET", "/api/after")[0] == 200


def test_silent_shadows_hold_copies_within_the_memory_limit(tmp_path: Path, proxy, upstream, hostile) -> None:
    silent = [hostile("blackhole") for _ in range(3)]
    prefixes = ["/a/", "/b/", "/c/"]
    p = shadowing(
        tmp_path,
        proxy,
        upstream("api").address,
        {prefix: s.address for prefix, s in zip(prefixes, silent, strict=True)},
        {"shadow_memory_limit": "3m"},  # 3 MiB: three 1 MB copies fit, a fourth does not
    )
    body = b"p" * MB
    for _ in range(4):
        for prefix in prefixes:
            status, _, out = p.request("POST", prefix + "upload", body=body)
            assert status == 200 and json.loads(out)["size"] == MB
    assert wait_until(lambda: all(s.count() == 1 for s in silent), 30, 0.2)
    m = metrics_of(p)
    assert metric_sum(m, "shadow_memory_bytes") == 3 * MB <= 3 * 1024 * 1024
    assert metric_sum(m, "shadow_dropped_total", reason="overload") == 9
    assert metric_sum(m, "shadow_inflight") == 3
    for i in range(3):  # labelled by the Mapping's service, as every other metric
        assert metric_sum(m, "shadow_inflight", service=f"cand{i}") == 1


def test_a_body_with_a_transfer_coding_reaches_the_shadow_as_production_got_it(tmp_path: Path, proxy, hostile) -> None:
    prod, shadow = hostile("ok"), hostile("ok")
    p = shadowing(tmp_path, proxy, prod.address, {"/api/": shadow.address})
    coded = gzip.compress(b'{"hello": "world"}')
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
        s.sendall(
            b"POST /api/in HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: gzip, chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(coded), coded)
        )
        assert s.recv(100).startswith(b"HTTP/1.1 200")
    assert wait_until(lambda: shadow.count() == 1, 10) and prod.count() == 1
    got_prod, got_shadow = prod.received[0], shadow.received[0]
    assert got_prod.body == coded  # production got the gzip-coded bytes and was told so...
    assert got_prod.headers["transfer-encoding"].replace(" ", "") == "gzip,chunked"
    assert got_shadow.body == got_prod.body  # ...and so does the shadow
    assert got_shadow.headers["transfer-encoding"].replace(" ", "") == "gzip,chunked"
    assert "content-length" not in got_shadow.headers
