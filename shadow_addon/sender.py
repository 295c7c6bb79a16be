"""Sends copies to shadow services: per-service keep-alive pools, in-flight limits, a bounded backlog,
back-off, and one outcome per copy (the pool and its scheduling; a copy's bytes are `copyrequest`'s, one
connection's states `connection`'s, HTTP/2 `h2sender`'s). Nothing here raises into the caller; every failure
becomes a reason.

Why not mitmproxy's `replay.client`: its queue is unbounded and serial (or unlimited), it has no timeout,
replayed flows re-enter every addon's hooks, and it measured ~0.3x of plain mitmdump's throughput. This is
a small HTTP/1.1 client on mitmproxy's own event loop, written on asyncio's Protocol API rather than streams:
a response is parsed in `buffer_updated` as it arrives (`reader.ResponseReader`, h11 under caps, so each answer
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
from .connection import CAP_REASONS, Failure, Flight, H1Conn
from .copyrequest import Copy, Outcome, assemble, sent_fields
from .h2sender import H2Conn
from .metrics import SHADOW, Metrics, Occupancy
from .reader import ReadError

__all__ = [
    "CAP_BACKOFF_MAX",
    "CONNECT_BACKOFF",
    "RESPONSE_LIMIT",
    "Copy",
    "Occupancy",
    "Outcome",
    "Pool",
    "Sender",
    "assemble",
    "cap_backoff",
    "client_context",
    "sent_fields",
]

logger = logging.getLogger(__name__)

CONNECT_BACKOFF = 0.25  # s: after a refused connect, copies are dropped at once rather than dialled again
CAP_BACKOFF_MAX = 4.0  # s: the longest a service whose answers keep breaking a cap is left alone
DNS_BACKOFF = 2.0
LOG_INTERVAL = 30.0  # s: at most one log line per service and reason in this interval
LOOP_BACKOFF = 2.0
RESPONSE_LIMIT = 64 * 1024  # body bytes read of an answer nobody keeps: status and timing are what count


@dataclass(slots=True)
class Pool:
    address: Address
    service: str  # the Mapping service whose copies go to this address (gauge label)
    inflight: int = 0
    backlog: deque[Copy] = field(default_factory=deque)
    idle: list[H1Conn] = field(default_factory=list)
    conns: set[H1Conn] = field(default_factory=set)
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


def cap_backoff(capped: int) -> float:
    """Seconds a service is left alone after `capped` answers in a row stopped by a cap: none after the first,
    then 250 ms, doubling with each further one up to CAP_BACKOFF_MAX (a shadow that floods every answer is
    probed a few times a minute, not a few times a second); one good answer resets the count."""
    if capped < 2:
        return 0.0
    return min(CONNECT_BACKOFF * 2 ** min(capped - 2, 16), CAP_BACKOFF_MAX)


@dataclass(slots=True, eq=False)
class _Attempt:
    """A copy waiting for its connection to be made."""

    f: Flight
    over: bool = False  # its outcome was given (the sender closed meanwhile)


# ---------------------------------------------------------------- the sender


class Sender:
    """Copies to shadow services. `budget` bounds the bytes held for copies' bodies and kept answers, across
    services (shared with comparison); `response_limit` the body bytes read of an answer nobody keeps; `is_self`
    (ip, port) tells a connection to this proxy itself, which is dropped as `loop`; `clock`: monotonic seconds,
    for back-off and the shadow's latency (a test may move it on); `at_head` (copy, status, declared length), asked
    when the head of an answer to be kept has arrived: None to read it as asked, else the (keep, hash) to read its
    body with (an answer whose comparison was given up meanwhile is then drained, neither kept nor hashed)."""

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
        clock: Callable[[], float] = time.monotonic,
        at_head: Callable[[Copy, int, int | None], tuple[int, bool] | None] | None = None,
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
        self.clock = clock
        self.at_head = at_head
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
        now = self.clock()
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

    def occupancy(self) -> Occupancy:
        inflight: dict[str, int] = {}
        backlog: dict[str, int] = {}
        for p in self.pools.values():
            inflight[p.service] = inflight.get(p.service, 0) + p.inflight
            backlog[p.service] = backlog.get(p.service, 0) + len(p.backlog)
        return Occupancy(inflight, backlog, self.budget.held)

    def close(self) -> None:
        """Close every connection (sync: safe from `done`). Every copy in flight, connecting or waiting gets its
        outcome now, counted as `cancelled`, so nothing waits for it any more."""
        self.closed = True
        for t in list(self.tasks):
            t.cancel()
        for a in list(self.attempts):
            a.over = True
            self._cancelled(self.pools[a.f.c.address], a.f.c, a.f.out, active=True)
        self.attempts.clear()
        for pool in self.pools.values():
            while pool.backlog:
                self._cancelled(pool, pool.backlog.popleft(), Outcome(), active=False)
            for conn in list(pool.conns):
                f = conn.release()
                if f is not None:
                    self.budget.release(conn.reader.kept_size)
                    self._cancelled(pool, f.c, f.out, active=True)
                conn._abort()
            pool.idle.clear()
            for h2conn in list(pool.h2):
                for st in h2conn.cancel_all():
                    self.budget.release(st.answer.kept_size)
                    self._cancelled(pool, st.c, st.out, active=True)
            pool.h2.clear()

    # ------------------------------------------------------------ what connections report (connection.Owner)

    def answered(self, pool: Pool, conn: H1Conn | None, f: Flight, keep: bool, held: int) -> None:
        """`conn`: the HTTP/1 connection to keep or close; None for an HTTP/2 stream (its connection goes on)."""
        c, out = f.c, f.out
        # Request written to last byte of the answer: measured as production's is (production.latency).
        out.seconds = self.clock() - ((conn.written if conn is not None else 0.0) or f.t0)
        pool.capped = 0
        self.metrics.record_upstream(c.mapping, c.service, SHADOW, out.status or 0, out.seconds)
        if conn is None:
            pass
        elif keep and not self.closed and len(pool.idle) < self.max_inflight and conn.usable():
            pool.idle.append(conn)
        else:
            conn.close()
        self._finished(pool, c, out, held)

    def failed(self, pool: Pool, f: Flight, why: Failure, held: int = 0) -> None:
        """An attempted copy that got no (complete) answer; `held`: bytes of its answer in the budget."""
        c, out = f.c, f.out
        now = self.clock()
        if why.backoff:
            pool.backoff_until, pool.backoff_reason = now + why.backoff, why.reason
            pool.suspect = True
        out.reason, out.error, out.seconds = why.reason, why.message, now - f.t0
        if why.status is not None:
            out.error = f"status {why.status}, then {why.message}"
        self.metrics.record_drop(c.mapping, why.reason)
        if why.upstream:
            self.metrics.record_upstream(c.mapping, c.service, SHADOW, why.status or "error", out.seconds)
        self._log(pool, why.reason, why.message)
        self._finished(pool, c, out, held)

    def read_failed(self, pool: Pool, f: Flight, e: ReadError, held: int) -> None:
        """An answer stopped by `e` (a cap, a reset stream, a timeout). A service whose answers break a cap again
        and again (an endless stream, a 1xx flood) is left alone for a moment, as a refusing one is: each such
        answer costs a new connection and a buffer's worth of reading."""
        pool.capped = pool.capped + 1 if e.reason in CAP_REASONS else 0
        self.failed(pool, f, Failure(e.reason, str(e), e.status, cap_backoff(pool.capped)), held)

    def reconnect(self, pool: Pool, f: Flight) -> None:
        """A copy whose kept-alive connection the service had closed: once more, on a fresh connection."""
        if self.closed:
            return
        self._open(pool, Flight(f.c, f.out, f.t0, True), f.c.timeout - (self.clock() - f.t0))

    # ------------------------------------------------------------ scheduling

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
        f = Flight(c, Outcome(timestamp_start=time.time()), self.clock())
        if c.http2:
            for h2conn in pool.h2:
                if h2conn.has_room():
                    h2conn.send(f, seconds)
                    return
            self._open(pool, f, seconds)
            return
        while pool.idle:
            conn = pool.idle.pop()
            if conn.usable():
                conn.send(f, seconds)
                return
        self._open(pool, f, seconds)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        if not task.done():
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _open(self, pool: Pool, f: Flight, seconds: float) -> None:
        """Send a copy over a new connection. The attempt counts in `pool.connecting` from now (not from when its
        task first runs) until `_dial` ends, so copies submitted in between see it, whatever the task factory."""
        pool.connecting += 1
        a = _Attempt(f)
        self.attempts.add(a)
        self._spawn(self._connect(pool, a, seconds))

    async def _dial(self, pool: Pool, http2: bool = False) -> H1Conn | H2Conn:
        """One connection attempt, counted in `pool.connecting` by `_open`."""
        a = pool.address
        loop = asyncio.get_running_loop()
        proto: type[H1Conn] | type[H2Conn] = H2Conn if http2 else H1Conn
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

    async def _connect(self, pool: Pool, a: _Attempt, seconds: float) -> None:
        f = a.f
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                conn = await self._dial(pool, f.c.http2)
        except TimeoutError:
            self._attempt_failed(pool, a, Failure("timeout", f"could not connect within {f.c.timeout:g}s"))
        except socket.gaierror as e:
            self._attempt_failed(pool, a, Failure("dns_error", str(e), backoff=DNS_BACKOFF))
        except ssl.SSLError as e:  # before OSError: SSLError is one
            self._attempt_failed(pool, a, Failure("tls_error", str(e)))
        except OSError as e:
            self._attempt_failed(pool, a, Failure("connect_error", e.strerror or str(e), backoff=CONNECT_BACKOFF))
        except asyncio.CancelledError:
            if not a.over:  # cancelled from outside the sender
                self._attempt_failed(pool, a, Failure("cancelled", "cancelled"))
            raise
        else:
            if a.over:  # the sender was closed meanwhile: the copy already has its outcome
                conn.close()
                return
            self.attempts.discard(a)
            if conn.looped:
                # This proxy's own address: the copy, and those waiting for this connection, are dropped as loop.
                self.failed(
                    pool, f, Failure("loop", "the shadow service is this proxy", backoff=LOOP_BACKOFF, upstream=False)
                )
                return
            pool.suspect = False
            now = self.clock()
            conn.send(f, seconds - (now - f.t0))
            self._drain(pool, now)  # copies that waited for this attempt

    def _attempt_failed(self, pool: Pool, a: _Attempt, why: Failure) -> None:
        if a.over:
            return
        self.attempts.discard(a)
        self.failed(pool, a.f, why)

    def _log(self, pool: Pool, reason: str, message: str) -> None:
        now = self.clock()
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

    def _finished(self, pool: Pool, c: Copy, out: Outcome, held: int = 0) -> None:
        pool.inflight -= 1
        if self.on_result is not None:
            self.on_result(c, out)
        # The kept answer was the receiver's to copy or keep: from here it holds it under its own account.
        self.budget.release(len(c.body) + held)
        if self.closed:
            return
        self._drain(pool, self.clock())

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
