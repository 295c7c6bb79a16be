#!/usr/bin/env python3
"""Benchmark of the shadow addon against plain mitmdump, on loopback, in one interleaved run.

Usage: scripts/bench [--rounds N] [--duration S] [--connections C] [--quick] [--only a,b] [--json PATH]

What runs
    * Upstreams: a subprocess (this file, hidden ``--serve-upstreams`` mode) running small asyncio HTTP/1.1
      keep-alive servers: production (200 with a 100-byte body) and the shadows ``healthy`` (answers at
      once), ``slow`` (after 200 ms), ``veryslow`` (after 2 s) and ``blackhole`` (accepts the connection,
      reads, never answers); ``refusing`` is a port nobody listens on. Every server counts the requests it
      received (complete heads) and those carrying the addon's ``x-mitmproxy-shadow`` mark. When ``nginx``
      is on PATH (``--upstreams auto``), production and the healthy shadow are nginx instead (one process,
      counts from its access logs); the delaying and black-hole shadows are always the asyncio ones.
    * Load: ``wrk -t1`` when on PATH (``--client auto``), else a lean asyncio client in the main process (a
      separate process from the servers): C keep-alive connections each sending ``GET /bench`` back to back
      (closed loop), parsing only the status line and Content-Length. Only requests started and completed
      inside the measured window count; at its end no new request is sent and in-flight ones finish.
    * mitmdump: a fresh process for every measurement (``--mode reverse:http://127.0.0.1:PROD``), plain or
      with ``-s shadow_addon/addon.py`` and a Mapping file that routes ``/`` to prod-svc and copies 100 % of
      it to shadow-svc; ``mapping_services`` points shadow-svc at the scenario's shadow port. shadow_addon/ is
      copied once at start and mitmdump imports that copy (PYTHONPATH), so every run of one benchmark tests
      the same code even while the working tree changes. When the addon
      has the ``shadow_admin`` option, each run gets its own free admin port (the default port is fixed, and
      other mitmdumps may hold it), and the addon's /metrics is read once after the load: its drop reasons
      are shown for information only; every figure that is checked comes from the benchmark's own counts.

One measurement
    Start mitmdump, poll its port (<= 15 s), load it for warm-up (1 s) + duration, of which only the
    duration is measured, then give stragglers up to ``--settle`` seconds (1 s; ends early once the shadow
    has seen as many requests as production). Throughout, mitmdump's /proc/PID/status (VmRSS, VmHWM) and
    the entries of /proc/PID/fd are sampled every 0.2 s; over the measured window the CPU time of mitmdump,
    of the upstream servers and of the client is read from /proc and getrusage (percent of one core).
    Delivery = requests the shadow received / requests production received, both counted by the servers
    from just before the warm-up to the end of the settle time. The addon copies every request that reaches
    its ``request`` hook, before production is asked, so on a healthy shadow both counts must be equal.

Why ratios, interleaved
    The machine is small (2 cores shared by mitmdump, client and servers) and noisy, so absolute numbers
    mean little. Each round runs every selected scenario once (every other round in reverse order, so no
    scenario is always first or last); each figure is a ratio against its reference measured *in the same
    round* (healthy against plain, each bad shadow against healthy), and the reported value is the median of
    the per-round ratios; ``[min..max]`` of the per-round ratios shows how much the rounds agreed. Absolute
    medians are printed for context. The CPU columns tell whether mitmdump (one Python thread) was the
    bottleneck: far below 100 % means the client or the servers limited it; "mitm cpu us/req" is mitmdump's
    CPU time per measured request (also noisy here: the host's load changes the speed of a CPU second);
    "cpu% other" is the machine's busy time (/proc/stat, steal included) not used by the benchmark's own
    processes: runs where it exceeds 25 % of a core are flagged as disturbed.
    p99 is coarse: in a 5 s run it is the ~20th slowest request, and mitmproxy's own gen-2 garbage
    collections (~80 ms every few seconds, stalling all C connections at once) decide whether it lands in
    such a pause. More rounds (``--rounds 7``) narrow the medians.

Targets (the PASS/FAIL column)
    healthy vs plain: throughput >= 0.85x, p50 <= 1.15x, delivery 100 % (the p99 ratio has no target).
    The client is a closed loop that saturates mitmdump, so p50 is mostly queueing (~ C / throughput): the
    p50 ratio largely mirrors the inverse of the throughput ratio rather than adding a separate measurement.
    every bad shadow vs healthy: production throughput >= 0.90x, p99 <= 1.5x.
    blackhole: peak open fds <= plain's peak + shadow_max_inflight + 16 (one connection per copy in flight,
    plus slack), peak RSS (VmHWM) <= plain's peak + 32 MiB (copies in flight and in the backlog are small;
    keeping every request would exceed it within tens of thousands of requests).

Output: a table on stdout (progress on stderr), every figure (per round and summarised) as JSON in
bench-results.json at the repo root or --json PATH. ``--soak`` is reserved and not implemented yet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADDON_SRC = ROOT / "shadow_addon"
HOST = "127.0.0.1"
MARK = b"x-mitmproxy-shadow"
PROD_BODY = b"p" * 99 + b"\n"  # ~100 bytes, as a small API answer
SHADOW_BODY = b"shadow ok\n"
SERVE_FLAG = "--serve-upstreams"  # hidden: run the upstream servers (the subprocess side of this file)

READY_TIMEOUT = 15.0  # s for mitmdump (or nginx) to open its port
STOP_TIMEOUT = 5.0  # s between SIGTERM and SIGKILL
CONTROL_TIMEOUT = 10.0  # s for the upstream process to answer a control line
SAMPLE_INTERVAL = 0.2  # s between /proc samples
DRAIN_GRACE = 5.0  # s the load may run past its end for in-flight requests before they are cancelled
MAX_RECONNECTS = 50  # per client connection and measurement
FD_SLACK = 16
OTHER_LOAD_PCT = 25.0  # % of a core used outside the benchmark during a run: flagged as disturbed
RSS_HEADROOM_MIB = 32.0
DEFAULT_MAX_INFLIGHT = 64  # the addon's shadow_max_inflight default

MAPPINGS_YAML = """\
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: app}
spec: {prefix: /, rewrite: "", service: prod-svc}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: app-shadow}
spec: {prefix: /, rewrite: "", service: shadow-svc, shadow: true}
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ============================================================================ scenarios


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    addon: bool
    shadow: str | None  # the upstream the shadow Mapping points at (None: plain mitmdump)
    reference: str | None  # the scenario its ratios are computed against
    description: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("plain", False, None, None, "plain mitmdump reverse proxy"),
        Scenario("healthy", True, "healthy", "plain", "addon, 100% copies to a healthy shadow"),
        Scenario("slow", True, "slow", "healthy", "shadow answers after 200 ms"),
        Scenario("veryslow", True, "veryslow", "healthy", "shadow answers after 2 s"),
        Scenario("blackhole", True, "blackhole", "healthy", "shadow accepts, never answers"),
        Scenario("refusing", True, "refusing", "healthy", "shadow port closed (connection refused)"),
    )
}
BAD_SHADOWS = ("slow", "veryslow", "blackhole", "refusing")

# Servers of the upstream subprocess: name -> (delay in seconds, black hole).
UPSTREAMS: dict[str, tuple[float, bool]] = {
    "prod": (0.0, False),
    "healthy": (0.0, False),
    "slow": (0.2, False),
    "veryslow": (2.0, False),
    "blackhole": (0.0, True),
}


def select_scenarios(only: str | None) -> tuple[list[str], list[str]]:
    """Selected scenario names in canonical order, plus the references added so every ratio can be computed."""
    if not only:
        return list(SCENARIOS), []
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in SCENARIOS]
    if unknown:
        raise ValueError(f"--only: unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    chosen = set(wanted)
    for _ in range(len(SCENARIOS)):  # bounded closure over references (blackhole's RSS needs plain too)
        need = {r for n in chosen if (r := SCENARIOS[n].reference)} | ({"plain"} if "blackhole" in chosen else set())
        if need <= chosen:
            break
        chosen |= need
    added = [n for n in SCENARIOS if n in chosen and n not in wanted]
    return [n for n in SCENARIOS if n in chosen], added


# ============================================================================ upstream servers (subprocess)


@dataclass(slots=True)
class ServerStats:
    requests: int = 0  # complete requests received
    marked: int = 0  # ... of which carried the addon's copy mark
    answered: int = 0
    connections: int = 0  # accepted in total
    open: int = 0  # open now


class UpstreamProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive server: Content-Length bodies only (the proxy and the copies send GETs)."""

    def __init__(self, stats: ServerStats, delay: float, blackhole: bool, response: bytes) -> None:
        self.stats, self.delay, self.blackhole, self.response = stats, delay, blackhole, response
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.stats.connections += 1
        self.stats.open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.open -= 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while self.transport is not None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self.transport.close()
                return
            head = bytes(buf[:end]).lower()
            length = 0
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                try:
                    length = int(head[i + 17 : j if j >= 0 else len(head)].strip())
                except ValueError:
                    self.transport.close()
                    return
            elif b"\r\ntransfer-encoding:" in head:
                self.transport.close()  # chunked request bodies are not supported (the benchmark sends none)
                return
            total = end + 4 + length
            if len(buf) < total:
                return
            del buf[:total]
            self.stats.requests += 1
            if MARK in head:
                self.stats.marked += 1
            if self.blackhole:
                continue
            if self.delay:
                asyncio.get_running_loop().call_later(self.delay, self._answer)
            else:
                self._answer()

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.response)
            self.stats.answered += 1


def _response(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def serve_upstreams() -> None:
    """Subprocess side: start the servers, print their ports, answer 'stats' lines on stdin until EOF."""
    loop = asyncio.get_running_loop()
    stats: dict[str, ServerStats] = {}
    servers: list[asyncio.Server] = []
    ports: dict[str, int] = {}
    for name, (delay, hole) in UPSTREAMS.items():
        st = stats[name] = ServerStats()
        resp = _response(PROD_BODY if name == "prod" else SHADOW_BODY)

        def factory(
            st: ServerStats = st, delay: float = delay, hole: bool = hole, resp: bytes = resp
        ) -> UpstreamProtocol:
            return UpstreamProtocol(st, delay, hole, resp)

        srv = await loop.create_server(factory, HOST, 0, backlog=1024)
        servers.append(srv)
        ports[name] = srv.sockets[0].getsockname()[1]
    sys.stdout.write(json.dumps({"ports": ports}) + "\n")
    sys.stdout.flush()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():  # EOF (the parent closed stdin or went away) ends the process
        if line.strip() == b"stats":
            sys.stdout.write(json.dumps({k: asdict(v) for k, v in stats.items()}) + "\n")
            sys.stdout.flush()
        elif line.strip() == b"quit":
            break
    for srv in servers:
        srv.close()


# ============================================================================ processes (main side)


_children: dict[int, str] = {}  # pid (= its process group id) -> name, for the last-resort cleanup


def _die_with_parent() -> None:
    """preexec_fn: have the kernel SIGKILL the child if this process dies (Linux; best effort)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


async def spawn(name: str, cmd: Sequence[str], **kw: Any) -> asyncio.subprocess.Process:
    """Start a child in its own process group (so stop() takes its children too)."""
    proc = await asyncio.create_subprocess_exec(*cmd, start_new_session=True, preexec_fn=_die_with_parent, **kw)
    _children[proc.pid] = name
    return proc


async def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL it after STOP_TIMEOUT; always reaps."""
    try:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the child left in its group
    finally:
        _children.pop(proc.pid, None)


def kill_leftovers() -> None:
    """Synchronous last resort (Ctrl-C during cleanup, unexpected errors): SIGKILL every group still known."""
    for pid in list(_children):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _children.pop(pid, None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A port nothing listens on (checked), for the refusing shadow."""
    for _ in range(20):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((HOST, port)) != 0:
                return port
    raise RuntimeError("could not find a closed port")


async def wait_port(port: int, proc: asyncio.subprocess.Process, what: str) -> None:
    """Poll until something accepts on port (bounded by READY_TIMEOUT); fail early if proc exited."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening")
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.05)
            continue
        w.close()
        with contextlib.suppress(OSError):
            await w.wait_closed()
        return
    raise RuntimeError(f"{what} did not listen on {HOST}:{port} within {READY_TIMEOUT:g}s")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads) from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# ============================================================================ upstreams (main side)


class Nginx:
    """nginx (from PATH) serving production and the healthy shadow; counts come from its access logs."""

    def __init__(self, proc: asyncio.subprocess.Process, ports: dict[str, int], logs: dict[str, Path]) -> None:
        self.proc, self.ports, self.logs = proc, ports, logs

    @classmethod
    async def start(cls, binary: str, workdir: Path) -> Nginx:
        workdir.mkdir(parents=True, exist_ok=True)
        ports = {"prod": free_port(), "healthy": free_port()}
        logs = {name: workdir / f"{name}.access" for name in ports}
        bodies = {"prod": PROD_BODY, "healthy": SHADOW_BODY}
        servers = "".join(
            f"  server {{ listen {HOST}:{port}; access_log {logs[name]} bench;\n"
            f"    location / {{ return 200 {json.dumps(bodies[name].decode())}; }} }}\n"
            for name, port in ports.items()
        )
        temp = " ".join(f"{d}_temp_path {workdir / d};" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = workdir / "nginx.conf"
        conf.write_text(
            f"daemon off; master_process off; worker_processes 1; pid {workdir / 'nginx.pid'};\n"
            f"error_log {workdir / 'error.log'} warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            "  log_format bench '$http_x_mitmproxy_shadow';\n"
            "  default_type text/plain; keepalive_requests 10000000; keepalive_timeout 300s;\n"
            f"  {temp}\n{servers}}}\n"
        )
        cmd = [binary, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]
        proc = await spawn("nginx", cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for port in ports.values():
                await wait_port(port, proc, "nginx")
        except RuntimeError as e:
            await stop(proc)
            errors = (
                (workdir / "error.log").read_text(errors="replace")[-1000:] if (workdir / "error.log").exists() else ""
            )
            raise RuntimeError(f"{e}: {errors}") from None
        except BaseException:
            await stop(proc)
            raise
        return cls(proc, ports, logs)

    def stats(self) -> dict[str, dict[str, int]]:
        out = {}
        for name, path in self.logs.items():
            try:
                lines = path.read_bytes().splitlines()
            except OSError:
                lines = []
            n = len(lines)
            out[name] = {
                "requests": n,
                "marked": sum(1 for ln in lines if ln.strip() not in (b"", b"-")),
                "answered": n,
            }
        return out


class Upstreams:
    """The asyncio upstream subprocess (control over stdin/stdout lines), plus nginx when used."""

    def __init__(self, proc: asyncio.subprocess.Process, ports: dict[str, int], nginx: Nginx | None) -> None:
        self.proc, self.nginx = proc, nginx
        self.ports = dict(ports)
        if nginx is not None:
            self.ports.update(nginx.ports)
        self.ports["refusing"] = closed_port()

    @property
    def kind(self) -> str:
        return "nginx (prod, healthy) + asyncio (bench.py)" if self.nginx else "asyncio (bench.py)"

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid] + ([self.nginx.proc.pid] if self.nginx else [])

    @classmethod
    async def start(cls, use_nginx: str | None, workdir: Path) -> Upstreams:
        proc = await spawn(
            "upstreams",
            [sys.executable, str(Path(__file__).resolve()), SERVE_FLAG],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        nginx = None
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), CONTROL_TIMEOUT)
            ports = json.loads(line)["ports"]
            if use_nginx:
                nginx = await Nginx.start(use_nginx, workdir / "nginx")
        except BaseException:
            await stop(proc)
            raise
        return cls(proc, ports, nginx)

    async def stats(self) -> dict[str, dict[str, int]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"stats\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), CONTROL_TIMEOUT)
        if not line:
            raise RuntimeError("the upstream server process exited")
        stats: dict[str, dict[str, int]] = json.loads(line)
        if self.nginx is not None:
            stats.update(self.nginx.stats())
        return stats

    async def close(self) -> None:
        try:
            if self.nginx is not None:
                await stop(self.nginx.proc)
        finally:
            if self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.write(b"quit\n")
                    self.proc.stdin.close()
            await stop(self.proc)


# ============================================================================ load generators


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


Mark = Callable[[], None]  # called at the start and at the end of the measured window


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (q in [0, 1])."""
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


async def _client_connection(port: int, t_measure: float, t_end: float, lat: list[float], res: LoadResult) -> None:
    request = b"GET /bench HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: shadow-bench\r\n\r\n" % (HOST.encode(), port)
    clock = time.perf_counter
    writer: asyncio.StreamWriter | None = None
    reconnects = 0
    try:
        while reconnects <= MAX_RECONNECTS:
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5.0)
                t0 = clock()
                if t0 >= t_end:
                    return
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                low = head.lower()
                i = low.find(b"\r\ncontent-length:")
                if i < 0:
                    raise ValueError("no content-length")
                await reader.readexactly(int(low[i + 17 : low.find(b"\r\n", i + 2)]))
                t1 = clock()
                if head[9:12] != b"200":
                    res.errors += 1
                elif t0 >= t_measure and t1 <= t_end:
                    lat.append(t1 - t0)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError):
                res.errors += 1
                reconnects += 1
                if writer is not None:
                    writer.close()
                    writer = None
                await asyncio.sleep(0.01)
    finally:
        if writer is not None:
            writer.close()


async def asyncio_load(port: int, connections: int, warmup: float, duration: float, mark: Mark) -> LoadResult:
    """Closed loop on C keep-alive connections; the first `warmup` seconds are not measured."""
    res = LoadResult()
    lat: list[float] = []
    t_measure = time.perf_counter() + warmup
    t_end = t_measure + duration

    async def marks() -> None:
        await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
        mark()
        await asyncio.sleep(max(0.0, t_end - time.perf_counter()))
        mark()

    marker = asyncio.create_task(marks())
    tasks = [asyncio.create_task(_client_connection(port, t_measure, t_end, lat, res)) for _ in range(connections)]
    try:
        _, pending = await asyncio.wait(tasks, timeout=warmup + duration + DRAIN_GRACE)
        res.unfinished = len(pending)
    finally:
        for t in [*tasks, marker]:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, marker, return_exceptions=True)
    lat.sort()
    res.requests = len(lat)
    res.rps = len(lat) / duration
    res.p50_ms, res.p99_ms = percentile(lat, 0.50) * 1e3, percentile(lat, 0.99) * 1e3
    if lat:
        res.mean_ms, res.max_ms = statistics.fmean(lat) * 1e3, lat[-1] * 1e3
    return res


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


# ============================================================================ /proc sampling and CPU


@dataclass(slots=True)
class ProcSamples:
    started: float = 0.0  # monotonic
    t: list[float] = field(default_factory=list)  # s since started
    rss_kib: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    hwm_kib: int = 0


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


async def sample_process(pid: int, stop_event: asyncio.Event, out: ProcSamples) -> None:
    out.started = time.monotonic()
    for _ in range(100_000):  # bounded (~5.5 h at 0.2 s); the stop event ends it long before
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
            await asyncio.wait_for(stop_event.wait(), SAMPLE_INTERVAL)
        if stop_event.is_set():
            return


@dataclass(slots=True)
class CpuSnap:
    t: float  # monotonic
    mitmdump: float | None
    upstreams: float | None
    client: float  # this process plus reaped children (wrk)
    machine: float | None  # busy CPU seconds of the whole machine, all CPUs (steal included)


def machine_busy_seconds() -> float | None:
    """From the first line of /proc/stat: everything but idle and iowait."""
    try:
        with open("/proc/stat", "rb") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_snap(mitmdump_pid: int, upstream_pids: Sequence[int]) -> CpuSnap:
    ups = [cpu_seconds(p) for p in upstream_pids]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSnap(
        time.monotonic(),
        cpu_seconds(mitmdump_pid),
        None if any(u is None for u in ups) else sum(u for u in ups if u is not None),
        time.process_time() + children.ru_utime + children.ru_stime,
        machine_busy_seconds(),
    )


def _pct(a: float | None, b: float | None, span: float) -> float:
    return math.nan if a is None or b is None or span <= 0 else 100.0 * (b - a) / span


# ============================================================================ one measurement


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
    cpu_upstreams_pct: float = math.nan
    cpu_client_pct: float = math.nan
    cpu_other_pct: float = math.nan  # everything else on the machine (other processes, steal), in cores x 100
    cpu_us_per_request: float = math.nan  # mitmdump CPU time per measured request
    startup_s: float = math.nan
    addon_drops: dict[str, int] = field(default_factory=dict)  # shadow_dropped_total by reason, when available
    addon_shadow_codes: dict[str, int] = field(default_factory=dict)  # shadow role of shadow_upstream_requests_total
    mitmdump_output: list[str] = field(default_factory=list)  # what mitmdump printed
    samples: dict[str, list[float] | list[int]] = field(default_factory=dict)


def mitmdump_cmd(
    mitmdump: str,
    addon: Path,
    scn: Scenario,
    ports: dict[str, int],
    proxy_port: int,
    mappings: Path,
    options: Sequence[str],
    admin_port: int | None = None,
) -> list[str]:
    cmd = [mitmdump, "-q"]
    if scn.addon:
        cmd += ["-s", str(addon / "shadow_addon" / "addon.py")]
    cmd += ["--mode", f"reverse:http://{HOST}:{ports['prod']}", "--listen-host", HOST, "-p", str(proxy_port)]
    if scn.addon:
        assert scn.shadow is not None
        cmd += [
            "--set", f"mappings={mappings}",
            "--set", f"mapping_services=prod-svc={HOST}:{ports['prod']}",
            "--set", f"mapping_services=shadow-svc={HOST}:{ports[scn.shadow]}",
        ]  # fmt: skip
        if admin_port is not None:
            cmd += ["--set", f"shadow_admin={HOST}:{admin_port}"]
        for opt in options:
            cmd += ["--set", opt]
    return cmd


def snapshot_addon(dest: Path) -> str:
    """Copy shadow_addon/ to dest/shadow_addon, so every run tests the same code even if the working tree
    changes during the benchmark (mitmdump runs with PYTHONPATH=dest). Returns a hash of the copied sources."""
    shutil.copytree(ADDON_SRC, dest / "shadow_addon", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    h = hashlib.sha256()
    for f in sorted((dest / "shadow_addon").rglob("*.py")):
        h.update(f.relative_to(dest).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def addon_has_option(addon: Path, name: str) -> bool:
    """Whether the addon declares an option (the addon is being developed alongside this benchmark)."""
    for f in sorted((addon / "shadow_addon").glob("*.py")):
        text = f.read_text(errors="replace")
        if f'"{name}"' in text and "add_option" in text:
            return True
    return False


_PROM_LINE = re.compile(r"^([A-Za-z_:][\w:]*)\{([^}]*)\}\s+(\S+)\s*$", re.M)
_PROM_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


async def scrape_metrics(port: int) -> tuple[dict[str, int], dict[str, int]]:
    """Optional: (drops by reason, shadow answers by code) from the addon's /metrics; empty when unavailable."""
    drops: dict[str, int] = {}
    codes: dict[str, int] = {}
    try:
        async with asyncio.timeout(3.0):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = await reader.read()  # until EOF (connection: close), bounded by the timeout
            writer.close()
    except (OSError, TimeoutError):
        return drops, codes
    text = data.partition(b"\r\n\r\n")[2].decode(errors="replace")
    for name, labels, value in _PROM_LINE.findall(text):
        lab = dict(_PROM_LABEL.findall(labels))
        try:
            n = int(float(value))
        except ValueError:
            continue
        if name == "shadow_dropped_total":
            drops[lab.get("reason", "?")] = drops.get(lab.get("reason", "?"), 0) + n
        elif name == "shadow_upstream_requests_total" and lab.get("role") == "shadow":
            codes[lab.get("code", "?")] = codes.get(lab.get("code", "?"), 0) + n
    return drops, codes


def _delta(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]], name: str, key: str) -> int:
    return after.get(name, {}).get(key, 0) - before.get(name, {}).get(key, 0)


@dataclass(slots=True)
class Setup:
    args: argparse.Namespace
    ups: Upstreams
    mitmdump: str
    wrk: str | None
    tmp: Path
    addon: Path  # the directory holding the snapshot of shadow_addon/
    env: dict[str, str]  # mitmdump's environment: PYTHONPATH puts the snapshot first
    admin: bool  # the addon has shadow_admin: give each run its own port (the default one is fixed) and scrape it


async def settle(
    ups: Upstreams, before: dict[str, dict[str, int]], shadow: str | None, seconds: float
) -> dict[str, dict[str, int]]:
    """Give stragglers up to `seconds` for the shadow to catch up with production; returns the last counts."""
    t0 = time.monotonic()
    after = await ups.stats()
    for _ in range(int(seconds / 0.1) + 1):
        if time.monotonic() - t0 >= seconds:
            break
        if shadow is None or _delta(after, before, shadow, "requests") >= _delta(after, before, "prod", "requests"):
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
    span = b.t - a.t
    run.cpu_mitmdump_pct = _pct(a.mitmdump, b.mitmdump, span)
    run.cpu_upstreams_pct = _pct(a.upstreams, b.upstreams, span)
    run.cpu_client_pct = _pct(a.client, b.client, span)
    ours = run.cpu_mitmdump_pct + run.cpu_upstreams_pct + run.cpu_client_pct
    run.cpu_other_pct = max(0.0, _pct(a.machine, b.machine, span) - ours)
    if a.mitmdump is not None and b.mitmdump is not None and run.requests:
        run.cpu_us_per_request = (b.mitmdump - a.mitmdump) / run.requests * 1e6
    lo, hi = a.t - samples.started, b.t - samples.started
    window = [r for t, r in zip(samples.t, samples.rss_kib, strict=True) if lo <= t <= hi]
    if len(window) >= 2:
        run.rss_growth_mib = (window[-1] - window[0]) / 1024


async def measure(rnd: int, scn: Scenario, s: Setup) -> Run:
    """One run: a fresh mitmdump, warm-up + measured load, stragglers, figures; mitmdump always stopped."""
    args = s.args
    run = Run(rnd, scn.name)
    proxy_port = free_port()
    log_path = s.tmp / f"mitmdump-{rnd}-{scn.name}.log"
    admin_port = free_port() if scn.addon and s.admin else None
    cmd = mitmdump_cmd(
        s.mitmdump, s.addon, scn, s.ups.ports, proxy_port, s.tmp / "mappings.yaml", args.addon_option, admin_port
    )
    t_start = time.monotonic()
    with open(log_path, "wb") as logf:
        proc = await spawn(f"mitmdump {scn.name}", cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=s.env)
    sampler: asyncio.Task[None] | None = None
    stop_sampling = asyncio.Event()
    try:
        try:
            await wait_port(proxy_port, proc, "mitmdump")
        except RuntimeError as e:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{e}\ncommand: {' '.join(cmd)}\noutput:\n{tail}") from None
        run.startup_s = round(time.monotonic() - t_start, 2)
        samples = ProcSamples()
        sampler = asyncio.create_task(sample_process(proc.pid, stop_sampling, samples))
        before = await s.ups.stats()
        snaps: list[CpuSnap] = []

        def mark() -> None:
            snaps.append(cpu_snap(proc.pid, s.ups.pids))

        if s.wrk:
            load = await wrk_load(s.wrk, proxy_port, args.connections, args.warmup, args.duration, mark)
        else:
            load = await asyncio_load(proxy_port, args.connections, args.warmup, args.duration, mark)

        t_settle = time.monotonic()
        after = await settle(s.ups, before, scn.shadow, args.settle)
        run.settle_s = round(time.monotonic() - t_settle, 2)
        if admin_port is not None:
            run.addon_drops, run.addon_shadow_codes = await scrape_metrics(admin_port)
        stop_sampling.set()
        await asyncio.wait_for(sampler, 2.0)

        for k in ("requests", "rps", "p50_ms", "p99_ms", "mean_ms", "max_ms", "errors", "unfinished"):
            setattr(run, k, getattr(load, k))
        run.prod_received = _delta(after, before, "prod", "requests")
        if scn.shadow is not None and scn.shadow in after:
            run.shadow_received = _delta(after, before, scn.shadow, "requests")
            run.shadow_marked = _delta(after, before, scn.shadow, "marked")
            run.shadow_answered = _delta(after, before, scn.shadow, "answered")
        resource_figures(run, samples, snaps)
    finally:
        stop_sampling.set()
        if sampler is not None and not sampler.done():
            sampler.cancel()
        await stop(proc)
    run.mitmdump_output = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()][:60]
    return run


# ============================================================================ summary


def _median(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def _sum_counts(dicts: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, n in d.items():
            out[k] = out.get(k, 0) + n
    return dict(sorted(out.items()))


def _spread(per_round: Sequence[float]) -> str:
    """' [min..max]' of the per-round ratios, when there is more than one round."""
    return f" [{min(per_round):.2f}..{max(per_round):.2f}]" if len(per_round) > 1 else ""


@dataclass(slots=True)
class Check:
    name: str
    value: str
    target: str
    result: str  # PASS, FAIL, PASS*, n/a
    figure: float = math.nan


def summarise(runs: list[Run], names: list[str], max_inflight: int) -> tuple[dict[str, dict[str, Any]], list[Check]]:
    by: dict[str, dict[int, Run]] = {n: {} for n in names}
    for r in runs:
        by[r.scenario][r.round] = r
    summary: dict[str, dict[str, Any]] = {}
    for n in names:
        rs = list(by[n].values())
        scn = SCENARIOS[n]
        row: dict[str, Any] = {
            "rounds": len(rs),
            "reference": scn.reference,
            "description": scn.description,
            "rps": _median([r.rps for r in rs]),
            "p50_ms": _median([r.p50_ms for r in rs]),
            "p99_ms": _median([r.p99_ms for r in rs]),
            "errors": sum(r.errors + r.unfinished for r in rs),
            "prod_received": sum(r.prod_received for r in rs),
            "shadow_received": sum(r.shadow_received for r in rs),
            "shadow_marked": sum(r.shadow_marked for r in rs),
            "peak_rss_mib": max((r.peak_rss_mib for r in rs), default=math.nan),
            "hwm_rss_mib": max((r.hwm_rss_mib for r in rs), default=math.nan),
            "peak_fds": max((r.peak_fds for r in rs), default=-1),
            "rss_growth_mib": _median([r.rss_growth_mib for r in rs]),
            "cpu_mitmdump_pct": _median([r.cpu_mitmdump_pct for r in rs]),
            "cpu_upstreams_pct": _median([r.cpu_upstreams_pct for r in rs]),
            "cpu_client_pct": _median([r.cpu_client_pct for r in rs]),
            "cpu_other_pct": _median([r.cpu_other_pct for r in rs]),
            "cpu_us_per_request": _median([r.cpu_us_per_request for r in rs]),
            "addon_drops": _sum_counts(r.addon_drops for r in rs),
            "addon_shadow_codes": _sum_counts(r.addon_shadow_codes for r in rs),
        }
        row["delivery"] = row["shadow_received"] / row["prod_received"] if scn.shadow and row["prod_received"] else None
        ref = scn.reference
        if ref in by:
            for k, key in (
                ("rps", "throughput_ratio"),
                ("p50_ms", "p50_ratio"),
                ("p99_ms", "p99_ratio"),
                ("cpu_us_per_request", "cpu_per_request_ratio"),
            ):
                per_round = [
                    getattr(r, k) / getattr(by[ref][i], k)
                    for i, r in by[n].items()
                    if i in by[ref] and getattr(by[ref][i], k) > 0
                ]
                row[key + "_per_round"] = per_round
                row[key] = _median(per_round)
        summary[n] = row

    checks: list[Check] = []

    def ratio_check(n: str, key: str, label: str, op: str, limit: float) -> None:
        if n not in summary or key not in summary[n]:
            return
        v = summary[n][key]
        ok = v >= limit if op == ">=" else v <= limit
        res = "n/a" if math.isnan(v) else "PASS" if ok else "FAIL"
        value = f"{v:.3f}x{_spread(summary[n][key + '_per_round'])}"
        checks.append(Check(f"{n} vs {summary[n]['reference']}: {label}", value, f"{op} {limit:g}x", res, v))

    ratio_check("healthy", "throughput_ratio", "throughput", ">=", 0.85)
    ratio_check("healthy", "p50_ratio", "p50 latency", "<=", 1.15)
    if "healthy" in summary and "p99_ratio" in summary["healthy"]:
        v = summary["healthy"]["p99_ratio"]
        value = f"{v:.3f}x{_spread(summary['healthy']['p99_ratio_per_round'])}"
        checks.append(Check("healthy vs plain: p99 latency", value, "(no target)", "-", v))
    if "healthy" in summary:
        h = summary["healthy"]
        got, want = h["shadow_received"], h["prod_received"]
        frac = got / want if want else math.nan
        res = "n/a" if not want else "PASS" if got >= want else "PASS*" if frac >= 0.999 else "FAIL"
        checks.append(Check("healthy: delivery to the shadow", f"{frac:.4%} ({got}/{want})", "100%", res, frac))
    for n in BAD_SHADOWS:
        ratio_check(n, "throughput_ratio", "throughput", ">=", 0.90)
        ratio_check(n, "p99_ratio", "p99 latency", "<=", 1.5)
    if "blackhole" in summary and "plain" in summary:
        b, p = summary["blackhole"], summary["plain"]
        fd_limit = p["peak_fds"] + max_inflight + FD_SLACK
        res = "n/a" if b["peak_fds"] < 0 or p["peak_fds"] < 0 else "PASS" if b["peak_fds"] <= fd_limit else "FAIL"
        checks.append(
            Check("blackhole: peak open fds", f"{b['peak_fds']} (plain {p['peak_fds']})", f"<= {fd_limit}", res)
        )
        rss_limit = p["hwm_rss_mib"] + RSS_HEADROOM_MIB
        ok = b["hwm_rss_mib"] <= rss_limit
        res = "n/a" if math.isnan(b["hwm_rss_mib"]) or math.isnan(p["hwm_rss_mib"]) else "PASS" if ok else "FAIL"
        checks.append(
            Check(
                "blackhole: peak RSS (VmHWM)",
                f"{b['hwm_rss_mib']:.1f} MiB (plain {p['hwm_rss_mib']:.1f})",
                f"<= {rss_limit:.1f} MiB",
                res,
            )
        )
    return summary, checks


def notes(runs: list[Run], summary: dict[str, dict[str, Any]], checks: list[Check]) -> list[str]:
    """Things worth a look that the checks do not cover."""
    out = []
    for r in runs:
        if r.errors or r.unfinished:
            out.append(f"round {r.round} {r.scenario}: {r.errors} client errors, {r.unfinished} unfinished")
        bad = [ln for ln in r.mitmdump_output if _ALARMING.search(ln)]
        if bad:
            out.append(f"round {r.round} {r.scenario}: mitmdump printed: {' | '.join(bad[:3])[:300]}")
        if r.shadow_received != r.shadow_marked:
            out.append(
                f"round {r.round} {r.scenario}: {r.shadow_received - r.shadow_marked} requests reached the shadow "
                "without the x-mitmproxy-shadow mark"
            )
    printed = [r for r in runs if r.mitmdump_output]
    if printed:
        out.append(
            f"{len(printed)} of {len(runs)} mitmdump runs printed output (no error or warning among it unless listed "
            "above; e.g. the addon's summary table at exit): see mitmdump_output in the JSON"
        )
    busy = [r for r in runs if not math.isnan(r.cpu_other_pct) and r.cpu_other_pct > OTHER_LOAD_PCT]
    if busy:
        worst = max(busy, key=lambda r: r.cpu_other_pct)
        out.append(
            f"{len(busy)} of {len(runs)} runs shared the machine with other work (> {OTHER_LOAD_PCT:g}% of a core "
            f"outside the benchmark; worst: round {worst.round} {worst.scenario}, {worst.cpu_other_pct:.0f}%): "
            "their figures are disturbed; rerun when the machine is quiet"
        )
    slow_plain = [
        r for r in runs if r.scenario == "plain" and r.cpu_mitmdump_pct < 80 and not (r.cpu_other_pct > OTHER_LOAD_PCT)
    ]
    if slow_plain:
        out.append(
            f"plain mitmdump used < 80% of a core in {len(slow_plain)} quiet run(s): the client or the servers may "
            "have limited throughput (ratios then understate the addon's cost)"
        )
    for n, row in summary.items():
        total = sum(row[k] for k in ("cpu_mitmdump_pct", "cpu_upstreams_pct", "cpu_client_pct"))
        if not math.isnan(total) and total > 0.9 * 100 * (os.cpu_count() or 1):
            out.append(f"{n}: the machine was saturated ({total:.0f}% CPU over {os.cpu_count()} cores)")
    if any(c.result == "PASS*" for c in checks):
        out.append(
            "PASS*: delivery >= 99.9% but < 100%: a healthy shadow should get every copy; check the addon's "
            "shadow_dropped_total before accepting it"
        )
    return out


# With -q mitmproxy prints only error log lines ("[HH:MM:SS.mmm] ..."); tracebacks and "Error ..." lines too.
_ALARMING = re.compile(r"^(\[\d\d:\d\d:\d\d|Traceback|\w*(Error|Exception)\b)")


def _fmt(v: float, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int] | None = None) -> str:
    right = right if right is not None else set(range(1, len(headers)))
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def report(result: dict[str, Any], summary: dict[str, dict[str, Any]], checks: list[Check], extra: list[str]) -> str:
    cfg = result["config"]
    out = [
        "",
        f"mitmproxy-shadow benchmark: {cfg['rounds']} round(s) x {cfg['duration']:g} s "
        f"(+{cfg['warmup']:g} s warm-up), {cfg['connections']} connections, loopback, {result['meta']['cpus']} CPUs",
        f"upstreams: {cfg['upstreams']}; client: {cfg['client']}; mitmdump {result['meta']['mitmproxy']}; "
        f"addon: snapshot of shadow_addon/ at start (sha256 {result['meta']['addon_sources_sha256']}, "
        f"git {result['meta']['git']}); medians over rounds, ratios: medians of per-round ratios vs the reference",
        "",
    ]
    rows = []
    for n, s in summary.items():
        rows.append(
            [
                n,
                s["reference"] or "-",
                _fmt(s["rps"], ".0f"),
                _fmt(s["p50_ms"], ".2f"),
                _fmt(s["p99_ms"], ".2f"),
                _fmt(s.get("throughput_ratio", math.nan), ".3f"),
                _fmt(s.get("p50_ratio", math.nan), ".3f"),
                _fmt(s.get("p99_ratio", math.nan), ".3f"),
                f"{s['shadow_received']}/{s['prod_received']}" if s["delivery"] is not None else "-",
                _fmt(s["delivery"] * 100, ".2f") if s["delivery"] is not None else "-",
                str(s["errors"]),
                " ".join(f"{k}:{c}" for k, c in s["addon_drops"].items()) or "-",
            ]
        )
    headers = ["scenario", "vs", "req/s", "p50 ms", "p99 ms", "thr x", "p50 x", "p99 x", "shadow/prod", "deliv %",
               "err", "addon drops"]  # fmt: skip
    out.append(table(headers, rows, set(range(1, len(headers) - 1))))
    out.append("")
    rows = [
        [
            n,
            _fmt(s["peak_rss_mib"], ".1f"),
            _fmt(s["hwm_rss_mib"], ".1f"),
            _fmt(s["rss_growth_mib"], "+.1f"),
            str(s["peak_fds"]),
            _fmt(s["cpu_mitmdump_pct"], ".0f"),
            _fmt(s["cpu_upstreams_pct"], ".0f"),
            _fmt(s["cpu_client_pct"], ".0f"),
            _fmt(s["cpu_other_pct"], ".0f"),
            _fmt(s["cpu_us_per_request"], ".0f"),
            _fmt(s.get("cpu_per_request_ratio", math.nan), ".3f"),
        ]
        for n, s in summary.items()
    ]
    headers = ["scenario", "peak RSS MiB", "VmHWM MiB", "RSS growth", "peak fds", "cpu% mitm", "cpu% ups",
               "cpu% client", "cpu% other", "mitm cpu us/req", "x ref"]  # fmt: skip
    out.append(table(headers, rows))
    out.append("")
    out.append(
        table(["check", "value", "target", "result"], [[c.name, c.value, c.target, c.result] for c in checks], {1, 2})
    )
    passed = sum(c.result in ("PASS", "PASS*") for c in checks)
    failed = sum(c.result == "FAIL" for c in checks)
    out.append(f"\n{passed} passed, {failed} failed")
    if extra:
        out.append("\nnotes:")
        out.extend(f"  - {x}" for x in extra)
    out.append(f"\nfigures: {result['json_path']}  (took {result['meta']['elapsed_s']:.0f} s)")
    return "\n".join(out)


def _clean(v: Any) -> Any:
    """JSON without NaN (null instead)."""
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else round(v, 6)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


# ============================================================================ main


def find_mitmdump() -> str:
    for c in (ROOT / ".venv" / "bin" / "mitmdump", Path(sys.executable).parent / "mitmdump"):
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("mitmdump")
    if not found:
        raise SystemExit("mitmdump not found (expected in .venv/bin; run scripts/bench, which sets up .venv)")
    return found


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "shadow_addon"],
                               capture_output=True, text=True, timeout=5).stdout.strip()  # fmt: skip
        return rev + ("+dirty(shadow_addon)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def max_inflight(options: Sequence[str]) -> int:
    for opt in reversed(options):
        key, _, value = opt.partition("=")
        if key.strip() == "shadow_max_inflight":
            with contextlib.suppress(ValueError):
                return int(value)
    return DEFAULT_MAX_INFLIGHT


async def bench(args: argparse.Namespace, names: list[str]) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    t0, load_start = time.monotonic(), os.getloadavg()
    try:
        from mitmproxy import version as mitm_version  # only for the report

        mitm = mitm_version.VERSION
    except ImportError:
        mitm = "unknown"
    wrk = shutil.which("wrk") if args.client in ("auto", "wrk") else None
    if args.client == "wrk" and not wrk:
        raise SystemExit("--client wrk: wrk is not on PATH")
    nginx = shutil.which("nginx") if args.upstreams in ("auto", "nginx") else None
    if args.upstreams == "nginx" and not nginx:
        raise SystemExit("--upstreams nginx: nginx is not on PATH")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="shadow-bench-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "mappings.yaml").write_text(MAPPINGS_YAML)
        try:
            ups = await Upstreams.start(nginx, tmp)
        except RuntimeError as e:
            if args.upstreams == "nginx" or not nginx:
                raise
            log(f"nginx did not start ({e}); using the asyncio upstreams")
            ups = await Upstreams.start(None, tmp)
        addon_dir = tmp / "addon"
        addon_rev = snapshot_addon(addon_dir)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(addon_dir), env.get("PYTHONPATH", "")) if p)
        admin = addon_has_option(addon_dir, "shadow_admin") and not any(
            o.partition("=")[0].strip() == "shadow_admin" for o in args.addon_option
        )
        setup = Setup(args, ups, find_mitmdump(), wrk, tmp, addon_dir, env, admin)
        client = "wrk -t1" if wrk else "asyncio (bench.py, main process)"
        log(f"upstreams: {ups.kind}; client: {client}; scenarios: {', '.join(names)}")
        try:
            for rnd in range(1, args.rounds + 1):
                order = names if rnd % 2 else names[::-1]
                for n in order:
                    r = await measure(rnd, SCENARIOS[n], setup)
                    runs.append(r)
                    deliv = f"shadow {r.shadow_received}/{r.prod_received}" if SCENARIOS[n].shadow else ""
                    log(
                        f"[round {rnd}/{args.rounds}] {n:<9} {r.rps:8.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
                        f"p99 {r.p99_ms:7.2f} ms  rss {r.peak_rss_mib:5.1f} MiB  fds {r.peak_fds:4d}  "
                        f"cpu mitm {r.cpu_mitmdump_pct:3.0f}% ups {r.cpu_upstreams_pct:3.0f}% "
                        f"client {r.cpu_client_pct:3.0f}% other {r.cpu_other_pct:3.0f}%  {deliv}"
                    )
        finally:
            await ups.close()
    inflight = max_inflight(args.addon_option)
    summary, checks = summarise(runs, names, inflight)
    json_path = Path(args.json) if args.json else ROOT / "bench-results.json"
    result: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "git": git_revision(),
            "addon_sources_sha256": addon_rev,
            "python": platform.python_version(),
            "mitmproxy": mitm,
            "cpus": os.cpu_count(),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "elapsed_s": time.monotonic() - t0,
        },
        "config": {
            "rounds": args.rounds,
            "duration": args.duration,
            "warmup": args.warmup,
            "settle": args.settle,
            "connections": args.connections,
            "scenarios": names,
            "addon_options": args.addon_option,
            "shadow_max_inflight": inflight,
            "upstreams": ups.kind,
            "client": client,
            "ports": ups.ports,
        },
        "json_path": str(json_path),
        "summary": summary,
        "checks": [asdict(c) for c in checks],
        "runs": [asdict(r) for r in runs],
    }
    extra = notes(runs, summary, checks)
    result["notes"] = extra
    json_path.write_text(json.dumps(_clean(result), indent=1) + "\n")
    print(report(result, summary, checks, extra), flush=True)
    return 1 if any(c.result == "FAIL" for c in checks) else 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Plain mitmdump vs mitmdump + shadow addon (healthy and bad shadows), interleaved, on loopback.",
        epilog=f"scenarios: {', '.join(f'{s.name} ({s.description})' for s in SCENARIOS.values())}. "
        "Exit status: 0 all checks pass, 1 a check failed, 2 usage error / not implemented.",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds of all scenarios (default 3)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds of load before each (default 1)")
    p.add_argument("--settle", type=float, default=1.0, help="max seconds to wait for shadow stragglers (default 1)")
    p.add_argument("--connections", type=int, default=10, help="client keep-alive connections (default 10)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, 2 s per measurement")
    p.add_argument("--only", metavar="A,B", help="scenarios to run (their reference scenarios are added)")
    p.add_argument("--json", metavar="PATH", help="where to write the figures (default: bench-results.json)")
    p.add_argument(
        "--addon-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="extra --set for the addon runs, e.g. shadow_timeout=1 (repeatable)",
    )
    p.add_argument("--client", choices=("auto", "asyncio", "wrk"), default="auto", help="load generator")
    p.add_argument("--upstreams", choices=("auto", "asyncio", "nginx"), default="auto", help="upstream servers")
    p.add_argument("--soak", action="store_true", help="long-running soak mode (not implemented yet)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    if args.rounds < 1 or args.duration <= 0 or args.connections < 1 or args.warmup < 0 or args.settle < 0:
        p.error("--rounds and --connections must be >= 1, --duration > 0, --warmup and --settle >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [SERVE_FLAG]:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_upstreams())
        return 0
    args = parse_args(argv)
    if args.soak:
        print("scripts/bench --soak: not implemented yet", file=sys.stderr)
        return 2
    try:
        names, added = select_scenarios(args.only)
    except ValueError as e:
        print(f"scripts/bench: {e}", file=sys.stderr)
        return 2
    if added:
        log(f"--only: added reference scenario(s) {', '.join(added)} (ratios are taken against them)")
    try:
        return asyncio.run(bench(args, names))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted; stopped every process started")
        return 130
    finally:
        kill_leftovers()


if __name__ == "__main__":
    sys.exit(main())
