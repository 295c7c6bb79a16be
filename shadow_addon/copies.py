"""The copy of one request: what the request hook decided for it (`Pending`, with the tee that keeps a streamed
body), and the `Copy` shaped from the request as production got it (Envoy mirrors after the route's transforms)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mitmproxy import http
from mitmproxy.net.http import url

from . import envoyheaders, routing
from .budget import Tee
from .httpsyntax import field_value, has_field
from .production import Marks
from .sender import Copy
from .settings import Settings

MARKER = b"x-mitmproxy-shadow"  # carried by every copy: a copy reaching any shadowing proxy is not copied again
_UPGRADE_METHODS = frozenset({"CONNECT"})
READS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # safe methods (RFC 9110 9.2.1): they change nothing


@dataclass(slots=True)
class Pending:
    """What `requestheaders` decided for a flow, used by `request`, `response` and `error`."""

    route: routing.Route
    tee: Tee | None = None  # what is kept of a streamed body for the copy, when mitmproxy streams the request
    sent: bool = False  # the copy was handed to the sender (or deliberately not: dropped and counted)
    via: str | None = None  # the proxy's address on the client's connection, which Envoy's mirror appends to XFF
    marks: Marks = field(default_factory=Marks)  # production's latency marks (production.latency)
    due: Callable[[], None] | None = None  # the copy, made and handed over once production's request is out

    def copy_now(self) -> None:
        """Make and hand over the copy that is due, if it has not gone yet: before anything reads its outcome."""
        if self.due is not None:
            due, self.due = self.due, None
            due()


def not_copied(req: http.Request, methods: frozenset[str] = frozenset()) -> str | None:
    """Why a request is never copied, known from its head alone, or None. `methods`: those copied (`shadow_methods`;
    empty: all)."""
    fields = req.headers.fields
    if req.method in _UPGRADE_METHODS or has_field(fields, b"upgrade"):
        return "upgrade"  # Envoy mirrors no CONNECT/upgrade
    if has_field(fields, MARKER):
        return "loop"
    if methods and req.method.upper() not in methods:
        return "method"
    return None


def body_of(req: http.Request, limit: int, p: Pending | None = None) -> bytes | str:
    """The body to copy, or the reason it cannot be copied. `p`: what the request hook kept of a streamed body."""
    body = req.raw_content
    if body is None:
        if p is None or p.tee is None:
            return "streamed"
        kept = p.tee.take()
        if kept is None:
            return "overload" if p.tee.refused else "body_limit"
        body = kept
    return "body_limit" if len(body) > limit else body


def timeout_of(route: routing.Route, s: Settings) -> float:
    """Seconds the copy may take: shadow_timeout, else the production route's (Envoy gives the mirror its route's)."""
    return s.timeout or routing.copy_timeout(route.timeout_ms)


def host_header(req: http.Request) -> str | None:
    """`req.host_header`, for HTTP/1 read from the raw fields (mitmproxy's reads them through Headers)."""
    if req.data.http_version in (b"HTTP/2.0", b"HTTP/3"):
        return req.host_header  # the authority, or the Host header
    return field_value(req.headers.fields, b"host")


def host_of(req: http.Request) -> str:
    return host_header(req) or url.hostport(req.scheme, req.host, req.port)


def make_copy(
    req: http.Request,
    route: routing.Route,
    body: bytes,
    s: Settings,
    *,
    keep_body: int,
    hash_body: bool,
    context: object,
    via: str | None = None,
    read_limit: int = 0,
) -> Copy:
    """The copy of `req` for the route's shadow: the request as production got it, Host with `-shadow`; with
    mapping_envoy_headers, marked as Envoy's async client marks a mirror (x-envoy-internal, `via` added to XFF)."""
    shadow, address = route.shadow, route.shadow_address
    assert shadow is not None and address is not None
    host = host_of(req)
    fields = envoyheaders.mirror(req.headers.fields, via, route.timeout_ms) if s.envoy_headers else req.headers.fields
    return Copy(
        mapping=shadow.name,
        service=shadow.service,
        address=address,
        method=req.method,
        path=req.path,
        host=routing.shadow_host(host) if s.host_suffix else host,
        fields=fields,
        body=body,
        timeout=timeout_of(route, s),
        add=((MARKER, b"1"), *s.add_headers),
        remove=s.remove_headers,
        keep_body=keep_body,
        read_limit=read_limit,
        hash_body=hash_body,
        context=context,
        http2=shadow.grpc,  # the shadow Mapping's own field (irhttpmappinggroup.py add_cluster_for_mapping)
        trailers=req.trailers.fields if req.trailers else (),
    )
