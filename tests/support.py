"""Real parts for end-to-end tests: recording HTTP servers on loopback and mitmdump processes."""

from __future__ import annotations

import asyncio
import contextlib
import html.parser
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from shadow_addon import dashboard, diag, mappings, report, routing
from shadow_addon.metrics import PRODUCTION, SHADOW, Metrics

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "shadow_addon" / "addon.py"
MITMDUMP = Path(sys.executable).parent / "mitmdump"
MITMWEB = Path(sys.executable).parent / "mitmweb"
WATCH_INTERVAL = "0.05"  # s between the Mapping-file polls of the tests' mitmdumps (1 s by default)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The shared corpus of real Mapping files, wherever the checkout sits below it (main checkout or a worktree).
CORPUS = next(
    (p / "shared" / "emissary-corpus" for p in Path(__file__).resolve().parents if (p / "shared").is_dir()),
    Path("/nonexistent"),
)


# ---------------------------------------------------------------------------------------------- processes
# Every process a test starts goes through `run_process` (to its end) or `spawn`/`started` (kept running, then `stop`;
# its output read as it comes with `read_log_until`): no stdin unless asked for, in a session of its own so that a
# stuck one is killed with everything it started. tests/test_structure.py keeps test modules from starting processes
# any other way.

Process = subprocess.Popen[bytes]


def run_process(
    cmd: list[str] | str,
    timeout: float = 60.0,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    shell: bool = False,
) -> subprocess.CompletedProcess[str]:
    """A process run to its end, its output as text. Past `timeout` its whole group is killed and the test fails."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        cwd=cwd,
        env=env,
        shell=shell,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group is still ours: its leader is not reaped yet
        out, err = proc.communicate()
        raise AssertionError(f"did not finish within {timeout:g} s: {cmd}\n{out[-2000:]}{err[-2000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def spawn(
    cmd: list[str] | str,
    log: Path,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    shell: bool = False,
    stdin: bool = False,
) -> Process:
    """A process kept running, its output (stdout and stderr) in `log`; the caller stops it with `stop`. With
    `stdin`, the caller writes to it through `proc.stdin` (a pipe); without, it reads nothing."""
    with open(log, "wb") as fh:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            shell=shell,
            start_new_session=True,
        )


def stop(proc: Process, grace: float = 10.0) -> int:
    """SIGINT (mitmdump's clean exit, with its summary) to the process's group; past `grace` the group is killed."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    return proc.returncode


def read_log_until(log: Path, want: str | re.Pattern[str], timeout: float, proc: Process | None = None) -> str:
    """The text of a `spawn`ed process's log once it holds `want` (a string, or a pattern searched for), polled for
    at most `timeout` s. Fails with the log so far past the timeout, or as soon as `proc` has ended without it."""
    deadline = time.monotonic() + timeout

    def found(text: str) -> bool:
        return want in text if isinstance(want, str) else want.search(text) is not None

    while True:
        ended = proc is not None and proc.poll() is not None  # before reading: what it wrote last is then seen
        text = log.read_text(errors="replace") if log.exists() else ""
        if found(text):
            return text
        shown = want if isinstance(want, str) else want.pattern
        if ended:
            assert proc is not None
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {shown!r}:\n{text[-3000:]}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"no {shown!r} within {timeout:g} s; the log so far:\n{text[-3000:]}")
        time.sleep(0.02)


@contextlib.contextmanager
def started(
    cmd: list[str] | str,
    log: Path,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    shell: bool = False,
    stdin: bool = False,
) -> Iterator[Process]:
    """`spawn` for the length of a `with` block: stopped when it ends, whatever happened."""
    proc = spawn(cmd, log, cwd, env, shell, stdin)
    try:
        yield proc
    finally:
        stop(proc)


def wait_until(cond: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0
    body: bytes | None = None  # None: a JSON echo of what was received
    # When set: called with what was received, returns (status, headers, body) to send.
    responder: Callable[[Seen], tuple[int, dict[str, str], bytes]] | None = None


class Upstream:
    """A threaded HTTP/1.1 server on 127.0.0.1 that records every request it answers."""

    def __init__(self, name: str, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.name = name
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.behaviour = Behaviour()
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # head and body are two writes: avoid the 40 ms delayed-ACK stall

            def _any(self) -> None:
                n = self.headers.get("content-length")
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(int(n)) if n else b""
                seen = Seen(self.command, self.path, list(self.headers.items()), body)
                with upstream.lock:
                    upstream.seen.append(seen)
                b = upstream.behaviour
                if b.delay:
                    time.sleep(b.delay)
                if b.responder is not None:
                    status, headers, out = b.responder(seen)
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                    return
                out = (
                    b.body
                    if b.body is not None
                    else json.dumps(
                        {
                            "name": upstream.name,
                            "method": self.command,
                            "path": self.path,
                            "host": self.headers.get("host"),
                            "size": len(body),
                        }
                    ).encode()
                )
                self.send_response(b.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        default_handle_error = self.server.handle_error

        def handle_error(request: object, client_address: object) -> None:
            # A proxy that gave up on a copy (its timeout) closes the connection mid-answer: not worth a traceback.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                default_handle_error(request, client_address)  # type: ignore[arg-type]

        self.server.handle_error = handle_error  # type: ignore[method-assign]
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self) -> int:
        with self.lock:
            return len(self.seen)

    def wait_for(self, n: int, timeout: float = 10.0) -> bool:
        return wait_until(lambda: self.count() >= n, timeout)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Proxy:
    """A running mitmdump (or mitmweb) with the addon; always stopped by the fixture that made it."""

    proc: Process
    port: int
    logfile: Path
    admin_port: int | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def get_json(self, path: str, headers: dict[str, str] | None = None) -> dict[str, object]:
        status, _, body = self.request("GET", path, headers=headers)
        assert status == 200, (status, body[:200])
        return json.loads(body)

    def admin(self, path: str) -> tuple[int, bytes]:
        assert self.admin_port
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def stop(self) -> int:
        return stop(self.proc)


def names_resolve_on_host_files_only(tmp: Path) -> list[str]:
    """A command prefix under which a process resolves names from /etc/hosts alone, so a test of a name that does
    not resolve sends no DNS query off loopback: a private mount namespace binds an nsswitch.conf of `hosts: files`.
    Skips where namespaces are not permitted (the failure is then the system resolver's to give)."""
    import pytest

    conf = tmp / "nsswitch.conf"
    conf.write_text("hosts: files\n")
    ns = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--mount"]
    prefix = [*ns, "sh", "-c", f'mount --bind {conf} /etc/nsswitch.conf && exec "$@"', "sh"]
    if not shutil.which("unshare"):
        pytest.skip("needs unshare to keep name resolution on this host")
    probe = run_process([*prefix, "true"], 10)
    if probe.returncode != 0:
        pytest.skip(f"mount namespaces not permitted here: {probe.stderr.strip()}")
    return prefix


def start_proxy(
    tmp: Path,
    reverse: str,
    sets: dict[str, str | list[str]] | None = None,
    args: list[str] | None = None,
    web: bool = False,
    admin: bool = True,
    wait: bool = True,
    prefix: list[str] | None = None,
    port: int | None = None,
) -> Proxy:
    port = port or free_port()
    cmd = [
        *(prefix or []),
        str(MITMWEB if web else MITMDUMP),
        "-s",
        str(ADDON),
        "--mode",
        f"reverse:{reverse}",
        "--listen-host",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    if web:
        cmd += ["--no-web-open-browser"]
    sets = dict(sets or {})
    admin_port = None
    if "shadow_admin" not in sets:  # never the default port: tests run beside other proxies
        admin_port = free_port() if admin else None
        sets["shadow_admin"] = f"127.0.0.1:{admin_port}" if admin_port else ""
    for k, v in sets.items():
        for item in v if isinstance(v, list) else [v]:
            cmd += ["--set", f"{k}={item}"]
    cmd += args or []
    logfile = tmp / f"mitmdump-{port}.log"
    proc = spawn(
        cmd, logfile, cwd=tmp, env=dict(os.environ, PYTHONUNBUFFERED="1", MITMSHADOW_WATCH_INTERVAL=WATCH_INTERVAL)
    )
    p = Proxy(proc, port, logfile, admin_port)
    if wait:
        # The admin server binds in `running`, just after the proxy port opens: wait for both.
        ok = wait_until(
            lambda: proc.poll() is not None or (_port_open(port) and (admin_port is None or _port_open(admin_port))), 20
        )
        if not ok or proc.poll() is not None:
            p.stop()
            raise RuntimeError(f"mitmdump did not start: {p.log}")
    return p


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def mapping(name: str, **spec: object) -> str:
    """A v3alpha1 Mapping document as YAML text."""
    return json.dumps(
        {"apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping", "metadata": {"name": name}, "spec": spec}
    )


def write_capture(tmp: Path, kind: str, entries: list[dict[str, Any]]) -> Path:
    """HAR entries as a capture in `tmp`: a HAR (`kind` "har"), or the flows they make as a flow file."""
    from mitmproxy import io as mio

    from shadow_addon import recorded

    if kind == "har":
        path = tmp / "capture.har"
        path.write_text(json.dumps({"log": {"version": "1.2", "entries": entries}}))
        return path
    path = tmp / "capture.mitm"
    with open(path, "wb") as fh:
        w = mio.FlowWriter(fh)
        for e in entries:
            w.add(recorded.har_flow(e))
    return path


def write_mappings(path: Path, *docs: str) -> Path:
    path.write_text("\n---\n".join(docs) + "\n")
    return path


def make_cert(tmp: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (cert.pem, key.pem)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}-cert.pem", tmp / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    c.load_cert_chain(cert, key)
    return c


def metrics_of(p: Proxy) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrape /metrics and parse it with Prometheus' own text parser: {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = p.admin("/metrics")
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric_sum(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in m.items() if n == name and all((k, v2) in ls for k, v2 in labels.items()))


class FaultServer:
    """A TCP server on 127.0.0.1 that misbehaves as an HTTP service in one chosen way.

    modes: blackhole (accepts, never answers), reset (RST after reading the request), garbage (a non-HTTP
    answer), truncated (announces 100 bytes, sends 10, closes), slow (a valid answer after `delay`),
    close (a valid answer with Connection: close), dribble (a valid answer one byte at a time), huge (a valid
    32 MiB answer), endless (a chunked answer that never ends), continue (100 Continue, then the answer).
    """

    def __init__(self, mode: str, delay: float = 0.0) -> None:
        self.mode, self.delay = mode, delay
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.conns: list[socket.socket] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        try:
            c.settimeout(5)
            while not self.stopping.is_set():
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                if self.mode == "blackhole":
                    self.stopping.wait(120)
                    return
                if self.mode == "reset":
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    c.close()
                    return
                if self.mode == "garbage":
                    c.sendall(b"SSH-2.0-OpenSSH_9.0\r\n\r\nnot http at all\r\n")
                    return
                if self.mode == "truncated":
                    c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                    return
                if self.mode == "slow":
                    self.stopping.wait(self.delay)
                    c.sendall(ok)
                elif self.mode == "close":
                    c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                    return
                elif self.mode == "huge":
                    size = 32 * 1024 * 1024
                    c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
                    block = b"x" * 65536
                    for _ in range(size // len(block)):
                        c.sendall(block)
                elif self.mode == "endless":
                    c.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    for _ in range(100000):  # bounded: ~100 s at most, the copy's timeout ends it first
                        if self.stopping.wait(0.001):
                            return
                        c.sendall(b"400\r\n" + b"y" * 1024 + b"\r\n")
                    return
                elif self.mode == "continue":
                    c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    self.stopping.wait(0.05)
                    c.sendall(ok)
                elif self.mode == "dribble":
                    for b in ok:
                        if self.stopping.wait(self.delay):
                            return
                        c.sendall(bytes([b]))
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def stop(self) -> None:
        self.stopping.set()
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass
        self.thread.join(2)


def fd_count(p: Proxy) -> int:
    return len(os.listdir(f"/proc/{p.proc.pid}/fd"))


# ---------------------------------------------------------------------------------------------- a small DOM

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)  # elements and text, in document order

    @property
    def text(self) -> str:
        """All text below this node, as a reader sees it (whitespace collapsed)."""
        parts: list[str] = []

        def walk(n: Node) -> None:
            for c in n.children:
                if isinstance(c, str):
                    parts.append(c)
                else:
                    walk(c)

        walk(self)
        return " ".join("".join(parts).split())

    def iter(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Elements by tag and attribute values; `class_` matches one of the classes, `data_x` is data-x."""
        out = []
        for n in self.iter():
            if tag is not None and n.tag != tag:
                continue
            ok = True
            for k, v in attrs.items():
                if k == "class_":
                    ok = v in n.attrs.get("class", "").split()
                else:
                    ok = n.attrs.get(k.replace("_", "-")) == v
                if not ok:
                    break
            if ok:
                out.append(n)
        return out

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, **attrs)
        assert len(found) == 1, (tag, attrs, len(found))
        return found[0]


class _Builder(html.parser.HTMLParser):
    def __init__(self, strict: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.strict = strict

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        n = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(n)
        if tag not in VOID:
            self.stack.append(n)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if self.strict:
            # Our own page must be balanced: every element closed, in order.
            assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
            self.stack.pop()
            return
        for i in range(len(self.stack) - 1, 0, -1):  # a browser's serialisation: pop to the matching element
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str, strict: bool = True) -> Node:
    b = _Builder(strict)
    b.feed(page)
    b.close()
    if strict:
        assert [n.tag for n in b.stack] == ["#document"], "unclosed: " + ",".join(n.tag for n in b.stack[1:])
    return b.root


# ---------------------------------------------------------------------------------------------- snapshots


def M(name: str, **kw: Any) -> mappings.Mapping:
    spec = {"prefix": "/api/", "service": name + "-svc", **kw}
    return mappings.build_mapping(name, "default", "m.yaml doc 1", spec)


def real_snapshot() -> tuple[dashboard.Snapshot, Metrics]:
    """A snapshot made by the same functions Shadow.snapshot uses, from a table with a second shadow."""
    table = routing.build_table(
        [M("api"), M("api-shadow", shadow=True), M("z-second", shadow=True), M("other", prefix="/other/")]
    )
    m = Metrics()
    for i in range(20):
        m.record_upstream("api", "api-svc", PRODUCTION, 500 if i < 4 else 200, 0.003 if i % 2 else 0.02)
    for i in range(10):
        m.record_upstream("api-shadow", "api-shadow-svc", SHADOW, "error" if i < 5 else 200, 0.3)
    m.record_drop("api-shadow", "overload")
    m.record_drop("api-shadow", "overload")
    m.record_drop("api-shadow", "timeout")
    loaded = mappings.LoadResult()
    loaded.files.append("/etc/shadow/mappings.yaml")
    loaded.notices.append("m.yaml doc 4: not a Mapping (kind Host), skipped")
    snap = dashboard.Snapshot(
        generated_at=1_700_000_100.0,
        diag=diag.snapshot(table, loaded, 1_700_000_000.0, []),
        comparison=tuple(report.comparison(table, m)),
    )
    return snap, m


def resource(page: Node) -> Node:
    return page.one("article", class_="resource")


def cell(page: Node, role: str, metric: str) -> Node:
    return resource(page).one("td", data_role=role, data_metric=metric)


# ---------------------------------------------------------------------------------------------- README


def readme_commands() -> list[str]:
    """The commands of the ```sh blocks, continuation lines joined and comments dropped."""
    blocks = re.findall(r"^ *```sh\n(.*?)^ *```", (ROOT / "README.md").read_text(), flags=re.S | re.M)
    commands = []
    for block in blocks:
        text = re.sub(r"\\\n\s*", " ", block)
        for line in text.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


# ---------------------------------------------------------------------------------------------- protobuf


def pb(*fields: tuple[int, int | bytes]) -> bytes:
    """A protobuf message: varint fields (int) and length-delimited ones (bytes)."""
    out = b""
    for number, v in fields:
        if isinstance(v, int):
            out += bytes([number << 3]) + _varint(v)
        else:
            out += bytes([number << 3 | 2]) + _varint(len(v)) + v
    return out


def _varint(v: int) -> bytes:
    out = b""
    while True:
        b, v = v & 0x7F, v >> 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out


# ---------------------------------------------------------------------------------------------- self-loop


def run_refused(tmp_path: Path, upstream, service_host: str, listen_host: str) -> str:
    """mitmdump with a shadow at `service_host`:its own port; must refuse to start with one line."""
    reverse, api = upstream("reverse"), upstream("api")
    port = free_port()
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("a", prefix="/", service="a"),
        mapping("loop", prefix="/", service=f"{service_host}:{port}", shadow=True),
    )
    cmd = [str(MITMDUMP), "-s", str(ADDON), "--mode", f"reverse:http://{reverse.address}"]
    cmd += ["--listen-host", listen_host, "-p", str(port), "--set", f"mappings={m}"]
    cmd += ["--set", f"mapping_services=a={api.address}", "--set", "shadow_admin="]
    r = run_process(cmd)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    lines = [line for line in out.splitlines() if "(Mapping loop.default)" in line]
    assert len(lines) == 1, out
    assert f"service http://{service_host}:{port} is this proxy's own listen address" in lines[0]
    assert "Traceback" not in out
    return lines[0]


# ---------------------------------------------------------------------------------------------- a browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER_TIMEOUT = 90.0  # s; a cold start on a busy 2-core machine takes a few seconds


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def run_browser(
    browser: str,
    profile: Path,
    args: list[str],
    url: str,
    timeout: float = BROWSER_TIMEOUT,
    console: list[str] | None = None,
) -> str:
    """Run headless Chromium once on a fresh profile; its stdout. Killed (its whole process group) on timeout.
    With `console`, the page's console messages (CSP violations among them) are appended to it."""
    profile.mkdir(parents=True, exist_ok=True)
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *(["--enable-logging=stderr", "--v=0"] if console is not None else []),
        *args,
        url,
    ]
    # Its caches and settings go to the throw-away profile, not the user's home.
    env = dict(
        os.environ, HOME=str(profile), XDG_CONFIG_HOME=str(profile / "config"), XDG_CACHE_HOME=str(profile / "cache")
    )
    r = run_process(cmd, timeout, env=env)
    if r.returncode != 0:
        raise AssertionError(f"{browser} exited with {r.returncode}: {r.stderr[-2000:]}")
    if console is not None:
        console += [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    return r.stdout


async def loaded(files: Any, limit: float = 30.0) -> None:
    """Wait (bounded) until a run-time Mapping load (`MappingFiles.request`) is installed or has failed."""
    import asyncio

    for _ in range(int(limit / 0.01)):
        if not files.loading:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the Mapping load did not end within {limit:g} s")


class LoopbackServer:
    """An asyncio server on a free loopback port for `async with`, each connection handled by `serve`; on the way
    out the server and every connection it accepted are closed."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        await self.serve(reader, writer)

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._accepted, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()


class KeptAliveAnswers(LoopbackServer):
    """Answers every request on a kept-alive connection with `answer` (whole bytes: a head and body, and anything a
    test wants past them, in one write); a request's Content-Length body is read first. `connections` counts those
    accepted."""

    def __init__(self, answer: bytes, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls)
        self.answer = answer

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(100):  # bounded: a test sends a few copies
                req = await reader.readuntil(b"\r\n\r\n")
                length = [ln for ln in req.lower().split(b"\r\n") if ln.startswith(b"content-length:")]
                if length:
                    await reader.readexactly(int(length[0].split(b":")[1]))
                writer.write(self.answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def varied_http_flows() -> list[Any]:
    """HTTP flows as a flow file holds them: a failure, metadata (nested too), trailers, set-up times, a replayed
    one, a streamed request, a request without an answer."""
    from mitmproxy import http
    from mitmproxy.test import tflow, tutils

    plain = tflow.tflow(resp=True)
    failed = tflow.tflow(err=True)
    failed.metadata["shadow_mapping"] = "api"
    failed.metadata["nested"] = {"a": [1, 2.5, None, True], "b": "x"}
    h2 = tflow.tflow(req=tutils.treq(http_version=b"HTTP/2.0"), resp=tutils.tresp(http_version=b"HTTP/2.0"))
    h2.request.trailers = http.Headers(((b"grpc-timeout", b"1S"),))
    assert h2.response is not None
    h2.response.trailers = http.Headers(((b"grpc-status", b"0"),))
    timed = tflow.tflow(resp=True)
    timed.server_conn.timestamp_tcp_setup, timed.server_conn.timestamp_tls_setup = 1000.5, 1000.75
    timed.request.timestamp_start = 999  # a whole-second time, stored as an int
    replayed = tflow.tflow(resp=True)
    replayed.is_replay = "request"
    streamed = tflow.tflow(resp=True)
    streamed.request.raw_content = None
    unanswered = tflow.tflow()
    return [plain, failed, h2, timed, replayed, streamed, unanswered]
