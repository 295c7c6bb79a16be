"""Emissary's groups and their order: which Mappings form one resource (`group_key`), the header and query matches
it builds, the route weight that orders groups, the canary weights within one, and the checks a group makes as
Mappings join it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..mappings import Mapping


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
