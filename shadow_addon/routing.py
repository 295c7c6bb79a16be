"""Emissary's routing rules as pure functions: groups, their order, canary weights, rewrite, shadow Host.

Nothing here does I/O. `build_table` turns validated Mappings into an immutable `Table`; `resolve` picks the
route for one request given the random draws the caller made, so every rule is testable with plain data.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qsl

from mitmproxy.http import Headers

from . import regex
from .mappings import DEFAULT_TIMEOUT_MS, Address, HeaderAdd, Mapping, override_matches, service_address


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


def host_match(m: Mapping) -> tuple[str, str] | None:
    """The `:authority` match a Mapping asks for: (kind, value), kind exact/prefix/suffix/regex.

    Emissary irhttpmapping.py: `hostname` overrides `host`; v3route.py generate_headers: a leading `*` is a
    suffix match, a trailing `*` a prefix match, `*` alone no match at all.
    """
    if m.hostname is not None:
        h = m.hostname
        if h == "*":
            return None
        if h.startswith("*"):
            return ("suffix", h[1:].lower())
        if h.endswith("*"):
            return ("prefix", h[:-1].lower())
        return ("exact", h.lower())
    if m.host is not None:
        return ("regex", m.host) if m.host_regex else ("exact", m.host.lower())
    return None


def group_key(m: Mapping) -> tuple[object, ...]:
    """Mappings with the same key form one group (one resource).

    Emissary irhttpmapping.py _group_id: method (default GET), prefix, headers (with :authority), query
    parameters, precedence; weight and shadow are not part of it.
    """
    return (
        m.method or "GET",
        m.prefix,
        m.prefix_regex,
        m.prefix_exact,
        m.case_sensitive,
        host_match(m),
        tuple(sorted(m.headers, key=lambda h: (h[0].lower(), h[1] or ""))),
        tuple(sorted(m.regex_headers)),
        tuple(sorted(m.query_parameters, key=lambda q: (q[0], q[1] or ""))),
        tuple(sorted(m.regex_query_parameters)),
        m.precedence,
    )


def route_weight(m: Mapping) -> tuple[object, ...]:
    """Sort key, highest first. Emissary irhttpmapping.py _route_weight:
    [precedence, len(prefix), len(headers), len(query params), prefix, method, header keys...]."""
    hosts = host_match(m)
    headers: list[tuple[str, str, bool]] = [(n, v or "", False) for n, v in m.headers]
    headers += [(n, v, True) for n, v in m.regex_headers]
    if hosts is not None:
        headers.append((":authority", hosts[1], hosts[0] == "regex"))
    queries = [(n, v or "", False) for n, v in m.query_parameters]
    queries += [(n, v, True) for n, v in m.regex_query_parameters]
    len_h = sum(len(n) + len(v) + (1 if rx else 0) for n, v, rx in headers)
    len_q = sum(len(n) + len(v) + (1 if rx else 0) for n, v, rx in queries)
    keys = sorted(f"{n}-{v}" for n, v, _ in headers) + sorted(f"{n}-{v}" for n, v, _ in queries)
    return (m.precedence, len(m.prefix), len_h, len_q, m.prefix, m.method or "GET", *keys)


def canary_weights(mappings: Sequence[Mapping]) -> list[tuple[Mapping, int]] | str:
    """Cumulative weights for a group's production Mappings, or an error message.

    Emissary irbasemappinggroup.py normalize_weights_in_mappings: one Mapping gets 100; weighted Mappings
    first, cumulative round(weight); the rest shared evenly by weightless ones, the last forced to 100.
    """
    if len(mappings) == 1:
        return [(mappings[0], 100)]
    out: list[tuple[Mapping, int]] = []
    weightless: list[Mapping] = []
    total = 0
    for m in mappings:
        if m.weight is None:
            weightless.append(m)
        else:
            total += round(m.weight)
            out.append((m, total))
    if total > 100:
        names = ", ".join(m.name for m, _ in out)
        return f"total weight of mappings {names} exceeds 100 ({total}); the group is ignored"
    if weightless:
        share = round((100 - total) / len(weightless))
        for m in weightless:
            total += share
            out.append((m, total))
        out[-1] = (out[-1][0], 100)
    return out


# ---------------------------------------------------------------- request matching


def _path_only(path: str) -> str:
    i = path.find("?")
    return path if i < 0 else path[:i]


def _host_only(authority: str) -> str:
    a = authority.lower()
    if a.startswith("["):
        return a[: a.find("]") + 1]
    return a.rsplit(":", 1)[0] if a.count(":") == 1 else a


@dataclass(frozen=True, slots=True)
class Matcher:
    """One group's compiled match: built once per configuration, run per request."""

    method: str | None
    path_test: Callable[[str], bool]
    host_test: Callable[[str], bool] | None
    header_tests: tuple[tuple[str, Callable[[str | None], bool]], ...]
    query_tests: tuple[tuple[str, Callable[[str | None], bool]], ...]

    def matches(self, req: RequestView) -> bool:
        if self.method is not None and req.method.upper() != self.method:
            return False
        if not self.path_test(req.path):
            return False
        if self.host_test is not None and not self.host_test(req.authority):
            return False
        for name, test in self.header_tests:
            if not test(req.headers.get(name)):
                return False
        if self.query_tests:
            i = req.path.find("?")
            query = dict(parse_qsl(req.path[i + 1 :], keep_blank_values=True)) if i >= 0 else {}
            for name, test in self.query_tests:
                if not test(query.get(name)):
                    return False
        return True


def _value_test(expected: str | None) -> Callable[[str | None], bool]:
    if expected is None:
        return lambda v: v is not None
    return lambda v: v == expected


def _regex_test(pattern: str) -> Callable[[str | None], bool]:
    rx = regex.compile(pattern)
    return lambda v: v is not None and rx.fullmatch(v) is not None


def path_test(m: Mapping) -> Callable[[str], bool]:
    """Envoy route match: `prefix` on the whole :path; `path` (prefix_exact) and `safe_regex` (prefix_regex,
    a full match) on the path without its query string. case_sensitive: false folds case."""
    if m.prefix_regex:
        rx = regex.compile(m.prefix, m.case_sensitive)
        return lambda p: rx.fullmatch(_path_only(p)) is not None
    if m.prefix_exact:
        if m.case_sensitive:
            return lambda p: _path_only(p) == m.prefix
        low = m.prefix.lower()
        return lambda p: _path_only(p).lower() == low
    if m.case_sensitive:
        prefix = m.prefix
        return lambda p: p.startswith(prefix)
    low = m.prefix.lower()
    n = len(low)
    return lambda p: p[:n].lower() == low


def _host_test(m: Mapping) -> Callable[[str], bool] | None:
    hm = host_match(m)
    if hm is None:
        return None
    kind, value = hm
    if kind == "regex":
        rx = regex.compile(value)
        return lambda a: rx.fullmatch(a) is not None or rx.fullmatch(_host_only(a)) is not None
    if kind == "suffix":
        return lambda a: _host_only(a).endswith(value)
    if kind == "prefix":
        return lambda a: _host_only(a).startswith(value)
    # An exact name matches with or without the client's port (browsers send `host:port` off port 80).
    return lambda a: a.lower() == value or _host_only(a) == value


def build_matcher(m: Mapping) -> Matcher:
    headers = [(n, _value_test(v)) for n, v in m.headers]
    headers += [(n, _regex_test(v)) for n, v in m.regex_headers]
    queries = [(n, _value_test(v)) for n, v in m.query_parameters]
    queries += [(n, _regex_test(v)) for n, v in m.regex_query_parameters]
    return Matcher(m.method, path_test(m), _host_test(m), tuple(headers), tuple(queries))


# ---------------------------------------------------------------- the table


@dataclass(frozen=True, slots=True)
class Group:
    key: tuple[object, ...]
    weight: tuple[object, ...]
    matcher: Matcher
    members: tuple[Mapping, ...]  # every Mapping of the group, name.namespace order
    production: tuple[tuple[Mapping, int], ...]  # canary order with cumulative weights; () = implicit
    shadow: Mapping | None
    error: str | None = None  # set when the group is ignored (invalid canary weights)

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

    @property
    def mappings(self) -> list[Mapping]:
        return [m for g in self.groups for m in g.members]


def order_groups(groups: Iterable[Group]) -> list[Group]:
    """Highest route weight first (Emissary ir.py ordered_groups: sorted by group_weight, reverse)."""
    return sorted(groups, key=lambda g: g.weight, reverse=True)


def build_table(mappings: Sequence[Mapping], overrides: Sequence[ServiceOverride] = ()) -> Table:
    # Emissary adds resources in fetcher.sorted() order: by rkey, `name.namespace`.
    ordered = sorted(mappings, key=lambda m: m.key)
    by_key: dict[tuple[object, ...], list[Mapping]] = {}
    for m in ordered:
        by_key.setdefault(group_key(m), []).append(m)
    errors: list[ConfigError] = []
    groups: list[Group] = []
    for key, members in by_key.items():
        shadows = [m for m in members if m.shadow]
        shadow = shadows[0] if shadows else None
        for extra in shadows[1:]:
            # irhttpmappinggroup.py add_mapping: the first shadow is kept.
            msg = f"cannot accept {extra.name} as second shadow after {shadows[0].name}"
            errors.append(ConfigError(extra.key, msg))
        prod = [m for m in members if not m.shadow]
        weights = canary_weights(prod) if prod else []
        error = None
        if isinstance(weights, str):
            error = weights
            errors.append(ConfigError(prod[0].key, weights))
            weights = []
        groups.append(
            Group(
                key=key,
                weight=max(route_weight(m) for m in members),
                matcher=build_matcher(members[0]),
                members=tuple(members),
                production=tuple(weights),
                shadow=shadow,
                error=error,
            )
        )
    addresses = {m.key: resolve_address(m, overrides) for m in ordered}
    return Table(tuple(order_groups(groups)), addresses, tuple(errors))


# ---------------------------------------------------------------- per request


def rewrite_path(m: Mapping, path: str) -> str:
    """The upstream path after `regex_rewrite` or `rewrite` (Envoy regex_rewrite / prefix_rewrite).

    `rewrite` defaults to "/" (prefix replaced by "/"); "" means none; regex_rewrite wins
    (Emissary irhttpmapping.py, v3route.py). With prefix_exact or prefix_regex the whole path is the
    matched part, so it is replaced whole (Envoy PathRouteEntryImpl / RegexRouteEntryImpl); the query stays.
    """
    if m.regex_rewrite is not None:
        p, sep, q = path.partition("?")
        pattern, subst = m.regex_rewrite
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


@dataclass(frozen=True, slots=True)
class Route:
    group: Group
    mapping: Mapping | None  # None: the reverse target (implicit production) serves it
    address: Address | None
    path: str  # the upstream path (rewritten)
    timeout_ms: int  # the production route's timeout, which the copy inherits (Envoy router.cc)
    shadow: Mapping | None  # set when this request is to be copied (sampled in)
    shadow_address: Address | None
    sampled_out: bool = False  # a shadow exists but this request was not picked


def resolve(table: Table, req: RequestView, canary_draw: float, shadow_draw: float) -> Route | None:
    """The route for one request, or None when no group matches (the reverse target serves it unchanged).

    Draws are in [0, 100): the canary pick takes the first Mapping whose cumulative weight exceeds it
    (Envoy evaluateFractionalPercent); the copy is made when shadow_draw < the shadow's weight.
    A group whose weights do not reach 100 lets the remaining requests fall through to later groups.
    """
    for g in table.groups:
        if g.error is not None or not g.matcher.matches(req):
            continue
        picked: Mapping | None = None
        if g.production:
            for m, cum in g.production:
                if canary_draw < cum:
                    picked = m
                    break
            if picked is None:
                continue
        shadow = g.shadow
        sampled_out = False
        if shadow is not None and not shadow_draw < (100 if shadow.weight is None else shadow.weight):
            shadow, sampled_out = None, True
        return Route(
            group=g,
            mapping=picked,
            address=table.addresses[picked.key] if picked else None,
            path=rewrite_path(picked, req.path) if picked else req.path,
            timeout_ms=picked.effective_timeout_ms if picked else DEFAULT_TIMEOUT_MS,
            shadow=shadow,
            shadow_address=table.addresses[shadow.key] if shadow else None,
            sampled_out=sampled_out,
        )
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
