"""Production vs shadow, side by side: one typed `Row` per resource (its JSON is `/report.json`), and its text table.

Pure: built from the routing table and the metrics; the dashboard, `shadow.report`, the table printed at exit
and the demo all read the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .grpcwire import code_name
from .metrics import BUCKETS, PRODUCTION, REVERSE_TARGET, SHADOW, Histogram, Metrics
from .routing import Group, Table
from .words import clip, plural


@dataclass(frozen=True, slots=True)
class Side:
    """One role's figures for a resource: status codes, gRPC statuses, latency quantiles and histogram."""

    grpc: dict[str, int]  # gRPC calls by grpc-status: a failed call is HTTP 200 with a status other than 0 (OK)
    grpc_errors: int
    requests: int
    errors: int  # 5xx and failed attempts (`error`)
    error_rate: float
    codes: dict[str, int]  # status code (or `error`) -> count, in code order
    p50: float | None  # seconds; None: no observation
    p90: float | None
    p99: float | None
    le: tuple[float, ...]  # the histogram's bucket bounds (seconds); one more count than bounds (+Inf)
    counts: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "grpc": dict(self.grpc),
            "grpc_errors": self.grpc_errors,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "codes": dict(self.codes),
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "histogram": {"le": list(self.le), "counts": list(self.counts)},
        }


@dataclass(frozen=True, slots=True)
class Row:
    """One resource (a group with a shadow): production's and the shadow's figures side by side, and drops."""

    resource: str  # the group's label
    production_mappings: tuple[str, ...]  # names; () when the reverse target serves it (no production Mapping)
    shadow_mapping: str
    shadow_service: str
    shadow_address: str
    weight: int  # the shadow's weight (percent copied; over 100 copies every request)
    copies: bool  # False: the group has no production route, so nothing is copied
    production: Side
    shadow: Side
    drops: dict[str, int]  # reason -> copies dropped, in reason order

    def to_json(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "production_mappings": list(self.production_mappings),
            "shadow_mapping": self.shadow_mapping,
            "shadow_service": self.shadow_service,
            "shadow_address": self.shadow_address,
            "weight": self.weight,
            "copies": self.copies,
            "production": self.production.to_json(),
            "shadow": self.shadow.to_json(),
            "drops": dict(self.drops),
        }


def to_json(rows: list[Row]) -> list[dict[str, Any]]:
    """`/report.json`."""
    return [r.to_json() for r in rows]


def _side(m: Metrics, role: str, series: set[tuple[str, str]] | None, mapping_names: set[str]) -> Side:
    """Aggregate the series of one role. `series`: (mapping, service) pairs; None: any service of those names."""
    codes: dict[str, int] = {}
    hist = Histogram()
    for (mapping, service, r, code), n in m.upstream.items():
        if r != role or mapping not in mapping_names or (series is not None and (mapping, service) not in series):
            continue
        codes[code] = codes.get(code, 0) + n
    for (mapping, service, r), h in m.durations.items():
        if r != role or mapping not in mapping_names or (series is not None and (mapping, service) not in series):
            continue
        for i, c in enumerate(h.counts):
            hist.counts[i] += c
        hist.total += h.total
    grpc: dict[str, int] = {}
    for (mapping, service, r, label), n in m.grpc.items():
        if r != role or mapping not in mapping_names or (series is not None and (mapping, service) not in series):
            continue
        grpc[label] = grpc.get(label, 0) + n
    requests = sum(codes.values())
    errors = sum(n for c, n in codes.items() if c == "error" or c.startswith("5"))
    return Side(
        grpc=dict(sorted(grpc.items())),
        grpc_errors=sum(n for label, n in grpc.items() if label != "0"),
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else 0.0,
        codes=dict(sorted(codes.items())),
        p50=hist.quantile(0.50),
        p90=hist.quantile(0.90),
        p99=hist.quantile(0.99),
        le=tuple(BUCKETS),
        counts=tuple(hist.counts),
    )


def _production_series(g: Group) -> tuple[set[str], set[tuple[str, str]] | None]:
    if g.production:
        names = {m.name for m, _ in g.production}
        return names, {(m.name, m.service) for m, _ in g.production}
    first = g.members[0].name  # implicit production is labelled with the group's first Mapping
    return {first}, {(first, REVERSE_TARGET)}


def comparison(table: Table, m: Metrics) -> list[Row]:
    """One row per resource (group) that has a shadow."""
    rows = []
    for g in table.groups:
        if g.shadow is None:
            continue
        names, series = _production_series(g)
        shadow = g.shadow
        drops = {reason: n for (mapping, reason), n in sorted(m.dropped.items()) if mapping == shadow.name}
        rows.append(
            Row(
                resource=g.label,
                production_mappings=tuple(sorted(names)) if g.production else (),
                shadow_mapping=shadow.name,
                shadow_service=shadow.service,
                shadow_address=str(table.addresses[shadow.key]),
                weight=100 if shadow.weight is None else shadow.weight,
                copies=g.routes,
                production=_side(m, PRODUCTION, series, names),
                shadow=_side(m, SHADOW, {(shadow.name, shadow.service)}, {shadow.name}),
                drops=drops,
            )
        )
    return rows


# What the shadow's `requests` and `dropped` count, and why a drop count can exceed the requests (sender.py: a
# failed service is left alone for a while, and the copies meanwhile are dropped unsent).
DROPS_LEGEND = [
    "(shadow requests: copies sent, answered with a status or `error` when the attempt failed; dropped: copies "
    "with no answer, by reason,",
    " sent or not: after a failure the service is left alone briefly and the copies meanwhile are dropped unsent, "
    "so drops can exceed requests)",
]


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


def text_table(
    rows: list[Row],
    compare: dict[str, dict[str, int]] | None = None,
    diffs: dict[str, Any] | None = None,
    most: int = 8,
) -> str:
    """The comparison as a fixed-width table for a terminal; with `diffs` (GET /diffs), mismatches by endpoint."""
    if not rows:
        return "mitmproxy-shadow: no Mapping with a shadow has seen traffic.\n"
    head = (
        f"{'resource':<24} {'role':<10} {'requests':>8} {'errors':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}  codes"
    )
    lines = ["mitmproxy-shadow: production vs shadow", head, "-" * len(head)]
    for r in rows:
        for role, s in (("production", r.production), ("shadow", r.shadow)):
            label = clip(r.resource if role == "production" else f"  -> {r.shadow_mapping}", 24)
            codes = " ".join(f"{c}:{n}" for c, n in s.codes.items())
            if s.grpc:
                codes += "  grpc " + " ".join(f"{code_name(c)}:{n}" for c, n in s.grpc.items())
            lines.append(
                f"{label:<24} {role:<10} {s.requests:>8} {s.errors:>7} {_ms(s.p50):>8} "
                f"{_ms(s.p90):>8} {_ms(s.p99):>8}  {codes}"
            )
        if not r.copies:
            lines.append(f"{'':<24} copies     nothing: its group has no production route (see mitmshadow explain)")
        if r.drops:
            lines.append(f"{'':<24} dropped    " + " ".join(f"{k}:{v}" for k, v in r.drops.items()))
        results = (compare or {}).get(r.shadow_mapping)
        if results:
            lines.append(f"{'':<24} compared   " + " ".join(f"{k}:{v}" for k, v in sorted(results.items())))
    if any(r.drops for r in rows):
        lines += DROPS_LEGEND
    lines += _by_endpoint(diffs, most) if diffs else []
    return "\n".join(lines) + "\n"


def _by_endpoint(diffs: dict[str, Any], most: int) -> list[str]:
    groups = [g for g in diffs.get("groups", []) if g.get("mismatches")]
    if not groups:
        return []
    example: dict[tuple[str, str], str] = {}
    for r in diffs.get("records", []):  # newest first: keep the latest example per endpoint
        example.setdefault((r["mapping"], r["endpoint"]), "; ".join(r.get("diffs", [])[:2]))
    groups.sort(key=lambda g: (-g["mismatches"], g["endpoint"]))
    out = ["", "mismatches by endpoint (shadow Mapping, endpoint, mismatched/compared, latest difference):"]
    for g in groups[:most]:
        share = f"{g['mismatches']}/{g['compared']} ({g['rate']:.0%})"
        ex = example.get((g["mapping"], g["endpoint"]), "")
        out.append(f"  {clip(g['mapping'], 16):<16} {clip(g['endpoint'], 34):<34} {share:>14}  {clip(ex, 90)}")
    if len(groups) > most:
        out.append(f"  ... and {plural(len(groups) - most, 'more endpoint')} (GET /diffs)")
    return out
