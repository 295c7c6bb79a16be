"""The soak: one mitmdump under continuous load for minutes while the shadow flaps between healthy, slow,
black-holed and down; figures per phase, checks for memory, descriptors, throughput and errors."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchkit.harness import Setup, max_inflight, prepared, run_meta, running_mitmdump, started
from benchkit.load import DRAIN_GRACE, MAX_FAILURES, ClosedLoop, percentile
from benchkit.metrics import scrape
from benchkit.procs import HOST, ROOT, log, port_state
from benchkit.procstats import ProcSamples, cpu_figures, cpu_snap, sampling
from benchkit.report import Check, alarming, counts, fmt, publish, spread, table
from benchkit.runs import delta
from benchkit.scenarios import Scenario
from benchkit.servers import SLOW_DELAY, SWITCH_MODES
from benchkit.summary import FD_SLACK, OTHER_LOAD_PCT

SOAK_CYCLE = tuple(SWITCH_MODES)  # the order the soak's phases cycle through
SOAK_FLAG = Path("/tmp/soak-running")  # exists while a soak runs, so other work on the machine can wait for it
SOAK_SAMPLE_INTERVAL = 1.0  # s between /proc samples of mitmdump during a soak
SOAK_RSS_GROWTH_MIB = 40.0
SOAK_THROUGHPUT_MIN = 0.90  # every phase vs the median healthy phase
PROBE_TIMEOUT = 5.0  # s for the flapping shadow's port to reach the state of a new phase
_soak_flag_created = False


def set_soak_flag(expected_seconds: float) -> None:
    global _soak_flag_created
    if SOAK_FLAG.exists():
        log(f"note: {SOAK_FLAG} exists already (another soak?); it is rewritten and removed at the end")
    now = time.time()
    SOAK_FLAG.write_text(
        f"scripts/bench --soak, pid {os.getpid()}, started {time.strftime('%H:%M:%S', time.localtime(now))}, "
        f"expected to end about {time.strftime('%H:%M:%S', time.localtime(now + expected_seconds))}\n"
    )
    _soak_flag_created = True


def clear_soak_flag() -> None:
    global _soak_flag_created
    if _soak_flag_created:
        with contextlib.suppress(FileNotFoundError):
            SOAK_FLAG.unlink()
        _soak_flag_created = False


@dataclass(slots=True)
class PhaseLoad:
    """What the client saw while one phase was current: a latency per completed request, and errors."""

    lat: list[float] = field(default_factory=list)
    errors: int = 0


class Buckets:
    """The closed loop's exchanges, each in the bucket current when it completes; swapped at phase boundaries."""

    def __init__(self) -> None:
        self.bucket = PhaseLoad()

    def record(self, t0: float, t1: float, ok: bool) -> None:
        if ok:
            self.bucket.lat.append(t1 - t0)
        else:
            self.bucket.errors += 1

    def swap(self) -> PhaseLoad:
        """The current bucket; from now on a new one fills."""
        old, self.bucket = self.bucket, PhaseLoad()
        return old


async def probe_port(port: int, want_listening: bool) -> str:
    """Check the flapping shadow's port from outside: 'listening' or 'refusing' once it is as wanted (polled up
    to PROBE_TIMEOUT), otherwise 'NOT ...' with what was found."""
    state = "unknown"
    want = "listening" if want_listening else "refusing"
    deadline = time.monotonic() + PROBE_TIMEOUT
    for _ in range(int(PROBE_TIMEOUT / 0.05) + 1):
        state = await port_state(port)
        if state == want or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.05)
    return state if state == want else f"NOT {want} ({state})"


@dataclass(slots=True)
class Phase:
    index: int
    mode: str  # of the flapping shadow: SOAK_CYCLE
    start_s: float = 0.0  # since the start of phase 0
    seconds: float = math.nan  # measured length (boundary to boundary)
    requests: int = 0  # production requests completed (200) while the phase was current
    rps: float = math.nan
    throughput_ratio: float = math.nan  # rps / median rps of the healthy phases
    core_speed: float = math.nan  # mean speed of mitmdump's CPU during the phase (SpeedProbe)
    rps_norm: float = math.nan  # rps / core_speed: throughput at the same CPU speed
    norm_ratio: float = math.nan  # rps_norm / median rps_norm of the healthy phases
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    errors: int = 0  # non-200 answers, resets, failed connects
    rss_end_mib: float = math.nan  # last VmRSS sample of the phase
    rss_max_mib: float = math.nan
    fds_end: int = -1
    fds_max: int = -1
    cpu_mitmdump_pct: float = math.nan  # of one core, over the phase
    cpu_upstreams_pct: float = math.nan
    cpu_client_pct: float = math.nan
    cpu_other_pct: float = math.nan  # the machine's busy time outside the benchmark's processes
    cpu_steal_pct: float = math.nan  # the hypervisor's steal, counted in cpu_other_pct too
    cpu_us_per_request: float = math.nan  # mitmdump CPU time per completed production request
    cpu_system_us_per_request: float = math.nan  # of it, the kernel's (system time: the sockets' work)
    prod_received: int = 0  # by the production server during the phase
    shadow_received: int = 0  # by the flapping shadow (complete request heads)
    shadow_answered: int = 0
    metrics_ok: bool = False  # the addon's /metrics answered at the end of the phase
    inflight: int = 0  # shadow_inflight at the end of the phase
    backlog: int = 0  # shadow_backlog at the end of the phase
    drops: dict[str, int] = field(default_factory=dict)  # shadow_dropped_total increments during the phase
    shadow_codes: dict[str, int] = field(default_factory=dict)  # shadow answers (and failures) during the phase
    switch: dict[str, Any] = field(default_factory=dict)  # the upstream process's answer to the mode switch
    port_state: str = ""  # the shadow port as probed at the start of the phase: listening / refusing / NOT ...

    @property
    def delivery(self) -> float:
        return self.shadow_received / self.prod_received if self.prod_received else math.nan


@dataclass(slots=True)
class SoakRun:
    planned: int  # phases
    command: list[str] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    samples: ProcSamples = field(default_factory=ProcSamples)
    t_start: float = 0.0  # monotonic, start of phase 0
    t_end: float = 0.0  # monotonic, end of the last phase
    warmup_errors: int = 0
    tail_errors: int = 0  # errors after the last phase (while the client stopped)
    unfinished: int = 0
    gave_up: int = 0
    aborted: str = ""  # why the soak stopped early
    mitmdump_output: list[str] = field(default_factory=list)
    cpus: str = ""  # how the processes were placed on CPUs
    speed: list[tuple[float, float]] = field(default_factory=list)  # the probe's samples (s since phase 1, speed)


def _latency_figures(ph: Phase, load: PhaseLoad) -> None:
    lat = sorted(load.lat)
    ph.requests, ph.errors = len(lat), load.errors
    ph.rps = len(lat) / ph.seconds if ph.seconds > 0 else math.nan
    ph.p50_ms, ph.p99_ms = percentile(lat, 0.50) * 1e3, percentile(lat, 0.99) * 1e3
    ph.max_ms = lat[-1] * 1e3 if lat else math.nan


def _phase_resources(run: SoakRun) -> None:
    """RSS and fds of every phase from the 1 s samples (a sample belongs to the phase it was taken in)."""
    smp = run.samples
    edges = [run.t_start - smp.started + ph.start_s for ph in run.phases] + [run.t_end - smp.started]
    for i, ph in enumerate(run.phases):
        lo, hi = edges[i], edges[i + 1]
        inside = [(r, f) for t, r, f in zip(smp.t, smp.rss_kib, smp.fds, strict=True) if lo < t <= hi]
        if inside:
            ph.rss_end_mib, ph.fds_end = inside[-1][0] / 1024, inside[-1][1]
            ph.rss_max_mib = max(r for r, _ in inside) / 1024
            ph.fds_max = max(f for _, f in inside)


async def soak_run(s: Setup, n_phases: int) -> SoakRun:
    """One mitmdump under continuous load while the shadow flaps; mitmdump and the client always stopped."""
    args = s.args
    scn = Scenario("soak", True, "flap", None, "100% copies to a shadow that flaps")
    run = SoakRun(n_phases, cpus=s.placement)
    probe = s.probe
    period = args.phase_seconds
    async with running_mitmdump(s, scn, "soak") as mitm:
        run.command, pid = mitm.cmd, mitm.proc.pid
        buckets = Buckets()
        deadline = time.perf_counter() + args.warmup + n_phases * period + 60
        client = ClosedLoop(mitm.port, args.connections, deadline, buckets.record)
        try:
            async with sampling(pid, SOAK_SAMPLE_INTERVAL) as run.samples:
                client.start()
                await asyncio.sleep(args.warmup)
                m_prev, st_prev = await scrape(mitm.admin_port), await s.ups.stats()
                run.warmup_errors = buckets.swap().errors
                snap_prev, run.t_start = cpu_snap(pid, s.ups.pids), time.monotonic()
                t_prev = run.t_start
                for i in range(n_phases):
                    mode = SOAK_CYCLE[i % len(SOAK_CYCLE)]
                    ph = Phase(i, mode, start_s=t_prev - run.t_start)
                    ph.switch = await s.ups.set_mode(mode)
                    ph.port_state = await probe_port(s.ups.ports["flap"], want_listening=mode != "down")
                    await asyncio.sleep(max(0.0, run.t_start + (i + 1) * period - time.monotonic()))
                    load, t_now, snap = buckets.swap(), time.monotonic(), cpu_snap(pid, s.ups.pids)
                    m, st = await scrape(mitm.admin_port), await s.ups.stats()
                    ph.seconds = t_now - t_prev
                    _latency_figures(ph, load)
                    if probe is not None:
                        ph.core_speed = probe.mean(t_prev, t_now)
                        ph.rps_norm = ph.rps / ph.core_speed
                    cpu_figures(ph, snap_prev, snap)
                    ph.prod_received = delta(st, st_prev, "prod", "requests")
                    ph.shadow_received = delta(st, st_prev, "flap", "requests")
                    ph.shadow_answered = delta(st, st_prev, "flap", "answered")
                    d = m.since(m_prev)
                    ph.metrics_ok, ph.inflight, ph.backlog = d.ok, d.inflight, d.backlog
                    ph.drops, ph.shadow_codes = d.drops, d.shadow_codes
                    run.phases.append(ph)
                    m_prev, st_prev, snap_prev, t_prev = m, st, snap, t_now
                    _log_phase(run, ph)
                    if mitm.proc.returncode is not None:
                        run.aborted = f"mitmdump exited with status {mitm.proc.returncode} during phase {i + 1}"
                        break
                run.t_end = t_prev
                await client.stop(DRAIN_GRACE)
                run.tail_errors, run.unfinished = buckets.swap().errors, client.unfinished
                run.gave_up = client.gave_up
        finally:
            client.cancel()
            await asyncio.gather(*client.tasks, return_exceptions=True)
            if probe is not None:
                run.speed = [(round(t - run.t_start, 3), v) for t, v in probe.samples if t >= run.t_start > 0]
    run.mitmdump_output = mitm.output()
    _phase_resources(run)
    return run


def _log_phase(run: SoakRun, ph: Phase) -> None:
    rss = run.samples.rss_kib[-1] / 1024 if run.samples.rss_kib else math.nan
    fds = run.samples.fds[-1] if run.samples.fds else -1
    log(
        f"[phase {ph.index + 1:2d}/{run.planned} {ph.mode:<9}] {ph.rps:6.0f} req/s  p50 {ph.p50_ms:6.2f} ms  "
        f"p99 {ph.p99_ms:7.2f} ms  err {ph.errors}  speed {ph.core_speed:4.2f}  rss {rss:5.1f} MiB  fds {fds:3d}  "
        f"cpu mitm {ph.cpu_mitmdump_pct:3.0f}% other {ph.cpu_other_pct:3.0f}%  inflight {ph.inflight} "
        f"backlog {ph.backlog}  shadow {ph.shadow_received}/{ph.prod_received}  drops {counts(ph.drops)}"
        + ("" if ph.port_state in ("listening", "refusing") else f"  port: {ph.port_state}")
    )


def _ratios(phases: Sequence[Phase], value: str, ratio: str) -> None:
    """Set each phase's `ratio` to its `value` over the median `value` of the healthy phases."""
    healthy = [getattr(p, value) for p in phases if p.mode == "healthy" and not math.isnan(getattr(p, value))]
    ref = statistics.median(healthy) if healthy else math.nan
    for p in phases:
        setattr(p, ratio, getattr(p, value) / ref if ref > 0 else math.nan)


def _throughput_check(phases: Sequence[Phase], ratio: str, value: str, name: str) -> Check:
    """Every phase's `ratio` (see _ratios) against SOAK_THROUGHPUT_MIN, with the healthy phases' own spread."""
    rated = [p for p in phases if not math.isnan(getattr(p, ratio))]
    if not rated:
        return Check(name, "no phase measured", f">= {SOAK_THROUGHPUT_MIN:g}x", "n/a")
    worst = min(rated, key=lambda p: getattr(p, ratio))
    ok = all(getattr(p, ratio) >= SOAK_THROUGHPUT_MIN for p in rated) and len(rated) == len(phases)
    healthy = [getattr(p, ratio) for p in rated if p.mode == "healthy"]
    ref = statistics.median(getattr(p, value) for p in rated if p.mode == "healthy") if healthy else math.nan
    by_mode = "; ".join(
        f"{m} {statistics.median(getattr(p, ratio) for p in rated if p.mode == m):.3f}x"
        for m in SOAK_CYCLE
        if any(p.mode == m for p in rated)
    )
    value_text = (
        f"min {getattr(worst, ratio):.3f}x (phase {worst.index + 1} {worst.mode}); median by mode: {by_mode}; "
        f"healthy median {ref:.0f}/s, healthy phases{spread(healthy) or ' -'}"
    )
    return Check(name, value_text, f">= {SOAK_THROUGHPUT_MIN:g}x", "PASS" if ok else "FAIL")


def soak_checks(run: SoakRun, max_inflight: int) -> list[Check]:
    phases = run.phases
    checks: list[Check] = []
    cycle = len(SOAK_CYCLE)
    if run.aborted:
        checks.append(Check("soak ran to the end", run.aborted, f"{run.planned} phases", "FAIL"))
    # Memory: the first full cycle is the warm-up (pools, caches and the allocator settle); then it must stay flat.
    if len(phases) > cycle and not math.isnan(phases[cycle - 1].rss_end_mib):
        base = phases[cycle - 1].rss_end_mib
        peak = max((p.rss_max_mib for p in phases[cycle:] if not math.isnan(p.rss_max_mib)), default=math.nan)
        growth = peak - base
        res = "n/a" if math.isnan(growth) else "PASS" if growth < SOAK_RSS_GROWTH_MIB else "FAIL"
        value = f"{growth:+.1f} MiB (max {peak:.1f} after warm-up, {base:.1f} at its end)"
        checks.append(
            Check("RSS growth after warm-up (1st cycle)", value, f"< {SOAK_RSS_GROWTH_MIB:g} MiB", res, growth)
        )
    else:
        checks.append(Check("RSS growth after warm-up (1st cycle)", "fewer than 2 cycles", "-", "n/a"))
    if phases and phases[0].fds_end >= 0:
        limit = phases[0].fds_end + max_inflight + FD_SLACK
        peak_fds = max(p.fds_max for p in phases)
        worst = max(phases, key=lambda p: p.fds_max)
        value = f"{peak_fds} (phase {worst.index + 1} {worst.mode}; {phases[0].fds_end} after phase 1)"
        checks.append(Check("open fds bounded", value, f"<= {limit}", "PASS" if peak_fds <= limit else "FAIL"))
    _ratios(phases, "rps", "throughput_ratio")
    _ratios(phases, "rps_norm", "norm_ratio")
    normalised = bool(phases) and all(not math.isnan(p.norm_ratio) for p in phases)
    if normalised:
        checks.append(_throughput_check(phases, "norm_ratio", "rps_norm", "production throughput at equal CPU speed"))
    raw = _throughput_check(phases, "throughput_ratio", "rps", "production throughput as measured")
    if normalised:
        raw.result = "info"  # the host's CPU speed changes between phases: see SpeedProbe
    checks.append(raw)
    errors = sum(p.errors for p in phases) + run.warmup_errors + run.tail_errors + run.unfinished
    detail = f"{errors}" + (
        f" (warm-up {run.warmup_errors}, after the last phase {run.tail_errors}, unfinished {run.unfinished})"
        if errors
        else ""
    )
    checks.append(Check("production errors", detail, "0", "PASS" if errors == 0 else "FAIL", errors))
    return checks


def soak_notes(run: SoakRun) -> list[str]:
    out = []
    busy = [p for p in run.phases if not math.isnan(p.cpu_other_pct) and p.cpu_other_pct > OTHER_LOAD_PCT]
    if busy:
        worst = max(busy, key=lambda p: p.cpu_other_pct)
        out.append(
            f"phases {', '.join(str(p.index + 1) for p in busy)} shared the machine with other work "
            f"(> {OTHER_LOAD_PCT:g}% of a core outside the benchmark; marked * in the table; worst: phase "
            f"{worst.index + 1}, {worst.cpu_other_pct:.0f}%, of it {worst.cpu_steal_pct:.0f}% stolen by the "
            "hypervisor): their figures are disturbed"
        )
    for p in run.phases:
        if p.port_state not in ("listening", "refusing"):
            out.append(f"phase {p.index + 1} ({p.mode}): the shadow port was {p.port_state}")
        if p.switch.get("error"):
            out.append(f"phase {p.index + 1} ({p.mode}): mode switch: {p.switch['error']}")
        if p.mode == "healthy" and p.prod_received and p.delivery < 0.99:
            after_down = p.index > 0 and run.phases[p.index - 1].mode == "down" and set(p.drops) == {"connect_error"}
            why = " (the back-off that the down phase left, as intended)" if after_down else ""
            out.append(
                f"phase {p.index + 1} (healthy): the shadow received {p.delivery:.1%} of production's requests "
                f"({p.shadow_received}/{p.prod_received}); drops: {counts(p.drops)}{why}"
            )
        if p.mode == "healthy" and p.metrics_ok and p.backlog:
            out.append(f"phase {p.index + 1} (healthy): {p.backlog} copies still waiting in the backlog at its end")
    if run.phases and not any(p.metrics_ok for p in run.phases):
        out.append("the addon's /metrics was not available: drops, in-flight and backlog columns are empty")
    if run.gave_up:
        out.append(f"{run.gave_up} client connections gave up after {MAX_FAILURES} failures in a row")
    bad = alarming(run.mitmdump_output)
    if bad:
        out.append(f"mitmdump printed: {' | '.join(bad[:3])[:300]}")
    return out


def soak_timeline(run: SoakRun, step: float) -> list[dict[str, Any]]:
    """RSS and fds every `step` seconds of the soak (the sample at that time, and the max since the last line)."""
    smp = run.samples
    rel = [t - (run.t_start - smp.started) for t in smp.t]  # seconds since the start of phase 0
    rows: list[dict[str, Any]] = []
    total = run.t_end - run.t_start
    for k in range(1, int(total / step + 1e-6) + 1):
        lo, hi = (k - 1) * step, k * step
        inside = [(r, f) for t, r, f in zip(rel, smp.rss_kib, smp.fds, strict=True) if lo < t <= hi + 0.5]
        if not inside:
            continue
        current = [p for p in run.phases if p.start_s < hi] or run.phases[:1]
        rows.append(
            {
                "t_s": hi,
                "phase": current[-1].index + 1 if current else 0,
                "mode": current[-1].mode if current else "",
                "rss_mib": inside[-1][0] / 1024,
                "rss_max_mib": max(r for r, _ in inside) / 1024,
                "fds": inside[-1][1],
                "fds_max": max(f for _, f in inside),
            }
        )
    return rows


def soak_body(result: dict[str, Any], run: SoakRun) -> list[str]:
    """The report's header and tables (publish() adds the checks and notes)."""
    cfg, meta = result["config"], result["meta"]
    out = [
        "",
        f"mitmproxy-shadow soak: {len(run.phases)} phases x {cfg['phase_seconds']:g} s "
        f"({len(run.phases) * cfg['phase_seconds'] / 60:.1f} min, +{cfg['warmup']:g} s warm-up load), shadow cycling "
        f"{' > '.join(SOAK_CYCLE)} (slow: {SLOW_DELAY * 1e3:.0f} ms; blackhole: accepts, never answers; down: "
        "connection refused)",
        f"one mitmdump {meta['mitmproxy']}, 100% copies, shadow_max_inflight {cfg['shadow_max_inflight']}; "
        f"{cfg['connections']} connections (asyncio client); upstreams: {cfg['upstreams']}; loopback, {meta['cpus']} "
        f"CPUs; addon: snapshot of shadow_addon/ (sha256 {meta['addon_sources_sha256']}, git {meta['git']})",
        f"placement: {run.cpus}",
        "",
    ]
    rows = []
    for p in run.phases:
        busy = not math.isnan(p.cpu_other_pct) and p.cpu_other_pct > OTHER_LOAD_PCT
        rows.append(
            [
                str(p.index + 1),
                p.mode,
                fmt(p.rps, ".0f"),
                fmt(p.throughput_ratio, ".3f"),
                fmt(p.core_speed, ".2f"),
                fmt(p.norm_ratio, ".3f"),
                fmt(p.p50_ms, ".2f"),
                fmt(p.p99_ms, ".2f"),
                str(p.errors),
                fmt(p.rss_end_mib, ".1f"),
                str(p.fds_max) if p.fds_max >= 0 else "-",
                fmt(p.cpu_mitmdump_pct, ".0f"),
                fmt(p.cpu_us_per_request, ".0f"),
                fmt(p.cpu_other_pct, ".0f") + ("*" if busy else ""),
                fmt(p.delivery * 100, ".1f"),
                f"{p.inflight}/{p.backlog}" if p.metrics_ok else "-",
                counts(p.shadow_codes) if p.metrics_ok else "-",
                counts(p.drops) if p.metrics_ok else "-",
            ]
        )
    headers = [
        "#",
        "mode",
        "req/s",
        "x hlth",
        "cpu speed",
        "x hlth @speed",
        "p50 ms",
        "p99 ms",
        "err",
        "RSS end MiB",
        "fds max",
        "cpu% mitm",
        "mitm us/req",
        "cpu% other",
        "shadow rcv %",
        "infl/backlog",
        "shadow answers",
        "drops",
    ]
    out.append(table(headers, rows, {0, *range(2, len(headers) - 2)}))
    out.append(
        "\nreq/s, p50, p99, err: production, completions while the phase was current; x hlth: vs the median healthy "
        "phase;\ncpu speed: mean speed of mitmdump's CPU in the phase (speed probe); x hlth @speed: req/s / cpu speed, "
        "vs the\nmedian healthy phase's; mitm us/req: mitmdump CPU time per request; cpu% other: busy CPU outside the "
        "benchmark\n(% of a core, * above 25%); shadow rcv %: requests the shadow server received / production "
        "received;\ninfl/backlog: shadow_inflight/shadow_backlog at the phase's end; shadow answers, drops: the "
        "addon's counters during\nthe phase (shadow_upstream_requests_total{role=shadow} by code, shadow_dropped_total "
        "by reason)"
    )
    out.append(f"\nRSS and open fds over time (every {result['timeline_step_s']:g} s; max: since the previous line)")
    trows = [
        [
            f"{int(r['t_s'] // 60)}:{int(r['t_s'] % 60):02d}",
            f"{r['phase']} {r['mode']}",
            f"{r['rss_mib']:.1f}",
            f"{r['rss_max_mib']:.1f}",
            str(r["fds"]),
            str(r["fds_max"]),
        ]
        for r in result["timeline"]
    ]
    out.append(table(["t", "phase", "RSS MiB", "RSS max", "fds", "fds max"], trows, {0, 2, 3, 4, 5}))
    return out


async def soak(args: argparse.Namespace) -> int:
    t0, load_start = started()
    n_phases = round(args.soak_minutes * 60 / args.phase_seconds)
    set_soak_flag(args.warmup + n_phases * args.phase_seconds + 30)
    try:
        async with prepared(args, "shadow-soak-", None) as setup:
            ups = setup.ups
            log(
                f"soak: {n_phases} phases x {args.phase_seconds:g} s, shadow {' > '.join(SOAK_CYCLE)} on "
                f"{HOST}:{ups.ports['flap']}; upstreams: {ups.kind}; {SOAK_FLAG} exists until the end"
            )
            run = await soak_run(setup, n_phases)
    finally:
        clear_soak_flag()
    inflight = max_inflight(args.addon_option)
    checks = soak_checks(run, inflight)
    step = 60.0 if n_phases * args.phase_seconds >= 240 else args.phase_seconds
    result: dict[str, Any] = {
        "meta": run_meta(setup, t0, load_start),
        "config": {
            "soak_minutes": args.soak_minutes,
            "phase_seconds": args.phase_seconds,
            "phases": n_phases,
            "cycle": list(SOAK_CYCLE),
            "warmup": args.warmup,
            "connections": args.connections,
            "addon_options": args.addon_option,
            "shadow_max_inflight": inflight,
            "upstreams": ups.kind,
            "client": "asyncio (benchkit, main process)",
            "ports": ups.ports,
            "mitmdump_command": run.command,
        },
        "json_path": str(Path(args.json) if args.json else ROOT / "bench-results-soak.json"),
        "phases": [{**asdict(p), "delivery": p.delivery} for p in run.phases],
        "timeline_step_s": step,
        "timeline": soak_timeline(run, step),
        "client": {
            "warmup_errors": run.warmup_errors,
            "tail_errors": run.tail_errors,
            "unfinished": run.unfinished,
            "gave_up": run.gave_up,
        },
        "aborted": run.aborted,
        "samples": {
            "t_s": [round(t - (run.t_start - run.samples.started), 3) for t in run.samples.t],  # since phase 1
            "rss_kib": run.samples.rss_kib,
            "fds": run.samples.fds,
        },
        "mitmdump_output": run.mitmdump_output,
        "cpus": run.cpus,
        "speed": run.speed,
    }
    return publish(result, soak_body(result, run), checks, soak_notes(run))
