"""A copy as a request: what to send to a shadow service (`Copy`), what came of it (`Outcome`), and the HTTP/1.1
bytes written for it (`assemble`), which the flow view shows as sent (`sent_fields`). Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from .addresses import Address

# Never forwarded as they were: hop-by-hop headers (RFC 9110 7.6.1), and the framing and Host headers that
# the sender writes itself. `expect` is dropped because the whole body is sent at once.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",
    }
)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(slots=True)
class Copy:
    """One request to send to a shadow service, already shaped (path, headers, body)."""

    mapping: str  # the shadow Mapping's name (metric label)
    service: str  # the shadow Mapping's service (metric label)
    address: Address
    method: str
    path: str
    host: str  # Host header value
    fields: tuple[tuple[bytes, bytes], ...]  # request headers as received (after production's edits)
    body: bytes
    timeout: float
    add: tuple[tuple[bytes, bytes], ...] = ()
    remove: frozenset[bytes] = frozenset()
    keep_body: int = 0  # bytes of the response body to keep for on_result (0: discard)
    read_limit: int = 0  # bytes of the response body read at least (0: response_limit), kept or not
    hash_body: bool = False  # compute the whole response body's sha256 while reading (for comparison)
    context: object = None  # opaque, handed back with the outcome (e.g. the production flow's id)
    enqueued: float = 0.0
    http2: bool = False  # over HTTP/2 (the shadow Mapping's `grpc: true`), by h2sender
    trailers: tuple[tuple[bytes, bytes], ...] = ()  # request trailers (sent over HTTP/2 only)


@dataclass(slots=True)
class Outcome:
    status: int | None = None  # the shadow's status, or None when it failed
    reason: str | None = None  # drop reason when it failed
    error: str = ""
    seconds: float = 0.0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    body_size: int = 0
    body_sha256: str = ""
    http_version: str = "HTTP/1.1"
    timestamp_start: float = 0.0
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)


def _transfer_codings(values: list[bytes]) -> list[bytes]:
    """The transfer-codings other than chunked, in order (RFC 9112 6.1: chunked is always the final one)."""
    codings = []
    for v in values:
        for t in v.split(b","):
            t = t.strip().lower()
            if t and t != b"chunked":
                codings.append(t)
    return codings


def _fields_and_codings(c: Copy) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    fields = [(b"Host", c.host.encode("utf-8", "surrogateescape"))]
    te: list[bytes] = []
    for k, v in c.fields:
        lk = k.lower()
        if lk in HOP_BY_HOP:
            if lk == b"transfer-encoding":
                te.append(v)
        elif lk not in c.remove:
            fields.append((k, v))
    fields += c.add
    codings = _transfer_codings(te) if te else []
    if codings:
        # The body still carries these codings (gzip...), as production received it: the shadow must be told so,
        # and a request with a coding other than chunked must end with chunked (RFC 9112 6.1).
        fields.append((b"transfer-encoding", b", ".join([*codings, b"chunked"])))
    elif c.body or c.method in _BODY_METHODS:
        fields.append((b"content-length", b"%d" % len(c.body)))
    return fields, codings


def sent_fields(c: Copy) -> list[tuple[bytes, bytes]]:
    """The header fields of the copy, exactly as the sender writes them (Host first, then the rest)."""
    return _fields_and_codings(c)[0]


def assemble(c: Copy) -> list[bytes]:
    """The copy as the bytes to write: head, then the body (framed by chunked when it has other codings)."""
    fields, codings = _fields_and_codings(c)
    parts = [f"{c.method} {c.path} HTTP/1.1\r\n".encode("utf-8", "surrogateescape")]
    parts += [b"%s: %s\r\n" % kv for kv in fields]
    parts.append(b"\r\n")
    if codings:
        if c.body:
            parts += [b"%x\r\n" % len(c.body), c.body, b"\r\n"]
        parts.append(b"0\r\n\r\n")
    elif c.body:
        parts.append(c.body)
    return parts
