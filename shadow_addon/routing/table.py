"""The routing table: validated Mappings built into groups in Emissary's order (`build_table`), each with its
compiled matcher, canary weights, shadow, group-wide settings and errors; service addresses resolved once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .. import envoyheaders, routeindex
from ..addresses import Address, ServiceOverride, override_matches, service_address
from ..mappings import HeaderAdd, Mapping
from .groups import (
    MISMATCH,
    accepts_ambassador_id,
    canary_weights,
    core_mismatches,
    group_key,
    header_matches,
    host_match,
    route_weight,
)
from .matching import Matcher, build_matcher, path_test


def resolve_address(m: Mapping, overrides: Sequence[ServiceOverride]) -> Address:
    """The address a Mapping's service resolves to, after `mapping_services` replacements."""
    own = service_address(m.service)
    for o in overrides:
        if override_matches(o.name, m.service, m.namespace):
            scheme = o.address.scheme if o.scheme_given else own.scheme
            return Address(scheme, o.address.host, o.address.port)
    return own


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
    # Resolved once per service and namespace: many Mappings share a service (each check parses both names).
    resolved: dict[tuple[str, str], Address] = {}
    addresses: dict[str, Address] = {}
    for m in kept:
        a = resolved.get((m.service, m.namespace))
        if a is None:
            a = resolved[(m.service, m.namespace)] = resolve_address(m, overrides)
        addresses[m.key] = a
    envoy_set = any(envoyheaders.sets(h.name) for g in groups for h in header_matches(g.members[0]))
    ordered_groups = tuple(order_groups(groups))
    index = routeindex.RouteIndex(ordered_groups)
    return Table(ordered_groups, addresses, tuple(errors), ignored, ambassador_id, envoy_set, index)
