"""One run: a fresh mitmdump under warm-up + measured load, its stragglers, and every figure of it."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from benchkit.grpcload import grpc_load
from benchkit.harness import Setup, running_mitmdump
from benchkit.load import asyncio_load, wrk_load
from benchkit.metrics import scrape
from benchkit.procstats import CpuSnap, ProcSamples, cpu_figures, cpu_snap, sampling
from benchkit.scenarios import Scenario
from benchkit.upstreams import Upstreams


@dataclass(slots=True)
class Run:
    round: int
    scenario: str
    requests: int = 0
    rps: float = math.nan
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    mean_ms: float = math.nan
    max_ms: float = math.nan
    errors: int = 0
    unfinished: int = 0
    prod_received: int = 0  # by the production server, from before the warm-up to the end of the settle time
    shadow_received: int = 0  # by the scenario's shadow server, same span
    shadow_marked: int = 0
    shadow_answered: int = 0
    settle_s: float = 0.0
    peak_rss_mib: float = math.nan  # highest VmRSS sample
    hwm_rss_mib: float = math.nan  # VmHWM: the kernel's own peak for the process
    peak_fds: int = -1
    start_fds: int = -1
    rss_growth_mib: float = math.nan  # VmRSS at the end of the measured window minus at its start
    cpu_mitmdump_pct: float = math.nan  # of one core, over the measured window
    core_speed: float = math.nan  # mean speed of mitmdump's CPU over the measured window (SpeedProbe)
    rps_norm: float = math.nan  # rps / core_speed: throughput at the same CPU speed
    cpu_upstreams_pct: float = math.nan
    cpu_client_pct: float = math.nan
    cpu_other_pct: float = math.nan  # everything else on the machine (other processes, steal), in cores x 100
    cpu_steal_pct: float = math.nan  # the hypervisor's steal, counted in cpu_other_pct too
    cpu_us_per_request: float = math.nan  # mitmdump CPU time per measured request
    cpu_system_us_per_request: float = math.nan  # of it, the kernel's (system time: the sockets' work)
    startup_s: float = math.nan  # s from start until mitmdump listens
    ready_s: float = math.nan  # until it answers a request (the addon has read its Mappings)
    ready_cpu_s: float = math.nan  # mitmdump's CPU time until then
    addon_drops: dict[str, int] = field(default_factory=dict)  # shadow_dropped_total by reason, when available
    addon_shadow_codes: dict[str, int] = field(default_factory=dict)  # shadow role of shadow_upstream_requests_total
    addon_compare: dict[str, int] = field(default_factory=dict)  # shadow_compare_total by result
    addon_compare_pending: int = 0  # shadow_compare_pending when read (after the settle time)
    addon_metrics_ok: bool = True  # the addon's /metrics answered (or the addon has none)
    mitmdump_output: list[str] = field(default_factory=list)  # what mitmdump printed
    samples: dict[str, list[float] | list[int]] = field(default_factory=dict)


def delta(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]], name: str, key: str) -> int:
    return after.get(name, {}).get(key, 0) - before.get(name, {}).get(key, 0)


async def settle(
    ups: Upstreams, before: dict[str, dict[str, int]], shadow: str | None, seconds: float, production: str = "prod"
) -> dict[str, dict[str, int]]:
    """Give stragglers up to `seconds` for the shadow to catch up with production; returns the last counts."""
    t0 = time.monotonic()
    after = await ups.stats()
    for _ in range(int(seconds / 0.1) + 1):
        if time.monotonic() - t0 >= seconds:
            break
        if shadow is None or delta(after, before, shadow, "requests") >= delta(after, before, production, "requests"):
            break
        await asyncio.sleep(0.1)
        after = await ups.stats()
    return after


def resource_figures(run: Run, samples: ProcSamples, snaps: Sequence[CpuSnap]) -> None:
    """Fill the RSS, fd and CPU figures of a run from the /proc samples and the window's CPU snapshots."""
    if samples.rss_kib:
        run.peak_rss_mib = max(samples.rss_kib) / 1024
        run.hwm_rss_mib = samples.hwm_kib / 1024
        run.peak_fds, run.start_fds = max(samples.fds), samples.fds[0]
        run.samples = {"t_s": samples.t, "rss_kib": samples.rss_kib, "fds": samples.fds}
    if len(snaps) < 2:
        return
    a, b = snaps[0], snaps[-1]
    cpu_figures(run, a, b)
    lo, hi = a.t - samples.started, b.t - samples.started
    window = [r for t, r in zip(samples.t, samples.rss_kib, strict=True) if lo <= t <= hi]
    if len(window) >= 2:
        run.rss_growth_mib = (window[-1] - window[0]) / 1024


async def measure(rnd: int, scn: Scenario, s: Setup) -> Run:
    """One run: a fresh mitmdump, warm-up + measured load, stragglers, figures; mitmdump always stopped."""
    args = s.args
    run = Run(rnd, scn.name)
    async with running_mitmdump(s, scn, f"{rnd}-{scn.name}") as mitm:
        run.startup_s, run.ready_s, run.ready_cpu_s = mitm.startup_s, mitm.ready_s, mitm.ready_cpu_s
        pid = mitm.proc.pid
        async with sampling(pid) as samples:
            before = await s.ups.stats()
            snaps: list[CpuSnap] = []

            def mark() -> None:
                snaps.append(cpu_snap(pid, s.ups.pids))

            if scn.grpc:
                load = await grpc_load(mitm.port, args.connections, args.warmup, args.duration, mark)
            elif s.wrk:
                load = await wrk_load(s.wrk, mitm.port, args.connections, args.warmup, args.duration, mark)
            else:
                load = await asyncio_load(mitm.port, args.connections, args.warmup, args.duration, mark, scn.paths)

            t_settle = time.monotonic()
            after = await settle(s.ups, before, scn.shadow, args.settle, scn.production)
            run.settle_s = round(time.monotonic() - t_settle, 2)
            m = await scrape(mitm.admin_port)
            run.addon_drops, run.addon_shadow_codes, run.addon_compare = m.drops, m.shadow_codes, m.compare
            run.addon_compare_pending = m.compare_pending
            run.addon_metrics_ok = m.ok or mitm.admin_port is None

        for k in ("requests", "rps", "p50_ms", "p99_ms", "mean_ms", "max_ms", "errors", "unfinished"):
            setattr(run, k, getattr(load, k))
        if s.probe is not None and len(snaps) >= 2:
            run.core_speed = s.probe.mean(snaps[0].t, snaps[-1].t)
            run.rps_norm = run.rps / run.core_speed
        run.prod_received = delta(after, before, scn.production, "requests")
        if scn.shadow is not None and scn.shadow in after:
            run.shadow_received = delta(after, before, scn.shadow, "requests")
            run.shadow_marked = delta(after, before, scn.shadow, "marked")
            run.shadow_answered = delta(after, before, scn.shadow, "answered")
        resource_figures(run, samples, snaps)
    run.mitmdump_output = mitm.output()
    return run
