"""Emissary's routing rules as pure functions: groups, their order, canary weights, rewrite, shadow Host.

Nothing here does I/O. `build_table` turns validated Mappings into an immutable `Table`; `resolve` picks the
route for one request given the random draws the caller made, so every rule is testable with plain data.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Protocol

from mitmproxy.http import Headers

from . import envoyheaders, regex, routeindex
from .mappings import Address, HeaderAdd, Mapping, Redirect, override_matches, service_address


class HeaderLookup(Protocol):
    def get(self, key: str, default: None = None) -> str | None: ...


@dataclass(frozen=True, slots=True)
class RequestView:
    """What routing needs to know of a request (a mitmproxy Request satisfies it through `view_of`)."""

    method: str
    path: str  # with query string, as on the wire
    authority: str  # the client's Host (or :authority)
    headers: HeaderLookup


@dataclass(frozen=True, slots=True)
class ServiceOverride:
    name: str
    address: Address
    scheme_given: bool


def resolve_address(m: Mapping, overrides: Sequence[ServiceOverride]) -> Address:
    """The address a Mapping's service resolves to, after `mapping_services` replacements."""
    own = service_address(m.service)
    for o in overrides:
        if override_matches(o.name, m.service, m.namespace):
            scheme = o.address.scheme if o.scheme_given else own.scheme
            return Address(scheme, o.address.host, o.address.port)
    return own


# ---------------------------------------------------------------- grouping and order


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One header or query match, as Emissary's KeyValueDecorator (irhttpmapping.py): value None = present."""

    name: str
    value: str | None
    regex: bool = False

    def length(self) -> int:
        return len(self.name) + len(self.value or "*") + (1 if self.regex else 0)

    def key(self) -> str:
        return self.name + "-" + (self.value or "*")


def header_matches(m: Mapping) -> tuple[KeyValue, ...]:
    """The header matches Emissary builds (IRHTTPMapping.__init__), in its order: `headers` (an exact
    `:authority` among them becomes the host), `regex_headers`, then `:authority` from host/hostname (hostname wins,
    `"*"` included), then `:method` from `method` (a regex with `method_regex`)."""
    out: list[KeyValue] = []
    host: str | None = None
    host_regex = False
    for n, v in m.headers:
        if v is not None and n.lower() == ":authority":
            host = v
        else:
            out.append(KeyValue(n, v))
    out += [KeyValue(n, v, True) for n, v in m.regex_headers]
    if m.host is not None:
        host, host_regex = m.host, m.host_regex
    if m.hostname is not None:
        host, host_regex = m.hostname, False
    if host:
        out.append(KeyValue(":authority", host, host_regex))
    if m.method is not None:
        out.append(KeyValue(":method", m.method, m.method_regex))
    return tuple(out)


def query_matches(m: Mapping) -> tuple[KeyValue, ...]:
    return tuple(KeyValue(n, v) for n, v in m.query_parameters) + tuple(
        KeyValue(n, v, True) for n, v in m.regex_query_parameters
    )


def host_match(m: Mapping) -> tuple[str, str] | None:
    """The `:authority` match a Mapping asks for: (kind, value), kind exact/prefix/suffix/regex.

    v3route.py generate_headers: a leading `*` is a suffix match, a trailing `*` a prefix match, `*` alone none.
    """
    for h in header_matches(m):
        if h.name == ":authority" and h.value is not None:
            if h.regex:
                return ("regex", h.value)
            if h.value == "*":
                return None
            if h.value.startswith("*"):
                return ("suffix", h.value[1:])
            if h.value.endswith("*"):
                return ("prefix", h.value[:-1])
            return ("exact", h.value)
    return None


def group_key(m: Mapping) -> str:
    """Mappings with the same id form one group (one resource). Emissary irhttpmapping.py _group_id: the method
    part is always GET (`method` is not kept on the resource; it counts through its `:method` header), then the
    prefix, each header's name and value, each query parameter's, and a non-zero precedence."""
    parts = ["HTTP-GET", m.prefix]
    for h in (*header_matches(m), *query_matches(m)):
        parts.append(h.name + (h.value if h.value is not None else ""))
    if m.precedence:
        parts.append(str(m.precedence))
    return "".join(parts)


def route_weight(m: Mapping) -> tuple[object, ...]:
    """Sort key, highest first. Emissary irhttpmapping.py _route_weight: [precedence, len(prefix), header length,
    query length, prefix, "GET", header keys..., query keys...]; `:method` and `:authority` count as headers."""
    headers, queries = header_matches(m), query_matches(m)
    return (
        m.precedence,
        len(m.prefix),
        sum(h.length() for h in headers),
        sum(q.length() for q in queries),
        m.prefix,
        "GET",
        *(h.key() for h in headers),
        *(q.key() for q in queries),
    )


NORMALIZE_FAILED = "Could not normalize mapping weights, ignoring..."


def canary_weights(mappings: Sequence[Mapping]) -> tuple[list[tuple[Mapping, int]], list[str]]:
    """Cumulative weights for a group's production Mappings, in route order, and the errors Emissary posts.

    Emissary irbasemappinggroup.py normalize_weights_in_mappings: one Mapping gets 100; weighted Mappings first,
    cumulative round(weight); the rest shared evenly by weightless ones, the last forced to 100. On an error
    (a weight over 100, a total over 100) the routes keep their order and the weights computed so far; a Mapping
    not reached keeps Envoy's default numerator 100 (v3route.py: mapping.get("_weight", 100)).
    """
    if len(mappings) == 1:
        return [(mappings[0], 100)], []
    weighted: list[tuple[Mapping, int]] = []
    weightless: list[Mapping] = []
    so_far: dict[str, int] = {}
    total = 0

    def failed(message: str) -> tuple[list[tuple[Mapping, int]], list[str]]:
        return [(m, so_far.get(m.key, 100)) for m in mappings], [message, NORMALIZE_FAILED]

    for m in mappings:
        if m.weight is None:
            weightless.append(m)
            continue
        if m.weight > 100:
            return failed(f"Mapping {m.name} has invalid weight {m.weight}")
        total += round(m.weight)
        so_far[m.key] = total
        weighted.append((m, total))
    if total > 100:
        return failed("Total weight of mappings exceeds 100, please reconfigure for correct behavior...")
    if weightless:
        share = round((100 - total) / len(weightless))
        for i, m in enumerate(weightless):
            total = 100 if i == len(weightless) - 1 else total + share
            weighted.append((m, total))
    return weighted, []


# ---------------------------------------------------------------- request matching


def _path_only(path: str) -> str:
    i = path.find("?")
    return path if i < 0 else path[:i]


def _is_dot(seg: str, dots: int) -> bool:
    """A `.` or `..` segment, percent-encoded dots included (Envoy canonicalPath, via Chromium's URL library)."""
    return seg.lower().replace("%2e", ".") == "." * dots


def normalize_path(path: str) -> str:
    """The path as Envoy routes it: Emissary turns on `normalize_path` (v3listener.py), RFC 3986 5.2.4 dot-segment
    removal (`/a/../b/` is `/b/`). The query is kept as is; `merge_slashes` stays off, escaped slashes stay."""
    p, sep, q = path.partition("?")
    if "." not in p and "%2" not in p:  # the common case: nothing to remove
        return path
    out: list[str] = []
    segs = p.split("/")
    for i, seg in enumerate(segs[1:] if p.startswith("/") else segs):
        last = i == len(segs) - (2 if p.startswith("/") else 1)
        if _is_dot(seg, 1):
            if last:
                out.append("")
        elif _is_dot(seg, 2):
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out) + sep + q


def first_query_values(path: str) -> dict[str, str]:
    """Envoy QueryParamsMulti::parseQueryString + getFirstValue: the raw, undecoded first value of each name."""
    i = path.find("?")
    out: dict[str, str] = {}
    if i < 0:
        return out
    for part in path[i + 1 :].split("#", 1)[0].split("&"):
        if part:
            name, _, value = part.partition("=")
            out.setdefault(name, value)
    return out


Test = Callable[[str | None], bool]


def _value_test(h: KeyValue) -> Test | None:
    """Envoy HeaderUtility: exact and regex (full match, RE2) on the whole value, case-sensitive; present-only;
    `:authority` globs are prefix/suffix matches and `*` matches anything (v3route.py generate_headers)."""
    expected = h.value
    if expected is None:
        return lambda v: v is not None
    if h.regex:
        rx = regex.compile(expected)
        return lambda v: v is not None and rx.fullmatch(v) is not None
    if h.name == ":authority":
        if expected == "*":
            return None
        if expected.startswith("*"):
            suffix = expected[1:]
            return lambda v: v is not None and v.endswith(suffix)
        if expected.endswith("*"):
            prefix = expected[:-1]
            return lambda v: v is not None and v.startswith(prefix)
    return lambda v: v == expected


@dataclass(frozen=True, slots=True)
class Matcher:
    """One group's compiled match: built once per configuration, run per request (on the normalised path)."""

    path_test: Callable[[str], bool]
    header_tests: tuple[tuple[str, Test], ...]
    query_tests: tuple[tuple[str, Test], ...]

    def matches(self, req: RequestView, path: str) -> bool:
        if not self.path_test(path):
            return False
        for name, test in self.header_tests:
            if name == ":authority":
                value: str | None = req.authority
            elif name == ":method":
                value = req.method
            else:
                value = req.headers.get(name)
            if not test(value):
                return False
        if self.query_tests:
            query = first_query_values(path)
            for name, test in self.query_tests:
                if not test(query.get(name)):
                    return False
        return True


def path_test(m: Mapping, case_sensitive: bool | None = None) -> Callable[[str], bool]:
    """Envoy route match: `prefix` on the whole :path; `path` (prefix_exact) and `safe_regex` (prefix_regex,
    a full match) on the path without its query string. case_sensitive (the route's, else the Mapping's): false
    folds case, except for a regex, which RE2 runs as written."""
    if case_sensitive is None:
        case_sensitive = m.case_sensitive
    if m.prefix_regex:
        rx = regex.compile(m.prefix)
        return lambda p: rx.fullmatch(_path_only(p)) is not None
    if m.prefix_exact:
        if case_sensitive:
            return lambda p: _path_only(p) == m.prefix
        low = m.prefix.lower()
        return lambda p: _path_only(p).lower() == low
    if case_sensitive:
        prefix = m.prefix
        return lambda p: p.startswith(prefix)
    low = m.prefix.lower()
    n = len(low)
    return lambda p: p[:n].lower() == low


def build_matcher(m: Mapping, case_sensitive: bool | None = None) -> Matcher:
    headers = [(h.name.lower() if h.name.startswith(":") else h.name, _value_test(h)) for h in header_matches(m)]
    queries = [(q.name, _value_test(q)) for q in query_matches(m)]
    return Matcher(
        path_test(m, case_sensitive),
        tuple((n, t) for n, t in headers if t is not None),
        tuple((n, t) for n, t in queries if t is not None),
    )


# ---------------------------------------------------------------- the table


@dataclass(frozen=True, slots=True)
class Settings:
    """What v3route.py takes from the group, the same for every route of it (IRHTTPMappingGroup.finalize flattens
    the production Mappings in order: add_* headers merged, other keys from the last Mapping that sets them)."""

    add_request_headers: tuple[HeaderAdd, ...] = ()
    add_response_headers: tuple[HeaderAdd, ...] = ()
    remove_request_headers: tuple[str, ...] = ()
    remove_response_headers: tuple[str, ...] = ()
    regex_rewrite: tuple[str, str] | None = None
    allow_upgrade: tuple[str, ...] = ()


def group_settings(production: Sequence[Mapping]) -> Settings:
    req: dict[str, HeaderAdd] = {}
    resp: dict[str, HeaderAdd] = {}
    remove_req: tuple[str, ...] = ()
    remove_resp: tuple[str, ...] = ()
    rx: tuple[str, str] | None = None
    upgrade: tuple[str, ...] = ()
    for m in production:
        req.update((h.name, h) for h in m.add_request_headers)
        resp.update((h.name, h) for h in m.add_response_headers)
        if "remove_request_headers" in m.explicit:
            remove_req = m.remove_request_headers
        if "remove_response_headers" in m.explicit:
            remove_resp = m.remove_response_headers
        rx = m.regex_rewrite  # every Mapping carries regex_rewrite ({} when unset): the last one wins
        if "allow_upgrade" in m.explicit or "use_websocket" in m.explicit:
            upgrade = m.allow_upgrade
    return Settings(tuple(req.values()), tuple(resp.values()), remove_req, remove_resp, rx, upgrade)


@dataclass(frozen=True, slots=True)
class Group:
    key: str
    weight: tuple[object, ...]
    matcher: Matcher
    members: tuple[Mapping, ...]  # every accepted Mapping of the group, name.namespace order
    production: tuple[tuple[Mapping, int], ...]  # route order with cumulative weights; () = no route
    shadow: Mapping | None
    errors: tuple[str, ...] = ()  # Emissary's errors for this group (it still routes)
    settings: Settings = field(default_factory=Settings)
    redirect: Mapping | None = None  # host_redirect: the group answers a redirect
    # Per production route, a stricter path test when routes differ in case_sensitive (None: the matcher's holds).
    route_paths: tuple[Callable[[str], bool] | None, ...] = ()

    @property
    def error(self) -> str | None:
        return self.errors[0] if self.errors else None

    @property
    def routes(self) -> bool:
        """Emissary V3Route.generate: a group yields routes for its production Mappings (or its redirect) only."""
        return bool(self.production) or self.redirect is not None

    @property
    def label(self) -> str:
        """How a person names the resource: [METHOD ]prefix[ host X]."""
        m = self.members[0]
        hm = host_match(m)
        return (f"{m.method} " if m.method else "") + m.prefix + (f" host {hm[1]}" if hm else "")


@dataclass(frozen=True, slots=True)
class ConfigError:
    mapping: str  # name.namespace, or a file for file-level errors
    message: str


@dataclass(frozen=True, slots=True)
class Table:
    groups: tuple[Group, ...] = ()
    addresses: dict[str, Address] = field(default_factory=dict)  # by Mapping key
    errors: tuple[ConfigError, ...] = ()  # Emissary-style diagnostics errors; the table still serves
    ignored: tuple[Mapping, ...] = ()  # Mappings for another ambassador_id
    ambassador_id: str = "default"
    matches_envoy_headers: bool = False  # some route matches a header Envoy sets before routing (x-forwarded-proto...)
    # The groups a request may match, in route order, without trying each (built with the table, off the loop).
    index: routeindex.RouteIndex[Group] | None = field(default=None, compare=False, repr=False)

    @property
    def mappings(self) -> list[Mapping]:
        return [m for g in self.groups for m in g.members]


def order_groups(groups: Iterable[Group]) -> list[Group]:
    """Highest route weight first (Emissary ir.py ordered_groups: reversed(sorted(group_weight)), so equal weights
    come in reverse order of creation)."""
    return list(reversed(sorted(groups, key=lambda g: g.weight)))


def accepts_ambassador_id(m: Mapping, ambassador_id: str) -> bool:
    """config.py good_ambassador_id: the Mapping's ids include this instance's, or are exactly ["_automatic_"]."""
    return m.ambassador_id == ("_automatic_",) or ambassador_id in m.ambassador_id


MISMATCH = (
    "cannot accept new mapping %s with mismatched %s."
    "Please verify field is set with the same value in all related mappings."
    "Example: When canary is configured, related mappings should have same fields and values"
)


def core_mismatches(first: Mapping, m: Mapping) -> list[str]:
    """irhttpmappinggroup.py add_mapping: each CoreMappingKey `m` sets must equal the group's (the first Mapping's)."""
    group = {k: (canon, shown) for k, canon, shown in first.core}
    out = []
    for k, canon, shown in m.core:
        if k not in group or group[k][0] != canon:
            out.append(f"{k}: {shown} != {group[k][1] if k in group else '-unset-'}")
    if header_matches(m) != header_matches(first):  # `headers` is a core key too (regex flags included)
        out.append(f"headers: {_show_headers(m)} != {_show_headers(first)}")
    return out


def _show_headers(m: Mapping) -> str:
    return str([{"name": h.name, "value": h.value, "regex": h.regex} for h in header_matches(m)])


@dataclass(slots=True)
class _Building:
    first: Mapping
    members: list[Mapping] = field(default_factory=list)
    production: list[Mapping] = field(default_factory=list)
    shadow: Mapping | None = None
    redirect: Mapping | None = None
    errors: list[str] = field(default_factory=list)


def _add_mapping(b: _Building, m: Mapping, errors: list[ConfigError]) -> None:
    """irhttpmappinggroup.py add_mapping, message for message."""
    mismatches = core_mismatches(b.first, m)
    if mismatches:
        errors.append(ConfigError(m.key, MISMATCH % (m.name, ", ".join(mismatches))))
        return
    if m.shadow:
        if m.redirect is not None:
            msg = "At most one of host_redirect and shadow may be set; ignoring host_redirect"
            errors.append(ConfigError(m.key, msg))
        if b.shadow is not None:
            # Not used, but still referenced by the group (add_mapping ends in referenced_by): listed in /diag.
            errors.append(ConfigError(m.key, f"cannot accept {m.name} as second shadow after {b.shadow.name}"))
        else:
            b.shadow = m
    elif m.redirect is not None:
        if b.redirect is not None:
            errors.append(ConfigError(m.key, f"cannot accept {m.name} as second host_redirect after {b.redirect.name}"))
            return
        if b.production:
            first = b.production[0].name
            msg = f"cannot accept {m.name} with host_redirect after mappings without host_redirect (eg {first})"
            errors.append(ConfigError(m.key, msg))
            return
        b.redirect = m
    else:
        if b.redirect is not None:
            msg = f"cannot accept {m.name} without host_redirect after {b.redirect.name} with host_redirect"
            errors.append(ConfigError(m.key, msg))
            return
        b.production.append(m)
    b.members.append(m)


def route_case_sensitive(production: Sequence[Mapping]) -> list[bool]:
    """Each production route's case_sensitive: its own, else the group's, which IRHTTPMappingGroup.finalize
    flattens from the last Mapping that sets it (v3route.py V3Route: mapping's, else group's, else True)."""
    group = True
    for m in production:
        if "case_sensitive" in m.explicit:
            group = m.case_sensitive
    return [m.case_sensitive if "case_sensitive" in m.explicit else group for m in production]


def _group_matching(
    b: _Building, weights: Sequence[tuple[Mapping, int]]
) -> tuple[Matcher, tuple[Callable[[str], bool] | None, ...]]:
    """The group's matcher (case folded if any route folds) and, when routes differ, each route's own path test."""
    if not weights:
        # A redirect group (or a shadow alone): IRHTTPMappingGroup.finalize flattens the host_redirect Mapping's
        # case_sensitive onto the group, which V3Route uses for the route it builds from no Mapping.
        return build_matcher(b.first), ()
    cases = route_case_sensitive([m for m, _ in weights])
    matcher = build_matcher(b.first, all(cases))
    if all(cases) or not any(cases):
        return matcher, ()
    return matcher, tuple(path_test(m, True) if cs else None for (m, _), cs in zip(weights, cases, strict=True))


def build_table(
    mappings: Sequence[Mapping], overrides: Sequence[ServiceOverride] = (), ambassador_id: str = "default"
) -> Table:
    # Emissary adds resources in fetcher.sorted() order: by rkey, `name.namespace`.
    ordered = sorted(mappings, key=lambda m: m.key)
    ignored = tuple(m for m in ordered if not accepts_ambassador_id(m, ambassador_id))
    building: dict[str, _Building] = {}
    errors: list[ConfigError] = []
    for m in ordered:
        if not accepts_ambassador_id(m, ambassador_id):
            continue
        gid = group_key(m)
        b = building.get(gid)
        if b is None:
            b = building[gid] = _Building(m)
        _add_mapping(b, m, errors)
    groups: list[Group] = []
    for gid, b in building.items():
        if not b.members:
            continue
        weights, werrs = canary_weights(b.production) if b.production else ([], [])
        errors += [ConfigError(b.production[0].key, e) for e in werrs]
        matcher, route_paths = _group_matching(b, weights)
        groups.append(
            Group(
                key=gid,
                weight=max(route_weight(m) for m in b.members),
                matcher=matcher,
                members=tuple(b.members),
                production=tuple(weights),
                shadow=b.shadow,
                errors=tuple(werrs),
                settings=group_settings(b.production),
                redirect=b.redirect,
                route_paths=route_paths,
            )
        )
    kept = [m for g in groups for m in g.members]
    addresses = {m.key: resolve_address(m, overrides) for m in kept}
    envoy_set = any(envoyheaders.sets(h.name) for g in groups for h in header_matches(g.members[0]))
    ordered_groups = tuple(order_groups(groups))
    index = routeindex.RouteIndex(ordered_groups)
    return Table(ordered_groups, addresses, tuple(errors), ignored, ambassador_id, envoy_set, index)


# ---------------------------------------------------------------- per request


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
