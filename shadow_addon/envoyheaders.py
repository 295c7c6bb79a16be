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
import uuid
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
    if not ip:  # no IP peer (Envoy appends only an IP address)
        return
    old = headers.get(XFF)
    headers[XFF] = f"{old}, {ip}" if old else ip


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
    # "Clean proxy headers", then cleanInternalHeaders(edge_request=true): none of them is one set below, so
    # they go in one pass over the fields (a request has none of them, almost always).
    fields = headers.fields
    if any(k.lower() in _CLEANED for k, _ in fields):
        headers.fields = tuple(kv for kv in fields if kv[0].lower() not in _CLEANED)
    # http/utility.cc appendXff; a loopback peer is replaced by Envoy's own address.
    append_xff(headers, d.local_ip if _is_loopback(d.client_ip) else d.client_ip)
    headers["x-forwarded-proto"] = "https" if d.tls else "http"
    if d.client_ip:
        headers["x-envoy-external-address"] = d.client_ip
    headers["x-request-id"] = request_id or str(uuid.uuid4())  # a new id for every edge request


def router(headers: Headers, timeout_ms: int, original_path: str | None) -> None:
    """What the router adds (router.cc Filter::decodeHeaders): x-envoy-expected-rq-timeout-ms from the route's
    timeout when there is one (FilterUtility::setTimeoutHeaders), x-envoy-original-path when the route rewrites the
    path (config_impl.cc finalizePathHeader, Emissary's default `rewrite: /` included)."""
    if timeout_ms > 0:
        headers["x-envoy-expected-rq-timeout-ms"] = str(timeout_ms)
    if original_path is not None:
        headers["x-envoy-original-path"] = original_path


def mirror(
    fields: tuple[tuple[bytes, bytes], ...], local_ip: str | None, timeout_ms: int
) -> tuple[tuple[bytes, bytes], ...]:
    """The mirror's headers: production's, then what Envoy's async client adds (async_client_impl.cc
    AsyncStreamImpl::sendHeaders: x-envoy-internal: true, its own address appended to x-forwarded-for), then what
    the async client's own router adds: x-envoy-expected-rq-timeout-ms from the mirror's timeout, the production
    route's (router.cc gives the mirror timeout_.global_timeout_ and its filter config), even where the route's
    remove_request_headers took it off production's request."""
    h = Headers(fields)
    h[INTERNAL] = "true"
    if local_ip:
        append_xff(h, local_ip)
    router(h, timeout_ms, None)
    return h.fields
