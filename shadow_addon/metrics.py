"""Metric families and the few functions that record into them; their Prometheus exposition.

Pure data: no I/O, no locks (everything runs on mitmproxy's event loop). Label values come only from the
configuration (Mapping and service names) and status codes, never from traffic, so cardinality is bounded.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from prometheus_client import exposition
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from .reasons import DropReason

# 0.1 ms .. 10 s, roughly x2.5 apart: enough resolution for p50/p99 of local services, and below 1 ms for
# services on the same host or network, whose p50 would otherwise be a guess inside [0, 1 ms].
BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

PRODUCTION = "production"
SHADOW = "shadow"
REVERSE_TARGET = "reverse-target"  # service label of production traffic the reverse target serves

Gauge = tuple[str, str, dict[str, str], float]  # name, help, labels, value


@dataclass(frozen=True, slots=True)
class Occupancy:
    """What the sender holds now: copies in flight and waiting per shadow service, bytes in the memory budget."""

    inflight: dict[str, int]
    backlog: dict[str, int]
    memory_bytes: int

    @property
    def copies(self) -> int:
        """Copies without an outcome yet."""
        return sum(self.inflight.values()) + sum(self.backlog.values())


def sender_gauges(o: Occupancy) -> list[Gauge]:
    """The sender's occupancy under its metric names."""
    rows: list[Gauge] = [
        ("shadow_inflight", "Copies in flight per shadow service.", {"service": s}, float(n))
        for s, n in o.inflight.items()
    ]
    rows += [
        ("shadow_backlog", "Copies waiting per shadow service.", {"service": s}, float(n)) for s, n in o.backlog.items()
    ]
    rows.append(
        (
            "shadow_memory_bytes",
            "Bytes held for copies' bodies and kept shadow answers (shadow_memory_limit).",
            {},
            float(o.memory_bytes),
        )
    )
    return rows


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes by default


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
    compare_skipped: dict[tuple[str, str], int] = field(default_factory=dict)  # mapping, reason
    config_errors: int = 0
    grpc: dict[tuple[str, str, str, str], int] = field(default_factory=dict)  # mapping, service, role, grpc_status

    def record_grpc(self, mapping: str, service: str, role: str, label: str) -> None:
        """A gRPC call's outcome (`grpcwire.status`): HTTP 200 with grpc-status 5 is a failed call."""
        key = (mapping, service, role, label)
        self.grpc[key] = self.grpc.get(key, 0) + 1

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
        """`reason`: a `DropReason` (its members are their strings; an unknown one is counted as given)."""
        key = (mapping, reason)
        self.dropped[key] = self.dropped.get(key, 0) + 1

    def drops(self, reason: DropReason) -> dict[str, int]:
        """Copies dropped for `reason`, per shadow Mapping."""
        out: dict[str, int] = {}
        for (mapping, r), n in self.dropped.items():
            if r == reason:
                out[mapping] = out.get(mapping, 0) + n
        return out

    def record_compare(self, mapping: str, result: str, kinds: Iterable[str], reason: str = "") -> None:
        key = (mapping, result)
        self.compared[key] = self.compared.get(key, 0) + 1
        if result == "skipped":
            k = (mapping, reason or "other")
            self.compare_skipped[k] = self.compare_skipped.get(k, 0) + 1
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

    def add(self, other: Metrics) -> None:
        """Count `other`'s figures in too (the metrics of another process replaying part of the same capture)."""
        _add(self.upstream, other.upstream)
        _add(self.dropped, other.dropped)
        _add(self.reloads, other.reloads)
        _add(self.compared, other.compared)
        _add(self.mismatches, other.mismatches)
        _add(self.compare_skipped, other.compare_skipped)
        _add(self.grpc, other.grpc)
        for hkey, h in other.durations.items():
            into = self.durations.setdefault(hkey, Histogram())
            into.counts = [a + b for a, b in zip(into.counts, h.counts, strict=True)]
            into.total += h.total
        self.config_errors += other.config_errors


def _add[K](mine: dict[K, int], theirs: dict[K, int]) -> None:
    for key, n in theirs.items():
        mine[key] = mine.get(key, 0) + n


def _counter(name: str, doc: str, labels: tuple[str, ...], values: dict[Any, int]) -> CounterMetricFamily:
    """A counter family from a dict keyed by label values (one label: plain keys)."""
    fam = CounterMetricFamily(name, doc, labels=labels)
    for key, n in sorted(values.items()):
        fam.add_metric(key if isinstance(key, tuple) else (key,), n)
    return fam


class MetricsCollector(Collector):
    """Reads the counters of `Metrics` at scrape time: recording stays plain dict arithmetic on the hot path."""

    def __init__(self, m: Metrics, gauges: Sequence[Gauge] = ()) -> None:
        self.m = m
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        m = self.m
        yield _counter(
            "shadow_upstream_requests",
            "Upstream requests that got an answer or failed, by role (production/shadow).",
            ("mapping", "service", "role", "code"),
            m.upstream,
        )
        durations = HistogramMetricFamily(
            "shadow_upstream_request_duration_seconds",
            "Upstream time, request sent to response complete.",
            labels=("mapping", "service", "role"),
        )
        bounds = (*map(floatToGoString, BUCKETS), "+Inf")
        for key, h in sorted(m.durations.items()):
            durations.add_metric(key, list(zip(bounds, accumulate(h.counts), strict=True)), h.total)
        yield durations
        yield _counter(
            "shadow_dropped",
            "Copies not delivered to the shadow, by reason (sampling does not count).",
            ("mapping", "reason"),
            m.dropped,
        )
        if m.compared:
            yield _counter(
                "shadow_compare",
                "Compared production/shadow response pairs by result (match, mismatch, noise, skipped, error).",
                ("mapping", "result"),
                m.compared,
            )
            yield _counter(
                "shadow_compare_skipped",
                "Pairs not compared, by reason (shadow, production, budget, memory, pending, decoding, size, other).",
                ("mapping", "reason"),
                m.compare_skipped,
            )
            yield _counter(
                "shadow_compare_mismatch",
                "Mismatches by what differed (status, header, body).",
                ("mapping", "kind"),
                m.mismatches,
            )
        if m.grpc:
            yield _counter(
                "shadow_grpc_calls",
                "gRPC answers by role and grpc-status (0 OK, 5 NOT_FOUND...; missing, invalid).",
                ("mapping", "service", "role", "grpc_status"),
                m.grpc,
            )
        reloads = {result: m.reloads.get(result, 0) for result in ("success", "failure")}
        yield _counter("shadow_config_reloads", "Mapping reloads by result.", ("result",), reloads)
        yield GaugeMetricFamily(
            "shadow_config_errors", "Errors in the configuration now serving (diagnostics).", value=m.config_errors
        )
        families: dict[str, tuple[GaugeMetricFamily, tuple[str, ...]]] = {}
        for name, doc, labels, value in self.gauges:
            if name not in families:
                families[name] = (GaugeMetricFamily(name, doc, labels=tuple(labels)), tuple(labels))
            fam, names = families[name]
            fam.add_metric([labels.get(k, "") for k in names], value)
        for fam, _ in families.values():
            yield fam


def render(m: Metrics, gauges: Sequence[Gauge] = ()) -> bytes:
    """Prometheus text exposition format (0.0.4), by prometheus_client."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(m, gauges))
    return exposition.generate_latest(registry)
