"""Sends copies to shadow services: per-service keep-alive pools, in-flight limits, a bounded backlog,
timeouts, and one outcome per copy. Nothing here raises into the caller; every failure becomes a reason.

Why not mitmproxy's `replay.client`: its queue is unbounded and serial (or unlimited), it has no timeout,
replayed flows re-enter every addon's hooks, and it measured ~0.3x of plain mitmdump's throughput. This is
a small HTTP/1.1 client on asyncio streams, run on mitmproxy's own event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .mappings import Address
from .metrics import SHADOW, Metrics

logger = logging.getLogger(__name__)

# Never forwarded as they were: hop-by-hop headers (RFC 9110 7.6.1), and the framing and Host headers that
# the sender writes itself. `expect` is dropped because the whole body is sent at once.
_SKIP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
     b"host", b"content-length", b"expect"}
)  # fmt: skip
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
CONNECT_BACKOFF = 0.25  # s: after a refused connect, copies are dropped at once rather than dialled again
DNS_BACKOFF = 2.0
LOG_INTERVAL = 30.0  # s: at most one log line per service and reason in this interval
MAX_HEAD = 64 * 1024
READ_CHUNK = 64 * 1024


class BadResponse(Exception):
    pass


@dataclass(slots=True)
class Copy:
    """One request to send to a shadow service, already shaped (path, headers, body)."""

    mapping: str  # the shadow Mapping's name (metric label)
    service: str  # the shadow Mapping's service (metric label)
    address: Address
    method: str
    path: str
    host: str  # Host header value
    fields: tuple[tuple[bytes, bytes], ...]  # request headers as received (after production's edits)
    body: bytes
    timeout: float
    add: tuple[tuple[bytes, bytes], ...] = ()
    remove: frozenset[bytes] = frozenset()
    keep_body: int = 0  # bytes of the response body to keep for on_result (0: discard)
    hash_body: bool = False  # compute the whole response body's sha256 while reading (for comparison)
    context: object = None  # opaque, handed back with the outcome (e.g. the production flow's id)
    enqueued: float = 0.0


@dataclass(slots=True)
class Outcome:
    status: int | None = None  # the shadow's status, or None when it failed
    reason: str | None = None  # drop reason when it failed
    error: str = ""
    seconds: float = 0.0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    body_size: int = 0
    body_sha256: str = ""
    http_version: str = "HTTP/1.1"
    timestamp_start: float = 0.0


@dataclass(slots=True)
class Pool:
    address: Address
    inflight: int = 0
    backlog: deque[Copy] = field(default_factory=deque)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)
    backoff_until: float = 0.0
    backoff_reason: str = "connect_error"
    last_log: dict[str, float] = field(default_factory=dict)


def sent_fields(c: Copy) -> list[tuple[bytes, bytes]]:
    """The header fields of the copy, exactly as the sender writes them (Host first, then the rest)."""
    fields = [(b"Host", c.host.encode("utf-8", "surrogateescape"))]
    fields += [(k, v) for k, v in c.fields if k.lower() not in _SKIP and k.lower() not in c.remove]
    fields += c.add
    if c.body or c.method in _BODY_METHODS:
        fields.append((b"content-length", b"%d" % len(c.body)))
    return fields


def assemble_head(c: Copy) -> bytes:
    parts = [f"{c.method} {c.path} HTTP/1.1\r\n".encode("utf-8", "surrogateescape")]
    parts += [b"%s: %s\r\n" % kv for kv in sent_fields(c)]
    parts.append(b"\r\n")
    return b"".join(parts)


async def read_response(
    reader: asyncio.StreamReader, method: str, keep_body: int, out: Outcome, hash_body: bool = False
) -> bool:
    """Read one response into `out`; returns whether the connection may be reused."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise BadResponse("response head too large") from None
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise BadResponse(f"not an HTTP/1 status line: {lines[0][:60]!r}")
        status = int(parts[1])
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise BadResponse("malformed response header")
            headers.append((name, value.strip()))
        if 100 <= status < 200 and status != 101:
            continue  # 100 Continue and friends: the real answer follows
        break
    out.status, out.headers, out.http_version = status, headers, parts[0].decode()
    lower = {k.lower(): v for k, v in headers}
    conn = lower.get(b"connection", b"").lower()
    keep = parts[0] == b"HTTP/1.1" and b"close" not in conn or b"keep-alive" in conn
    kept: list[bytes] = []
    size = 0
    digest = hashlib.sha256() if hash_body else None

    def take(data: bytes) -> None:
        nonlocal size
        if size < keep_body:
            kept.append(data[: keep_body - size])
        if digest is not None:
            digest.update(data)
        size += len(data)

    if method == "HEAD" or status in (101, 204, 304):
        pass
    elif b"chunked" in lower.get(b"transfer-encoding", b"").lower():
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                n = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadResponse("bad chunk size") from None
            if n == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                break
            while n > 0:
                data = await reader.read(min(n, READ_CHUNK))
                if not data:
                    raise asyncio.IncompleteReadError(b"", n)
                take(data)
                n -= len(data)
            if await reader.readexactly(2) != b"\r\n":
                raise BadResponse("bad chunk terminator")
    elif b"content-length" in lower:
        try:
            n = int(lower[b"content-length"])
        except ValueError:
            raise BadResponse("bad content-length") from None
        while n > 0:
            data = await reader.read(min(n, READ_CHUNK))
            if not data:
                raise asyncio.IncompleteReadError(b"", n)
            take(data)
            n -= len(data)
    else:
        keep = False  # delimited by close
        while data := await reader.read(READ_CHUNK):
            take(data)
    out.body, out.body_size = b"".join(kept), size
    if digest is not None:
        out.body_sha256 = digest.hexdigest()
    return keep


class Sender:
    def __init__(
        self,
        metrics: Metrics,
        max_inflight: int = 64,
        max_backlog: int = 256,
        ssl_context: ssl.SSLContext | None = None,
        on_result: Callable[[Copy, Outcome], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.max_inflight = max_inflight
        self.max_backlog = max_backlog
        self.ssl_context = ssl_context
        self.on_result = on_result
        self.pools: dict[Address, Pool] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    # ------------------------------------------------------------ entry point (sync, from a hook)

    def submit(self, c: Copy) -> None:
        """Hand a copy over; returns at once. Over the limits it is dropped and counted."""
        if self.closed:
            return
        pool = self.pools.get(c.address)
        if pool is None:
            pool = self.pools[c.address] = Pool(c.address)
        now = time.monotonic()
        if pool.backoff_until > now:
            # Counted under the failure that started the back-off (refused, or a name that does not resolve).
            self._fail(pool, c, pool.backoff_reason, "failed recently (backing off)", 0.0, count_upstream=False)
            return
        if pool.inflight < self.max_inflight:
            self._start(pool, c)
        elif len(pool.backlog) < self.max_backlog:
            c.enqueued = now
            pool.backlog.append(c)
        else:
            self._fail(pool, c, "overload", "in-flight limit and backlog full", 0.0, count_upstream=False)

    def gauges(self) -> list[tuple[str, str, dict[str, str], float]]:
        rows: list[tuple[str, str, dict[str, str], float]] = []
        for addr, p in self.pools.items():
            rows.append(("shadow_inflight", "Copies in flight per shadow service.", {"service": str(addr)}, p.inflight))
        for addr, p in self.pools.items():
            rows.append(
                ("shadow_backlog", "Copies waiting per shadow service.", {"service": str(addr)}, len(p.backlog))
            )
        return rows

    def close(self) -> None:
        """Cancel copies in flight and close every connection (sync: safe from `done`)."""
        self.closed = True
        for t in list(self.tasks):
            t.cancel()
        for pool in self.pools.values():
            pool.backlog.clear()
            for _, w in pool.idle:
                w.close()
            pool.idle.clear()

    # ------------------------------------------------------------ internals

    def _start(self, pool: Pool, c: Copy) -> None:
        pool.inflight += 1
        task = asyncio.get_running_loop().create_task(self._run(pool, c))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _log(self, pool: Pool, reason: str, message: str) -> None:
        now = time.monotonic()
        if now - pool.last_log.get(reason, -LOG_INTERVAL) >= LOG_INTERVAL:
            pool.last_log[reason] = now
            logger.warning("shadow %s: %s: %s (logged at most every %ds)", pool.address, reason, message,
                           int(LOG_INTERVAL))  # fmt: skip

    def _fail(self, pool: Pool, c: Copy, reason: str, msg: str, seconds: float, count_upstream: bool = True) -> None:
        self.metrics.record_drop(c.mapping, reason)
        if count_upstream:
            self.metrics.record_upstream(c.mapping, c.service, SHADOW, "error", seconds)
        self._log(pool, reason, msg)
        if self.on_result is not None:
            self.on_result(c, Outcome(reason=reason, error=msg, seconds=seconds))

    async def _connect(self, pool: Pool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        a = pool.address
        if a.scheme == "https":
            ctx = self.ssl_context or ssl.create_default_context()
            return await asyncio.open_connection(a.host, a.port, ssl=ctx, server_hostname=a.host, limit=MAX_HEAD)
        return await asyncio.open_connection(a.host, a.port, limit=MAX_HEAD)

    async def _exchange(self, pool: Pool, c: Copy, out: Outcome) -> None:
        head = assemble_head(c)
        for attempt in (0, 1):
            conn = None
            while pool.idle and conn is None:
                r, w = pool.idle.pop()
                if r.at_eof() or w.is_closing():
                    w.close()
                else:
                    conn = (r, w)
            reused = conn is not None
            if conn is None:
                try:
                    conn = await self._connect(pool)
                except socket.gaierror as e:
                    raise _ConnectFailed("dns_error", str(e), DNS_BACKOFF) from None
                except ssl.SSLError as e:
                    raise _ConnectFailed("tls_error", str(e), 0.0) from None
                except ssl.CertificateError as e:
                    raise _ConnectFailed("tls_error", str(e), 0.0) from None
                except OSError as e:
                    raise _ConnectFailed("connect_error", e.strerror or str(e), CONNECT_BACKOFF) from None
            reader, writer = conn
            try:
                writer.write(head)
                if c.body:
                    writer.write(c.body)
                await writer.drain()
                keep = await read_response(reader, c.method, c.keep_body, out, c.hash_body)
            except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as e:
                writer.close()
                # A kept-alive connection the server closed while idle: retry once on a fresh one.
                if reused and attempt == 0 and out.status is None:
                    continue
                raise _Reset(str(e) or type(e).__name__) from None
            except BaseException:
                writer.close()
                raise
            if keep and not self.closed and len(pool.idle) < self.max_inflight:
                pool.idle.append((reader, writer))
            else:
                writer.close()
            return

    async def _run(self, pool: Pool, c: Copy) -> None:
        out = Outcome(timestamp_start=time.time())
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(c.timeout):
                await self._exchange(pool, c, out)
        except TimeoutError:
            self._fail(pool, c, "timeout", f"no complete answer within {c.timeout:g}s", time.monotonic() - t0)
        except _ConnectFailed as e:
            if e.backoff:
                pool.backoff_until, pool.backoff_reason = time.monotonic() + e.backoff, e.reason
            self._fail(pool, c, e.reason, e.message, time.monotonic() - t0)
        except _Reset as e:
            self._fail(pool, c, "reset", f"connection reset ({e})", time.monotonic() - t0)
        except BadResponse as e:
            self._fail(pool, c, "bad_response", str(e), time.monotonic() - t0)
        except ssl.SSLError as e:
            self._fail(pool, c, "tls_error", str(e), time.monotonic() - t0)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a shadow must never take the proxy down: count whatever it was
            self._fail(pool, c, "error", f"{type(e).__name__}: {e}", time.monotonic() - t0)
        else:
            out.seconds = time.monotonic() - t0
            self.metrics.record_upstream(c.mapping, c.service, SHADOW, out.status or 0, out.seconds)
            if self.on_result is not None:
                self.on_result(c, out)
        finally:
            pool.inflight -= 1
            self._drain_backlog(pool)

    def _drain_backlog(self, pool: Pool) -> None:
        if self.closed:
            return
        now = time.monotonic()
        while pool.backlog and pool.inflight < self.max_inflight:
            c = pool.backlog.popleft()
            if now - c.enqueued > c.timeout:
                self._fail(pool, c, "overload", "waited in the backlog longer than its timeout", 0.0,
                           count_upstream=False)  # fmt: skip
                continue
            self._start(pool, c)


class _ConnectFailed(Exception):
    def __init__(self, reason: str, message: str, backoff: float) -> None:
        super().__init__(message)
        self.reason, self.message, self.backoff = reason, message, backoff


class _Reset(Exception):
    pass
