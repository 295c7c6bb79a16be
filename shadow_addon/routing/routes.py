"""One request's route (`resolve`): the group it matches, the canary pick, the rewritten path, the shadow if
sampled, and what is answered locally (redirects, refused upgrades); the per-request rules (Host of the copy,
sticky sampling, the copy's timeout, header edits)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import EllipsisType

from mitmproxy.http import Headers

from .. import regex
from ..addresses import Address
from ..mappings import HeaderAdd, Mapping, Redirect
from .matching import RequestView, normalize_path
from .table import Group, Table


def rewrite_path(m: Mapping, path: str, regex_rewrite: tuple[str, str] | None | EllipsisType = ...) -> str:
    """The upstream path after the group's `regex_rewrite` or the Mapping's `rewrite` (Envoy regex_rewrite /
    prefix_rewrite; v3route.py V3Route).

    `rewrite` defaults to "/" (prefix replaced by "/"); "" means none; regex_rewrite wins. With prefix_exact or
    prefix_regex the whole path is the matched part, so it is replaced whole (Envoy PathRouteEntryImpl /
    RegexRouteEntryImpl); the query stays.
    """
    if regex_rewrite is ...:  # the Mapping on its own; in a table the group's setting is passed
        regex_rewrite = m.regex_rewrite
    if regex_rewrite is not None:
        p, sep, q = path.partition("?")
        pattern, subst = regex_rewrite
        return regex.substitute(regex.compile(pattern), subst, p) + sep + q
    if not m.rewrite:
        return path
    if m.prefix_exact or m.prefix_regex:
        i = path.find("?")
        return m.rewrite + (path[i:] if i >= 0 else "")
    return m.rewrite + path[len(m.prefix) :]


def shadow_host(host: str) -> str:
    """`-shadow` before the port. Envoy shadow_writer_impl.cc shadowAppendedHost: last `:` outside [...]."""
    i = host.rfind(":")
    if i < 0 or (host.startswith("[") and host.find("]") > i):
        return host + "-shadow"
    return host[:i] + "-shadow" + host[i:]


def sample_draw(value: str | None) -> float | None:
    """A sticky draw in [0, 100) from a header value (same value, same decision); None without one."""
    if value is None:
        return None
    return (zlib.crc32(value.encode("utf-8", "surrogateescape")) % 10000) / 100.0


NO_TIMEOUT_CAP = 3600.0  # s: timeout_ms 0 ("none") still ends a copy that never answers, after an hour


def copy_timeout(timeout_ms: int) -> float:
    """Seconds the copy may take: the production route's timeout (Envoy router.cc gives the mirror the route's
    timeout); 0 means none in Envoy (v3route.py passes it as `timeout: 0s`), bounded here by NO_TIMEOUT_CAP."""
    return timeout_ms / 1000.0 if timeout_ms > 0 else NO_TIMEOUT_CAP


def redirect_location(r: Redirect, req: RequestView, path: str) -> str:
    """Where a host_redirect group sends the client (Envoy RedirectAction, as v3route.py configures it): the host
    is the Mapping's service; path_redirect replaces the path (the query stays unless it has its own),
    prefix_redirect the matched prefix, regex_redirect rewrites the path. The scheme is the request's (http)."""
    p, sep, q = path.partition("?")
    if r.path is not None:
        p, sep, q = (r.path.partition("?")) if "?" in r.path else (r.path, sep, q)
    elif r.regex is not None:
        p = regex.substitute(regex.compile(r.regex[0]), r.regex[1], p)
    host = r.host.split("://", 1)[-1]
    return f"http://{host}{p}{sep}{q}"


@dataclass(frozen=True, slots=True)
class Route:
    group: Group
    mapping: Mapping | None  # None: a redirect (the group's host_redirect Mapping answers)
    address: Address | None
    path: str  # the upstream path (normalised, rewritten)
    timeout_ms: int  # the production route's timeout (0: none), which the copy inherits (Envoy router.cc)
    shadow: Mapping | None  # set when this request is to be copied (sampled in)
    shadow_address: Address | None
    sampled_out: bool = False  # a shadow exists but this request was not picked
    redirect: tuple[int, str] | None = None  # (status, Location): answer this instead of proxying


def resolve(table: Table, req: RequestView, canary_draw: float, shadow_draw: float) -> Route | None:
    """The route for one request, or None when no route matches (the reverse target serves it unchanged).

    Only production Mappings (or a host_redirect) make routes (Emissary V3Route.generate loops group.mappings): a
    group with only a shadow is skipped, and its shadow copies nothing. Draws are in [0, 100): the canary pick takes
    the first route whose cumulative weight exceeds it (Envoy evaluateFractionalPercent), and a group whose weights
    do not reach 100 lets the remaining requests fall through to later groups; the copy is made when
    shadow_draw < the shadow's weight (v3route.py request_mirror_policies).
    """
    path = normalize_path(req.path)
    groups = table.groups if table.index is None else table.index.candidates(path)
    for g in groups:
        if not g.routes or not g.matcher.matches(req, path):
            continue
        if g.redirect is not None:
            r = g.redirect.redirect
            assert r is not None
            target = path if r.prefix is None else r.prefix + path[len(g.redirect.prefix) :]
            return Route(g, None, None, path, 0, None, None, redirect=(r.code, redirect_location(r, req, target)))
        picked: Mapping | None = None
        for i, (m, cum) in enumerate(g.production):
            if canary_draw < cum and not (g.route_paths and (t := g.route_paths[i]) is not None and not t(path)):
                picked = m
                break
        if picked is None:
            continue
        return route_to(table, g, picked, rewrite_path(picked, path, g.settings.regex_rewrite), shadow_draw)
    return None


def route_to(table: Table, g: Group, m: Mapping, path: str, shadow_draw: float) -> Route:
    """The route through production Mapping `m` of group `g` to `path`; the copy is made when shadow_draw < the
    shadow's weight (v3route.py request_mirror_policies)."""
    shadow = g.shadow
    sampled_out = shadow is not None and not shadow_draw < (100 if shadow.weight is None else shadow.weight)
    if sampled_out:
        shadow = None
    return Route(
        group=g,
        mapping=m,
        address=table.addresses[m.key],
        path=path,
        timeout_ms=m.effective_timeout_ms,
        shadow=shadow,
        shadow_address=table.addresses[shadow.key] if shadow else None,
        sampled_out=sampled_out,
    )


def local_reply(
    route: Route, method: str, connection: str | None, upgrade: str | None
) -> tuple[int, dict[str, str]] | None:
    """The answer Envoy gives without proxying, or None: a host_redirect's redirect, or 403 for an upgrade (e.g.
    WebSocket) the route does not allow (v3route.py upgrade_configs from allow_upgrade/use_websocket; Envoy
    conn_manager_impl.cc refuses an upgrade with no upgrade config with 403, and Emissary configures none on the
    listener)."""
    if route.redirect is not None:
        return route.redirect[0], {"location": route.redirect[1]}
    if upgrade and connection and "upgrade" in connection.lower() and method != "CONNECT":
        allowed = route.group.settings.allow_upgrade
        if upgrade.strip().lower() not in allowed:
            return 403, {}
    return None


def edit_headers(headers: Headers, remove: Sequence[str], add: Sequence[HeaderAdd]) -> None:
    """Apply a Mapping's header removals, then additions (Envoy header_parser.cc: remove before add)."""
    for name in remove:
        headers.pop(name, None)
    for h in add:
        if h.append:
            headers.add(h.name, h.value)
        else:
            headers[h.name] = h.value
