"""A copy's HTTP/2 header block: its fields (pseudo-headers, `:authority` with `-shadow`, no hop-by-hop fields,
`te: trailers`) and their HPACK encoding.

The encoding uses no dynamic table (RFC 7541 4.2: an encoder may choose a table smaller than the peer allows, here
0, signalled once at the start of the first block). Each field's representation then depends on nothing but the
field, so it is encoded once and reused by every copy that repeats it, on every connection: the same method,
authority, path, content-type... cost a dictionary look-up instead of a table search and a Huffman pass. Strings
go as they are, without Huffman coding: the fields that miss the cache are the ones unique to a request (an id, a
deadline), coded once and never again, and the service decodes plain strings faster. The price is a few hundred
bytes a copy on the wire that a dynamic table and Huffman coding would have saved.
"""

from __future__ import annotations

from collections.abc import Iterable

import hpack

from .copyrequest import HOP_BY_HOP, Copy

# Hop-by-hop and HTTP/1 framing fields, never sent over HTTP/2 (RFC 9113 8.2.2); `te` is sent as `trailers`.
_SKIP = HOP_BY_HOP | {b"http2-settings"}
MAX_CACHED = 1024  # distinct fields kept encoded (all connections share them); the cache is emptied when full
MAX_CACHED_FIELD = 512  # bytes of name and value: a longer field is encoded each time, not kept
_NO_TABLE = b"\x20"  # dynamic table size update to 0 (RFC 7541 6.3)


def request_headers(c: Copy, scheme: str) -> list[tuple[bytes, bytes]]:
    """The copy's HTTP/2 header block: pseudo-headers (`:authority` is the Host with `-shadow`), the request's
    fields in lower case without hop-by-hop ones, `te: trailers`, the added ones."""
    out = [
        (b":method", c.method.encode()),
        (b":scheme", scheme.encode()),
        (b":authority", c.host.encode("utf-8", "surrogateescape")),
        (b":path", c.path.encode("utf-8", "surrogateescape")),
    ]
    for k, v in c.fields:
        lk = k.lower()
        if lk not in _SKIP and lk not in c.remove and not lk.startswith(b":"):
            out.append((lk, v))
    out.append((b"te", b"trailers"))  # gRPC servers require it (PROTOCOL-HTTP2.md "Requests")
    out += [(k.lower(), v) for k, v in c.add]
    return out


def _stateless() -> hpack.Encoder:
    enc = hpack.Encoder()
    enc.header_table_size = 0  # every field a static-table index or a literal the table cannot keep
    enc.encode([])  # its own size update, which `BlockEncoder` sends once per connection instead
    return enc


_ENCODER = _stateless()
_FIELDS: dict[tuple[bytes, bytes], bytes] = {}


def encode_field(field: tuple[bytes, bytes]) -> bytes:
    """One field's representation without a dynamic table, from the shared cache when it was seen before."""
    b = _FIELDS.get(field)
    if b is None:
        b = _ENCODER.encode([field], huffman=False)
        if len(field[0]) + len(field[1]) <= MAX_CACHED_FIELD:
            if len(_FIELDS) >= MAX_CACHED:
                _FIELDS.clear()
            _FIELDS[field] = b
    return b


class BlockEncoder(hpack.Encoder):
    """The `encoder` of one h2 connection: header blocks without a dynamic table, from `encode_field`."""

    def __init__(self) -> None:
        super().__init__()
        self._first = True

    @property
    def header_table_size(self) -> int:
        return 0

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        pass  # the peer's SETTINGS_HEADER_TABLE_SIZE is a maximum; this encoder keeps using none

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:  # type: ignore[override]
        parts = [encode_field(f) for f in headers]
        if self._first:
            self._first = False
            return _NO_TABLE + b"".join(parts)
        return b"".join(parts)
