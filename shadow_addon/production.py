"""The production flow: re-routed to its Mapping's service, its answer's headers edited, its metrics recorded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from mitmproxy import connection, http
from mitmproxy.net.http import url

from . import envoyheaders, grpcwire, routing
from .httpsyntax import has_field
from .metrics import PRODUCTION, REVERSE_TARGET, Metrics


def downstream(flow: http.HTTPFlow) -> envoyheaders.Downstream:
    """The client's connection as Envoy's connection manager sees it."""
    c = flow.client_conn
    peer = str(c.peername[0]) if c.peername else ""
    local = str(c.sockname[0]) if c.sockname else ""
    return envoyheaders.Downstream(peer, local, c.tls_established)


def routing_headers(flow: http.HTTPFlow, envoy_headers: bool, table: routing.Table) -> http.Headers | None:
    """The request's headers as Envoy routes them (an unsupported Upgrade dropped; with `envoy_headers`, what its
    connection manager adds), or None when routing on the request's own gives the same route. The request keeps
    its headers until it is routed (`adopt_headers`): unrouted requests go to the reverse target unchanged."""
    req = flow.request
    if not has_field(req.headers.fields, b"upgrade") and not (envoy_headers and table.matches_envoy_headers):
        return None  # nothing routing looks at changes: the headers are made only for a routed request
    h = req.headers.copy()
    envoyheaders.drop_unsupported_upgrade(h)
    if envoy_headers:
        envoyheaders.connection_manager(h, downstream(flow))
    return h


def adopt_headers(flow: http.HTTPFlow, envoy_headers: bool, early: http.Headers | None) -> None:
    """A routed request goes on with the headers Envoy routed it with: `early` (from `routing_headers`), or, when
    routing did not need them, the connection manager's now."""
    if early is not None:
        flow.request.headers = early
    elif envoy_headers:
        envoyheaders.connection_manager(flow.request.headers, downstream(flow))


def apply_route(flow: http.HTTPFlow, route: routing.Route, keep_host: bool, envoy_headers: bool = False) -> None:
    """Re-route the production request to the picked Mapping's service. `envoy_headers`: add what Envoy's router
    adds (router.cc Filter::decodeHeaders: the timeout header before the route's header edits, the original path
    with the path rewrite after them, as config_impl.cc finalizeRequestHeaders orders them)."""
    req, m, a = flow.request, route.mapping, route.address
    assert m is not None and a is not None
    req.scheme = a.scheme
    # data.host/port re-route without touching Host (setting request.host would also rewrite it).
    req.data.host, req.data.port = a.host, a.port
    if m.host_rewrite:
        req.host_header = m.host_rewrite
    elif not keep_host:
        # mitmproxy already replaced the client's Host with its reverse target; follow the re-route.
        req.host_header = url.hostport(a.scheme, a.host, a.port)
    g = route.group.settings  # header edits are the group's (v3route.py V3Route)
    rewrites = envoy_headers and (g.regex_rewrite is not None or bool(m.rewrite))
    original = routing.normalize_path(req.path) if rewrites else None
    req.path = route.path
    if envoy_headers:
        envoyheaders.router(req.headers, route.timeout_ms, None)
    if g.remove_request_headers or g.add_request_headers:
        routing.edit_headers(req.headers, g.remove_request_headers, g.add_request_headers)
    if rewrites:
        envoyheaders.router(req.headers, 0, original)
    flow.metadata["shadow_mapping"] = m.name


def answer_locally(flow: http.HTTPFlow, route: routing.Route, metrics: Metrics) -> bool:
    """A redirect, or an upgrade the route does not allow, is answered by the proxy itself, as Envoy does."""
    req = flow.request
    if route.redirect is None and not has_field(req.headers.fields, b"upgrade"):
        return False  # neither a redirect nor an upgrade: the usual case, decided without reading the headers
    reply = routing.local_reply(route, req.method, req.headers.get("connection"), req.headers.get("upgrade"))
    if reply is None:
        return False
    status, headers = reply
    flow.response = http.Response.make(status, b"", headers)
    if route.shadow is not None:  # a redirect route has no cluster, so no mirror either
        metrics.record_drop(route.shadow.name, "upgrade" if status == 403 else "redirect")
    return True


def edit_response(flow: http.HTTPFlow, route: routing.Route) -> None:
    g = route.group.settings
    if edits_response(route) and flow.response:
        routing.edit_headers(flow.response.headers, g.remove_response_headers, g.add_response_headers)


def edits_response(route: routing.Route) -> bool:
    """Whether the route changes production's answer: the group's response header edits (v3route.py V3Route)."""
    g = route.group.settings
    return route.mapping is not None and bool(g.add_response_headers or g.remove_response_headers)


def labels(route: routing.Route | None) -> tuple[str, str]:
    """The (mapping, service) labels of production's metrics for a routed request (None: not routed)."""
    if route is None:
        return "", REVERSE_TARGET
    if route.mapping is not None:
        return route.mapping.name, route.mapping.service
    # Implicit production: labelled with the group's first Mapping (its shadow in a shadow-only group).
    return route.group.members[0].name, REVERSE_TARGET


@dataclass(slots=True)
class Marks:
    """time.time() values of one production exchange, each taken by a callback that a Shadow addon hook leaves for
    the event loop's next turn: so after the rest of the loop step the hook ran in, where mitmproxy does what the
    mark stands for.

    `sent`: after the step of the `request` hooks, in which mitmproxy writes the request on a kept-alive connection.
    `connected`: after the step of a new connection's `server_connected` hooks, in which mitmproxy writes the
    request on it. `head_step`: after the step of the `responseheaders` hooks, which holds the answer; a body that
    came with its head is taken in that same step. 0: not seen (an answer made by an addon, a connection opened
    before the addon was loaded)."""

    sent: float = 0.0
    connected: float = 0.0
    head_step: float = 0.0

    def stamp_sent(self) -> None:
        self.sent = time.time()

    def stamp_head_step(self) -> None:
        self.head_step = time.time()


def after_step(callback: Callable[[], None]) -> bool:
    """Run `callback` once the event loop's current step is over: mitmproxy finishes what a hook chain leads to
    (writing a request, taking a body) in the step that ran the chain. False: no event loop runs (a hook called by
    hand, as in a test), and the callback will not run."""
    try:
        asyncio.get_running_loop().call_soon(callback)
    except RuntimeError:
        return False
    return True


class Connections:
    """When the step that set up each open server connection ended (`Marks.connected` of its first request)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def opened(self, server: connection.Server) -> None:
        after_step(lambda: self._stamp(server))

    def _stamp(self, server: connection.Server) -> None:
        if server.connected:  # still open: its end (`closed`) forgets it
            self.at[server.id] = time.time()

    def closed(self, server: connection.Server) -> None:
        self.at.pop(server.id, None)

    def set_up(self, server: connection.Server) -> float:
        return self.at.get(server.id, 0.0)


def record(metrics: Metrics, flow: http.HTTPFlow, route: routing.Route | None, marks: Marks | None = None) -> None:
    """Count production's answer with its latency, measured as the shadow's is: from the request going out to
    the last byte of the answer (`latency`)."""
    resp = flow.response
    if resp is None:
        return
    metrics.record_upstream(*labels(route), PRODUCTION, resp.status_code, latency(flow, marks))
    if resp.http_version == "HTTP/2.0":  # gRPC runs over HTTP/2 only: HTTP/1 answers skip the look-up
        label = grpcwire.status(resp.headers.fields, resp.trailers.fields if resp.trailers else None)
        if label is not None:
            metrics.record_grpc(*labels(route), PRODUCTION, label)


def latency(flow: http.HTTPFlow, marks: Marks | None = None) -> float | None:
    """Seconds from production's request going out to the last byte of its answer, as the shadow's latency is
    measured (from its request written to the last byte read), leaving out mitmproxy's hook chains, which the
    shadow's has none of. `marks`: what the Shadow addon's hooks saw (None: nothing).

    Start: the latest of the client's request complete, the connection's TCP and TLS set-up, `marks.sent` and
    `marks.connected` (the steps that wrote the request ended). A connection's set-up is not counted: neither is
    the shadow's.

    End: mitmproxy reads the answer's head (`timestamp_start`) and holds the answer while every addon's
    `responseheaders` hook and then every `update` hook runs; only then does it take the body read meanwhile and
    set `timestamp_end`. A `timestamp_end` set within that step (by `marks.head_step`) is a body that had come
    by the time of the head: its last byte came then, and the answer ends at `timestamp_start` (short by at most
    the wait for a second segment that arrived before the hooks ran). A later `timestamp_end` is a body read as it
    arrived, taken as mitmproxy set it.

    What is still counted: mitmproxy's reading and parsing of the head, as the shadow's figure counts its own, and
    whatever else the event loop ran first, as for the shadow's."""
    resp, req = flow.response, flow.request
    if resp is None or not resp.timestamp_end or not req.timestamp_end:
        return None
    m = marks if marks is not None else _NO_MARKS
    sc = flow.server_conn
    connected = m.connected or sc.timestamp_tcp_setup or 0.0
    start = max(req.timestamp_end, m.sent, connected, sc.timestamp_tls_setup or 0.0)
    end = resp.timestamp_start if resp.timestamp_end <= m.head_step else resp.timestamp_end
    if start > end:  # a connection set up for a later exchange (the answer came on an older one)
        start = max(req.timestamp_end, m.sent)
    return max(0.0, end - start)


_NO_MARKS = Marks()


def record_error(metrics: Metrics, route: routing.Route) -> None:
    metrics.record_upstream(*labels(route), PRODUCTION, "error", None)
