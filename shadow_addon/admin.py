"""The admin HTTP server: GET-only, its own paths only, on mitmproxy's event loop.

HTTP/1.1 is parsed by h11. The server has no authentication, so it answers only requests addressed to it by a
loopback name or its own configured address (a page on another site cannot reach it by DNS rebinding), and
every answer forbids sniffing, caching and framing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl

import h11

from .addresses import is_loopback, parse_host_port, split_host_port

logger = logging.getLogger(__name__)

Page = Callable[[], tuple[str, bytes]]  # -> (content type, body)
HEAD_LIMIT = 8192
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0  # a client that does not read its answer within this is dropped, and its copy with it
MAX_CLIENTS = 32  # connections served at once; more are closed unanswered (each may hold a page being written)
READ_SIZE = 4096

CSP = "default-src 'none'; style-src 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
COMMON_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"connection", b"close"),
)
# Inside JSON these characters only occur in strings, where the \u form means the same: a browser that
# sniffs a JSON answer as HTML finds no markup in it.
_JSON_ESCAPES = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"))


def parse_listen(spec: str) -> tuple[str, int]:
    """The admin server's HOST:PORT (`shadow_admin`)."""
    return parse_host_port(spec)


def host_of(authority: str) -> str:
    """The host of a Host header value, without port, brackets or a trailing dot, lower case."""
    return split_host_port(authority.lower())[0].rstrip(".")


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b.lower()


def host_allowed(authority: str, admin_host: str) -> bool:
    """A loopback name or address (any port), or the address the admin server was configured on."""
    host = host_of(authority)
    if not host:
        return False
    if is_loopback(host):
        return True
    return bool(admin_host) and not _is_wildcard(admin_host) and _same_host(host, admin_host)


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def json_safe(body: bytes) -> bytes:
    for raw, escaped in _JSON_ESCAPES:
        body = body.replace(raw, escaped)
    return body


@dataclass(frozen=True, slots=True)
class QueryPage:
    """A page that reads the request's query (`/diffs?offset=50&limit=50`): `page(query)`, the query as a dict
    (the last of repeated keys; at most MAX_QUERY keys are read)."""

    page: Callable[[dict[str, str]], tuple[str, bytes]]

    def __call__(self, query: dict[str, str] | None = None) -> tuple[str, bytes]:
        return self.page(query or {})


MAX_QUERY = 16


def query_of(target: str) -> dict[str, str]:
    _, _, q = target.partition("?")
    return dict(parse_qsl(q, keep_blank_values=True, max_num_fields=MAX_QUERY)) if q else {}


def respond(
    method: str,
    path: str,
    authority: str | None,
    admin_host: str,
    pages: dict[str, Page],
    query: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """Status, content type and body for one request (no I/O beyond calling the page)."""
    if authority is None or not host_allowed(authority, admin_host):
        return 421, "text/plain; charset=utf-8", b"misdirected request: address this server by a loopback name\n"
    if method not in ("GET", "HEAD"):
        return 405, "text/plain; charset=utf-8", b"only GET\n"
    page = pages.get(path)
    if page is None:
        return 404, "text/plain; charset=utf-8", b"not found\n"
    ctype, body = page(query or {}) if isinstance(page, QueryPage) else page()
    if ctype.startswith("application/json"):
        body = json_safe(body)
    return 200, ctype, body


def response_headers(ctype: str, length: int) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", ctype.encode()), (b"content-length", str(length).encode()), *COMMON_HEADERS]
    if ctype.startswith("text/html"):
        headers.append((b"content-security-policy", CSP.encode()))
    return headers


class AdminServer:
    def __init__(self, pages: dict[str, Page]) -> None:
        self.pages = pages
        self.host = ""
        self.server: asyncio.Server | None = None
        self.sock: socket.socket | None = None
        self.clients: set[asyncio.Task[None]] = set()

    def bind(self, host: str, port: int) -> None:
        """Bind synchronously, so a port in use is an error at start-up, not later in a task."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.host = host

    async def serve(self) -> None:
        assert self.sock is not None
        self.server = await asyncio.start_server(self._client, sock=self.sock)

    @property
    def port(self) -> int:
        assert self.sock is not None
        return self.sock.getsockname()[1]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        elif self.sock is not None:
            self.sock.close()
        for t in list(self.clients):
            t.cancel()

    async def _request(self, conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Request | None:
        async with asyncio.timeout(READ_TIMEOUT):
            for _ in range(HEAD_LIMIT + 2):  # each read brings a byte or more, or EOF; h11 caps the head's size
                event = conn.next_event()
                if event is not h11.NEED_DATA:
                    return event if isinstance(event, h11.Request) else None
                conn.receive_data(await reader.read(READ_SIZE))
        return None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self.clients) >= MAX_CLIENTS:
            writer.transport.abort()
            return
        if task is not None:
            self.clients.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)
        try:
            try:
                request = await self._request(conn, reader)
            except h11.RemoteProtocolError as e:
                status, ctype, body, method = e.error_status_hint, "text/plain; charset=utf-8", b"bad request\n", ""
            else:
                if request is None:
                    return
                method = request.method.decode("ascii", "replace")
                target = request.target.decode("latin-1")
                path = target.split("?", 1)[0]
                hosts = [v for k, v in request.headers if k == b"host"]
                authority = hosts[0].decode("latin-1") if len(hosts) == 1 else None
                try:
                    query = query_of(target)
                except ValueError:  # more fields than MAX_QUERY
                    query = {}
                status, ctype, body = respond(method, path, authority, self.host, self.pages, query)
            head = h11.Response(
                status_code=status, reason=HTTPStatus(status).phrase, headers=response_headers(ctype, len(body))
            )
            out = conn.send(head)
            if method != "HEAD":
                out += conn.send(h11.Data(data=body))
            out += conn.send(h11.EndOfMessage())
            writer.write(out)
            async with asyncio.timeout(WRITE_TIMEOUT):
                await writer.drain()
        except TimeoutError:
            writer.transport.abort()  # a client that does not read: its unsent answer is dropped at once
        except (ConnectionError, h11.ProtocolError):
            pass
        except Exception:  # a page must never take the proxy down
            logger.exception("admin: error serving a request")
        finally:
            writer.close()
            if task is not None:
                self.clients.discard(task)


def start(listen: tuple[str, int], pages: dict[str, Page]) -> AdminServer | None:
    """Bind now (a port in use is an error at start-up, not later in a task) and serve on the running loop."""
    spec = f"[{listen[0]}]:{listen[1]}" if ":" in listen[0] else f"{listen[0]}:{listen[1]}"
    server = AdminServer(pages)
    try:
        server.bind(*listen)
    except OSError as e:
        # Logged as an error during start-up, mitmdump exits with this line (errorcheck).
        logger.error(
            "shadow_admin: cannot listen on %s: %s (set shadow_admin=HOST:PORT, or empty to disable)",
            spec,
            e.strerror or e,
        )
        return None
    asyncio.get_running_loop().create_task(server.serve())
    logger.info("shadow admin: dashboard on http://%s/ (also /metrics, /diag, /report, /diffs)", spec)
    return server
