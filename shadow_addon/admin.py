"""The admin HTTP server: GET-only, its own paths only, on mitmproxy's event loop."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable

logger = logging.getLogger(__name__)

Page = Callable[[], tuple[str, bytes]]  # -> (content type, body)
HEAD_LIMIT = 8192
READ_TIMEOUT = 5.0


def parse_listen(spec: str) -> tuple[str, int]:
    host, sep, port = spec.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {spec!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AdminServer:
    def __init__(self, pages: dict[str, Page]) -> None:
        self.pages = pages
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

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.clients.add(task)
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = head.partition(b" ")
            target = rest.split(b" ", 1)[0].decode("latin-1")
            path = target.split("?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"only GET\n"
            elif path in self.pages:
                status = "200 OK"
                ctype, body = self.pages[path]()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
            out = (
                f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
                "cache-control: no-store\r\nconnection: close\r\n\r\n"
            ).encode()
            writer.write(out if method == b"HEAD" else out + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception:  # a page must never take the proxy down
            logger.exception("admin: error serving a request")
        finally:
            writer.close()
            if task is not None:
                self.clients.discard(task)
