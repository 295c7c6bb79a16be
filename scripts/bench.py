#!/usr/bin/env python3
"""Benchmark of the shadow addon against plain mitmdump, on loopback, in one interleaved run; and a soak.

Usage: scripts/bench [--rounds N] [--duration S] [--connections C] [--quick] [--only a,b] [--json PATH]
       scripts/bench --soak [--soak-minutes M] [--phase-seconds S] [--connections C] [--quick] [--json PATH]

What runs
    * Upstreams: a subprocess (this file, hidden ``--serve-upstreams`` mode) running small asyncio HTTP/1.1
      keep-alive servers: production and the shadows ``healthy`` (answers at once), ``slow`` (after 200 ms),
      ``veryslow`` (after 2 s) and ``blackhole`` (accepts the connection, reads, never answers); ``refusing``
      is a port nobody listens on; ``flap`` is the soak's switchable shadow (below). Every server answers the
      same small JSON document (~150 bytes, ``Content-Type: application/json``: an object with a few fields
      and a short array), so a compared shadow answer matches production's as a correct new version's would.
      Every server counts the requests it received (complete heads) and those carrying the addon's
      ``x-mitmproxy-shadow`` mark. The parent controls the subprocess over stdin/stdout, one JSON line per
      command (``stats``, ``mode NAME``, ``quit``). When ``nginx`` is on PATH (``--upstreams auto``),
      production and the healthy shadow are nginx instead (one process, same document, counts from its access
      logs); the delaying, black-hole and switchable shadows are always the asyncio ones.
    * Load: ``wrk -t1`` when on PATH (``--client auto``), else a lean asyncio client in the main process (a
      separate process from the servers): C keep-alive connections each sending ``GET /bench`` back to back
      (closed loop), parsing only the status line and Content-Length. Only requests started and completed
      inside the measured window count; at its end no new request is sent and in-flight ones finish.
    * mitmdump: a fresh process for every measurement (``--mode reverse:http://127.0.0.1:PROD``), plain or
      with ``-s shadow_addon/addon.py`` and a Mapping file that routes ``/`` to prod-svc and copies 100 % of
      it to shadow-svc; ``mapping_services`` points shadow-svc at the scenario's shadow port; a scenario may
      add addon options (``compare``: ``shadow_compare=true``), then come ``--addon-option`` ones.
      shadow_addon/ is copied once at start and mitmdump imports that copy (PYTHONPATH), so every run of one
      benchmark tests the same code even while the working tree changes. When the addon has the
      ``shadow_admin`` option, each run gets its own free admin port (the default port is fixed, and other
      mitmdumps may hold it), and the addon's /metrics is read once after the load: its drop reasons and
      ``shadow_compare_total`` by result are shown; every other checked figure comes from the benchmark's
      own counts.

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
    round* (healthy and compare against plain, each bad shadow against healthy), and the reported value is
    the median of the per-round ratios; ``[min..max]`` of the per-round ratios shows how much the rounds
    agreed. Absolute medians are printed for context. The CPU columns tell whether mitmdump (one Python
    thread) was the bottleneck: far below 100 % means the client or the servers limited it; "mitm cpu
    us/req" is mitmdump's CPU time per measured request (also noisy here: the host's load changes the speed
    of a CPU second; even plain mitmdump under constant load varies by up to ~25 % between 10 s windows);
    "cpu% other" is the machine's busy time (/proc/stat, steal included) not used by the benchmark's own
    processes: runs where it exceeds 25 % of a core are flagged as disturbed.
    CPU speed: the speed of a core on these virtual machines wanders by tens of percent from one second to
    the next, each core on its own (see SpeedProbe), which decides most of a throughput ratio between two
    5 s runs. With 2 or more CPUs, this process (and so every child: client, servers, wrk) keeps off the last
    CPU, which mitmdump gets alone except for a speed probe (~1 ms of fixed Python work every 100 ms, timed
    in its own CPU time: ~1 % of that CPU, in every run alike). "thr x @speed" divides each run's throughput
    by the probe's mean speed over its measured window before taking the ratio; the throughput targets apply
    to it, and the ratio as measured is still shown (as "info").
    p99 is coarse: in a 5 s run it is the ~20th slowest request, and mitmproxy's own gen-2 garbage
    collections (~80 ms every few seconds, stalling all C connections at once) decide whether it lands in
    such a pause. More rounds (``--rounds 7``) narrow the medians.

Targets (the PASS/FAIL column)
    (Throughput: at equal CPU speed when the probe ran.)
    healthy vs plain: throughput >= 0.85x, p50 <= 1.15x, delivery 100 % (the p99 ratio has no target).
    The client is a closed loop that saturates mitmdump, so p50 is mostly queueing (~ C / throughput): the
    p50 ratio largely mirrors the inverse of the throughput ratio rather than adding a separate measurement.
    compare vs plain: throughput >= 0.80x (the price of 100 % copies plus comparing every answer), and at
    least 99 % of the compared pairs (shadow_compare_total) are "match", since both sides answer the same
    document: anything else means the comparison did not run as intended.
    every bad shadow vs healthy: production throughput >= 0.90x, p99 <= 1.5x.
    blackhole: peak open fds <= plain's peak + shadow_max_inflight + 16 (one connection per copy in flight,
    plus slack), peak RSS (VmHWM) <= plain's peak + 32 MiB (copies in flight and in the backlog are small;
    keeping every request would exceed it within tens of thousands of requests).

Soak (``--soak``)
    One mitmdump with the addon copying 100 % to ``flap``, a shadow at one fixed address whose behaviour the
    subprocess switches at runtime (``mode NAME``), in phases of ``--phase-seconds`` (30 s) cycling healthy >
    slow (200 ms) > blackhole > down, for ``--soak-minutes`` (10; ``--quick``: 2 minutes of 10 s phases).
    Leaving blackhole closes the connections it held, as a restarting service would; down closes the
    listening socket (connections are refused) and every open connection; leaving down binds the same port
    again (SO_REUSEADDR). At the start of each phase the benchmark probes the port from outside until it is
    listening (or refusing, for down), at most 5 s. The asyncio client runs for the whole soak (after
    ``--warmup`` seconds of unmeasured load); each completion and error counts in the phase current when it
    happens. mitmdump's VmRSS and open fds are sampled every 1 s, CPU times at every phase boundary, and the
    addon's /metrics at the end of every phase (shadow_inflight and shadow_backlog as they are then; drops by
    reason and shadow answers by code as increments over the phase). While it runs, /tmp/soak-running
    exists (removed at the end, also on failure or interruption) so other work can keep off the machine;
    "cpu% other" per phase shows when it did not.
    CPU speed: on these virtual machines the speed of a core wanders by tens of percent from one second to
    the next (see SpeedProbe), and a throughput compared across phases mostly measured that. With 2 or more
    CPUs, mitmdump runs alone on the last CPU with a speed probe (a subprocess timing ~1 ms of fixed Python
    work every 100 ms: ~1 % of that CPU, in every phase alike); the client and the servers run on the others.
    Each phase's throughput is also given per unit of the probe's mean speed in that phase ("x hlth @speed").
    Targets: RSS growth after warm-up < 40 MiB (warm-up = the first cycle of 4 phases; growth = highest RSS
    after it minus RSS at its end); open fds <= fds at the end of the first (healthy) phase +
    shadow_max_inflight + 16; production throughput in every phase >= 0.90x the median of the healthy phases,
    at equal CPU speed when the probe ran (the throughput as measured is shown beside it, as "info"; on one
    CPU it is the target); the spread of the healthy phases themselves is printed: it is the noise floor of
    that run; no production errors (including requests unfinished at the end).

Output: tables on stdout (progress on stderr), every figure (per round and summarised, or per phase with
every sample) as JSON in bench-results.json (soak: bench-results-soak.json) at the repo root or --json PATH.
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
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADDON_SRC = ROOT / "shadow_addon"
HOST = "127.0.0.1"
MARK = b"x-mitmproxy-shadow"
# Every upstream answers the same small JSON document (~150 bytes, as a small API answer): with shadow_compare
# the shadow's answer then matches production's, field by field, as a correct new version's would.
BODY = (
    json.dumps(
        {
            "id": 4711,
            "name": "bench widget",
            "status": "active",
            "price": 12.5,
            "stock": 42,
            "tags": ["alpha", "beta", "gamma"],
            "updated": "2024-05-01T12:00:00Z",
        },
        separators=(",", ":"),
    ).encode()
    + b"\n"
)
CONTENT_TYPE = "application/json"
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
COMPARE_MATCH_MIN = 0.99  # share of compared pairs that must match on the compare scenario (identical documents)

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
    options: tuple[str, ...] = ()  # addon options of this scenario (--set KEY=VALUE), before --addon-option ones


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("plain", False, None, None, "plain mitmdump reverse proxy"),
        Scenario("healthy", True, "healthy", "plain", "addon, 100% copies to a healthy shadow"),
        Scenario("compare", True, "healthy", "plain", "as healthy, with shadow_compare=true", ("shadow_compare=true",)),
        Scenario("slow", True, "slow", "healthy", "shadow answers after 200 ms"),
        Scenario("veryslow", True, "veryslow", "healthy", "shadow answers after 2 s"),
        Scenario("blackhole", True, "blackhole", "healthy", "shadow accepts, never answers"),
        Scenario("refusing", True, "refusing", "healthy", "shadow port closed (connection refused)"),
    )
}
BAD_SHADOWS = ("slow", "veryslow", "blackhole", "refusing")

SLOW_DELAY = 0.2  # s: the slow shadows' answer delay

# Servers of the upstream subprocess: name -> (delay in seconds, black hole).
UPSTREAMS: dict[str, tuple[float, bool]] = {
    "prod": (0.0, False),
    "healthy": (0.0, False),
    "slow": (SLOW_DELAY, False),
    "veryslow": (2.0, False),
    "blackhole": (0.0, True),
}
# The soak's switchable shadow ("flap", one port): mode -> (delay, black hole); None: down (port closed).
SWITCH_MODES: dict[str, tuple[float, bool] | None] = {
    "healthy": (0.0, False),
    "slow": (SLOW_DELAY, False),
    "blackhole": (0.0, True),
    "down": None,
}
SOAK_CYCLE = tuple(SWITCH_MODES)  # the order the soak's phases cycle through
REBIND_ATTEMPTS = 50  # x 0.1 s: leaving "down", re-binding the same port may briefly fail


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


@dataclass(slots=True)
class Behaviour:
    """How a server answers. Fixed per server, except the switchable one, which changes its instance at runtime."""

    delay: float = 0.0  # seconds before answering
    blackhole: bool = False  # read requests, never answer


class UpstreamProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive server: Content-Length bodies only (the proxy and the copies send GETs)."""

    def __init__(
        self, stats: ServerStats, behaviour: Behaviour, response: bytes, live: set[UpstreamProtocol] | None = None
    ) -> None:
        self.stats, self.behaviour, self.response, self.live = stats, behaviour, response, live
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.stats.connections += 1
        self.stats.open += 1
        if self.live is not None:
            self.live.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.open -= 1
        self.transport = None
        if self.live is not None:
            self.live.discard(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

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
            how = self.behaviour
            if how.blackhole:
                continue
            if how.delay:
                asyncio.get_running_loop().call_later(how.delay, self._answer)
            else:
                self._answer()

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.response)
            self.stats.answered += 1


def _response(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        CONTENT_TYPE.encode(),
        len(body),
        body,
    )


class SwitchServer:
    """One address whose behaviour changes at runtime: the soak's flapping shadow (modes: SWITCH_MODES).

    Leaving "blackhole" closes the connections it held, as a restarting service would; "down" closes the listening
    socket (new connections are refused) and every open connection; leaving "down" binds the same port again
    (SO_REUSEADDR: the closed connections' TIME_WAIT does not block it).
    """

    def __init__(self, stats: ServerStats, response: bytes) -> None:
        self.stats, self.response = stats, response
        self.behaviour = Behaviour()
        self.mode = "healthy"
        self.live: set[UpstreamProtocol] = set()
        self.server: asyncio.Server | None = None
        self.port = 0  # 0 until the first bind, then always the same

    def _protocol(self) -> UpstreamProtocol:
        return UpstreamProtocol(self.stats, self.behaviour, self.response, self.live)

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._protocol, HOST, self.port, backlog=1024, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    def close_connections(self) -> int:
        live = list(self.live)
        for proto in live:
            proto.close()
        return len(live)

    async def set_mode(self, mode: str) -> dict[str, Any]:
        if mode not in SWITCH_MODES:
            return {"error": f"unknown mode {mode!r}"}
        previous, closed, error = self.mode, 0, None
        if previous == "blackhole" or mode == "down":
            closed = self.close_connections()
        how = SWITCH_MODES[mode]
        if how is None:
            if self.server is not None:
                self.server.close()  # closes the listening socket at once; connections were closed above
                self.server = None
        else:
            self.behaviour.delay, self.behaviour.blackhole = how
            for _ in range(REBIND_ATTEMPTS if self.server is None else 0):
                try:
                    await self.listen()
                    error = None
                    break
                except OSError as e:
                    error = f"bind {HOST}:{self.port}: {e}"
                    await asyncio.sleep(0.1)
        self.mode = mode
        return {
            "mode": mode,
            "previous": previous,
            "closed": closed,
            "listening": self.server is not None,
            "port": self.port,
            "error": error,
        }


async def serve_upstreams() -> None:
    """Subprocess side: start the servers, print their ports, answer control lines on stdin until EOF.

    Control lines: "stats" (every server's counts), "mode NAME" (switch the flapping shadow), "quit"; each is
    answered with one JSON line.
    """
    loop = asyncio.get_running_loop()
    stats: dict[str, ServerStats] = {}
    servers: list[asyncio.Server] = []
    ports: dict[str, int] = {}
    resp = _response(BODY)
    for name, (delay, hole) in UPSTREAMS.items():
        st = stats[name] = ServerStats()
        how = Behaviour(delay, hole)

        def factory(st: ServerStats = st, how: Behaviour = how) -> UpstreamProtocol:
            return UpstreamProtocol(st, how, resp)

        srv = await loop.create_server(factory, HOST, 0, backlog=1024)
        servers.append(srv)
        ports[name] = srv.sockets[0].getsockname()[1]
    switch = SwitchServer(stats.setdefault("flap", ServerStats()), resp)
    await switch.listen()
    ports["flap"] = switch.port
    sys.stdout.write(json.dumps({"ports": ports}) + "\n")
    sys.stdout.flush()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    for _ in range(10_000_000):  # bounded; EOF (the parent closed stdin or went away) ends it
        line = await reader.readline()
        if not line:
            break
        command, _, arg = line.strip().partition(b" ")
        if command == b"quit":
            break
        if command == b"stats":
            answer: dict[str, Any] = {k: asdict(v) for k, v in stats.items()}
        elif command == b"mode":
            answer = await switch.set_mode(arg.decode(errors="replace").strip())
        else:
            answer = {"error": f"unknown command {line.strip()[:40]!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    switch.close_connections()
    for srv in [*servers, *([switch.server] if switch.server else [])]:
        srv.close()


# ============================================================================ processes (main side)


_children: dict[int, str] = {}  # pid (= its process group id) -> name, for the last-resort cleanup


def _die_with_parent() -> None:
    """preexec_fn: have the kernel SIGKILL the child if this process dies (Linux; best effort)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


async def spawn(name: str, cmd: Sequence[str], cpus: set[int] | None = None, **kw: Any) -> asyncio.subprocess.Process:
    """Start a child in its own process group (so stop() takes its children too), on `cpus` when given (set before
    exec, so every thread the child starts inherits it)."""

    def prepare() -> None:
        _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)

    proc = await asyncio.create_subprocess_exec(*cmd, start_new_session=True, preexec_fn=prepare, **kw)
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
        assert b"$" not in BODY  # nginx would expand it as a variable; quotes and \n are escaped by json.dumps
        servers = "".join(
            f"  server {{ listen {HOST}:{port}; access_log {logs[name]} bench;\n"
            f"    location / {{ return 200 {json.dumps(BODY.decode())}; }} }}\n"
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
            f"  default_type {CONTENT_TYPE}; keepalive_requests 10000000; keepalive_timeout 300s;\n"
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
        self._control_lock = asyncio.Lock()  # one control line and its answer at a time
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

    async def control(self, command: str) -> dict[str, Any]:
        """Send one control line to the upstream process; its one-line JSON answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self._control_lock:
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), CONTROL_TIMEOUT)
        if not line:
            raise RuntimeError("the upstream server process exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stats(self) -> dict[str, dict[str, int]]:
        stats: dict[str, dict[str, int]] = await self.control("stats")
        if self.nginx is not None:
            stats.update(self.nginx.stats())
        return stats

    async def set_mode(self, mode: str) -> dict[str, Any]:
        """Switch the flapping shadow (SWITCH_MODES); the answer tells whether its port is listening."""
        return await self.control(f"mode {mode}")

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


async def start_upstreams(args: argparse.Namespace, tmp: Path) -> Upstreams:
    """The upstream subprocess, with nginx for production and the healthy shadow when asked for / found."""
    nginx = shutil.which("nginx") if args.upstreams in ("auto", "nginx") else None
    if args.upstreams == "nginx" and not nginx:
        raise SystemExit("--upstreams nginx: nginx is not on PATH")
    try:
        return await Upstreams.start(nginx, tmp)
    except RuntimeError as e:
        if args.upstreams == "nginx" or not nginx:
            raise
        log(f"nginx did not start ({e}); using the asyncio upstreams")
        return await Upstreams.start(None, tmp)


# ============================================================================ core speed


SPEED_FLAG = "--speed-probe"  # hidden: run the core-speed probe (a subprocess on mitmdump's CPU)
SPEED_INTERVAL = 0.1  # s between probe samples
SPEED_WORK = 10_000  # loop iterations per sample (~1 ms: ~1 % of the CPU it shares with mitmdump)


def _speed_work() -> int:
    s = 0
    for i in range(SPEED_WORK):
        s += i * i
    return s


def speed_probe() -> None:
    """(subprocess side) Every SPEED_INTERVAL, time a fixed piece of pure-Python work in this thread's CPU time and
    print ``MONOTONIC SPEED`` (work per CPU millisecond); until stdin closes or the process is stopped."""
    os.set_blocking(sys.stdin.fileno(), False)
    while True:
        with contextlib.suppress(BlockingIOError):
            if sys.stdin.buffer.read(1) == b"":
                return
        c = time.thread_time()
        _speed_work()
        dt = time.thread_time() - c
        if dt > 0:
            print(f"{time.monotonic():.3f} {1e-3 / dt:.4f}", flush=True)
        time.sleep(SPEED_INTERVAL)


def cpu_plan() -> tuple[set[int], set[int]] | None:
    """(mitmdump's CPU, every other process's CPUs) when this machine has a CPU to give mitmdump alone."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return ({cpus[-1]}, set(cpus[:-1])) if len(cpus) >= 2 else None


def place_processes() -> tuple[set[int] | None, str]:
    """Keep this process, and so every child it starts from now on, off the CPU that mitmdump will have alone;
    returns that CPU (None on one CPU) and a description for the report."""
    plan = cpu_plan()
    if plan is None:
        return None, "one CPU: no speed probe (throughput is compared as measured)"
    mitm, others = plan
    os.sched_setaffinity(0, others)
    return mitm, f"mitmdump and the speed probe on CPU {min(mitm)}; client and servers on {sorted(others)}"


class SpeedProbe:
    """The speed of mitmdump's CPU over time, measured on that CPU.

    On these virtual machines the speed of a core wanders (the same pure-Python loop runs 50-90 times a second,
    changing from one second to the next, with no steal time reported), and each core wanders on its own. Plain
    mitmdump under constant load follows it (per-second correlation ~0.8), so throughput in one window compared
    with another mostly measures the host. The probe shares mitmdump's CPU and times a fixed piece of work in its
    own CPU time; a window's throughput divided by the probe's mean speed in that window is comparable across
    windows (on a 60 s test: raw 10 s windows spread +-8 %, normalised ones +-2.5 %)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.samples: list[tuple[float, float]] = []
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, cpus: set[int]) -> SpeedProbe:
        proc = await spawn(
            "speed probe",
            [sys.executable, str(Path(__file__).resolve()), SPEED_FLAG],
            cpus=cpus,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            with contextlib.suppress(ValueError):
                t, v = line.split()
                self.samples.append((float(t), float(v)))

    def mean(self, lo: float, hi: float) -> float:
        """Mean speed of the samples taken between two time.monotonic() values (nan without one)."""
        inside = [v for t, v in self.samples if lo < t <= hi]
        return statistics.fmean(inside) if len(inside) >= 3 else math.nan

    async def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        await stop(self.proc)
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


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


def bench_request(port: int) -> bytes:
    return b"GET /bench HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: shadow-bench\r\n\r\n" % (HOST.encode(), port)


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


async def _client_connection(port: int, t_measure: float, t_end: float, lat: list[float], res: LoadResult) -> None:
    request = bench_request(port)
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
                ok = await exchange(reader, writer, request)
                t1 = clock()
                if not ok:
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


def cpu_figures(fig: Any, a: CpuSnap, b: CpuSnap) -> None:
    """CPU use between two snapshots, set on a Run or a Phase (same field names; `requests` already set)."""
    span = b.t - a.t
    fig.cpu_mitmdump_pct = _pct(a.mitmdump, b.mitmdump, span)
    fig.cpu_upstreams_pct = _pct(a.upstreams, b.upstreams, span)
    fig.cpu_client_pct = _pct(a.client, b.client, span)
    ours = fig.cpu_mitmdump_pct + fig.cpu_upstreams_pct + fig.cpu_client_pct
    fig.cpu_other_pct = max(0.0, _pct(a.machine, b.machine, span) - ours)
    if a.mitmdump is not None and b.mitmdump is not None and fig.requests:
        fig.cpu_us_per_request = (b.mitmdump - a.mitmdump) / fig.requests * 1e6


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
    core_speed: float = math.nan  # mean speed of mitmdump's CPU over the measured window (SpeedProbe)
    rps_norm: float = math.nan  # rps / core_speed: throughput at the same CPU speed
    cpu_upstreams_pct: float = math.nan
    cpu_client_pct: float = math.nan
    cpu_other_pct: float = math.nan  # everything else on the machine (other processes, steal), in cores x 100
    cpu_us_per_request: float = math.nan  # mitmdump CPU time per measured request
    startup_s: float = math.nan
    addon_drops: dict[str, int] = field(default_factory=dict)  # shadow_dropped_total by reason, when available
    addon_shadow_codes: dict[str, int] = field(default_factory=dict)  # shadow role of shadow_upstream_requests_total
    addon_compare: dict[str, int] = field(default_factory=dict)  # shadow_compare_total by result
    addon_compare_pending: int = 0  # shadow_compare_pending when read (after the settle time)
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
            "--set",
            f"mappings={mappings}",
            "--set",
            f"mapping_services=prod-svc={HOST}:{ports['prod']}",
            "--set",
            f"mapping_services=shadow-svc={HOST}:{ports[scn.shadow]}",
        ]
        if admin_port is not None:
            cmd += ["--set", f"shadow_admin={HOST}:{admin_port}"]
        for opt in (*scn.options, *options):
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


_PROM_LINE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)\s*$", re.M)
_PROM_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(slots=True)
class AddonMetrics:
    """What the benchmark reads from the addon's /metrics (counters are totals since mitmdump started)."""

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


async def scrape_metrics(port: int) -> AddonMetrics:
    """Optional figures from the addon's /metrics; `ok` is False (and everything empty) when unavailable."""
    m = AddonMetrics()
    try:
        async with asyncio.timeout(3.0):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = await reader.read()  # until EOF (connection: close), bounded by the timeout
            writer.close()
    except (OSError, TimeoutError):
        return m
    head, _, body = data.partition(b"\r\n\r\n")
    m.ok = head.startswith(b"HTTP/1.1 200")
    for name, labels, value in _PROM_LINE.findall(body.decode(errors="replace")):
        lab = dict(_PROM_LABEL.findall(labels))
        try:
            n = int(float(value))
        except ValueError:
            continue
        if name == "shadow_dropped_total":
            m.drops[lab.get("reason", "?")] = m.drops.get(lab.get("reason", "?"), 0) + n
        elif name == "shadow_upstream_requests_total" and lab.get("role") == "shadow":
            m.shadow_codes[lab.get("code", "?")] = m.shadow_codes.get(lab.get("code", "?"), 0) + n
        elif name == "shadow_compare_total":
            m.compare[lab.get("result", "?")] = m.compare.get(lab.get("result", "?"), 0) + n
        elif name == "shadow_inflight":
            m.inflight += n
        elif name == "shadow_backlog":
            m.backlog += n
        elif name == "shadow_compare_pending":
            m.compare_pending += n
    return m


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
    addon_rev: str = ""  # hash of the snapshot's sources
    mitm_cpus: set[int] | None = None  # mitmdump's own CPU (place_processes), shared only with the probe
    probe: SpeedProbe | None = None
    placement: str = ""


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
    cpu_figures(run, a, b)
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
        proc = await spawn(
            f"mitmdump {scn.name}", cmd, s.mitm_cpus, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=s.env
        )
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
            m = await scrape_metrics(admin_port)
            run.addon_drops, run.addon_shadow_codes, run.addon_compare = m.drops, m.shadow_codes, m.compare
            run.addon_compare_pending = m.compare_pending
        stop_sampling.set()
        await asyncio.wait_for(sampler, 2.0)

        for k in ("requests", "rps", "p50_ms", "p99_ms", "mean_ms", "max_ms", "errors", "unfinished"):
            setattr(run, k, getattr(load, k))
        if s.probe is not None and len(snaps) >= 2:
            run.core_speed = s.probe.mean(snaps[0].t, snaps[-1].t)
            run.rps_norm = run.rps / run.core_speed
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
    result: str  # PASS, FAIL, PASS*, n/a, info (shown, not a target)
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
            "core_speed": _median([r.core_speed for r in rs]),
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
            "addon_compare": _sum_counts(r.addon_compare for r in rs),
            "addon_compare_pending": sum(r.addon_compare_pending for r in rs),
        }
        row["delivery"] = row["shadow_received"] / row["prod_received"] if scn.shadow and row["prod_received"] else None
        ref = scn.reference
        if ref in by:
            for k, key in (
                ("rps", "throughput_ratio"),
                ("rps_norm", "norm_throughput_ratio"),
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

    def ratio_check(n: str, key: str, label: str, op: str, limit: float) -> Check | None:
        if n not in summary or key not in summary[n]:
            return None
        v = summary[n][key]
        ok = v >= limit if op == ">=" else v <= limit
        res = "n/a" if math.isnan(v) else "PASS" if ok else "FAIL"
        value = f"{v:.3f}x{_spread(summary[n][key + '_per_round'])}"
        checks.append(Check(f"{n} vs {summary[n]['reference']}: {label}", value, f"{op} {limit:g}x", res, v))
        return checks[-1]

    # With the speed probe, throughput is compared at equal CPU speed; the ratio as measured is shown as "info".
    normalised = bool(runs) and all(not math.isnan(r.core_speed) for r in runs)

    def throughput_check(n: str, limit: float) -> None:
        if normalised:
            ratio_check(n, "norm_throughput_ratio", "throughput at equal CPU speed", ">=", limit)
        raw = ratio_check(n, "throughput_ratio", "throughput as measured" if normalised else "throughput", ">=", limit)
        if normalised and raw is not None:
            raw.result = "info"

    throughput_check("healthy", 0.85)
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
    throughput_check("compare", 0.80)
    if "compare" in summary:
        counts = summary["compare"]["addon_compare"]
        total = sum(counts.values())
        share = counts.get("match", 0) / total if total else math.nan
        res = "n/a" if not total else "PASS" if share >= COMPARE_MATCH_MIN else "FAIL"
        value = f"{share:.2%} ({counts.get('match', 0)}/{total})" if total else "no shadow_compare_total"
        checks.append(Check("compare: pairs that match", value, f">= {COMPARE_MATCH_MIN:.0%}", res, share))
    for n in BAD_SHADOWS:
        throughput_check(n, 0.90)
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
    for n, row in summary.items():
        if row["addon_compare"] or row["addon_compare_pending"]:
            out.append(
                f"{n}: shadow_compare_total by result (all rounds): {_counts(row['addon_compare'])}; "
                f"shadow_compare_pending after the settle time: {row['addon_compare_pending']}"
            )
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


def _counts(counts: dict[str, int]) -> str:
    """'a:1 b:2' (or '-') for counts by label value."""
    return " ".join(f"{k}:{n}" for k, n in counts.items()) or "-"


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
        f"placement: {cfg['placement']}; thr x @speed: throughput per unit of the speed probe's mean over the run",
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
                _fmt(s["core_speed"], ".2f"),
                _fmt(s.get("norm_throughput_ratio", math.nan), ".3f"),
                _fmt(s.get("p50_ratio", math.nan), ".3f"),
                _fmt(s.get("p99_ratio", math.nan), ".3f"),
                f"{s['shadow_received']}/{s['prod_received']}" if s["delivery"] is not None else "-",
                _fmt(s["delivery"] * 100, ".2f") if s["delivery"] is not None else "-",
                str(s["errors"]),
                _counts(s["addon_drops"]),
                _counts(s["addon_compare"]),
            ]
        )
    headers = [
        "scenario",
        "vs",
        "req/s",
        "p50 ms",
        "p99 ms",
        "thr x",
        "cpu speed",
        "thr x @speed",
        "p50 x",
        "p99 x",
        "shadow/prod",
        "deliv %",
        "err",
        "addon drops",
        "compared",
    ]
    out.append(table(headers, rows, set(range(1, len(headers) - 2))))
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
    headers = [
        "scenario",
        "peak RSS MiB",
        "VmHWM MiB",
        "RSS growth",
        "peak fds",
        "cpu% mitm",
        "cpu% ups",
        "cpu% client",
        "cpu% other",
        "mitm cpu us/req",
        "x ref",
    ]
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


# ============================================================================ soak


SOAK_FLAG = Path("/tmp/soak-running")  # exists while a soak runs, so other work on the machine can wait for it
SOAK_SAMPLE_INTERVAL = 1.0  # s between /proc samples of mitmdump during a soak
SOAK_MAX_FAILURES = 50  # consecutive failed requests after which a soak client connection gives up
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
    """What the soak client saw while one phase was current: a latency per completed request, and errors."""

    lat: list[float] = field(default_factory=list)
    errors: int = 0


class SoakClient:
    """The asyncio closed loop of the normal runs, kept running for the whole soak: C keep-alive connections send
    ``GET /bench`` back to back; every completion (latency) and error goes to the bucket current when it happens,
    and the controller swaps buckets at phase boundaries."""

    def __init__(self, port: int, connections: int, deadline: float) -> None:
        self.port, self.connections, self.deadline = port, connections, deadline  # deadline: perf_counter
        self.bucket = PhaseLoad()
        self.stopping = False
        self.tasks: list[asyncio.Task[None]] = []
        self.gave_up = 0  # connections that stopped after SOAK_MAX_FAILURES failures in a row
        self.unfinished = 0  # connections still busy when the drain grace ran out

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._connection()) for _ in range(self.connections)]

    def swap(self) -> PhaseLoad:
        """The current bucket; from now on a new one fills."""
        old, self.bucket = self.bucket, PhaseLoad()
        return old

    async def stop(self, grace: float) -> None:
        """No new requests; requests in flight get `grace` seconds, then are cancelled (counted as unfinished)."""
        self.stopping = True
        if not self.tasks:
            return
        _, pending = await asyncio.wait(self.tasks, timeout=grace)
        self.unfinished = len(pending)
        for t in pending:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _connection(self) -> None:
        request = bench_request(self.port)
        clock = time.perf_counter
        writer: asyncio.StreamWriter | None = None
        failures = 0
        try:
            while failures <= SOAK_MAX_FAILURES:  # and bounded in time by the deadline
                if self.stopping or clock() >= self.deadline:
                    return
                try:
                    if writer is None:
                        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, self.port), 5.0)
                    t0 = clock()
                    if await exchange(reader, writer, request):
                        self.bucket.lat.append(clock() - t0)
                    else:
                        self.bucket.errors += 1
                    failures = 0
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError):
                    self.bucket.errors += 1
                    failures += 1
                    if writer is not None:
                        writer.close()
                        writer = None
                    await asyncio.sleep(0.05)
            self.gave_up += 1
        finally:
            if writer is not None:
                writer.close()


async def probe_port(port: int, want_listening: bool) -> str:
    """Check the flapping shadow's port from outside: 'listening' or 'refusing' once it is as wanted (polled up
    to PROBE_TIMEOUT), otherwise 'NOT ...' with what was found."""
    state = "unknown"
    deadline = time.monotonic() + PROBE_TIMEOUT
    for _ in range(int(PROBE_TIMEOUT / 0.05) + 1):
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1.0)
        except ConnectionRefusedError:
            state = "refusing"
        except (OSError, TimeoutError) as e:
            state = f"connect failed: {e!r}"[:80]
        else:
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()
            state = "listening"
        if state == ("listening" if want_listening else "refusing"):
            return state
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.05)
    return f"NOT {'listening' if want_listening else 'refusing'} ({state})"


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
    cpu_us_per_request: float = math.nan  # mitmdump CPU time per completed production request
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
    proxy_port = free_port()
    admin_port = free_port() if s.admin else None
    cmd = mitmdump_cmd(
        s.mitmdump, s.addon, scn, s.ups.ports, proxy_port, s.tmp / "mappings.yaml", args.addon_option, admin_port
    )
    run = SoakRun(n_phases, command=cmd, cpus=s.placement)
    log_path = s.tmp / "mitmdump-soak.log"
    with open(log_path, "wb") as logf:
        proc = await spawn(
            "mitmdump soak", cmd, s.mitm_cpus, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=s.env
        )
    stop_sampling = asyncio.Event()
    sampler: asyncio.Task[None] | None = None
    client: SoakClient | None = None
    probe = s.probe
    period = args.phase_seconds

    async def addon_metrics() -> AddonMetrics:
        return await scrape_metrics(admin_port) if admin_port is not None else AddonMetrics()

    try:
        try:
            await wait_port(proxy_port, proc, "mitmdump")
        except RuntimeError as e:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{e}\ncommand: {' '.join(cmd)}\noutput:\n{tail}") from None
        sampler = asyncio.create_task(sample_process(proc.pid, stop_sampling, run.samples, SOAK_SAMPLE_INTERVAL))
        client = SoakClient(proxy_port, args.connections, time.perf_counter() + args.warmup + n_phases * period + 60)
        client.start()
        await asyncio.sleep(args.warmup)
        m_prev, st_prev = await addon_metrics(), await s.ups.stats()
        run.warmup_errors = client.swap().errors
        snap_prev, run.t_start = cpu_snap(proc.pid, s.ups.pids), time.monotonic()
        t_prev = run.t_start
        for i in range(n_phases):
            mode = SOAK_CYCLE[i % len(SOAK_CYCLE)]
            ph = Phase(i, mode, start_s=t_prev - run.t_start)
            ph.switch = await s.ups.set_mode(mode)
            ph.port_state = await probe_port(s.ups.ports["flap"], want_listening=mode != "down")
            await asyncio.sleep(max(0.0, run.t_start + (i + 1) * period - time.monotonic()))
            load, t_now, snap = client.swap(), time.monotonic(), cpu_snap(proc.pid, s.ups.pids)
            m, st = await addon_metrics(), await s.ups.stats()
            ph.seconds = t_now - t_prev
            _latency_figures(ph, load)
            if probe is not None:
                ph.core_speed = probe.mean(t_prev, t_now)
                ph.rps_norm = ph.rps / ph.core_speed
            cpu_figures(ph, snap_prev, snap)
            ph.prod_received = _delta(st, st_prev, "prod", "requests")
            ph.shadow_received = _delta(st, st_prev, "flap", "requests")
            ph.shadow_answered = _delta(st, st_prev, "flap", "answered")
            d = m.since(m_prev)
            ph.metrics_ok, ph.inflight, ph.backlog = d.ok, d.inflight, d.backlog
            ph.drops, ph.shadow_codes = d.drops, d.shadow_codes
            run.phases.append(ph)
            m_prev, st_prev, snap_prev, t_prev = m, st, snap, t_now
            rss = run.samples.rss_kib[-1] / 1024 if run.samples.rss_kib else math.nan
            fds = run.samples.fds[-1] if run.samples.fds else -1
            log(
                f"[phase {i + 1:2d}/{n_phases} {mode:<9}] {ph.rps:6.0f} req/s  p50 {ph.p50_ms:6.2f} ms  "
                f"p99 {ph.p99_ms:7.2f} ms  err {ph.errors}  speed {ph.core_speed:4.2f}  rss {rss:5.1f} MiB  "
                f"fds {fds:3d}  "
                f"cpu mitm {ph.cpu_mitmdump_pct:3.0f}% other {ph.cpu_other_pct:3.0f}%  inflight {ph.inflight} "
                f"backlog {ph.backlog}  shadow {ph.shadow_received}/{ph.prod_received}  drops {_counts(ph.drops)}"
                + ("" if ph.port_state in ("listening", "refusing") else f"  port: {ph.port_state}")
            )
            if proc.returncode is not None:
                run.aborted = f"mitmdump exited with status {proc.returncode} during phase {i + 1}"
                break
        run.t_end = t_prev
        await client.stop(DRAIN_GRACE)
        run.tail_errors, run.unfinished, run.gave_up = client.swap().errors, client.unfinished, client.gave_up
        stop_sampling.set()
        await asyncio.wait_for(sampler, 2.0)
    finally:
        stop_sampling.set()
        if sampler is not None and not sampler.done():
            sampler.cancel()
        if client is not None:
            for t in client.tasks:
                t.cancel()
            await asyncio.gather(*client.tasks, return_exceptions=True)
        if probe is not None:
            run.speed = [(round(t - run.t_start, 3), v) for t, v in probe.samples if t >= run.t_start > 0]
        await stop(proc)
    run.mitmdump_output = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()][:60]
    _phase_resources(run)
    return run


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
    spread = [getattr(p, ratio) for p in rated if p.mode == "healthy"]
    ref = statistics.median(getattr(p, value) for p in rated if p.mode == "healthy") if spread else math.nan
    by_mode = "; ".join(
        f"{m} {statistics.median(getattr(p, ratio) for p in rated if p.mode == m):.3f}x"
        for m in SOAK_CYCLE
        if any(p.mode == m for p in rated)
    )
    value_text = (
        f"min {getattr(worst, ratio):.3f}x (phase {worst.index + 1} {worst.mode}); median by mode: {by_mode}; "
        f"healthy median {ref:.0f}/s, healthy phases{_spread(spread) or ' -'}"
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
        out.append(
            f"phases {', '.join(str(p.index + 1) for p in busy)} shared the machine with other work "
            f"(> {OTHER_LOAD_PCT:g}% of a core outside the benchmark; marked * in the table): their figures are "
            "disturbed"
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
                f"({p.shadow_received}/{p.prod_received}); drops: {_counts(p.drops)}{why}"
            )
        if p.mode == "healthy" and p.metrics_ok and p.backlog:
            out.append(f"phase {p.index + 1} (healthy): {p.backlog} copies still waiting in the backlog at its end")
    if run.phases and not any(p.metrics_ok for p in run.phases):
        out.append("the addon's /metrics was not available: drops, in-flight and backlog columns are empty")
    if run.gave_up:
        out.append(f"{run.gave_up} client connections gave up after {SOAK_MAX_FAILURES} failures in a row")
    bad = [ln for ln in run.mitmdump_output if _ALARMING.search(ln)]
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


def soak_report(result: dict[str, Any], run: SoakRun, checks: list[Check], extra: list[str]) -> str:
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
                _fmt(p.rps, ".0f"),
                _fmt(p.throughput_ratio, ".3f"),
                _fmt(p.core_speed, ".2f"),
                _fmt(p.norm_ratio, ".3f"),
                _fmt(p.p50_ms, ".2f"),
                _fmt(p.p99_ms, ".2f"),
                str(p.errors),
                _fmt(p.rss_end_mib, ".1f"),
                str(p.fds_max) if p.fds_max >= 0 else "-",
                _fmt(p.cpu_mitmdump_pct, ".0f"),
                _fmt(p.cpu_us_per_request, ".0f"),
                _fmt(p.cpu_other_pct, ".0f") + ("*" if busy else ""),
                _fmt(p.delivery * 100, ".1f"),
                f"{p.inflight}/{p.backlog}" if p.metrics_ok else "-",
                _counts(p.shadow_codes) if p.metrics_ok else "-",
                _counts(p.drops) if p.metrics_ok else "-",
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
    out.append("")
    out.append(
        table(["check", "value", "target", "result"], [[c.name, c.value, c.target, c.result] for c in checks], {2})
    )
    passed = sum(c.result == "PASS" for c in checks)
    failed = sum(c.result == "FAIL" for c in checks)
    out.append(f"\n{passed} passed, {failed} failed")
    if extra:
        out.append("\nnotes:")
        out.extend(f"  - {x}" for x in extra)
    out.append(f"\nfigures: {result['json_path']}  (took {meta['elapsed_s']:.0f} s)")
    return "\n".join(out)


async def soak(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    t0, load_start = time.monotonic(), os.getloadavg()
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
    extra = soak_notes(run)
    json_path = Path(args.json) if args.json else ROOT / "bench-results-soak.json"
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
            "client": "asyncio (bench.py, main process)",
            "ports": ups.ports,
            "mitmdump_command": run.command,
        },
        "json_path": str(json_path),
        "phases": [{**asdict(p), "delivery": p.delivery} for p in run.phases],
        "checks": [asdict(c) for c in checks],
        "notes": extra,
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
    json_path.write_text(json.dumps(_clean(result), indent=1) + "\n")
    print(soak_report(result, run, checks, extra), flush=True)
    return 1 if any(c.result == "FAIL" for c in checks) else 0


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
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "shadow_addon"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return rev + ("+dirty(shadow_addon)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def make_setup(
    args: argparse.Namespace, ups: Upstreams, tmp: Path, wrk: str | None, mitm_cpus: set[int] | None, placement: str
) -> Setup:
    """Snapshot shadow_addon/ into tmp and describe how mitmdump runs."""
    addon_dir = tmp / "addon"
    addon_rev = snapshot_addon(addon_dir)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(addon_dir), env.get("PYTHONPATH", "")) if p)
    admin = addon_has_option(addon_dir, "shadow_admin") and not any(
        o.partition("=")[0].strip() == "shadow_admin" for o in args.addon_option
    )
    return Setup(args, ups, find_mitmdump(), wrk, tmp, addon_dir, env, admin, addon_rev, mitm_cpus, placement=placement)


@contextlib.asynccontextmanager
async def prepared(args: argparse.Namespace, prefix: str, wrk: str | None) -> AsyncIterator[Setup]:
    """A temporary directory with the Mapping file, this process kept off mitmdump's CPU, the upstream servers,
    the addon snapshot and the speed probe; all stopped and removed on the way out."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "mappings.yaml").write_text(MAPPINGS_YAML)
        mitm_cpus, placement = place_processes()
        ups = await start_upstreams(args, tmp)
        setup: Setup | None = None
        try:
            setup = make_setup(args, ups, tmp, wrk, mitm_cpus, placement)
            if mitm_cpus is not None:
                setup.probe = await SpeedProbe.start(mitm_cpus)
            yield setup
        finally:
            if setup is not None and setup.probe is not None:
                await setup.probe.close()
            await ups.close()


def run_meta(s: Setup, t0: float, load_start: tuple[float, float, float]) -> dict[str, Any]:
    """What the figures were measured on, for the JSON and the report's header."""
    try:
        from mitmproxy import version as mitm_version  # only for the report

        mitm = mitm_version.VERSION
    except ImportError:
        mitm = "unknown"
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_revision(),
        "addon_sources_sha256": s.addon_rev,
        "python": platform.python_version(),
        "mitmproxy": mitm,
        "cpus": os.cpu_count(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "elapsed_s": time.monotonic() - t0,
    }


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
    wrk = shutil.which("wrk") if args.client in ("auto", "wrk") else None
    if args.client == "wrk" and not wrk:
        raise SystemExit("--client wrk: wrk is not on PATH")
    runs: list[Run] = []
    client = "wrk -t1" if wrk else "asyncio (bench.py, main process)"
    async with prepared(args, "shadow-bench-", wrk) as setup:
        ups = setup.ups
        log(f"upstreams: {ups.kind}; client: {client}; scenarios: {', '.join(names)}")
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
                    f"client {r.cpu_client_pct:3.0f}% other {r.cpu_other_pct:3.0f}%  speed {r.core_speed:4.2f}  "
                    f"{deliv}"
                )
    inflight = max_inflight(args.addon_option)
    summary, checks = summarise(runs, names, inflight)
    json_path = Path(args.json) if args.json else ROOT / "bench-results.json"
    result: dict[str, Any] = {
        "meta": run_meta(setup, t0, load_start),
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
            "placement": setup.placement,
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
        "Exit status: 0 all checks pass, 1 a check failed, 2 usage error.",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds of all scenarios (default 3)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds of load before each (default 1)")
    p.add_argument("--settle", type=float, default=1.0, help="max seconds to wait for shadow stragglers (default 1)")
    p.add_argument("--connections", type=int, default=10, help="client keep-alive connections (default 10)")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round, 2 s per measurement (--soak: 2 min of 10 s phases)"
    )
    p.add_argument("--only", metavar="A,B", help="scenarios to run (their reference scenarios are added)")
    p.add_argument(
        "--json",
        metavar="PATH",
        help="where to write the figures (default: bench-results.json, soak: bench-results-soak.json)",
    )
    p.add_argument(
        "--addon-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="extra --set for the addon runs, e.g. shadow_timeout=1 (repeatable)",
    )
    p.add_argument("--client", choices=("auto", "asyncio", "wrk"), default="auto", help="load generator")
    p.add_argument("--upstreams", choices=("auto", "asyncio", "nginx"), default="auto", help="upstream servers")
    p.add_argument(
        "--soak",
        action="store_true",
        help="soak instead: one mitmdump under continuous load while the shadow cycles healthy > slow > blackhole > "
        "down (default JSON: bench-results-soak.json; with --quick: 2 minutes of 10 s phases)",
    )
    p.add_argument("--soak-minutes", type=float, metavar="M", help="length of the soak (default 10)")
    p.add_argument("--phase-seconds", type=float, metavar="S", help="seconds per shadow phase in the soak (default 30)")
    args = p.parse_args(argv)
    if args.soak:
        if args.only:
            p.error("--only does not apply to --soak")
        if args.client == "wrk":
            p.error("--soak uses the asyncio client (it counts completions per phase), not wrk")
        default_minutes, default_phase = (2.0, 10.0) if args.quick else (10.0, 30.0)
        args.soak_minutes = default_minutes if args.soak_minutes is None else args.soak_minutes
        args.phase_seconds = default_phase if args.phase_seconds is None else args.phase_seconds
        if args.phase_seconds < 2 or args.soak_minutes * 60 / args.phase_seconds < len(SOAK_CYCLE) - 0.5:
            p.error(f"--phase-seconds must be >= 2 and the soak at least {len(SOAK_CYCLE)} phases long")
    elif args.soak_minutes is not None or args.phase_seconds is not None:
        p.error("--soak-minutes and --phase-seconds need --soak")
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
    if argv[:1] == [SPEED_FLAG]:
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            speed_probe()
        return 0
    args = parse_args(argv)
    if args.soak:
        try:
            return asyncio.run(soak(args))
        except (KeyboardInterrupt, asyncio.CancelledError):
            log("interrupted; stopped every process started")
            return 130
        finally:
            kill_leftovers()
            clear_soak_flag()
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
