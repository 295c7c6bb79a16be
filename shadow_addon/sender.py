"""Sends copies to shadow services: per-service keep-alive pools, in-flight limits, a bounded backlog,
timeouts, and one outcome per copy. Nothing here raises into the caller; every failure becomes a reason.

Why not mitmproxy's `replay.client`: its queue is unbounded and serial (or unlimited), it has no timeout,
replayed flows re-enter every addon's hooks, and it measured ~0.3x of plain mitmdump's throughput. This is
a small HTTP/1.1 client on mitmproxy's own event loop, written on asyncio's Protocol API rather than streams:
a response is parsed in `data_received` as it arrives, a copy on a kept-alive connection needs no task, no
future and no extra loop iteration, which is what makes 100 % shadowing cheap for production.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from .mappings import Address
from .metrics import SHADOW, Metrics

logger = logging.getLogger(__name__)

# Never forwarded as they were: hop-by-hop headers (RFC 9110 7.6.1), and the framing and Host headers that
# the sender writes itself. `expect` is dropped because the whole body is sent at once.
_SKIP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",
    }
)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
CONNECT_BACKOFF = 0.25  # s: after a refused connect, copies are dropped at once rather than dialled again
DNS_BACKOFF = 2.0
LOG_INTERVAL = 30.0  # s: at most one log line per service and reason in this interval
MAX_HEAD = 64 * 1024


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
    idle: list[_Conn] = field(default_factory=list)
    conns: set[_Conn] = field(default_factory=set)
    backoff_until: float = 0.0
    backoff_reason: str = "connect_error"
    connecting: int = 0  # connection attempts under way
    # No connect has succeeded yet, or the last one failed: one attempt at a time until one succeeds.
    suspect: bool = True
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


# ---------------------------------------------------------------- response parsing (incremental)

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_EOF, _DONE = range(8)


class _Parser:
    """Parses one HTTP/1.x response from a buffer as bytes arrive; keeps at most `keep` body bytes."""

    __slots__ = ("method", "keep", "digest", "out", "state", "need", "kept", "size", "keep_alive")

    def __init__(self, method: str, keep: int, hash_body: bool, out: Outcome) -> None:
        self.method, self.keep, self.out = method, keep, out
        self.digest = hashlib.sha256() if hash_body else None
        self.state, self.need, self.size = _HEAD, 0, 0
        self.kept: list[bytes] = []
        self.keep_alive = False

    def _take(self, buf: bytearray, n: int) -> None:
        if n == len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:n])
            del buf[:n]
        if self.size < self.keep:
            self.kept.append(data[: self.keep - self.size])
        if self.digest is not None:
            self.digest.update(data)
        self.size += n

    def _consume(self, buf: bytearray) -> bool:
        """Take up to `need` body bytes from buf; True once all of them have arrived."""
        n = min(self.need, len(buf))
        if n:
            self._take(buf, n)
            self.need -= n
        return not self.need

    def finish(self) -> None:
        self.out.body, self.out.body_size = b"".join(self.kept), self.size
        if self.digest is not None:
            self.out.body_sha256 = self.digest.hexdigest()
        self.state = _DONE

    def feed(self, buf: bytearray) -> bool:
        """Consume what `buf` holds; True once the response is complete. Raises BadResponse."""
        while True:
            st = self.state
            if st == _HEAD:
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    if len(buf) > MAX_HEAD:
                        raise BadResponse("response head too large")
                    return False
                head = bytes(buf[:i])
                del buf[: i + 4]
                self._head(head)
            elif st == _LENGTH:
                if not self._consume(buf):
                    return False
                self.finish()
            elif st == _CHUNK_SIZE:
                i = buf.find(b"\r\n")
                if i < 0:
                    if len(buf) > 1024:
                        raise BadResponse("bad chunk size line")
                    return False
                try:
                    n = int(bytes(buf[:i]).split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadResponse("bad chunk size") from None
                del buf[: i + 2]
                self.state, self.need = (_TRAILERS, 0) if n == 0 else (_CHUNK_DATA, n)
            elif st == _CHUNK_DATA:
                if not self._consume(buf):
                    return False
                self.state = _CHUNK_CRLF
            elif st == _CHUNK_CRLF:
                if len(buf) < 2:
                    return False
                if buf[:2] != b"\r\n":
                    raise BadResponse("bad chunk terminator")
                del buf[:2]
                self.state = _CHUNK_SIZE
            elif st == _TRAILERS:
                i = buf.find(b"\r\n")
                if i < 0:
                    if len(buf) > MAX_HEAD:
                        raise BadResponse("trailers too large")
                    return False
                del buf[: i + 2]
                if i == 0:
                    self.finish()
            elif st == _UNTIL_EOF:
                if buf:
                    self._take(buf, len(buf))
                return False
            else:
                return True

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
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
            return  # 100 Continue and friends: the real answer follows
        out = self.out
        out.status, out.headers, out.http_version = status, headers, parts[0].decode()
        lower = {k.lower(): v for k, v in headers}
        conn = lower.get(b"connection", b"").lower()
        self.keep_alive = (parts[0] == b"HTTP/1.1" and b"close" not in conn) or b"keep-alive" in conn
        if self.method == "HEAD" or status in (101, 204, 304):
            self.finish()
        elif b"chunked" in lower.get(b"transfer-encoding", b"").lower():
            self.state = _CHUNK_SIZE
        elif b"content-length" in lower:
            try:
                self.need = int(lower[b"content-length"])
            except ValueError:
                raise BadResponse("bad content-length") from None
            if self.need < 0:
                raise BadResponse("bad content-length")
            self.state = _LENGTH
            if self.need == 0:
                self.finish()
        else:
            self.state, self.keep_alive = _UNTIL_EOF, False  # delimited by close


# ---------------------------------------------------------------- one connection


class _Conn(asyncio.Protocol):
    """A connection to a shadow service, carrying one copy at a time."""

    def __init__(self, sender: Sender, pool: Pool) -> None:
        self.sender, self.pool = sender, pool
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.copy: Copy | None = None
        self.out: Outcome | None = None
        self.parser: _Parser | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.t0 = 0.0
        self.served = 0  # copies answered on this connection: a reused one may have been closed while idle
        self.received = False
        self.retried = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.pool.conns.add(self)

    def send(self, c: Copy, out: Outcome, t0: float, seconds: float, retried: bool = False) -> None:
        self.copy, self.out, self.t0, self.retried = c, out, t0, retried
        self.parser = _Parser(c.method, c.keep_body, c.hash_body, out)
        self.received = False
        self.timer = asyncio.get_running_loop().call_later(max(seconds, 0.0), self._timeout)
        assert self.transport is not None
        if c.body:
            self.transport.writelines((assemble_head(c), c.body))
        else:
            self.transport.write(assemble_head(c))

    def _release(self) -> tuple[Copy, Outcome]:
        c, out = self.copy, self.out
        assert c is not None and out is not None
        self.copy = self.out = self.parser = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return c, out

    def data_received(self, data: bytes) -> None:
        if self.copy is None or self.parser is None:
            self._abort()  # unsolicited bytes on an idle connection: it can no longer be trusted
            return
        self.received = True
        self.buf += data
        try:
            done = self.parser.feed(self.buf)
        except BadResponse as e:
            c, out = self._release()
            self._abort()
            self.sender._failed(self.pool, c, out, "bad_response", str(e), self.t0)
            return
        if done:
            keep = self.parser.keep_alive and not self.buf
            c, out = self._release()
            self.served += 1
            self.sender._answered(self.pool, self, c, out, self.t0, keep)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.conns.discard(self)
        if self in self.pool.idle:
            self.pool.idle.remove(self)
        if self.copy is None or self.parser is None:
            return
        parser = self.parser
        if parser.state == _UNTIL_EOF:  # a close-delimited body ends here
            parser.finish()
            c, out = self._release()
            self.sender._answered(self.pool, self, c, out, self.t0, False)
            return
        c, out = self._release()
        if self.served and not self.received and not self.retried:
            # A kept-alive connection the service closed while idle: one more try on a fresh connection.
            self.sender._reconnect(self.pool, c, out, self.t0)
            return
        if isinstance(exc, ssl.SSLError):
            self.sender._failed(self.pool, c, out, "tls_error", str(exc), self.t0)
        else:
            why = f"connection closed ({exc})" if exc else "connection closed before the answer was complete"
            self.sender._failed(self.pool, c, out, "reset", why, self.t0)

    def _timeout(self) -> None:
        self.timer = None
        if self.copy is None:
            return
        c, out = self._release()
        self._abort()
        self.sender._failed(self.pool, c, out, "timeout", f"no complete answer within {c.timeout:g}s", self.t0)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# ---------------------------------------------------------------- the sender


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
            self._drop(pool, c, pool.backoff_reason, "failed recently (backing off)")
            return
        if self._may_start(pool):
            self._start(pool, c, c.timeout)
        elif len(pool.backlog) < self.max_backlog:
            c.enqueued = now
            pool.backlog.append(c)
        else:
            self._drop(pool, c, "overload", "in-flight limit and backlog full")

    def gauges(self) -> list[tuple[str, str, dict[str, str], float]]:
        pools = self.pools.items()
        inflight = [
            ("shadow_inflight", "Copies in flight per shadow service.", {"service": str(a)}, float(p.inflight))
            for a, p in pools
        ]
        backlog = [
            ("shadow_backlog", "Copies waiting per shadow service.", {"service": str(a)}, float(len(p.backlog)))
            for a, p in pools
        ]
        return inflight + backlog

    def close(self) -> None:
        """Cancel copies in flight and close every connection (sync: safe from `done`). Copies that were in flight
        or waiting are counted as `shutdown`."""
        self.closed = True
        for t in list(self.tasks):
            t.cancel()
        for pool in self.pools.values():
            for c in pool.backlog:
                self.metrics.record_drop(c.mapping, "shutdown")
            pool.backlog.clear()
            for conn in list(pool.conns):
                if conn.copy is not None:
                    self.metrics.record_drop(conn.copy.mapping, "shutdown")
                    conn._release()
                conn._abort()
            pool.idle.clear()

    # ------------------------------------------------------------ internals

    def _may_start(self, pool: Pool) -> bool:
        """Room for one more copy in flight. Until a connect to the service has worked (at first, and after one
        failed), copies that would dial wait for the one attempt under way: under load a refused connect is only
        seen a loop iteration later, and every copy submitted meanwhile would otherwise dial the dead service."""
        return pool.inflight < self.max_inflight and (bool(pool.idle) or not (pool.suspect and pool.connecting))

    def _start(self, pool: Pool, c: Copy, seconds: float) -> None:
        pool.inflight += 1
        out = Outcome(timestamp_start=time.time())
        t0 = time.monotonic()
        while pool.idle:
            conn = pool.idle.pop()
            if not conn.lost and conn.transport is not None and not conn.transport.is_closing():
                conn.send(c, out, t0, seconds)
                return
        self._open(pool, c, out, t0, seconds, False)

    def _reconnect(self, pool: Pool, c: Copy, out: Outcome, t0: float) -> None:
        if self.closed:
            return
        self._open(pool, c, out, t0, c.timeout - (time.monotonic() - t0), True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        if not task.done():
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _open(self, pool: Pool, c: Copy, out: Outcome, t0: float, seconds: float, retried: bool) -> None:
        """Send a copy over a new connection. The attempt counts in `pool.connecting` from now (not from when its
        task first runs) until `_dial` ends, so copies submitted in between see it, whatever the task factory."""
        pool.connecting += 1
        self._spawn(self._connect(pool, c, out, t0, seconds, retried))

    async def _dial(self, pool: Pool) -> _Conn:
        """One connection attempt, counted in `pool.connecting` by `_open`."""
        a = pool.address
        loop = asyncio.get_running_loop()
        try:
            if a.scheme == "https":
                ctx = self.ssl_context or ssl.create_default_context()
                _, conn = await loop.create_connection(
                    lambda: _Conn(self, pool), a.host, a.port, ssl=ctx, server_hostname=a.host
                )
            else:
                _, conn = await loop.create_connection(lambda: _Conn(self, pool), a.host, a.port)
            return conn
        finally:
            pool.connecting -= 1

    async def _connect(self, pool: Pool, c: Copy, out: Outcome, t0: float, seconds: float, retried: bool) -> None:
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                conn = await self._dial(pool)
        except TimeoutError:
            self._failed(pool, c, out, "timeout", f"could not connect within {c.timeout:g}s", t0)
        except socket.gaierror as e:
            self._failed(pool, c, out, "dns_error", str(e), t0, DNS_BACKOFF)
        except ssl.SSLError as e:  # before OSError: SSLError is one
            self._failed(pool, c, out, "tls_error", str(e), t0)
        except OSError as e:
            self._failed(pool, c, out, "connect_error", e.strerror or str(e), t0, CONNECT_BACKOFF)
        except asyncio.CancelledError:
            if not self.closed:
                self._failed(pool, c, out, "shutdown", "cancelled", t0)
            else:
                self.metrics.record_drop(c.mapping, "shutdown")
            raise
        else:
            if self.closed:
                conn.close()
                return
            pool.suspect = False
            conn.send(c, out, t0, seconds - (time.monotonic() - t0), retried)
            self._drain(pool, time.monotonic())  # copies that waited for this attempt

    def _log(self, pool: Pool, reason: str, message: str) -> None:
        now = time.monotonic()
        if now - pool.last_log.get(reason, -LOG_INTERVAL) >= LOG_INTERVAL:
            pool.last_log[reason] = now
            logger.warning(
                "shadow %s: %s: %s (logged at most every %ds)", pool.address, reason, message, int(LOG_INTERVAL)
            )

    def _drop(self, pool: Pool, c: Copy, reason: str, msg: str) -> None:
        """A copy that was never attempted."""
        self.metrics.record_drop(c.mapping, reason)
        self._log(pool, reason, msg)
        if self.on_result is not None:
            self.on_result(c, Outcome(reason=reason, error=msg))

    def _failed(
        self, pool: Pool, c: Copy, out: Outcome, reason: str, msg: str, t0: float, backoff: float = 0.0
    ) -> None:
        """An attempted copy that got no (complete) answer."""
        if backoff:
            pool.backoff_until, pool.backoff_reason = time.monotonic() + backoff, reason
            pool.suspect = True
        out.reason, out.error, out.seconds = reason, msg, time.monotonic() - t0
        self.metrics.record_drop(c.mapping, reason)
        self.metrics.record_upstream(c.mapping, c.service, SHADOW, "error", out.seconds)
        self._log(pool, reason, msg)
        self._finished(pool, c, out)

    def _answered(self, pool: Pool, conn: _Conn, c: Copy, out: Outcome, t0: float, keep: bool) -> None:
        out.seconds = time.monotonic() - t0
        self.metrics.record_upstream(c.mapping, c.service, SHADOW, out.status or 0, out.seconds)
        if keep and not self.closed and len(pool.idle) < self.max_inflight and not conn.lost:
            pool.idle.append(conn)
        else:
            conn.close()
        self._finished(pool, c, out)

    def _finished(self, pool: Pool, c: Copy, out: Outcome) -> None:
        pool.inflight -= 1
        if self.on_result is not None:
            self.on_result(c, out)
        if self.closed:
            return
        self._drain(pool, time.monotonic())

    def _drain(self, pool: Pool, now: float) -> None:
        """Start waiting copies while there is room; drop them all while the service backs off."""
        if pool.backlog and pool.backoff_until > now:
            # The service just failed: waiting copies would only dial it again. Drop them under that reason.
            while pool.backlog:
                self._drop(pool, pool.backlog.popleft(), pool.backoff_reason, "failed recently (backing off)")
            return
        while pool.backlog and self._may_start(pool):
            nxt = pool.backlog.popleft()
            left = nxt.timeout - (now - nxt.enqueued)  # the wait counts against the copy's timeout
            if left <= 0:
                self._drop(pool, nxt, "overload", "waited in the backlog longer than its timeout")
                continue
            self._start(pool, nxt, left)
