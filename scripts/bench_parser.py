"""Micro-benchmark of the ways to read a shadow's response: `shadow_addon.reader` as the sender uses it (its fast
path takes a plain Content-Length answer, h11 the rest), the same reader with h11 reading everything (its head
handed over in two reads), and mitmproxy's HTTP/1 head reader with h11's body readers (what mitmproxy's proxy
layer does). N typical responses go through each, one exchange per response, as on a kept-alive connection.

    .venv/bin/python scripts/bench_parser.py [N]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import h11
from h11._readers import ChunkedReader, ContentLengthReader, Http10Reader
from h11._receivebuffer import ReceiveBuffer
from mitmproxy.net.http import http1

from shadow_addon.reader import ResponseReader

JSON = b'{"name":"shadow","method":"GET","path":"/v1/items/42","host":"api","size":0}'
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ndate: Tue, 01 Dec 2026 22:00:00 GMT\r\nserver: bench\r\n"
RESPONSES = {
    "keep-alive 200 JSON": HEAD + b"content-length: %d\r\n\r\n%s" % (len(JSON), JSON),
    "chunked 200 JSON": HEAD + b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(JSON), JSON),
}


class _Get:
    method = "GET"


def with_reader(data: bytes, n: int) -> None:
    r = ResponseReader()
    for _ in range(n):
        r.start("GET", 0, 65536)
        assert r.feed(data) and r.status == 200 and r.reusable


def with_h11(data: bytes, n: int) -> None:
    r = ResponseReader()
    first, rest = data[:1], data[1:]
    for _ in range(n):
        r.start("GET", 0, 65536)
        assert not r.feed(first) and r.feed(rest) and r.status == 200 and r.reusable and r.h11_used


def with_mitmproxy_readers(data: bytes, n: int) -> None:
    buf = ReceiveBuffer()
    req: Any = _Get()
    for _ in range(n):
        buf += data
        lines = buf.maybe_extract_lines()
        assert lines
        resp = http1.read_response_head([bytes(x) for x in lines])
        size = http1.expected_http_body_size(req, resp)
        reader = ChunkedReader() if size is None else Http10Reader() if size == -1 else ContentLengthReader(size or 0)
        while type(reader(buf)) is not h11.EndOfMessage:
            pass
        assert resp.status_code == 200 and not http1.connection_close(resp.data.http_version, resp.headers)


def measure(fn: Callable[[bytes, int], None], data: bytes, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        fn(data, n)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    print(f"{n} responses, best of 5, microseconds per response")
    print(f"  {'':20}  {'reader':>8}  {'h11 only':>8}  {'mitmproxy head reader + h11 body readers':>40}")
    for name, data in RESPONSES.items():
        a, b, c = (measure(fn, data, n) for fn in (with_reader, with_h11, with_mitmproxy_readers))
        print(f"  {name:20}  {a:8.1f}  {b:8.1f}  {c:40.1f}")


if __name__ == "__main__":
    main()
