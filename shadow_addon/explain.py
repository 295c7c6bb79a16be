"""`explain`: the routing table as a person reads it, with a warning for each trap. Pure: Table in, text or JSON out.

Used by `mitmshadow explain FILES...` and by `/diag` (its "routes" key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .mappings import LoadError, LoadResult, Mapping, not_honoured
from .routing import Group, KeyValue, Table, header_matches, host_match, query_matches, route_weight

UNROUTED = "Requests no route matches go to the reverse target unchanged (Emissary would answer 404)."


def _label(g: Group) -> str:
    """The group's label, with `hostname "*"` shown: it is what separates two groups of the same prefix."""
    star = any(h.name == ":authority" and h.value == "*" for h in header_matches(g.members[0]))
    return g.label + (" host *" if star else "")


def _kv(h: KeyValue) -> dict[str, Any]:
    return {"name": h.name, "value": h.value, "regex": h.regex}


def _describe(h: KeyValue) -> str:
    """A header match in the words of the Mapping field it came from."""
    if h.name == ":authority":
        return f"hostname {h.value!r}" if not h.regex else f"host_regex {h.value!r}"
    if h.name == ":method":
        return f"method {h.value}" + (" (regex)" if h.regex else "")
    if h.value is None:
        return f"header {h.name} present"
    return f"header {h.name}{' ~ ' if h.regex else ' = '}{h.value!r}"


def _separation(shadow: Mapping, prod: Mapping) -> str:
    """What puts two Mappings of the same prefix into different groups (irhttpmapping.py _group_id)."""
    parts: list[str] = []
    a, b = header_matches(shadow), header_matches(prod)
    for name, label in ((":authority", "hostname"), (":method", "method")):
        sa = [h for h in a if h.name == name]
        sb = [h for h in b if h.name == name]
        if sa != sb:
            parts.append(f"{_describe(sa[0]) if sa else f'no {label}'} vs {_describe(sb[0]) if sb else f'no {label}'}")
    other_a = [h for h in a if h.name not in (":authority", ":method")]
    other_b = [h for h in b if h.name not in (":authority", ":method")]
    if other_a != other_b:
        parts.append(f"headers {[_describe(h) for h in other_a]} vs {[_describe(h) for h in other_b]}")
    if query_matches(shadow) != query_matches(prod):
        parts.append("query_parameters differ")
    if shadow.precedence != prod.precedence:
        parts.append(f"precedence {shadow.precedence} vs {prod.precedence}")
    return "; ".join(parts) or "the order of their header or query matches"


def _near(a: str, b: str) -> bool:
    """Two prefixes a person easily takes for one: `/orders` and `/orders/`, `/Orders/` and `/orders/`."""
    return a != b and a.rstrip("/").lower() == b.rstrip("/").lower()


def lonely_shadows(table: Table) -> list[str]:
    """A shadow alone in its group copies nothing (V3Route.generate: a group without a production Mapping makes no
    route to mirror); each line names the Mapping it was probably meant for and what separates them."""
    out: list[str] = []
    for g in table.groups:
        if g.shadow is not None and not g.routes:
            s = g.shadow
            line = f"shadow {s.key} is alone in its group: it has no route, so it copies nothing"
            same = [h for h in table.groups if h.routes and h.members[0].prefix == s.prefix]
            near = [h for h in table.groups if h.routes and _near(h.members[0].prefix, s.prefix)]
            if same:
                meant = sorted(m.key for m, _ in same[0].production)
                p = same[0].production[0][0]
                line += (
                    f"; it was probably meant for {', '.join(meant)} (same prefix), separated by {_separation(s, p)}"
                )
            elif near:
                meant = sorted(m.key for m, _ in near[0].production)
                line += (
                    f"; it was probably meant for {', '.join(meant)}: prefix {near[0].members[0].prefix} vs "
                    f"{s.prefix} (a prefix matches the path's start as written, trailing slash and case included)"
                )
            out.append(line)
    return out


def traps(table: Table) -> list[str]:
    """The traps that are not Emissary errors: a shadow alone in its group, Mappings for another ambassador_id."""
    out = lonely_shadows(table)
    for m in table.ignored:
        out.append(
            f"Mapping {m.key} ignored: ambassador_id {', '.join(m.ambassador_id)} does not include "
            f"{table.ambassador_id!r}"
        )
    return out


def grpc_warnings(table: Table) -> list[str]:
    """A gRPC production whose shadow Mapping lacks `grpc: true`: its copies go as HTTP/1.1, as in Emissary, where
    the shadow's cluster is built from the shadow Mapping's own fields (irhttpmappinggroup.py
    add_cluster_for_mapping(shadow, marker='shadow')); a gRPC service refuses them."""
    out = []
    for g in table.groups:
        s = g.shadow
        if s is None or s.grpc:
            continue
        prods = sorted(m.key for m, _ in g.production if m.grpc)
        if prods:
            out.append(
                f"shadow {s.key} has no grpc: true but production {', '.join(prods)} has: its copies go as "
                "HTTP/1.1, which a gRPC service refuses (set grpc: true on the shadow Mapping too)"
            )
    return out


def warnings(table: Table) -> list[str]:
    """Each trap in the table, one line each: the traps, Emissary's errors (second shadow, weights over 100,
    mismatched core keys), and fields not honoured."""
    out = traps(table) + grpc_warnings(table)
    out += [f"Mapping {e.mapping}: {e.message}" for e in table.errors]
    for g in table.groups:
        for m in g.members:
            if m.ignored_fields:
                out.append(f"Mapping {m.key}: {not_honoured(m.ignored_fields)}")
    return out


def host_notice(table: Table, keep_host: bool) -> str | None:
    """Host matching needs the client's Host, which mitmproxy's reverse mode replaces unless keep_host_header."""
    if keep_host or not any(host_match(m) for m in table.mappings):
        return None
    return (
        "mappings: some Mappings match on host, but mitmproxy replaces the client's Host with the reverse target "
        "before addons see it (mapping_keep_host is off): they cannot match"
    )


@dataclass(frozen=True, slots=True)
class Match:
    """What a group matches on: its prefix (of one kind), header and query matches, precedence."""

    kind: str  # prefix, exact or regex
    prefix: str
    headers: tuple[KeyValue, ...]
    query_parameters: tuple[KeyValue, ...]
    precedence: int

    @classmethod
    def of(cls, g: Group) -> Match:
        m = g.members[0]
        kind = "regex" if m.prefix_regex else "exact" if m.prefix_exact else "prefix"
        return cls(kind, m.prefix, tuple(header_matches(m)), tuple(query_matches(m)), m.precedence)

    def to_json(self) -> dict[str, Any]:
        return {
            self.kind: self.prefix,
            "headers": [_kv(h) for h in self.headers],
            "query_parameters": [_kv(q) for q in self.query_parameters],
            "precedence": self.precedence,
        }

    def text(self) -> str:
        parts = [f"{self.kind} {self.prefix}"]
        parts += [_describe(h) for h in self.headers]
        for q in self.query_parameters:
            parts.append(f"query {q.name}" + ("" if q.value is None else f" {'~' if q.regex else '='} {q.value!r}"))
        if self.precedence:
            parts.append(f"precedence {self.precedence}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Production:
    """A production Mapping of a group: its canary's cumulative weight and the share of traffic that gives it."""

    name: str  # name.namespace
    service: str
    cumulative_weight: int
    share: int  # percent

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "service": self.service,
            "cumulative_weight": self.cumulative_weight,
            "share": self.share,
        }


@dataclass(frozen=True, slots=True)
class Shadow:
    """A group's shadow Mapping."""

    name: str  # name.namespace
    service: str
    weight: int  # percent of the requests copied (over 100: every one, as Envoy does)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "service": self.service, "weight": self.weight}


@dataclass(frozen=True, slots=True)
class Route:
    """One group in route order, as `mitmshadow explain` and `/diag` show it."""

    order: int  # 1 = tried first
    label: str
    match: Match
    route_weight: tuple[str, ...]
    routes: bool  # False: only a shadow, no route
    production: tuple[Production, ...]
    redirect: str | None
    shadow: Shadow | None
    errors: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "label": self.label,
            "match": self.match.to_json(),
            "route_weight": list(self.route_weight),
            "routes": self.routes,
            "production": [p.to_json() for p in self.production],
            "redirect": self.redirect,
            "shadow": None if self.shadow is None else self.shadow.to_json(),
            "errors": list(self.errors),
        }


def route_views(table: Table) -> list[Route]:
    """The groups in route order."""
    out: list[Route] = []
    for i, g in enumerate(table.groups, 1):
        prev = 0
        prods = []
        for m, cum in g.production:
            prods.append(Production(m.key, m.service, cum, max(0, min(cum, 100) - prev)))
            prev = max(prev, min(cum, 100))
        s = g.shadow
        out.append(
            Route(
                order=i,
                label=_label(g),
                match=Match.of(g),
                route_weight=tuple(str(x) for x in route_weight(g.members[0])),
                routes=g.routes,
                production=tuple(prods),
                redirect=g.redirect.key if g.redirect else None,
                shadow=None if s is None else Shadow(s.key, s.service, 100 if s.weight is None else s.weight),
                errors=tuple(g.errors),
            )
        )
    return out


def routes(table: Table) -> list[dict[str, Any]]:
    """The groups in route order, as JSON (`/diag`'s routes, `mitmshadow explain --json`)."""
    return [r.to_json() for r in route_views(table)]


@dataclass(frozen=True, slots=True)
class Explanation:
    """What `mitmshadow explain --json` prints: the routes, each trap, and the load errors."""

    routes: tuple[Route, ...]
    warnings: tuple[str, ...]
    errors: tuple[LoadError, ...]

    @classmethod
    def of(cls, table: Table, loaded: LoadResult) -> Explanation:
        return cls(tuple(route_views(table)), tuple(warnings(table)), tuple(loaded.errors))

    def to_json(self) -> dict[str, Any]:
        return {
            "routes": [r.to_json() for r in self.routes],
            "warnings": list(self.warnings),
            "errors": [str(e) for e in self.errors],  # each its one line
        }


NAME_WIDTH = (28, 48)  # the name and service columns: at least 28 wide, wider for longer names up to 48


def _columns(rs: list[Route]) -> tuple[int, int]:
    """Widths of the name and service columns, from the longest names (bounded: a longer one gets its own line)."""
    names = [len(p.name) for r in rs for p in r.production]
    names += [len("shadow " + r.shadow.name) for r in rs if r.shadow]
    services = [len(p.service) for r in rs for p in r.production]
    services += [len(r.shadow.service) for r in rs if r.shadow]
    lo, hi = NAME_WIDTH
    return min(max([lo, *names]), hi), min(max([lo, *services]), hi)


def _row(name: str, service: str, rest: str, widths: tuple[int, int]) -> list[str]:
    """One Mapping's line, columns aligned; a name or service too long for its column ends its line, and the row
    goes on below in its columns."""
    wn, ws = widths
    lines = []
    if len(name) > wn:
        lines.append(f"     {name}")
        name = ""
    if len(service) > ws:
        lines.append(f"     {name:<{wn}} -> {service}")
        return [*lines, f"     {'':<{wn}}    {'':<{ws}} {rest}"]
    return [*lines, f"     {name:<{wn}} -> {service:<{ws}} {rest}"]


def _errors(messages: list[str]) -> list[str]:
    """A Mapping's load errors under its line, each its one line (the duplicate's file and document)."""
    return [f"       error: {m}" for m in messages]


def text(table: Table, loaded: LoadResult | None = None) -> str:
    """The report `mitmshadow explain` prints."""
    lines = ["Routes, in the order they are tried (the first match wins):", ""]
    rs = route_views(table)
    widths = _columns(rs)
    errors = list(loaded.errors) if loaded else []
    shown = {p.name for r in rs for p in r.production} | {r.shadow.name for r in rs if r.shadow}
    shown |= {r.redirect for r in rs if r.redirect}
    own: dict[str, list[str]] = {}  # the load errors of Mappings shown (a duplicate's name): under their line
    for e in errors:
        if e.mapping in shown:
            own.setdefault(e.mapping, []).append(e)
    for r in rs:
        lines.append(f"{r.order}. {r.match.text()}")
        if r.redirect:
            lines.append(f"     redirect: {r.redirect}")
            lines += _errors(own.get(r.redirect, []))
        for p in r.production:
            rest = f"cumulative {p.cumulative_weight:>3} ({p.share}%)"
            lines += _row(p.name, p.service, rest, widths)
            lines += _errors(own.get(p.name, []))
        if r.shadow:
            s = r.shadow
            copies = f"copies {min(s.weight, 100)}% of the requests" if r.routes else "copies nothing (no route)"
            copies += " (weight over 100: Envoy copies every request)" if s.weight > 100 and r.routes else ""
            lines += _row(f"shadow {s.name}", s.service, f"weight {s.weight}: {copies}", widths)
            lines += _errors(own.get(s.name, []))
        if not r.routes:
            lines.append("     no route: only a shadow")
    if not table.groups:
        lines.append("(no Mappings)")
    lines += ["", UNROUTED]
    problems = [e for e in errors if e.mapping not in shown]  # the file's, or of a Mapping left out
    warn = warnings(table)
    if problems or warn:
        lines += ["", "Warnings:"]
        lines += [f"  - {e}" for e in problems]
        lines += [f"  - {w}" for w in warn]
    return "\n".join(lines) + "\n"
