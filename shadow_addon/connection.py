"""One HTTP/1.1 connection to a shadow service, carrying one copy at a time, with its states explicit: the copy
written, its answer read as it arrives (`reader.ResponseReader`, under caps), and what the connection's end
means for the copy in flight. It reports to its owner (the sender's pool scheduling) through `Owner`."""

from __future__ import annotations

import asyncio
import enum
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .budget import MemoryBudget
from .copyrequest import Copy, Outcome, assemble
from .metrics import Metrics
from .reader import MAX_HEAD, ReadError, ResponseReader

if TYPE_CHECKING:
    from .sender import Pool

_JOIN_LIMIT = 64 * 1024  # body bytes up to which a copy is joined into one buffer before it is written
# Answers are read into one buffer shared by every connection (asyncio's read size): each read is handed to the
# reader and consumed before the next one, so no connection needs its own, and no read allocates a new bytes
# object of this size (reading a 1 MB answer that is not kept then copies nothing).
_READ_SIZE = 256 * 1024
_READ_BUFFER = memoryview(bytearray(_READ_SIZE))
# Linux drops a TCP socket's bytes unseen with recv(MSG_TRUNC) (tcp(7)): the body of an answer nobody keeps or
# hashes leaves the kernel without being copied here (what a 1 MB answer adds to the loop's CPU per copy falls by
# half or more: docs/benchmark.md, "What a pair of large answers costs the loop"). Elsewhere the
# flag means something else: every byte is read.
_DISCARD = getattr(socket, "MSG_TRUNC", 0) if sys.platform == "linux" else 0
_HEAD_BUFFER = _READ_BUFFER[:MAX_HEAD]  # an answer's first read, when its body is dropped unseen: a head at most
_MAX_DISCARDS = 64  # drops per readable event (each takes what has arrived, up to _READ_SIZE)
CAP_REASONS = frozenset({"interim_limit", "head_limit", "response_limit"})


@dataclass(slots=True, eq=False)
class Flight:
    """A copy under way: its outcome-to-be, when it started (monotonic), whether it is a second try."""

    c: Copy
    out: Outcome
    t0: float
    retried: bool = False


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an attempted copy got no (complete) answer. `status`: the answer's, if its head had arrived (a copy
    stopped by a cap); `backoff`: seconds the service is then left alone; `upstream`: counted in the request
    metrics as an answer of the service (not so a copy that never left this proxy)."""

    reason: str
    message: str
    status: int | None = None
    backoff: float = 0.0
    upstream: bool = True


class Owner(Protocol):
    """What a connection needs from the sender that holds it."""

    budget: MemoryBudget
    metrics: Metrics
    response_limit: int
    is_self: Callable[[str, int], bool] | None
    clock: Callable[[], float]
    # Asked at a kept answer's head whether it is still wanted as asked (`reader.AtHead`, with its copy).
    at_head: Callable[[Copy, int, int | None], tuple[int, bool] | None] | None

    def answered(self, pool: Pool, conn: H1Conn | None, f: Flight, keep: bool, held: int) -> None: ...

    def failed(self, pool: Pool, f: Flight, why: Failure, held: int = 0) -> None: ...

    def read_failed(self, pool: Pool, f: Flight, e: ReadError, held: int) -> None: ...

    def reconnect(self, pool: Pool, f: Flight) -> None: ...


class State(enum.Enum):
    CONNECTING = "connecting"  # dialled, not yet connected
    IDLE = "idle"  # connected, no copy: in the pool's idle list or about to be
    SENT = "sent"  # a copy written, nothing of its answer read yet
    RECEIVING = "receiving"  # part of the answer read
    LOOPED = "looped"  # connected to this proxy itself: aborted at once
    CLOSED = "closed"  # the transport is gone


_BUSY = frozenset({State.SENT, State.RECEIVING})


def looped_back(transport: asyncio.Transport, is_self: Callable[[str, int], bool] | None) -> bool:
    """Whether a new connection reached this proxy itself (a shadow address that resolves to the listener); it is
    then aborted before a byte is written."""
    if is_self is None:
        return False
    peer = transport.get_extra_info("peername")
    if peer and is_self(peer[0], peer[1]):
        transport.abort()
        return True
    return False


def _plain_tcp(transport: asyncio.Transport) -> socket.socket | None:
    """The socket of a plain (not TLS) TCP transport of asyncio's selector loop, when bytes can be dropped unseen
    on it (Linux); None otherwise (another loop, TLS: then every byte is read)."""
    if not _DISCARD or transport.get_extra_info("sslcontext") is not None:
        return None
    sock = getattr(transport.get_extra_info("socket"), "_sock", None)  # asyncio's TransportSocket wraps it
    if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_STREAM:
        return None
    return sock if sock.family in (socket.AF_INET, socket.AF_INET6) else None


class H1Conn(asyncio.BufferedProtocol):
    """A connection to a shadow service, carrying one copy at a time."""

    def __init__(self, owner: Owner, pool: Pool) -> None:
        self.owner, self.pool = owner, pool
        self.transport: asyncio.Transport | None = None
        self.reader = ResponseReader(owner.budget)
        self.state = State.CONNECTING
        self.flight: Flight | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.written = 0.0  # monotonic time the current copy's request was written
        self.served = 0  # copies answered on this connection: a reused one may have been closed while idle
        self.raw: socket.socket | None = None  # the plain TCP socket under the transport, for `_discard`

    @property
    def looped(self) -> bool:
        return self.state is State.LOOPED

    def usable(self) -> bool:
        """Idle and open: it may carry the next copy."""
        return self.state is State.IDLE and self.transport is not None and not self.transport.is_closing()

    # ------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if looped_back(transport, self.owner.is_self):
            self.state = State.LOOPED
            return
        self.state = State.IDLE
        self.raw = _plain_tcp(transport)
        self.pool.conns.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.raw is not None:
            if self.state is State.RECEIVING:
                self._discard(self.raw)
            elif self.state is State.SENT and self.reader.unseen():
                return _HEAD_BUFFER  # the head's read: the body after it is to be dropped unseen
        return _READ_BUFFER

    def _discard(self, raw: socket.socket) -> None:
        """Before asyncio's read: drop in the kernel what has arrived of a body the reader needs neither to keep
        nor to hash (`ResponseReader.discardable`); what is left, at least the body's last byte, is then read as
        usual, so the answer completes in `buffer_updated` as any other."""
        r = self.reader
        for _ in range(_MAX_DISCARDS):
            want = min(r.discardable(), _READ_SIZE)
            if want <= 0:
                return
            try:
                got = raw.recv_into(_READ_BUFFER, want, _DISCARD)
            except OSError:  # nothing more now (EAGAIN), or an error that asyncio's own read meets and reports
                return
            if got <= 0 or got > want:  # the end of the stream: asyncio's read sees it (TCP never drops more)
                return
            r.discarded(got)
            if got < want:
                return  # all that had arrived

    def buffer_updated(self, nbytes: int) -> None:
        data = _READ_BUFFER[:nbytes]  # valid until this returns: the reader copies what it keeps
        if self.state not in _BUSY:
            self._abort()  # unsolicited bytes on an idle connection: it can no longer be trusted
            return
        self.state = State.RECEIVING
        try:
            done = self.reader.feed(data)
        except ReadError as e:
            self._fail_read(e)
            return
        if done:
            self._complete(self.reader.reusable)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        was = self.state
        if was is not State.LOOPED:
            self.state = State.CLOSED
        pool = self.pool
        pool.conns.discard(self)
        if self in pool.idle:
            pool.idle.remove(self)
        if was not in _BUSY:
            return
        if self.reader.eof():  # a close-delimited body ends here
            self._complete(False)
            return
        f = self.flight
        assert f is not None
        if self.served and was is State.SENT and not f.retried:
            # A kept-alive connection the service closed while idle: one more try on a fresh connection.
            self._release()
            self.owner.reconnect(pool, f)
            return
        if isinstance(exc, ssl.SSLError):
            self._fail(Failure("tls_error", str(exc)))
        else:
            why = f"connection closed ({exc})" if exc else "connection closed before the answer was complete"
            self._fail(Failure("reset", why))

    # ------------------------------------------------------------ one copy

    def send(self, f: Flight, seconds: float) -> None:
        c = f.c
        self.flight, self.state = f, State.SENT
        self.written = self.owner.clock()  # the shadow's latency runs from here, as production's from its request's
        ask = self.owner.at_head
        at_head = None if ask is None or not c.keep_body else (lambda status, length: ask(c, status, length))
        self.reader.start(c.method, c.keep_body, max(self.owner.response_limit, c.read_limit), c.hash_body, at_head)
        self.timer = asyncio.get_running_loop().call_later(max(seconds, 0.0), self._timeout)
        assert self.transport is not None
        parts = assemble(c)
        if len(c.body) <= _JOIN_LIMIT:
            # One buffer: write() sends it at once; writelines goes through sendmsg and the selector, dearer.
            self.transport.write(b"".join(parts))
        else:
            self.transport.writelines(parts)

    def release(self) -> Flight | None:
        """Take the copy in flight off this connection (the sender is closing); None when idle."""
        return self._release() if self.state in _BUSY else None

    def _release(self) -> Flight:
        f = self.flight
        assert f is not None
        self.flight = None
        if self.state in _BUSY:
            self.state = State.IDLE
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return f

    def _fail(self, why: Failure) -> None:
        """Give up on the copy: close the connection, count it, free what its answer held. Not a cap: the
        count of capped answers in a row starts again."""
        f = self._release()
        self._abort()
        self.pool.capped = 0
        self.owner.failed(self.pool, f, why, self.reader.kept_size)

    def _fail_read(self, e: ReadError) -> None:
        f = self._release()
        self._abort()
        self.owner.read_failed(self.pool, f, e, self.reader.kept_size)

    def _complete(self, keep: bool) -> None:
        f = self._release()
        r = self.reader
        out = f.out
        out.status, out.headers, out.http_version = r.status, r.headers, r.http_version
        out.body, out.body_size, out.body_sha256 = r.body, r.size, r.sha256
        self.served += 1
        self.owner.answered(self.pool, self, f, keep, r.kept_size)

    def _timeout(self) -> None:
        self.timer = None
        if self.state in _BUSY and self.flight is not None:
            self._fail(Failure("timeout", f"no complete answer within {self.flight.c.timeout:g}s"))

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
