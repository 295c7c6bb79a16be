"""mitmdump's resources from /proc: RSS and open descriptors sampled over time, CPU time of every process in a
window, and the machine's busy time outside the benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

SAMPLE_INTERVAL = 0.2  # s between /proc samples


def cpu_split(pid: int) -> tuple[float, float] | None:
    """(utime, stime) of a process (all its threads) from /proc/PID/stat, in seconds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick
    except (OSError, IndexError, ValueError):
        return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads) from /proc/PID/stat."""
    split = cpu_split(pid)
    return None if split is None else split[0] + split[1]


@dataclass(slots=True)
class ProcSamples:
    started: float = 0.0  # monotonic
    t: list[float] = field(default_factory=list)  # s since started
    rss_kib: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    hwm_kib: int = 0


def descendants(pid: int) -> list[int]:
    """The process and every process below it (Linux: /proc/PID/task/TID/children), as they are now."""
    out, todo = [], [pid]
    while todo and len(out) < 1000:  # bounded: a replay starts a handful
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return out


def read_status(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return rss, hwm


async def sample_process(
    pid: int, stop_event: asyncio.Event, out: ProcSamples, interval: float = SAMPLE_INTERVAL
) -> None:
    out.started = time.monotonic()
    for _ in range(100_000):  # bounded (~5.5 h at 0.2 s, 27 h at 1 s); the stop event ends it long before
        st = read_status(pid)
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            fds = -1
        if st is not None and fds >= 0:
            out.t.append(round(time.monotonic() - out.started, 3))
            out.rss_kib.append(st[0])
            out.hwm_kib = max(out.hwm_kib, st[1])
            out.fds.append(fds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), interval)
        if stop_event.is_set():
            return


@contextlib.asynccontextmanager
async def sampling(pid: int, interval: float = SAMPLE_INTERVAL) -> AsyncIterator[ProcSamples]:
    """Sample the process while the block runs; the samples are complete on the way out."""
    samples = ProcSamples()
    stop_event = asyncio.Event()
    task = asyncio.create_task(sample_process(pid, stop_event, samples, interval))
    try:
        yield samples
    finally:
        stop_event.set()
        try:
            await asyncio.wait_for(task, 2.0)
        except TimeoutError:
            task.cancel()


@dataclass(slots=True)
class CpuSnap:
    t: float  # monotonic
    mitmdump: float | None
    upstreams: float | None
    client: float  # this process plus reaped children (wrk)
    machine: float | None  # busy CPU seconds of the whole machine, all CPUs (steal included)
    mitmdump_system: float | None = None  # of `mitmdump`, the kernel's time (stime)
    steal: float | None = None  # the hypervisor's steal, all CPUs (`steal_seconds`)


def _machine_ticks() -> list[int] | None:
    """The first line of /proc/stat: user, nice, system, idle, iowait, irq, softirq, steal (all CPUs)."""
    try:
        with open("/proc/stat", "rb") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None


def machine_busy_seconds() -> float | None:
    """From the first line of /proc/stat: everything but idle and iowait."""
    ticks = _machine_ticks()
    if ticks is None:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def steal_seconds() -> float | None:
    """CPU time the hypervisor gave to others while this machine's CPUs wanted it (/proc/stat's steal), all CPUs:
    on a shared VM, most of what the benchmark counts as "other" CPU in a disturbed run."""
    ticks = _machine_ticks()
    return None if ticks is None else ticks[7] / os.sysconf("SC_CLK_TCK")


def cpu_snap(mitmdump_pid: int, upstream_pids: Sequence[int]) -> CpuSnap:
    ups = [cpu_seconds(p) for p in upstream_pids]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    mitm = cpu_split(mitmdump_pid)
    return CpuSnap(
        time.monotonic(),
        None if mitm is None else mitm[0] + mitm[1],
        None if any(u is None for u in ups) else sum(u for u in ups if u is not None),
        time.process_time() + children.ru_utime + children.ru_stime,
        machine_busy_seconds(),
        None if mitm is None else mitm[1],
        steal_seconds(),
    )


def _pct(a: float | None, b: float | None, span: float) -> float:
    return math.nan if a is None or b is None or span <= 0 else 100.0 * (b - a) / span


def cpu_figures(fig: Any, a: CpuSnap, b: CpuSnap) -> None:
    """CPU use between two snapshots, set on a Run or a Phase (same field names; `requests` already set)."""
    span = b.t - a.t
    fig.cpu_mitmdump_pct = _pct(a.mitmdump, b.mitmdump, span)
    fig.cpu_upstreams_pct = _pct(a.upstreams, b.upstreams, span)
    fig.cpu_client_pct = _pct(a.client, b.client, span)
    ours = fig.cpu_mitmdump_pct + fig.cpu_upstreams_pct + fig.cpu_client_pct
    fig.cpu_other_pct = max(0.0, _pct(a.machine, b.machine, span) - ours)
    fig.cpu_steal_pct = _pct(a.steal, b.steal, span)
    if a.mitmdump is not None and b.mitmdump is not None and fig.requests:
        fig.cpu_us_per_request = (b.mitmdump - a.mitmdump) / fig.requests * 1e6
    if a.mitmdump_system is not None and b.mitmdump_system is not None and fig.requests:
        fig.cpu_system_us_per_request = (b.mitmdump_system - a.mitmdump_system) / fig.requests * 1e6
