"""Real parts for end-to-end tests: recording HTTP servers on loopback and mitmdump processes."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "shadow_addon" / "addon.py"
MITMDUMP = Path(sys.executable).parent / "mitmdump"
MITMWEB = Path(sys.executable).parent / "mitmweb"
WATCH_INTERVAL = "0.05"  # s between the Mapping-file polls of the tests' mitmdumps (1 s by default)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    proc: subprocess.Popen[bytes]
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
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


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
    fh = open(logfile, "wb")
    env = dict(os.environ, PYTHONUNBUFFERED="1", MITMSHADOW_WATCH_INTERVAL=WATCH_INTERVAL)
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=str(tmp))
    fh.close()
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
