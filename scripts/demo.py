#!/usr/bin/env python3
"""The five-minute tour of mitmproxy-shadow: a small shop, its next release shadowed, and the report.

Usage: scripts/demo [--requests N] [--connections C] [--keep] [--web] [--json-report PATH] [--mappings FILE]

What runs (every process on 127.0.0.1, on ports picked free, each in its own process group)
  1. The shop (demo/): release v1 twice, as production "shop" and as its canary "shop-canary", and release
     v2 as "shop-v2", the candidate; and its price service, which speaks gRPC (demo/catalog.py), v1 as "catalog"
     and v2 as "catalog-v2". Each prints its address on its first line of output.
  2. mitmdump (mitmweb with --web) as a reverse proxy, with the addon and mappings/demo.yaml: of /api/,
     production gets 90 %, the canary 10 %, and v2 a copy of half of all requests (weight 50).
     `mapping_services` points the Mappings' cluster names at the local processes; the addon's admin
     server serves the report, the metrics and the dashboard. Of /shop.Catalog/ (`grpc: true`), catalog
     answers and catalog-v2 gets a copy of every call, over HTTP/2.
  3. Traffic: GRPC_CALLS gRPC calls to the price service (grpcio, cleartext HTTP/2), then N requests
     (default 2000) through the proxy on a few keep-alive connections, in the mix a shop sees: browsing and
     searching, product pages (some of them new products v2 cannot show), carts, orders.
  4. The report: the admin server's /report, read once every copy has come back, the request counts each
     process saw, and a few lines on what it all shows.
  5. The same traffic, recorded by the proxy (-w), replayed offline against v2 with `mitmshadow replay`, the
     CI gate: each copy's answer compared with the recorded one, production not contacted.
  6. Everything stops and the demo exits 0; with --keep, everything stays up until Ctrl-C.

Any process that does not start within START_TIMEOUT ends the demo with exit status 1 and the tail of its log.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import queue
import random
import re
import runpy
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "shadow_addon" / "addon.py"
DEMO = ROOT / "demo"
BIN = Path(sys.executable).parent  # mitmdump and mitmweb sit next to the venv's python
HOST = "127.0.0.1"
START_TIMEOUT = 20.0  # s: a process not ready by then failed to start
STOP_TIMEOUT = 5.0  # s between asking a process to stop and killing it
REQUEST_TIMEOUT = 10.0  # s per request of the traffic
MIN_RATE = 20.0  # requests/s: slower than this, the traffic is declared stuck (far below any working setup)
MAX_FAILURES = 20  # requests without an answer before the traffic stops: the proxy is not answering
SETTLE_TIMEOUT = 5.0  # s to wait for the last shadow copies before reading the report
REPLAY_TIMEOUT = 120.0  # s for the offline replay of the recorded traffic (it takes a few seconds)
WIDTH = 100  # columns of the explanation

# The shop's data, so the traffic asks for what the shop has (and, on purpose, for some things v2 lacks).
sys.path.insert(0, str(DEMO))
from shop_common import CATALOGUE, SEARCH_WORDS, USERS  # noqa: E402
from shop_v2 import NEW_INVENTORY  # noqa: E402

# The three shop processes: (Mapping service name, script). The names are the clusters in mappings/demo.yaml.
SHOPS = (("shop", "shop_v1.py"), ("shop-canary", "shop_v1.py"), ("shop-v2", "shop_v2.py"))
CATALOGS = (("catalog", "v1"), ("catalog-v2", "v2"))  # the price service over gRPC (demo/catalog.py)
GRPC_CALLS = 100  # gRPC calls sent after the HTTP traffic, product ids 1..100 in turn


class DemoError(Exception):
    """Something did not start or did not answer; the message says what. The demo stops and exits 1."""


# ---------------------------------------------------------------------------------------------- processes


def _die_with_parent() -> None:
    """preexec_fn: the kernel sends the child SIGTERM if the demo itself dies (even by SIGKILL). Linux only."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


_CONNECTION_CHATTER = re.compile(r"\] (client|server) (connect|disconnect)")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").rstrip().splitlines() if self.log.exists() else []
        # The readiness probes' own connections would push the line that says what went wrong out of the tail.
        text = [t for t in text if not _CONNECTION_CHATTER.search(t)]
        return "\n".join(f"    | {line}" for line in text[-lines:]) or "    | (no output)"


@dataclass
class Processes:
    """Every process the demo starts. stop() ends them all: politely, then by force, whole process groups."""

    logdir: Path
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, cmd: list[str], first_line: bool = False) -> Child:
        """Start cmd with its output in logdir/NAME.log; first_line: stdout is a pipe, for read_first_line."""
        log = self.logdir / f"{name}.log"
        with open(log, "wb") as fh:
            try:
                proc = subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE if first_line else fh,
                    stderr=fh,
                    env=dict(os.environ, PYTHONUNBUFFERED="1"),
                    start_new_session=True,  # its own group: Ctrl-C reaches only the demo, which stops it
                    preexec_fn=_die_with_parent,
                )
            except OSError as e:
                raise DemoError(f"cannot start {name} ({cmd[0]}): {e}") from None
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def stop(self) -> None:
        # A second Ctrl-C must not cut the clean-up short (it is bounded: STOP_TIMEOUT, then SIGKILL).
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for c in self.children:
                if c.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(c.proc.pid, signal.SIGTERM)  # mitmproxy and the shop both exit cleanly on it
            deadline = time.monotonic() + STOP_TIMEOUT
            for c in self.children:
                try:
                    c.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    print(
                        f"demo: {c.name} (pid {c.proc.pid}) did not stop in {STOP_TIMEOUT:.0f} s; killing it",
                        file=sys.stderr,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(c.proc.pid, signal.SIGKILL)
                    c.proc.wait(2)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGKILL)  # anything it left behind in its group
                if c.proc.stdout is not None:
                    c.proc.stdout.close()
        finally:
            signal.signal(signal.SIGINT, previous)

    def check_alive(self) -> None:
        for c in self.children:
            if c.proc.poll() is not None:
                raise DemoError(f"{c.name} exited unexpectedly (status {c.proc.returncode}):\n{c.tail()}")


def read_first_line(child: Child, timeout: float) -> str:
    """The first line a process prints, waiting at most `timeout` seconds for it."""
    assert child.proc.stdout is not None
    ready, _, _ = select.select([child.proc.stdout], [], [], timeout)
    if not ready:
        raise DemoError(f"{child.name} did not start within {timeout:.0f} s:\n{child.tail()}")
    line = child.proc.stdout.readline().decode(errors="replace").strip()
    if not line:  # end of output: it exited
        child.proc.wait(2)
        raise DemoError(f"{child.name} exited at start-up (status {child.proc.returncode}):\n{child.tail()}")
    return line


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports: all bound at once, so the OS cannot hand out the same one twice."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def addon_declares(option: str) -> bool | None:
    """Whether the addon has `option`, asked as mitmproxy asks: each addon's load() with a Loader. None: unknown.

    mitmproxy silently ignores `--set` of an option no addon declares, so its output cannot tell us.
    """
    try:
        from mitmproxy import addonmanager, options

        opts = options.Options()
        loader = addonmanager.Loader(SimpleNamespace(options=opts))
        for addon in runpy.run_path(str(ADDON))["addons"]:
            if hasattr(addon, "load"):
                addon.load(loader)
        return option in opts
    except Exception as e:  # the demo must run even if the addon grows in ways this check does not expect
        print(f"demo: could not list the addon's options ({type(e).__name__}: {e})", file=sys.stderr)
        return None


@dataclass
class Proxy:
    child: Child
    port: int
    admin_port: int
    web_url: str = ""


def start_shops(procs: Processes) -> dict[str, int]:
    """Start the three shop processes (in parallel) and return {service name: port}."""
    return _started(
        [
            procs.start(name, [sys.executable, str(DEMO / script), "--name", name], first_line=True)
            for name, script in SHOPS
        ],
    )


def start_catalogs(procs: Processes) -> dict[str, int]:
    """Start the gRPC price service, v1 and v2 (in parallel), and return {service name: port}."""
    return _started(
        [
            procs.start(name, [sys.executable, str(DEMO / "catalog.py"), "--name", name, "--version", v], True)
            for name, v in CATALOGS
        ],
    )


def _started(children: list[Child]) -> dict[str, int]:
    ports = {}
    deadline = time.monotonic() + START_TIMEOUT
    for child in children:
        line = read_first_line(child, max(0.1, deadline - time.monotonic()))
        m = re.search(r"http://[\d.]+:(\d+)", line)
        if m is None:
            raise DemoError(f"{child.name} printed {line!r}, not its address")
        ports[child.name] = int(m[1])
        print(f"  {line}  (pid {child.proc.pid})")
    return ports


def start_proxy(procs: Processes, args: argparse.Namespace, shops: dict[str, int], compare: bool) -> Proxy:
    port, admin_port, web_port = free_ports(3)
    tool = "mitmweb" if args.web else "mitmdump"
    cmd = [
        str(BIN / tool),
        "-s",
        str(ADDON),
        "--mode",
        f"reverse:http://{HOST}:{shops['shop']}",
        "--listen-host",
        HOST,
        "-p",
        str(port),
        "--set",
        f"mappings={args.mappings}",
        "--set",
        f"shadow_admin={HOST}:{admin_port}",
        "-w",  # recorded for the offline replay
        str(capture_path(procs)),
    ]
    for name, p in shops.items():
        cmd += ["--set", f"mapping_services={name}={HOST}:{p}"]
    if compare:
        cmd += ["--set", "shadow_compare=true"]
    if args.web:
        cmd += ["--no-web-open-browser", "--set", f"web_host={HOST}", "--set", f"web_port={web_port}"]
    else:
        cmd += ["--set", "flow_detail=0"]  # no log line per request
    proxy = Proxy(procs.start(tool, cmd), port, admin_port)

    # Ready = the proxy port accepts connections and the admin server answers (and, for mitmweb, its URL is out).
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proxy.child.proc.poll() is not None:
            raise DemoError(f"{tool} exited at start-up (status {proxy.child.proc.returncode}):\n{proxy.child.tail()}")
        if args.web and not proxy.web_url:
            m = re.search(r"Web server listening at (\S+)", proxy.child.log.read_text(errors="replace"))
            proxy.web_url = m[1] if m else ""
        if (not args.web or proxy.web_url) and _port_open(port) and _answers(admin_port, "/report.json"):
            break
        if time.monotonic() > deadline:
            raise DemoError(f"{tool} was not ready within {START_TIMEOUT:.0f} s:\n{proxy.child.tail()}")
        time.sleep(0.1)
    print(
        f"  {tool} on http://{HOST}:{port} with {args.mappings}, admin on http://{HOST}:{admin_port}/ "
        f"(pid {proxy.child.proc.pid})"
    )
    return proxy


def grpc_calls(port: int, n: int) -> Counter[str]:
    """n unary calls through the proxy, as `grpc.insecure_channel` makes them (cleartext HTTP/2): status counts."""
    import grpc

    codes: Counter[str] = Counter()
    with grpc.insecure_channel(f"{HOST}:{port}") as ch:
        price = ch.unary_unary("/shop.Catalog/Price")
        for i in range(1, n + 1):
            request = b"\x08" + bytes([i]) if i < 128 else b"\x08\x01"
            try:
                price(request, timeout=REQUEST_TIMEOUT)
                codes["OK"] += 1
            except grpc.RpcError as e:
                codes[e.code().name] += 1
    return codes


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _answers(port: int, path: str) -> bool:
    try:
        return http_get(port, path, timeout=1.0)[0] == 200
    except (OSError, http.client.HTTPException):
        return False


# ---------------------------------------------------------------------------------------------- traffic


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    body: bytes = b""


def traffic_plan(n: int, rng: random.Random) -> list[Request]:
    """n requests in a shop's mix: 15 % browse, 20 % search, 35 % product pages, 20 % carts, 10 % orders."""
    old = sorted(NEW_INVENTORY)  # products v2 knows
    new = sorted(set(CATALOGUE) - set(NEW_INVENTORY))  # new arrivals: v2 answers 500 for them
    missing = range(max(CATALOGUE) + 1, max(CATALOGUE) + 40)  # no such product: 404 from both releases
    plan: list[Request] = []
    orders: list[Request] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.15:
            plan.append(Request("GET", "/api/products"))
        elif r < 0.35:
            plan.append(Request("GET", f"/api/products?q={rng.choice(SEARCH_WORDS)}"))
        elif r < 0.70:
            s = rng.random()
            pid = rng.choice(old) if s < 0.75 else rng.choice(new) if s < 0.95 else rng.choice(missing)
            plan.append(Request("GET", f"/api/products/{pid}"))
        elif r < 0.90:
            plan.append(Request("GET", f"/api/cart/{rng.choice(USERS)}"))
        else:
            if orders and rng.random() < 0.3:
                # A double submit: the same order again. Production answers it with a new order_id, which is
                # how the comparison learns that order_id varies per call (noise), not per release.
                plan.append(rng.choice(orders))
                continue
            items = [{"product_id": rng.choice(old), "qty": rng.randint(1, 3)} for _ in range(rng.randint(1, 3))]
            order = {"user": rng.choice(USERS), "items": items}
            orders.append(Request("POST", "/api/orders", json.dumps(order).encode()))
            plan.append(orders[-1])
    return plan


class Traffic:
    """Sends a plan through the proxy on a few keep-alive connections (one thread each), counting answers."""

    def __init__(self, port: int, plan: list[Request], connections: int) -> None:
        self.port, self.total, self.connections = port, len(plan), connections
        self.todo: queue.SimpleQueue[Request] = queue.SimpleQueue()
        for req in plan:
            self.todo.put(req)
        self.codes: Counter[str] = Counter()
        self.last_failure = ""
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def done(self) -> int:
        with self.lock:
            return self.codes.total()

    def _worker(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stopping.is_set() and self.codes["failed"] < MAX_FAILURES:  # unlocked read: may lag by one
            try:
                req = self.todo.get_nowait()
            except queue.Empty:
                break
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT)
                headers = {"content-type": "application/json"} if req.body else {}
                conn.request(req.method, req.path, body=req.body or None, headers=headers)
                resp = conn.getresponse()
                resp.read()
                code = str(resp.status)
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                code = "failed"
                self.last_failure = f"{req.method} {req.path}: {type(e).__name__}: {e}"
                if conn is not None:
                    conn.close()
                    conn = None
            with self.lock:
                self.codes[code] += 1
        if conn is not None:
            conn.close()

    def run(self, progress: bool) -> float:
        """Send everything; returns the seconds it took. Bounded: every request has REQUEST_TIMEOUT."""
        workers = [
            threading.Thread(target=self._worker, daemon=True, name=f"client-{i}") for i in range(self.connections)
        ]
        t0 = time.monotonic()
        limit = 30.0 + self.total / MIN_RATE
        try:
            for w in workers:
                w.start()
            while any(w.is_alive() for w in workers):
                if progress:
                    self._draw(time.monotonic() - t0)
                if time.monotonic() - t0 > limit:
                    raise DemoError(f"the traffic did not finish within {limit:.0f} s ({self.done} answers)")
                time.sleep(0.1)
        finally:
            self.stopping.set()  # on Ctrl-C or an error: the workers end after their current request
            deadline = time.monotonic() + REQUEST_TIMEOUT + 1
            for w in workers:
                w.join(max(0.0, deadline - time.monotonic()))
        elapsed = time.monotonic() - t0
        if progress:
            self._draw(elapsed)
            print()
        return elapsed

    def _draw(self, elapsed: float) -> None:
        done, width = self.done, 30
        bar = "#" * (width * done // self.total) + "-" * (width - width * done // self.total)
        rate = done / elapsed if elapsed > 0 else 0.0
        print(f"\r  [{bar}] {done:>6}/{self.total} requests  {rate:5.0f}/s", end="", flush=True)


# ---------------------------------------------------------------------------------------------- the report


def wait_for_shadow(admin_port: int) -> None:
    """Copies finish after production's answers (v2 is slower): wait until none is in flight or queued.

    Reads the addon's own gauges, shadow_inflight and shadow_backlog, from /metrics.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        _, body = http_get(admin_port, "/metrics")
        pending = sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.decode().splitlines()
            if line.startswith(("shadow_inflight{", "shadow_backlog{"))
        )
        if pending == 0:
            return
        time.sleep(0.1)


def shop_stats(shops: dict[str, int]) -> dict[str, dict[str, Any]]:
    """What each shop process counted itself (GET /_stats, asked directly, not through the proxy)."""
    out = {}
    for name, port in shops.items():
        status, body = http_get(port, "/_stats")
        out[name] = json.loads(body) if status == 200 else {}
    return out


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def explain(
    row: dict[str, Any], stats: dict[str, dict[str, Any]], compare: bool | None, grpc_row: dict[str, Any] | None
) -> list[str]:
    """What the report shows, in the terms of this demo's shop (a few lines)."""
    prod, shadow = row["production"], row["shadow"]
    share = shadow["requests"] / prod["requests"] if prod["requests"] else 0.0
    v1 = stats["shop"].get("requests", 0) + stats["shop-canary"].get("requests", 0)
    canary = stats["shop-canary"].get("requests", 0) / v1 if v1 else 0.0
    if compare:
        compared = "Its findings are on the 'compared' line and in the mismatches by endpoint."
    elif compare is None:
        compared = ""
    else:
        compared = "This build of the addon has none yet."
    points = [
        f"Clients only ever saw production: v1, {canary:.0%} of it on the canary. {row['shadow_mapping']} got a "
        f"copy of {share:.0%} of the requests (weight {row['weight']}); its answers were measured, then dropped.",
        f"The shadow's {shadow['errors']} errors: v2 answers 500 for the new products (ids above 50), which v1 "
        f"shows fine; production had {prod['errors']}.",
        f"Shadow p90 {_ms(shadow['p90'])} vs production {_ms(prod['p90'])}: v2's search (GET /api/products) takes "
        "~40 ms more.",
        'v2 also renamed the cart\'s "total" to "total_cents". Seeing that takes a response comparison '
        '(shadow_compare), which must tell it from noise: "served_at" and "order_id" differ on every call in both '
        f"releases. {compared}".rstrip(),
        "Orders sent through the proxy were stored by v1 (and its canary); v2 kept its copies in its own store.",
    ]
    if grpc_row is not None:
        g = grpc_row["shadow"]
        points.append(
            f"The price service speaks gRPC: catalog-v2 got its copies over HTTP/2 ({g['requests']} of "
            f"{grpc_row['production']['requests']} calls). A gRPC failure is HTTP 200 with a grpc-status: v2 does "
            "not know the products above 50 yet (NOT_FOUND), and its prices now include VAT (protobuf field 2)."
        )
    return [textwrap.fill(p, WIDTH, initial_indent="  - ", subsequent_indent="    ") for p in points]


def print_report(proxy: Proxy, shops: dict[str, int], compare: bool | None, json_path: Path | None) -> None:
    try:
        _print_report(proxy, shops, compare, json_path)
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise DemoError(f"could not fetch or save the report: {type(e).__name__}: {e}") from None


def _print_report(proxy: Proxy, shops: dict[str, int], compare: bool | None, json_path: Path | None) -> None:
    wait_for_shadow(proxy.admin_port)
    status, text = http_get(proxy.admin_port, "/report")
    status_json, raw = http_get(proxy.admin_port, "/report.json")
    if status != 200 or status_json != 200:
        raise DemoError(f"the admin server answered /report with {status} and /report.json with {status_json}")
    if json_path is not None:
        json_path.write_bytes(raw)
    print(f"\nProduction vs shadow (GET http://{HOST}:{proxy.admin_port}/report):\n")
    print(text.decode().rstrip())

    print("\nEach shop process, asked directly (GET /_stats):")
    stats = shop_stats(shops)
    for name, st in stats.items():
        print(
            f"  {name:<12} {st.get('version', '?'):<3} {st.get('requests', 0):>6} requests  "
            f"{st.get('orders', 0):>5} orders in its own store"
        )

    rows = {r["shadow_mapping"]: r for r in json.loads(raw)}
    if "shop-v2" in rows:  # the demo's own Mappings: the story below is theirs
        print("\nWhat you are looking at:")
        print("\n".join(explain(rows["shop-v2"], stats, compare, rows.get("catalog-v2"))))


# ---------------------------------------------------------------------------------------------- offline replay


def capture_path(procs: Processes) -> Path:
    return procs.logdir / "traffic.mitm"


def replay_offline(procs: Processes, args: argparse.Namespace, shops: dict[str, int], catalogs: dict[str, int]) -> None:
    """The recorded traffic replayed against v2 with `mitmshadow replay`, the CI gate; production is not contacted
    (the Mappings' production services are left unresolved)."""
    before = {name: st.get("requests", 0) for name, st in shop_stats(shops).items()}
    print("\nThe same traffic, recorded by the proxy (-w) and replayed offline against v2 (mitmshadow replay):")
    cmd = [sys.executable, "-m", "shadow_addon.cli", "replay", str(capture_path(procs)), "--mappings"]
    # A few copies at a time: the demo's v2 answers one request at a time, and a copy waiting behind 64 others
    # would time out.
    cmd += [str(args.mappings), "--service", f"shop-v2={HOST}:{shops['shop-v2']}", "--set", "shadow_max_inflight=4"]
    cmd += ["--service", f"catalog-v2={HOST}:{catalogs['catalog-v2']}"]
    child = procs.start("replay", cmd)
    try:
        code = child.proc.wait(REPLAY_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise DemoError(f"the offline replay did not end within {REPLAY_TIMEOUT:.0f} s:\n{child.tail()}") from None
    procs.children.remove(child)  # it has ended, as it should: not a process to keep alive
    if code not in (0, 1):
        raise DemoError(f"mitmshadow replay exited with status {code}:\n{child.tail()}")
    lines = child.log.read_text(errors="replace").splitlines()
    shown = [x for x in lines if re.match(r"\s+-> |\s+compared |\s+(shop|catalog)-v2 |(ok|FAIL): ", x)]
    print("\n".join(f"  {x.strip()}" for x in shown))
    after = {name: st.get("requests", 0) for name, st in shop_stats(shops).items()}
    production = sum(after[n] - before[n] for n in ("shop", "shop-canary"))
    verdict = "would block this release in CI" if code == 1 else "would let this release through"
    print(
        f"  exit status {code}: the gate {verdict}; v2 got {after['shop-v2'] - before['shop-v2']} copies, "
        f"production {production} requests"
    )


# ---------------------------------------------------------------------------------------------- main


def keep_running(procs: Processes, proxy: Proxy, shops: dict[str, int]) -> None:
    print("\nEverything keeps running until Ctrl-C:")
    print(f"  proxy       http://{HOST}:{proxy.port}/api/products  (or try /api/cart/alice)")
    print(f"  gRPC        {HOST}:{proxy.port} (cleartext HTTP/2), method /shop.Catalog/Price")
    print(f"  dashboard   http://{HOST}:{proxy.admin_port}/")
    if proxy.web_url:
        print(f"  mitmweb     {proxy.web_url}")
    for name, port in shops.items():
        print(f"  {name:<11} http://{HOST}:{port}/api/products")
    try:
        print("Press Ctrl-C to stop.", flush=True)  # inside the try: a Ctrl-C right after reading it is caught
        while True:  # ends with Ctrl-C (or SIGTERM), or when a process dies
            procs.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping")


def run(args: argparse.Namespace, procs: Processes) -> None:
    t0 = time.monotonic()
    print("Starting the shop (demo/shop_v1.py, demo/shop_v2.py), its gRPC price service (demo/catalog.py), the proxy:")
    compare = addon_declares("shadow_compare")
    shops = start_shops(procs)
    catalogs = start_catalogs(procs)
    # Unknown to the addon, shadow_compare would be silently ignored; leave it out and say so instead.
    proxy = start_proxy(procs, args, {**shops, **catalogs}, compare is not False)
    if compare is False:
        print(
            "  (shadow_compare: this build of the addon has no response comparison; the report shows "
            "traffic, errors and latency)"
        )
    print(f"  ready in {time.monotonic() - t0:.1f} s\n")

    # The gRPC calls first: the report keeps the latest mismatches' examples, and the shop's are the story.
    print(f"Calling the price service over gRPC through the proxy ({GRPC_CALLS} calls, cleartext HTTP/2):")
    t1 = time.monotonic()
    calls = grpc_calls(proxy.port, GRPC_CALLS)
    grpc_codes = " ".join(f"{c}:{n}" for c, n in sorted(calls.items()))
    print(f"  {GRPC_CALLS} gRPC calls (shop.Catalog/Price) in {time.monotonic() - t1:.1f} s; grpc-status {grpc_codes}")
    if calls["OK"] != GRPC_CALLS:
        raise DemoError(f"gRPC calls through the proxy failed: {grpc_codes}")

    plan = traffic_plan(args.requests, random.Random(args.seed))
    print(f"Sending {len(plan)} requests through the proxy on {args.connections} keep-alive connections:")
    traffic = Traffic(proxy.port, plan, args.connections)
    elapsed = traffic.run(progress=sys.stdout.isatty())
    codes = " ".join(f"{c}:{n}" for c, n in sorted(traffic.codes.items()))
    print(f"  {traffic.done} answers in {elapsed:.1f} s ({traffic.done / elapsed:.0f}/s); status codes {codes}")
    procs.check_alive()
    if traffic.codes["failed"]:
        raise DemoError(f"{traffic.codes['failed']} requests failed; the last: {traffic.last_failure}")

    print_report(proxy, shops, compare, args.json_report)
    replay_offline(procs, args, shops, catalogs)
    if args.keep:
        keep_running(procs, proxy, shops)
    else:
        print(
            f"\nDashboard: http://{HOST}:{proxy.admin_port}/ (also /report, /report.json, /metrics, /diag); it "
            "stops with the demo: scripts/demo --keep leaves everything running."
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="scripts/demo", description="Run a small shop and its next release shadowed behind mitmproxy-shadow."
    )
    ap.add_argument("--requests", type=int, default=2000, metavar="N", help="requests to send (default 2000)")
    ap.add_argument("--connections", type=int, default=3, metavar="C", help="keep-alive client connections (default 3)")
    ap.add_argument("--keep", action="store_true", help="leave everything running until Ctrl-C")
    ap.add_argument("--web", action="store_true", help="run mitmweb instead of mitmdump (implies --keep)")
    ap.add_argument("--json-report", type=Path, metavar="PATH", help="write the admin server's /report.json here")
    ap.add_argument(
        "--mappings",
        type=Path,
        default=ROOT / "mappings" / "demo.yaml",
        metavar="FILE",
        help="the Mapping file (default mappings/demo.yaml)",
    )
    ap.add_argument("--seed", type=int, default=1, metavar="S", help="seed of the traffic mix (default 1)")
    args = ap.parse_args(argv)
    if args.requests < 1 or args.connections < 1:
        ap.error("--requests and --connections must be at least 1")
    args.keep = args.keep or args.web  # mitmweb is for looking at: no point stopping it at once
    args.mappings = args.mappings.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM and SIGHUP (terminal closed) stop the demo as Ctrl-C does, so the clean-up below runs.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: a background start may ignore it
        signal.signal(sig, signal.default_int_handler)
    logdir = Path(tempfile.mkdtemp(prefix="shadow-demo-"))
    procs = Processes(logdir)
    keep_logs = False
    try:
        run(args, procs)
        return 0
    except DemoError as e:
        keep_logs = True
        print(f"\ndemo: error: {e}\ndemo: logs kept in {logdir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop()
        if not keep_logs:
            shutil.rmtree(logdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
