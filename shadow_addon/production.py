"""The production flow: re-routed to its Mapping's service, its answer's headers edited, its metrics recorded."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.net.http import url

from . import routing
from .metrics import PRODUCTION, REVERSE_TARGET, Metrics


def apply_route(flow: http.HTTPFlow, route: routing.Route, keep_host: bool) -> None:
    """Re-route the production request to the picked Mapping's service."""
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
    req.path = route.path
    g = route.group.settings  # header edits are the group's (v3route.py V3Route)
    if g.remove_request_headers or g.add_request_headers:
        routing.edit_headers(req.headers, g.remove_request_headers, g.add_request_headers)
    flow.metadata["shadow_mapping"] = m.name


def answer_locally(flow: http.HTTPFlow, route: routing.Route, metrics: Metrics) -> bool:
    """A redirect, or an upgrade the route does not allow, is answered by the proxy itself, as Envoy does."""
    req = flow.request
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


def record(metrics: Metrics, flow: http.HTTPFlow, route: routing.Route | None, request_done: float = 0.0) -> None:
    """Count production's answer with its latency, measured as the shadow's is: from the request going out to
    the last byte of the answer (`latency`)."""
    resp = flow.response
    if resp is None:
        return
    metrics.record_upstream(*labels(route), PRODUCTION, resp.status_code, latency(flow, request_done))


def latency(flow: http.HTTPFlow, request_done: float = 0.0) -> float | None:
    """Seconds from production's request going out to the last byte of its answer. mitmproxy records no time
    of writing, so the request goes out at the latest of: the client's request complete, this addon's request
    hook done (`request_done`, 0 if unknown), the server connection set up (TCP, then TLS). The shadow's
    latency starts where its request is written, after any connection set-up, so the two compare alike:
    neither counts the proxy's own work before the request leaves, nor a connection's set-up."""
    resp, req = flow.response, flow.request
    if resp is None or not resp.timestamp_end or not req.timestamp_end:
        return None
    sc = flow.server_conn
    start = max(req.timestamp_end, request_done, sc.timestamp_tcp_setup or 0.0, sc.timestamp_tls_setup or 0.0)
    if start > resp.timestamp_end:  # a connection set up for a later exchange (the answer came on an older one)
        start = max(req.timestamp_end, request_done)
    return max(0.0, resp.timestamp_end - start)


def record_error(metrics: Metrics, route: routing.Route) -> None:
    metrics.record_upstream(*labels(route), PRODUCTION, "error", None)
