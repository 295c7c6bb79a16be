"""What the upstreams send: the one JSON answer every well-behaved server gives, and the hostile shadows' bytes."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import brotli

# Every upstream answers the same small JSON document (~150 bytes, as a small API answer): with shadow_compare
# the shadow's answer then matches production's, field by field, as a correct new version's would.
BODY = (
    json.dumps(
        {
            "id": 4711,
            "name": "bench widget",
            "status": "active",
            "price": 12.5,
            "stock": 42,
            "tags": ["alpha", "beta", "gamma"],
            "updated": "2024-05-01T12:00:00Z",
        },
        separators=(",", ":"),
    ).encode()
    + b"\n"
)
CONTENT_TYPE = "application/json"
MARK = b"x-mitmproxy-shadow"  # the addon's header on every copy

BLOCK = 256 * 1024  # bytes an endless answer writes at a time
HINT_HEADERS = 2000  # Link headers per 103 Early Hints
# The largest bomb whose gzip form (deflate tops out at ~1,030:1) stays under the addon's default
# shadow_compare_body_limit (1 MiB), so the addon decodes it rather than comparing size and hash.
BOMB_MIB = 960


def response(body: bytes, *headers: tuple[str, str]) -> bytes:
    """A complete HTTP/1.1 200 answer with Content-Length (kept alive)."""
    head = [("Content-Type", CONTENT_TYPE), *headers, ("Content-Length", str(len(body)))]
    return b"HTTP/1.1 200 OK\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in head) + b"\r\n" + body


@dataclass(frozen=True, slots=True)
class Endless:
    """An answer that never ends: `head` once, then `block` again and again, as fast as the socket takes it."""

    head: bytes
    block: bytes


def _repeat(unit: bytes, size: int = BLOCK) -> bytes:
    return unit * max(1, size // len(unit))


def flood() -> Endless:
    """HTTP/1.1 100 Continue interim responses without end (a final answer never comes)."""
    return Endless(b"", _repeat(b"HTTP/1.1 100 Continue\r\n\r\n"))


def hints() -> Endless:
    """103 Early Hints of HINT_HEADERS Link headers each (~62 KB, under a 64 KiB head limit), repeated."""
    links = b"".join(b"Link: </%04d.js>; rel=preload\r\n" % i for i in range(HINT_HEADERS))
    return Endless(b"", b"HTTP/1.1 103 Early Hints\r\n" + links + b"\r\n")


def stream() -> Endless:
    """200 with a chunked body that never ends (64 KiB chunks)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = 64 * 1024
    return Endless(head, _repeat(b"%x\r\n" % chunk + b"s" * chunk + b"\r\n"))


def stream10() -> Endless:
    """HTTP/1.0 200 without a length: the body runs until the connection closes, which the server never does."""
    return Endless(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n", b"s" * BLOCK)


def _zeros(mib: int, feed: Callable[[bytes], bytes], end: Callable[[], bytes]) -> bytes:
    """`mib` MiB of zeros through a streaming compressor, 16 MiB at a time (never the whole input in memory)."""
    chunk = bytes(16 << 20)
    return b"".join([*(feed(chunk) for _ in range(max(1, mib // 16))), end()])


def bomb_br(mib: int = BOMB_MIB) -> bytes:
    """A JSON answer of `mib` MiB of zeros as Content-Encoding: br (~0.8 KB per GiB; 8 GiB make ~6.5 KB)."""
    c = brotli.Compressor(quality=5, lgwin=24)
    return response(_zeros(mib, c.process, c.finish), ("Content-Encoding", "br"))


def bomb_gzip(mib: int = BOMB_MIB) -> bytes:
    """The same as Content-Encoding: gzip (~1 MB per GiB)."""
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return response(_zeros(mib, c.compress, c.flush), ("Content-Encoding", "gzip"))


# The comparison's hard cases: answers that differ in ways that once made comparing cost production dearly.
def json_answer(doc: object, *headers: tuple[str, str]) -> bytes:
    return response(json.dumps(doc, separators=(",", ":")).encode(), *headers)


def listing(n: int, tag: str) -> list[dict[str, object]]:
    """A JSON list of n records (~90 bytes each): `tag` changes every element's name."""
    return [{"id": i, "name": f"widget {i} {tag}", "price": i * 1.25, "stock": i % 17, "ok": True} for i in range(n)]


LIST_ITEMS = 1300  # ~90 KB


def list_answer(tag: str) -> bytes:
    return json_answer(listing(LIST_ITEMS, tag))


def big_json() -> bytes:
    """~1 MB of JSON (under the 1 MiB compare limit): a shadow answering far more than production does."""
    return json_answer(listing(13_500, "big"))


def gzip_json() -> bytes:
    """gzip of a JSON document decoding to ~1,040,000 bytes (under the 1 MiB compare limit)."""
    doc = json.dumps(listing(15_000, "gz"), separators=(",", ":")).encode()
    cut = doc[: 1_040_000 - 1].rsplit(b",{", 1)[0] + b"]"
    return response(_gzip(cut), ("Content-Encoding", "gzip"))


def _gzip(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


DEEP = 4000


def deep_answer(leaf: int = 1, ts: int | None = None) -> bytes:
    """~8 KB of JSON nested DEEP arrays deep; with `ts`, inside an object beside a field that varies."""
    nested = "[" * DEEP + str(leaf) + "]" * DEEP
    body = nested if ts is None else f'{{"ts":{ts},"d":{nested}}}'
    return response(body.encode())


def wide_answer(fill: str) -> bytes:
    """20 JSON keys of 50 KB each (~1 MB): labels that would be kept whole."""
    return json_answer({f"{i:02d}" + fill * 50_000: i for i in range(20)})
