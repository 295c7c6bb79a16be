"""What the benchmark reads from the addon's /metrics, parsed with Prometheus' own text parser."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from benchkit.procs import HOST

SCRAPE_TIMEOUT = 3.0  # s


@dataclass(slots=True)
class AddonMetrics:
    """Counters are totals since mitmdump started; gauges as they are when read."""

    ok: bool = False  # /metrics answered
    drops: dict[str, int] = field(default_factory=dict)  # shadow_dropped_total by reason
    shadow_codes: dict[str, int] = field(default_factory=dict)  # shadow_upstream_requests_total{role=shadow} by code
    compare: dict[str, int] = field(default_factory=dict)  # shadow_compare_total by result
    inflight: int = 0  # shadow_inflight, all services
    backlog: int = 0  # shadow_backlog, all services
    compare_pending: int = 0  # shadow_compare_pending

    def since(self, before: AddonMetrics) -> AddonMetrics:
        """Counters as increments since `before`; gauges as they are now."""

        def sub(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {k: d for k, n in sorted(a.items()) if (d := n - b.get(k, 0))}

        return AddonMetrics(
            self.ok and before.ok,
            sub(self.drops, before.drops),
            sub(self.shadow_codes, before.shadow_codes),
            sub(self.compare, before.compare),
            self.inflight,
            self.backlog,
            self.compare_pending,
        )


def parse(text: str) -> AddonMetrics:
    """The figures the benchmark uses, from the Prometheus text format."""
    m = AddonMetrics(ok=True)

    def add(counts: dict[str, int], key: str, value: float) -> None:
        counts[key] = counts.get(key, 0) + int(value)

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name, labels = s.name, s.labels
            if name == "shadow_dropped_total":
                add(m.drops, labels.get("reason", "?"), s.value)
            elif name == "shadow_upstream_requests_total" and labels.get("role") == "shadow":
                add(m.shadow_codes, labels.get("code", "?"), s.value)
            elif name == "shadow_compare_total":
                add(m.compare, labels.get("result", "?"), s.value)
            elif name == "shadow_inflight":
                m.inflight += int(s.value)
            elif name == "shadow_backlog":
                m.backlog += int(s.value)
            elif name == "shadow_compare_pending":
                m.compare_pending += int(s.value)
    return m


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through an *_proxy variable


def _fetch(port: int) -> str:
    with _DIRECT.open(f"http://{HOST}:{port}/metrics", timeout=SCRAPE_TIMEOUT) as r:
        return str(r.read().decode("utf-8", errors="replace"))


async def scrape(port: int | None) -> AddonMetrics:
    """The addon's figures; `ok` is False (and everything empty) when /metrics is unavailable or unreadable."""
    if port is None:
        return AddonMetrics()
    try:
        text = await asyncio.wait_for(asyncio.to_thread(_fetch, port), SCRAPE_TIMEOUT + 1)
        return parse(text)
    except (OSError, TimeoutError, urllib.error.URLError, ValueError):
        return AddonMetrics()
