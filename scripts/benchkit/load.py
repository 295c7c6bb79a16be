"""Load: `wrk -t1` when installed, else a lean asyncio closed loop (also the soak's client).

The asyncio client parses only the status line and Content-Length: it shares a CPU with the servers and must cost
far less than mitmdump per request.
"""

from __future__ import annotations

import asyncio
import math
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchkit.procs import HOST, spawn, stop

DRAIN_GRACE = 5.0  # s the load may run past its end for in-flight requests before they are cancelled
MAX_FAILURES = 50  # failed exchanges in a row after which a client connection gives up
FAILURE_PAUSE = 0.05  # s after a failed exchange


@dataclass(slots=True)
class LoadResult:
    requests: int = 0  # measured: started and completed inside the window
    rps: float = math.nan
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    mean_ms: float = math.nan
    max_ms: float = math.nan
    errors: int = 0  # non-200 answers, resets, failed connects
    unfinished: int = 0  # connections still busy when the drain grace ran out (asyncio client)

    def measured(self, lat: list[float], duration: float) -> LoadResult:
        """The figures of the window's latencies (seconds, sorted here) over `duration` seconds."""
        lat.sort()
        self.requests = len(lat)
        self.rps = len(lat) / duration
        self.p50_ms, self.p99_ms = percentile(lat, 0.50) * 1e3, percentile(lat, 0.99) * 1e3
        if lat:
            self.mean_ms, self.max_ms = statistics.fmean(lat) * 1e3, lat[-1] * 1e3
        return self


Mark = Callable[[], None]  # called at the start and at the end of the measured window
Record = Callable[[float, float, bool], None]  # (start, end, answered 200) of every exchange, failed ones too


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (q in [0, 1])."""
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def bench_request(port: int, path: bytes = b"/bench") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: shadow-bench\r\n\r\n" % (path, HOST.encode(), port)


def bench_requests(port: int, paths: int) -> list[bytes]:
    """One request per URL: `GET /bench` alone, or `GET /bench/0` .. `/bench/{paths-1}` taken in turn."""
    if paths <= 1:
        return [bench_request(port)]
    return [bench_request(port, b"/bench/%d" % i) for i in range(paths)]


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
    """One request on a kept-alive connection, reading only the status line and Content-Length; True on 200.
    Raises what a broken connection or a reply without Content-Length raises."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    low = head.lower()
    i = low.find(b"\r\ncontent-length:")
    if i < 0:
        raise ValueError("no content-length")
    await reader.readexactly(int(low[i + 17 : low.find(b"\r\n", i + 2)]))
    return head[9:12] == b"200"


class ClosedLoop:
    """C keep-alive connections each sending ``GET /bench`` back to back until stop() or the deadline
    (perf_counter); every exchange is handed to `record`."""

    def __init__(self, port: int, connections: int, deadline: float, record: Record, paths: int = 1) -> None:
        self.port, self.connections, self.deadline, self.record = port, connections, deadline, record
        self.paths = paths
        self.stopping = False
        self.tasks: list[asyncio.Task[None]] = []
        self.gave_up = 0  # connections that stopped after MAX_FAILURES failures in a row
        self.unfinished = 0  # connections still busy when the grace ran out

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._connection()) for _ in range(self.connections)]

    async def stop(self, grace: float) -> None:
        """No new requests; requests in flight get `grace` seconds, then are cancelled (counted as unfinished)."""
        self.stopping = True
        if not self.tasks:
            return
        _, pending = await asyncio.wait(self.tasks, timeout=grace)
        self.unfinished = len(pending)
        self.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def cancel(self) -> None:
        for t in self.tasks:
            if not t.done():
                t.cancel()

    async def _connection(self) -> None:
        requests = bench_requests(self.port, self.paths)
        sent = 0
        clock = time.perf_counter
        writer: asyncio.StreamWriter | None = None
        failures = 0
        try:
            while failures <= MAX_FAILURES:  # and bounded in time by the deadline
                if self.stopping or clock() >= self.deadline:
                    return
                t0 = clock()
                try:
                    if writer is None:
                        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, self.port), 5.0)
                        t0 = clock()
                    assert writer is not None
                    ok = await exchange(reader, writer, requests[sent % len(requests)])
                    sent += 1
                    self.record(t0, clock(), ok)
                    failures = 0
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError):
                    self.record(t0, clock(), False)
                    failures += 1
                    if writer is not None:
                        writer.close()
                        writer = None
                    await asyncio.sleep(FAILURE_PAUSE)
            self.gave_up += 1
        finally:
            if writer is not None:
                writer.close()


async def asyncio_load(
    port: int, connections: int, warmup: float, duration: float, mark: Mark, paths: int = 1
) -> LoadResult:
    """The closed loop for warm-up + duration; only requests started and completed inside the measured window
    count, errors count throughout."""
    res = LoadResult()
    lat: list[float] = []
    t_measure = time.perf_counter() + warmup
    t_end = t_measure + duration

    def record(t0: float, t1: float, ok: bool) -> None:
        if not ok:
            res.errors += 1
        elif t0 >= t_measure and t1 <= t_end:
            lat.append(t1 - t0)

    load = ClosedLoop(port, connections, t_end, record, paths)
    load.start()
    try:
        await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
        mark()
        await asyncio.sleep(max(0.0, t_end - time.perf_counter()))
        mark()
        await load.stop(DRAIN_GRACE)
    finally:
        load.cancel()
        await asyncio.gather(*load.tasks, return_exceptions=True)
    res.unfinished = load.unfinished
    return res.measured(lat, duration)


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(text: str, duration: float) -> LoadResult:
    """The figures of `wrk --latency` output."""

    def ms(value: str, unit: str) -> float:
        return float(value) * _WRK_UNITS[unit]

    res = LoadResult()
    if m := re.search(r"^\s*(\d+) requests in", text, re.M):
        res.requests = int(m.group(1))
    if m := re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M):
        res.rps = float(m.group(1))
    else:
        res.rps = res.requests / duration
    if m := re.search(r"^\s*Latency\s+([\d.]+)(\w+)\s+[\d.]+\w+\s+([\d.]+)(\w+)", text, re.M):
        res.mean_ms, res.max_ms = ms(m.group(1), m.group(2)), ms(m.group(3), m.group(4))
    for q, attr in (("50", "p50_ms"), ("99", "p99_ms")):
        if m := re.search(rf"^\s*{q}%\s+([\d.]+)(\w+)\s*$", text, re.M):
            setattr(res, attr, ms(m.group(1), m.group(2)))
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        res.errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        res.errors += sum(int(g) for g in m.groups())
    return res


async def wrk_load(wrk: str, port: int, connections: int, warmup: float, duration: float, mark: Mark) -> LoadResult:
    """wrk with one thread (the proxy needs the other core): a warm-up run, then the measured run.

    wrk takes whole seconds: both durations are rounded (at least 1 s).
    """
    url = f"http://{HOST}:{port}/bench"
    for seconds, measured in ((max(1, round(warmup)) if warmup > 0 else 0, False), (max(1, round(duration)), True)):
        if seconds <= 0:
            continue
        cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
        proc = await spawn("wrk", cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            if measured:
                mark()
            out, _ = await asyncio.wait_for(proc.communicate(), seconds + DRAIN_GRACE + 10)
            if measured:
                mark()
        finally:
            await stop(proc)
        if measured:
            if proc.returncode != 0:
                raise RuntimeError(f"wrk failed ({proc.returncode}): {out.decode(errors='replace')[-500:]}")
            return parse_wrk(out.decode(errors="replace"), seconds)
    return LoadResult()
