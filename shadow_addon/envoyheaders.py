"""The request headers Envoy changes on the way, with Emissary's defaults, as pure functions over mitmproxy Headers.

Emissary's listener (v3listener.py base_http_config, irambassador.py defaults) runs Envoy's connection manager with
`use_remote_address: true`, `xff_num_trusted_hops: 0`, `preserve_external_request_id: false` and no
`internal_address_config` (so since Envoy 1.33 no client address is internal: every request is an edge request), and
the router with `suppress_envoy_headers: false`. So before routing a request gets x-forwarded-for, x-forwarded-proto,
a new x-request-id and x-envoy-external-address, and loses x-envoy-internal and the internal-only x-envoy-* headers;
the router adds x-envoy-expected-rq-timeout-ms and, when it rewrites the path, x-envoy-original-path. The mirror is a
copy of all that, sent by Envoy's async client, which marks it x-envoy-internal and appends its own address to
x-forwarded-for.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass

from mitmproxy.http import Headers

INTERNAL = "x-envoy-internal"
XFF = "x-forwarded-for"

# conn_manager_utility.cc mutateRequestHeaders: removed from a request that is not internal (cleanInternalHeaders).
_INTERNAL_ONLY = (
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
)
# ...and from an edge request also these.
_EDGE_ONLY = ("x-envoy-decorator-operation", "x-envoy-downstream-service-cluster", "x-envoy-downstream-service-node")

_XFF, _INTERNAL, _TIMEOUT = XFF.encode(), INTERNAL.encode(), b"x-envoy-expected-rq-timeout-ms"
_CLEANED = frozenset(n.encode() for n in (INTERNAL, "keep-alive", "proxy-connection", *_INTERNAL_ONLY, *_EDGE_ONLY))


@dataclass(frozen=True, slots=True)
class Downstream:
    """The client's connection as the connection manager sees it."""

    client_ip: str  # the peer's address
    local_ip: str  # the proxy's address on that connection (Envoy's local address)
    tls: bool


@functools.lru_cache(maxsize=1024)  # one parse per client address, not per request
def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def append_xff(headers: Headers, ip: str) -> None:
    """http/utility.cc Utility::appendXff: `, ip` after an existing value, else the header set to ip."""
    if ip:  # no IP peer (Envoy appends only an IP address)
        headers.fields = edit(headers.fields, ((_XFF, _encode(ip), True),))


# One header edit: (lower-case name, value, append). append=False sets the header as `Headers[name] = value` does
# (the value in place of the first field of that name, the others removed, else a new field at the end);
# append=True is Utility::appendXff (the value after `, ` and the old values joined, else set).
Op = tuple[bytes, bytes, bool]
Fields = tuple[tuple[bytes, bytes], ...]


def edit(fields: Fields, ops: tuple[Op, ...], drop: frozenset[bytes] = frozenset()) -> Fields:
    """`fields` with the fields named in `drop` removed, then `ops` applied in order, in one pass over the fields
    (each `Headers[name] = value` would scan and rebuild them once). The names of `ops` differ from each other."""
    where: dict[bytes, int] = {}  # name -> index in `out` of its first field
    old: dict[bytes, list[bytes]] = {}  # name -> its values, for the appended ones
    names = {op[0] for op in ops}
    out: list[tuple[bytes, bytes]] = []
    for kv in fields:
        k = kv[0].lower()
        if k in drop:
            continue
        if k in names:
            if k not in where:
                where[k] = len(out)
                out.append(kv)
            old.setdefault(k, []).append(kv[1])
        else:
            out.append(kv)
    for name, value, append in ops:
        if append and (before := b", ".join(old.get(name, ()))):
            value = before + b", " + value
        i = where.get(name)
        if i is None:
            out.append((name, value))
        else:
            out[i] = (out[i][0], value)
    return tuple(out)


def _encode(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")  # as mitmproxy's Headers encode a str


# The variant's hex digit: its top two bits set to 10 (RFC 4122), as uuid.UUID(version=4) sets them.
_VARIANT = bytes(b"89ab"[int(chr(c), 16) & 3] if chr(c) in "0123456789abcdef" else 0 for c in range(256))


def _request_ids() -> Iterator[bytes]:
    """Random UUID4 strings, as str(uuid.uuid4()) writes them, cut from 2048 bytes of the system's random source
    at a time, as Envoy does (common/common/random_generator.cc RandomGeneratorImpl::uuid prefetches 2048)."""
    while True:
        h = os.urandom(2048).hex().encode()
        yield from [
            b"%s-%s-4%s-%c%s-%s"
            % (
                h[i : i + 8],
                h[i + 8 : i + 12],
                h[i + 13 : i + 16],
                _VARIANT[h[i + 16]],
                h[i + 17 : i + 20],
                h[i + 20 : i + 32],
            )
            for i in range(0, len(h), 32)
        ]


new_request_id = _request_ids().__next__  # a new x-request-id (bytes)


def _tokens(value: str | None) -> list[str]:
    return [t.strip() for t in (value or "").split(",") if t.strip()]


def is_upgrade(headers: Headers) -> bool:
    """http/utility.cc Utility::isUpgrade: an Upgrade header and an `upgrade` token in Connection."""
    return "upgrade" in headers and any(t.lower() == "upgrade" for t in _tokens(headers.get("connection")))


def drop_unsupported_upgrade(headers: Headers) -> bool:
    """Envoy's handling of Upgrade before routing; True when it changed the headers.

    `Upgrade: h2c` (curl --http2 over http) is not supported: http1/codec_impl.cc ConnectionImpl::onHeadersComplete
    removes Upgrade, HTTP2-Settings and those two tokens of Connection, and the request is served as plain HTTP/1.1.
    An Upgrade without `Connection: upgrade` is no upgrade: conn_manager_utility.cc mutateRequestHeaders removes it.
    (Other Connection tokens stay: mitmproxy keeps its own connection handling, which reads them.)
    """
    upgrade = headers.get("upgrade")
    if upgrade is None:
        return False
    if not is_upgrade(headers):
        del headers["upgrade"]
        return True
    if upgrade.strip().lower() != "h2c":
        return False
    del headers["upgrade"]
    headers.pop("http2-settings", None)
    keep = [t for t in _tokens(headers.get("connection")) if t.lower() not in ("upgrade", "http2-settings")]
    if keep:
        headers["connection"] = ", ".join(keep)
    else:
        headers.pop("connection", None)
    return True


def sets(name: str) -> bool:
    """Whether the connection manager may set or remove this header before routing (so routing must see it)."""
    n = name.lower()
    return n.startswith(("x-forwarded-", "x-envoy-")) or n == "x-request-id"


def connection_manager(headers: Headers, d: Downstream, request_id: str | None = None) -> None:
    """What the connection manager does before routing (conn_manager_utility.cc mutateRequestHeaders, with
    Emissary's use_remote_address, no trusted hops and preserve_external_request_id false).

    Every request is external: Emissary configures no internal_address_config, and Envoy's default for it
    (conn_manager_config.h DefaultInternalAddressConfig, since 1.33, the runtime guard
    explicit_internal_address_config removed in 1.36) counts no address as internal. So it is an edge request."""
    headers.fields = edge_fields(headers.fields, d, request_id)


_PROTO = (b"x-forwarded-proto", b"https", False), (b"x-forwarded-proto", b"http", False)


def edge_fields(fields: Fields, d: Downstream, request_id: str | None = None) -> Fields:
    """`connection_manager` over raw fields, in one pass."""
    # http/utility.cc appendXff; a loopback peer is replaced by Envoy's own address.
    ip = d.local_ip if _is_loopback(d.client_ip) else d.client_ip
    ops: list[Op] = [(_XFF, _encode(ip), True)] if ip else []
    ops.append(_PROTO[0] if d.tls else _PROTO[1])
    if d.client_ip:
        ops.append((b"x-envoy-external-address", _encode(d.client_ip), False))
    rid = _encode(request_id) if request_id else new_request_id()  # a new id for every edge request
    ops.append((b"x-request-id", rid, False))
    # "Clean proxy headers", then cleanInternalHeaders(edge_request=true), then the ops.
    return edit(fields, tuple(ops), _CLEANED)


def router(headers: Headers, timeout_ms: int, original_path: str | None) -> None:
    """What the router adds (router.cc Filter::decodeHeaders): x-envoy-expected-rq-timeout-ms from the route's
    timeout when there is one (FilterUtility::setTimeoutHeaders), x-envoy-original-path when the route rewrites the
    path (config_impl.cc finalizePathHeader, Emissary's default `rewrite: /` included)."""
    if ops := _router_ops(timeout_ms, original_path):
        headers.fields = edit(headers.fields, ops)


def _router_ops(timeout_ms: int, original_path: str | None) -> tuple[Op, ...]:
    ops: tuple[Op, ...] = ()
    if timeout_ms > 0:
        ops = ((_TIMEOUT, b"%d" % timeout_ms, False),)
    if original_path is not None:
        ops += ((b"x-envoy-original-path", _encode(original_path), False),)
    return ops


def mirror(fields: Fields, local_ip: str | None, timeout_ms: int) -> Fields:
    """The mirror's headers: production's, then what Envoy's async client adds (async_client_impl.cc
    AsyncStreamImpl::sendHeaders: x-envoy-internal: true, its own address appended to x-forwarded-for), then what
    the async client's own router adds: x-envoy-expected-rq-timeout-ms from the mirror's timeout, the production
    route's (router.cc gives the mirror timeout_.global_timeout_ and its filter config), even where the route's
    remove_request_headers took it off production's request."""
    ops: tuple[Op, ...] = ((_INTERNAL, b"true", False),)
    if local_ip:
        ops += ((_XFF, _encode(local_ip), True),)
    return edit(fields, ops + _router_ops(timeout_ms, None))
