"""Sends copies to shadow services: per-service keep-alive pools, in-flight limits, a bounded backlog,
timeouts, and one outcome per copy. Nothing here raises into the caller; every failure becomes a reason.

Why not mitmproxy's `replay.client`: its queue is unbounded and serial (or unlimited), it has no timeout,
replayed flows re-enter every addon's hooks, and it measured ~0.3x of plain mitmdump's throughput. This is
a small HTTP/1.1 client on mitmproxy's own event loop, written on asyncio's Protocol API rather than streams:
a response is parsed in `data_received` as it arrives (`reader.ResponseReader`, h11 under caps, so each answer
costs a bounded amount whatever the shadow sends), a copy on a kept-alive connection needs no task, no future
and no extra loop iteration, which is what makes 100 % shadowing cheap for production. Bytes held for copies'
bodies and kept answers are counted in one `MemoryBudget`, shared across services and with comparison.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from .addresses import Address
from .budget import MemoryBudget
from .h2sender import H2Conn
from .metrics import SHADOW, Metrics
from .reader import ReadError, ResponseReader

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
CAP_REASONS = frozenset({"interim_limit", "head_limit", "response_limit"})
CONNECT_BACKOFF = 0.25  # s: after a refused connect, copies are dropped at once rather than dialled again
CAP_BACKOFF_MAX = 4.0  # s: the longest a service whose answers keep breaking a cap is left alone
DNS_BACKOFF = 2.0
LOG_INTERVAL = 30.0  # s: at most one log line per service and reason in this interval
LOOP_BACKOFF = 2.0
RESPONSE_LIMIT = 64 * 1024  # body bytes read of an answer nobody keeps: status and timing are what count


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
    read_limit: int = 0  # bytes of the response body read at least (0: response_limit), kept or not
    hash_body: bool = False  # compute the whole response body's sha256 while reading (for comparison)
    context: object = None  # opaque, handed back with the outcome (e.g. the production flow's id)
    enqueued: float = 0.0
    http2: bool = False  # over HTTP/2 (the shadow Mapping's `grpc: true`), by h2sender
    trailers: tuple[tuple[bytes, bytes], ...] = ()  # request trailers (sent over HTTP/2 only)


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
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class Pool:
    address: Address
    service: str  # the Mapping service whose copies go to this address (gauge label)
    inflight: int = 0
    backlog: deque[Copy] = field(default_factory=deque)
    idle: list[_Conn] = field(default_factory=list)
    conns: set[_Conn] = field(default_factory=set)
    backoff_until: float = 0.0
    backoff_reason: str = "connect_error"
    connecting: int = 0  # connection attempts under way
    # No connect has succeeded yet, or the last one failed: one attempt at a time until one succeeds.
    suspect: bool = True
    capped: int = 0  # answers in a row stopped by a cap (interim, head or body size)
    last_log: dict[str, float] = field(default_factory=dict)
    h2: list[H2Conn] = field(default_factory=list)  # HTTP/2 connections, each carrying many copies


def client_context(insecure: bool, cafile: str | None, alpn: list[str] | None = None) -> ssl.SSLContext:
    """TLS to https shadows, verified as mitmproxy verifies its upstreams (`ssl_insecure`,
    `ssl_verify_upstream_trusted_ca`); `alpn`: the protocols offered (["h2"] for HTTP/2 copies)."""
    c = ssl.create_default_context(cafile=cafile or None)
    if insecure:
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
    if alpn:
        c.set_alpn_protocols(alpn)
    return c


def _transfer_codings(values: list[bytes]) -> list[bytes]:
    """The transfer-codings other than chunked, in order (RFC 9112 6.1: chunked is always the final one)."""
    codings = []
    for v in values:
        for t in v.split(b","):
            t = t.strip().lower()
            if t and t != b"chunked":
                codings.append(t)
    return codings


def _fields_and_codings(c: Copy) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    fields = [(b"Host", c.host.encode("utf-8", "surrogateescape"))]
    te: list[bytes] = []
    for k, v in c.fields:
        lk = k.lower()
        if lk in _SKIP:
            if lk == b"transfer-encoding":
                te.append(v)
        elif lk not in c.remove:
            fields.append((k, v))
    fields += c.add
    codings = _transfer_codings(te) if te else []
    if codings:
        # The body still carries these codings (gzip...), as production received it: the shadow must be told so,
        # and a request with a coding other than chunked must end with chunked (RFC 9112 6.1).
        fields.append((b"transfer-encoding", b", ".join([*codings, b"chunked"])))
    elif c.body or c.method in _BODY_METHODS:
        fields.append((b"content-length", b"%d" % len(c.body)))
    return fields, codings


def sent_fields(c: Copy) -> list[tuple[bytes, bytes]]:
    """The header fields of the copy, exactly as the sender writes them (Host first, then the rest)."""
    return _fields_and_codings(c)[0]


def assemble(c: Copy) -> list[bytes]:
    """The copy as the bytes to write: head, then the body (framed by chunked when it has other codings)."""
    fields, codings = _fields_and_codings(c)
    parts = [f"{c.method} {c.path} HTTP/1.1\r\n".encode("utf-8", "surrogateescape")]
    parts += [b"%s: %s\r\n" % kv for kv in fields]
    parts.append(b"\r\n")
    if codings:
        if c.body:
            parts += [b"%x\r\n" % len(c.body), c.body, b"\r\n"]
        parts.append(b"0\r\n\r\n")
    elif c.body:
        parts.append(c.body)
    return parts


def cap_backoff(capped: int) -> float:
    """Seconds a service is left alone after `capped` answers in a row stopped by a cap: none after the first,
    then 250 ms, doubling with each further one up to CAP_BACKOFF_MAX (a shadow that floods every answer is
    probed a few times a minute, not a few times a second); one good answer resets the count."""
    if capped < 2:
        return 0.0
    return min(CONNECT_BACKOFF * 2 ** min(capped - 2, 16), CAP_BACKOFF_MAX)


# ---------------------------------------------------------------- one connection


class _Conn(asyncio.Protocol):
    """A connection to a shadow service, carrying one copy at a time."""

    def __init__(self, sender: Sender, pool: Pool) -> None:
        self.sender, self.pool = sender, pool
        self.transport: asyncio.Transport | None = None
        self.reader = ResponseReader(sender.budget)
        self.copy: Copy | None = None
        self.out: Outcome | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.t0 = 0.0
        self.written = 0.0  # monotonic time the current copy's request was written
        self.served = 0  # copies answered on this connection: a reused one may have been closed while idle
        self.received = False
        self.retried = False
        self.lost = False
        self.looped = False  # connected to this proxy itself

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        is_self = self.sender.is_self
        if is_self is not None:
            peer = transport.get_extra_info("peername")
            if peer and is_self(peer[0], peer[1]):
                self.looped = True
                transport.abort()
                return
        self.pool.conns.add(self)

    def send(self, c: Copy, out: Outcome, t0: float, seconds: float, retried: bool = False) -> None:
        self.copy, self.out, self.t0, self.retried = c, out, t0, retried
        self.written = time.monotonic()  # the shadow's latency runs from here, as production's from its request's
        self.reader.start(c.method, c.keep_body, max(self.sender.response_limit, c.read_limit), c.hash_body)
        self.received = False
        self.timer = asyncio.get_running_loop().call_later(max(seconds, 0.0), self._timeout)
        assert self.transport is not None
        parts = assemble(c)
        if len(parts) == 1:
            self.transport.write(parts[0])  # writelines goes through sendmsg: dearer for one small buffer
        else:
            self.transport.writelines(parts)

    def _release(self) -> tuple[Copy, Outcome]:
        c, out = self.copy, self.out
        assert c is not None and out is not None
        self.copy = self.out = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return c, out

    def _fail(self, reason: str, msg: str, status: int | None = None, capped: bool = False) -> None:
        """Give up on the copy: close the connection, count it, free what its answer held. A service whose
        answers break a cap again and again (an endless stream, a 1xx flood) is left alone for a moment, as a
        refusing one is: each such answer costs a new connection and a buffer's worth of reading."""
        c, out = self._release()
        self._abort()
        pool = self.pool
        pool.capped = pool.capped + 1 if capped else 0
        self.sender._failed(
            pool, c, out, reason, msg, self.t0, cap_backoff(pool.capped), status=status, held=self.reader.kept_size
        )

    def _complete(self, keep: bool) -> None:
        c, out = self._release()
        r = self.reader
        out.status, out.headers, out.http_version = r.status, r.headers, r.http_version
        out.body, out.body_size, out.body_sha256 = r.body, r.size, r.sha256
        self.served += 1
        self.sender._answered(self.pool, self, c, out, self.t0, keep, r.kept_size)

    def data_received(self, data: bytes) -> None:
        if self.copy is None:
            self._abort()  # unsolicited bytes on an idle connection: it can no longer be trusted
            return
        self.received = True
        try:
            done = self.reader.feed(data)
        except ReadError as e:
            self._fail(e.reason, str(e), e.status, capped=e.reason in CAP_REASONS)
            return
        if done:
            self._complete(self.reader.reusable)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.conns.discard(self)
        if self in self.pool.idle:
            self.pool.idle.remove(self)
        if self.copy is None:
            return
        if self.reader.eof():  # a close-delimited body ends here
            self._complete(False)
            return
        if self.served and not self.received and not self.retried:
            # A kept-alive connection the service closed while idle: one more try on a fresh connection.
            c, out = self._release()
            self.sender._reconnect(self.pool, c, out, self.t0)
            return
        if isinstance(exc, ssl.SSLError):
            self._fail("tls_error", str(exc))
        else:
            why = f"connection closed ({exc})" if exc else "connection closed before the answer was complete"
            self._fail("reset", why)

    def _timeout(self) -> None:
        self.timer = None
        if self.copy is not None:
            self._fail("timeout", f"no complete answer within {self.copy.timeout:g}s")

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass(slots=True, eq=False)
class _Attempt:
    """A copy waiting for its connection to be made."""

    c: Copy
    out: Outcome
    t0: float
    over: bool = False  # its outcome was given (the sender closed meanwhile)


# ---------------------------------------------------------------- the sender


class Sender:
    """Copies to shadow services. `budget` bounds the bytes held for copies' bodies and kept answers, across
    services (shared with comparison); `response_limit` the body bytes read of an answer nobody keeps; `is_self`
    (ip, port) tells a connection to this proxy itself, which is dropped as `loop`."""

    def __init__(
        self,
        metrics: Metrics,
        max_inflight: int = 64,
        max_backlog: int = 256,
        ssl_context: ssl.SSLContext | None = None,
        on_result: Callable[[Copy, Outcome], None] | None = None,
        response_limit: int = RESPONSE_LIMIT,
        budget: MemoryBudget | None = None,
        is_self: Callable[[str, int], bool] | None = None,
        h2_ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.metrics = metrics
        self.max_inflight = max_inflight
        self.max_backlog = max_backlog
        self.ssl_context = ssl_context
        self.on_result = on_result
        self.response_limit = response_limit
        self.budget = budget if budget is not None else MemoryBudget(256 * 1024 * 1024)
        self.is_self = is_self
        self.h2_ssl_context = h2_ssl_context
        self.pools: dict[Address, Pool] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.attempts: set[_Attempt] = set()
        self.closed = False

    # ------------------------------------------------------------ entry point (sync, from a hook)

    def submit(self, c: Copy) -> None:
        """Hand a copy over; returns at once. Over the limits it is dropped and counted."""
        if self.closed:
            return
        pool = self.pools.get(c.address)
        if pool is None:
            pool = self.pools[c.address] = Pool(c.address, c.service)
        now = time.monotonic()
        if pool.backoff_until > now:
            # Counted under the failure that started the back-off (refused, or a name that does not resolve).
            self._drop(pool, c, pool.backoff_reason, "failed recently (backing off)")
            return
        if c.body and not self.budget.take(len(c.body)):
            self._drop(pool, c, "overload", "memory limit reached (shadow_memory_limit)")
            return
        if self._may_start(pool):
            self._start(pool, c, c.timeout)
        elif len(pool.backlog) < self.max_backlog:
            c.enqueued = now
            pool.backlog.append(c)
        else:
            self._drop(pool, c, "overload", "in-flight limit and backlog full", held=True)

    def gauges(self) -> list[tuple[str, str, dict[str, str], float]]:
        inflight: dict[str, int] = {}
        backlog: dict[str, int] = {}
        for p in self.pools.values():
            inflight[p.service] = inflight.get(p.service, 0) + p.inflight
            backlog[p.service] = backlog.get(p.service, 0) + len(p.backlog)
        rows = [
            ("shadow_inflight", "Copies in flight per shadow service.", {"service": s}, float(n))
            for s, n in inflight.items()
        ]
        rows += [
            ("shadow_backlog", "Copies waiting per shadow service.", {"service": s}, float(n))
            for s, n in backlog.items()
        ]
        rows.append(
            (
                "shadow_memory_bytes",
                "Bytes held for copies' bodies and kept shadow answers (shadow_memory_limit).",
                {},
                float(self.budget.held),
            )
        )
        return rows

    def close(self) -> None:
        """Close every connection (sync: safe from `done`). Every copy in flight, connecting or waiting gets its
        outcome now, counted as `cancelled`, so nothing waits for it any more."""
        self.closed = True
        for t in list(self.tasks):
            t.cancel()
        for a in list(self.attempts):
            a.over = True
            self._cancelled(self.pools[a.c.address], a.c, a.out, active=True)
        self.attempts.clear()
        for pool in self.pools.values():
            while pool.backlog:
                self._cancelled(pool, pool.backlog.popleft(), Outcome(), active=False)
            for conn in list(pool.conns):
                if conn.copy is not None:
                    c, out = conn._release()
                    self.budget.release(conn.reader.kept_size)
                    self._cancelled(pool, c, out, active=True)
                conn._abort()
            pool.idle.clear()
            for h2conn in list(pool.h2):
                for st in h2conn.cancel_all():
                    self.budget.release(st.answer.kept_size)
                    self._cancelled(pool, st.c, st.out, active=True)
            pool.h2.clear()

    # ------------------------------------------------------------ internals

    def _cancelled(self, pool: Pool, c: Copy, out: Outcome, active: bool) -> None:
        out.reason, out.error = "cancelled", "the sender was closed or rebuilt"
        if active:
            pool.inflight -= 1
        self.budget.release(len(c.body))
        self.metrics.record_drop(c.mapping, "cancelled")
        if self.on_result is not None:
            self.on_result(c, out)

    def _may_start(self, pool: Pool) -> bool:
        """Room for one more copy in flight. Until a connect to the service has worked (at first, and after one
        failed), copies that would dial wait for the one attempt under way: under load a refused connect is only
        seen a loop iteration later, and every copy submitted meanwhile would otherwise dial the dead service."""
        return pool.inflight < self.max_inflight and (bool(pool.idle) or not (pool.suspect and pool.connecting))

    def _start(self, pool: Pool, c: Copy, seconds: float) -> None:
        pool.inflight += 1
        out = Outcome(timestamp_start=time.time())
        t0 = time.monotonic()
        if c.http2:
            for h2conn in pool.h2:
                if h2conn.has_room():
                    h2conn.send(c, out, t0, seconds)
                    return
            self._open(pool, c, out, t0, seconds, False)
            return
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
        a = _Attempt(c, out, t0)
        self.attempts.add(a)
        self._spawn(self._connect(pool, a, seconds, retried))

    async def _dial(self, pool: Pool, http2: bool = False) -> _Conn | H2Conn:
        """One connection attempt, counted in `pool.connecting` by `_open`."""
        a = pool.address
        loop = asyncio.get_running_loop()
        proto: type[_Conn] | type[H2Conn] = H2Conn if http2 else _Conn
        try:
            if a.scheme == "https":
                if http2:
                    ctx = self.h2_ssl_context or client_context(False, None, ["h2"])
                else:
                    ctx = self.ssl_context or ssl.create_default_context()
                _, conn = await loop.create_connection(
                    lambda: proto(self, pool), a.host, a.port, ssl=ctx, server_hostname=a.host
                )
            else:
                _, conn = await loop.create_connection(lambda: proto(self, pool), a.host, a.port)
            return conn
        finally:
            pool.connecting -= 1

    async def _connect(self, pool: Pool, a: _Attempt, seconds: float, retried: bool) -> None:
        c, out, t0 = a.c, a.out, a.t0
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                conn = await self._dial(pool, c.http2)
        except TimeoutError:
            self._attempt_failed(pool, a, "timeout", f"could not connect within {c.timeout:g}s")
        except socket.gaierror as e:
            self._attempt_failed(pool, a, "dns_error", str(e), DNS_BACKOFF)
        except ssl.SSLError as e:  # before OSError: SSLError is one
            self._attempt_failed(pool, a, "tls_error", str(e))
        except OSError as e:
            self._attempt_failed(pool, a, "connect_error", e.strerror or str(e), CONNECT_BACKOFF)
        except asyncio.CancelledError:
            if not a.over:  # cancelled from outside the sender
                self._attempt_failed(pool, a, "cancelled", "cancelled")
            raise
        else:
            if a.over:  # the sender was closed meanwhile: the copy already has its outcome
                conn.close()
                return
            self.attempts.discard(a)
            if conn.looped:
                # This proxy's own address: the copy, and those waiting for this connection, are dropped as loop.
                self._failed(pool, c, out, "loop", "the shadow service is this proxy", t0, LOOP_BACKOFF, upstream=False)
                return
            pool.suspect = False
            conn.send(c, out, t0, seconds - (time.monotonic() - t0), retried)
            self._drain(pool, time.monotonic())  # copies that waited for this attempt

    def _attempt_failed(self, pool: Pool, a: _Attempt, reason: str, msg: str, backoff: float = 0.0) -> None:
        if a.over:
            return
        self.attempts.discard(a)
        self._failed(pool, a.c, a.out, reason, msg, a.t0, backoff)

    def _log(self, pool: Pool, reason: str, message: str) -> None:
        now = time.monotonic()
        if now - pool.last_log.get(reason, -LOG_INTERVAL) >= LOG_INTERVAL:
            pool.last_log[reason] = now
            logger.warning(
                "shadow %s: %s: %s (logged at most every %ds)", pool.address, reason, message, int(LOG_INTERVAL)
            )

    def _drop(self, pool: Pool, c: Copy, reason: str, msg: str, held: bool = False) -> None:
        """A copy that was never attempted; `held`: its body was counted in the budget."""
        if held:
            self.budget.release(len(c.body))
        self.metrics.record_drop(c.mapping, reason)
        self._log(pool, reason, msg)
        if self.on_result is not None:
            self.on_result(c, Outcome(reason=reason, error=msg))

    def _failed(
        self,
        pool: Pool,
        c: Copy,
        out: Outcome,
        reason: str,
        msg: str,
        t0: float,
        backoff: float = 0.0,
        status: int | None = None,
        held: int = 0,
        upstream: bool = True,
    ) -> None:
        """An attempted copy that got no (complete) answer. `status`: the answer's status, if it had arrived
        (a copy stopped by a cap); it goes into the request metrics as any answer does."""
        if backoff:
            pool.backoff_until, pool.backoff_reason = time.monotonic() + backoff, reason
            pool.suspect = True
        out.reason, out.error, out.seconds = reason, msg, time.monotonic() - t0
        if status is not None:
            out.error = f"status {status}, then {msg}"
        self.metrics.record_drop(c.mapping, reason)
        if upstream:
            self.metrics.record_upstream(c.mapping, c.service, SHADOW, status or "error", out.seconds)
        self._log(pool, reason, msg)
        self._finished(pool, c, out, held)

    def _read_failed(self, pool: Pool, c: Copy, out: Outcome, e: ReadError, t0: float, held: int) -> None:
        """An answer stopped by `e` (a cap, a reset stream, a timeout). A service whose answers break a cap again
        and again is left alone for a moment, as a refusing one is."""
        pool.capped = pool.capped + 1 if e.reason in CAP_REASONS else 0
        self._failed(pool, c, out, e.reason, str(e), t0, cap_backoff(pool.capped), status=e.status, held=held)

    def _answered(
        self, pool: Pool, conn: _Conn | None, c: Copy, out: Outcome, t0: float, keep: bool, held: int
    ) -> None:
        """`conn`: the HTTP/1 connection to keep or close; None for an HTTP/2 stream (its connection goes on)."""
        # Request written to last byte of the answer: measured as production's is (production.latency).
        out.seconds = time.monotonic() - ((conn.written if conn is not None else 0.0) or t0)
        pool.capped = 0
        self.metrics.record_upstream(c.mapping, c.service, SHADOW, out.status or 0, out.seconds)
        if conn is None:
            pass
        elif keep and not self.closed and len(pool.idle) < self.max_inflight and not conn.lost:
            pool.idle.append(conn)
        else:
            conn.close()
        self._finished(pool, c, out, held)

    def _finished(self, pool: Pool, c: Copy, out: Outcome, held: int = 0) -> None:
        pool.inflight -= 1
        if self.on_result is not None:
            self.on_result(c, out)
        # The kept answer was the receiver's to copy or keep: from here it holds it under its own account.
        self.budget.release(len(c.body) + held)
        if self.closed:
            return
        self._drain(pool, time.monotonic())

    def _drain(self, pool: Pool, now: float) -> None:
        """Start waiting copies while there is room; drop them all while the service backs off."""
        if pool.backlog and pool.backoff_until > now:
            # The service just failed: waiting copies would only dial it again. Drop them under that reason.
            while pool.backlog:
                c = pool.backlog.popleft()
                self._drop(pool, c, pool.backoff_reason, "failed recently (backing off)", held=True)
            return
        while pool.backlog and self._may_start(pool):
            nxt = pool.backlog.popleft()
            left = nxt.timeout - (now - nxt.enqueued)  # the wait counts against the copy's timeout
            if left <= 0:
                self._drop(pool, nxt, "overload", "waited in the backlog longer than its timeout", held=True)
                continue
            self._start(pool, nxt, left)
