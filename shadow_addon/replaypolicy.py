"""How a replay plays one recorded flow, without I/O: when it is due (the recorded pace), how many copies of a
capture are under way at once per shadow service, which recorded requests are not copied, the route of a flow this
addon routed already, and production's exchange as it would have been live."""

from __future__ import annotations

from mitmproxy import http

from . import copies, production, routing

REPLAY_INFLIGHT = 4  # copies of a capture in flight per shadow service unless shadow_max_inflight is set


def pace_delay(speed: float, clock: tuple[float, float] | None, recorded: float, now: float) -> float:
    """Seconds to wait before a flow recorded at `recorded` is copied; `clock` = (first recorded time, when it was
    played). Flows are stored in the order they completed, so a flow may be due already."""
    if speed <= 0 or clock is None:
        return 0.0
    first, started = clock
    return started + (recorded - first) / speed - now


def inflight(max_inflight: int, set_by_user: bool) -> int:
    """Copies of a capture in flight per shadow service: `shadow_max_inflight` when set, else at most
    REPLAY_INFLIGHT. A replay keeps that many in flight all along, and a development server (Python's
    ThreadingHTTPServer: a listen backlog of 5, threads sharing one interpreter lock) answers each only after
    working on all the others: 64 at once can take past the copy timeout, which would read as the shadow failing."""
    return max_inflight if set_by_user else min(max_inflight, REPLAY_INFLIGHT)


def window(max_inflight: int, max_backlog: int) -> int:
    """Copies of recorded flows under way at once per shadow service. Until a connection to the service works,
    the sender dials once and keeps the rest in its backlog: this many always fit, so none is dropped as overload."""
    return max(1, min(max_inflight, max_backlog + 1))


def skip_reason(req: http.Request, body_limit: int, methods: frozenset[str] = frozenset()) -> str | None:
    """Why a recorded request is not copied (the same reasons as live), or None."""
    body = copies.body_of(req, body_limit)  # a recorded request without its body was streamed
    return copies.not_copied(req, methods) or (body if isinstance(body, str) else None)


def route_routed(table: routing.Table, name: str, path: str, shadow_draw: float) -> routing.Route | None:
    """The route of a request the Mapping `name` routed already (a flow recorded or replayed after this addon
    routed it): its request is what production got, so no transform applies again; only the shadow is drawn."""
    for g in table.groups:
        m = next((m for m, _ in g.production if m.name == name), None)
        if m is not None and g.error is None:
            return routing.route_to(table, g, m, path, shadow_draw)
    return None


def as_live(flow: http.HTTPFlow, route: routing.Route, keep_host_header: bool, own: bool = False) -> http.HTTPFlow:
    """Production's exchange as it would have been live (the Mapping's transforms), on a flow of its own: the
    capture stays as recorded (`own`: the flow is the replay's, and changes in place)."""
    dup = flow
    m = route.mapping
    routed = m is not None and "shadow_mapping" not in flow.metadata  # else recorded after this addon routed it
    if not own:
        dup = http.HTTPFlow(flow.client_conn, flow.server_conn)
        dup.request, dup.response, dup.error = flow.request.copy(), flow.response, flow.error
    if routed:
        production.apply_route(dup, route, keep_host_header)
        if dup.response is not None and production.edits_response(route):
            if not own:
                dup.response = dup.response.copy()
            production.edit_response(dup, route)
    return dup
