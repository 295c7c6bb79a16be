"""Copies over HTTP/2, for shadow Mappings with `grpc: true` (Envoy mirrors to an http2 cluster over HTTP/2):
cleartext with prior knowledge, or TLS with ALPN h2; many copies multiplexed on one connection.

`H2Conn` is the asyncio shell around the protocol without I/O (`h2session.Session`): it feeds bytes to the
session, writes what the session says, runs each copy's timer, and hands outcomes to the `Sender`, whose pools,
in-flight limits, back-off, loop guard and outcome accounting are shared with HTTP/1 copies.

Writes are few: the copies submitted in one loop iteration share one write, and what receiving answers gives to
send (PING and SETTINGS acknowledgements, window updates) waits up to ACK_DELAY for the next copy's write.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

import h2.exceptions

from . import grpcwire
from .connection import Failure, Flight, looped_back
from .h2answer import Answer
from .h2fields import request_headers
from .h2session import Done, Failed, Lost, Session
from .metrics import SHADOW
from .reader import ReadError

if TYPE_CHECKING:
    from .connection import Owner
    from .copyrequest import Copy, Outcome
    from .sender import Pool

ACK_DELAY = 0.005  # s that acknowledgements may wait to share the next copy's write


# ---------------------------------------------------------------- the connection


@dataclass(slots=True, eq=False)
class _Stream:
    c: Copy
    out: Outcome
    t0: float
    retried: bool
    answer: Answer
    timer: asyncio.TimerHandle | None = None

    def flight(self) -> Flight:
        return Flight(self.c, self.out, self.t0, self.retried)


class H2Conn(asyncio.Protocol):
    """A connection to a shadow service carrying many copies at once, one stream each."""

    def __init__(self, sender: Owner, pool: Pool) -> None:
        self.sender, self.pool = sender, pool
        self.transport: asyncio.Transport | None = None
        self.session = Session(sender.budget)
        self.streams: dict[int, _Stream] = {}
        self.served = 0
        self.lost = False
        self.looped = False
        self.alpn_refused = False
        self.flush_due = False  # a write is scheduled for this loop iteration
        self.ack_timer: asyncio.TimerHandle | None = None  # a write is scheduled within ACK_DELAY

    # ------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if looped_back(transport, self.sender.is_self):
            self.looped = True
            return
        tls = transport.get_extra_info("ssl_object")
        if tls is not None and tls.selected_alpn_protocol() != "h2":
            self.alpn_refused = True
            return
        self.pool.h2.append(self)
        self._flush()

    def data_received(self, data: bytes) -> None:
        for r in self.session.receive(data):
            if isinstance(r, Done):
                self._done(r.stream_id, r.answer)
            elif isinstance(r, Failed):
                self._failed(r.stream_id, r.error)
            else:
                self._lost(r)
        if self.session.pumped:
            self._flush()  # request body the service's window update let out
        elif not self.flush_due and self.ack_timer is None and not self.lost:
            self.ack_timer = asyncio.get_running_loop().call_later(ACK_DELAY, self._flush)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self in self.pool.h2:
            self.pool.h2.remove(self)
        if not self.streams:
            return
        if isinstance(exc, ssl.SSLError):
            self._lost(Lost("tls_error", str(exc)))
        else:
            why = f"connection closed ({exc})" if exc else "connection closed before the answer was complete"
            # As for HTTP/1: only a connection that has served before may have been closed while the service
            # thought it idle; its streams without any answer go out once more.
            again = [s for s, st in self.streams.items() if not st.answer.received] if self.served else []
            self._lost(Lost("reset", why, again))

    # ------------------------------------------------------------ copies

    def has_room(self) -> bool:
        t = self.transport
        return not self.lost and t is not None and not t.is_closing() and self.session.has_room()

    def send(self, f: Flight, seconds: float) -> None:
        c, out, t0, retried = f.c, f.out, f.t0, f.retried
        if self.alpn_refused:  # a TLS service that would not speak HTTP/2
            self.sender.failed(self.pool, f, Failure("tls_error", "the service did not accept ALPN h2"))
            self._abort()
            return
        out.http_version = "HTTP/2.0"
        s = self.sender
        digest = hashlib.sha256() if c.hash_body and s.response_limit > c.keep_body else None
        answer = Answer(c.keep_body, max(s.response_limit, c.keep_body), s.budget, digest)
        scheme = self.pool.address.scheme
        try:
            sid = self.session.start(request_headers(c, scheme), c.body, c.trailers, answer)
        except h2.exceptions.H2Error as e:  # the service ended the connection meanwhile (GOAWAY)
            self.sender.failed(self.pool, f, Failure("reset", f"the connection cannot take a stream: {e}"))
            self._abort()
            return
        st = self.streams[sid] = _Stream(c, out, t0, retried, answer)
        loop = asyncio.get_running_loop()
        st.timer = loop.call_later(max(seconds, 0.0), self._timeout, sid)
        if not self.flush_due:
            # Written once the hooks of this loop iteration are done: copies submitted together share one write
            # (one system call, one TCP segment) instead of one each.
            self.flush_due = True
            loop.call_soon(self._flush)

    def _take(self, sid: int) -> _Stream | None:
        st = self.streams.pop(sid, None)
        if st is not None and st.timer is not None:
            st.timer.cancel()
        return st

    def _done(self, sid: int, a: Answer) -> None:
        st = self._take(sid)
        if st is None:
            return
        out = st.out
        out.status, out.headers, out.trailers = a.status, a.headers, a.trailers
        out.body, out.body_size = b"".join(a.kept), a.size
        out.body_sha256 = a.digest.hexdigest() if a.digest is not None else ""
        self.served += 1
        label = grpcwire.status(a.headers, a.trailers)
        if label is not None:
            self.sender.metrics.record_grpc(st.c.mapping, st.c.service, SHADOW, label)
        self.sender.answered(self.pool, None, st.flight(), True, a.kept_size)

    def _failed(self, sid: int, e: ReadError) -> None:
        st = self._take(sid)
        if st is None:
            return
        self.sender.read_failed(self.pool, st.flight(), e, st.answer.kept_size)

    def _lost(self, r: Lost) -> None:
        """Every stream left gets its outcome; those the service never started go out again on a fresh
        connection once (a kept-alive connection the service closed while idle, or a graceful GOAWAY)."""
        self.lost = True
        if self in self.pool.h2:
            self.pool.h2.remove(self)
        for sid in list(self.streams):
            st = self._take(sid)
            assert st is not None
            if sid in r.unprocessed and not st.retried and not st.answer.received:
                self.sender.reconnect(self.pool, st.flight())
            else:
                why = Failure(r.reason, r.message, st.answer.status)
                self.sender.failed(self.pool, st.flight(), why, st.answer.kept_size)
        self._abort()

    def _timeout(self, sid: int) -> None:
        st = self.streams.get(sid)
        if st is None:
            return
        st.timer = None
        self.session.cancel(sid)
        self._failed(sid, ReadError("timeout", f"no complete answer within {st.c.timeout:g}s"))
        self._flush()

    def cancel_all(self) -> list[_Stream]:
        """The sender is closing: every stream's copy, for it to count; the connection is aborted."""
        out = [st for sid in list(self.streams) if (st := self._take(sid)) is not None]
        self._abort()
        return out

    # ------------------------------------------------------------ writing

    def _flush(self) -> None:
        self.flush_due = False
        if self.ack_timer is not None:
            self.ack_timer.cancel()
            self.ack_timer = None
        data = self.session.outgoing()
        t = self.transport
        if data and t is not None and not t.is_closing():
            t.write(data)

    def _abort(self) -> None:
        if self.ack_timer is not None:
            self.ack_timer.cancel()
            self.ack_timer = None
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
