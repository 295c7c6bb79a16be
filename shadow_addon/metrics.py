"""Metric families and the few functions that record into them; Prometheus text rendering.

Pure data: no I/O, no locks (everything runs on mitmproxy's event loop). Label values come only from the
configuration (Mapping and service names) and status codes, never from traffic, so cardinality is bounded.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field

# 1 ms .. 10 s, roughly x2.5 apart: enough resolution for p50/p99 of local services.
BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

PRODUCTION = "production"
SHADOW = "shadow"


@dataclass(slots=True)
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))  # last: +Inf
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """Estimate (linear inside the bucket, as Prometheus' histogram_quantile does)."""
        n = self.count
        if n == 0:
            return None
        rank = q * n
        seen = 0
        for i, c in enumerate(self.counts):
            if seen + c >= rank and c:
                lo = BUCKETS[i - 1] if i > 0 else 0.0
                hi = BUCKETS[i] if i < len(BUCKETS) else BUCKETS[-1]
                return lo + (hi - lo) * ((rank - seen) / c)
            seen += c
        return BUCKETS[-1]


@dataclass(slots=True)
class Metrics:
    upstream: dict[tuple[str, str, str, str], int] = field(default_factory=dict)  # mapping, service, role, code
    durations: dict[tuple[str, str, str], Histogram] = field(default_factory=dict)  # mapping, service, role
    dropped: dict[tuple[str, str], int] = field(default_factory=dict)  # mapping, reason
    reloads: dict[str, int] = field(default_factory=dict)  # result
    compared: dict[tuple[str, str], int] = field(default_factory=dict)  # mapping, result
    mismatches: dict[tuple[str, str], int] = field(default_factory=dict)  # mapping, kind
    config_errors: int = 0

    def record_upstream(self, mapping: str, service: str, role: str, code: int | str, seconds: float | None) -> None:
        key = (mapping, service, role, str(code))
        self.upstream[key] = self.upstream.get(key, 0) + 1
        if seconds is not None:
            hkey = (mapping, service, role)
            h = self.durations.get(hkey)
            if h is None:
                h = self.durations[hkey] = Histogram()
            h.observe(seconds)

    def record_drop(self, mapping: str, reason: str) -> None:
        key = (mapping, reason)
        self.dropped[key] = self.dropped.get(key, 0) + 1

    def record_compare(self, mapping: str, result: str, kinds: Iterable[str]) -> None:
        key = (mapping, result)
        self.compared[key] = self.compared.get(key, 0) + 1
        if result == "mismatch":
            for kind in kinds:
                k = (mapping, kind)
                self.mismatches[k] = self.mismatches.get(k, 0) + 1

    def compare_counts(self) -> dict[str, dict[str, int]]:
        """{shadow mapping: {result: n}} for the report and the dashboard."""
        out: dict[str, dict[str, int]] = {}
        for (mapping, result), n in sorted(self.compared.items()):
            out.setdefault(mapping, {})[result] = n
        return out

    def record_reload(self, ok: bool) -> None:
        result = "success" if ok else "failure"
        self.reloads[result] = self.reloads.get(result, 0) + 1

    def drops_total(self, reason: str | None = None) -> int:
        return sum(n for (_, r), n in self.dropped.items() if reason is None or r == reason)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in kv.items()) + "}"


def _num(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    return repr(float(v)) if isinstance(v, float) else str(v)


def render(m: Metrics, gauges: Iterable[tuple[str, str, dict[str, str], float]] = ()) -> str:
    """Prometheus text exposition format 0.0.4. `gauges`: (name, help, labels, value) rows."""
    out: list[str] = []
    name = "shadow_upstream_requests_total"
    out += [
        f"# HELP {name} Upstream requests that got an answer or failed, by role (production/shadow).",
        f"# TYPE {name} counter",
    ]
    for (mapping, service, role, code), n in sorted(m.upstream.items()):
        out.append(f"{name}{_labels(mapping=mapping, service=service, role=role, code=code)} {n}")
    name = "shadow_upstream_request_duration_seconds"
    out += [f"# HELP {name} Upstream time, request sent to response complete.", f"# TYPE {name} histogram"]
    for (mapping, service, role), h in sorted(m.durations.items()):
        cum = 0
        for i, le in enumerate((*BUCKETS, math.inf)):
            cum += h.counts[i]
            labels = _labels(mapping=mapping, service=service, role=role, le=_num(le))
            out.append(f"{name}_bucket{labels} {cum}")
        base = _labels(mapping=mapping, service=service, role=role)
        out += [f"{name}_sum{base} {_num(h.total)}", f"{name}_count{base} {cum}"]
    name = "shadow_dropped_total"
    out += [
        f"# HELP {name} Copies not delivered to the shadow, by reason (sampling does not count).",
        f"# TYPE {name} counter",
    ]
    for (mapping, reason), n in sorted(m.dropped.items()):
        out.append(f"{name}{_labels(mapping=mapping, reason=reason)} {n}")
    if m.compared:
        name = "shadow_compare_total"
        out += [
            f"# HELP {name} Compared production/shadow response pairs by result (match, mismatch, noise, skipped).",
            f"# TYPE {name} counter",
        ]
        for (mapping, result), n in sorted(m.compared.items()):
            out.append(f"{name}{_labels(mapping=mapping, result=result)} {n}")
        name = "shadow_compare_mismatch_total"
        out += [f"# HELP {name} Mismatches by what differed (status, header, body).", f"# TYPE {name} counter"]
        for (mapping, kind), n in sorted(m.mismatches.items()):
            out.append(f"{name}{_labels(mapping=mapping, kind=kind)} {n}")
    name = "shadow_config_reloads_total"
    out += [f"# HELP {name} Mapping reloads by result.", f"# TYPE {name} counter"]
    for result in ("success", "failure"):
        out.append(f"{name}{_labels(result=result)} {m.reloads.get(result, 0)}")
    name = "shadow_config_errors"
    out += [
        f"# HELP {name} Errors in the configuration now serving (diagnostics).",
        f"# TYPE {name} gauge",
        f"{name} {m.config_errors}",
    ]
    seen: set[str] = set()
    for gname, ghelp, labels, value in gauges:
        if gname not in seen:
            seen.add(gname)
            out += [f"# HELP {gname} {ghelp}", f"# TYPE {gname} gauge"]
        out.append(f"{gname}{_labels(**labels)} {_num(value)}")
    return "\n".join(out) + "\n"
