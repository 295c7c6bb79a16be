"""Copies over HTTP/2, for shadow Mappings with `grpc: true` (Envoy mirrors to an http2 cluster over HTTP/2):
cleartext with prior knowledge, or TLS with ALPN h2; many copies multiplexed on one connection.

Two parts. `Session` is the protocol without I/O: the `h2` library's state machine (mitmproxy's own HTTP/2
dependency) plus the caps every shadow answer is read under, the same as HTTP/1's (`reader.py`): interim
answers, head and trailer size and field count, body bytes read, body bytes kept (from the memory budget).
`H2Conn` is the asyncio shell: it feeds bytes to the session, writes what the session says, runs each copy's
timer, and hands outcomes to the `Sender`, whose pools, in-flight limits, back-off, loop guard and outcome
accounting are shared with HTTP/1 copies.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from . import grpcwire
from .budget import MemoryBudget
from .connection import Failure, Flight, looped_back
from .copyrequest import HOP_BY_HOP
from .metrics import SHADOW
from .reader import MAX_HEAD, MAX_HEADERS, MAX_INTERIM, ReadError, take_body

if TYPE_CHECKING:
    from .connection import Owner
    from .copyrequest import Copy, Outcome
    from .sender import Pool

# Hop-by-hop and HTTP/1 framing fields, never sent over HTTP/2 (RFC 9113 8.2.2); `te` is sent as `trailers`.
_SKIP = HOP_BY_HOP | {b"http2-settings"}
LAST_STREAM_ID = 2**31 - 1 - 2 * 100  # client stream ids are odd, up to 2^31 - 1
MAX_STREAMS = 100  # streams opened on one connection before the service's SETTINGS say how many it takes


def request_headers(c: Copy, scheme: str) -> list[tuple[bytes, bytes]]:
    """The copy's HTTP/2 header block: pseudo-headers (`:authority` is the Host with `-shadow`), the request's
    fields in lower case without hop-by-hop ones, `te: trailers`, the added ones."""
    out = [
        (b":method", c.method.encode()),
        (b":scheme", scheme.encode()),
        (b":authority", c.host.encode("utf-8", "surrogateescape")),
        (b":path", c.path.encode("utf-8", "surrogateescape")),
    ]
    for k, v in c.fields:
        lk = k.lower()
        if lk not in _SKIP and lk not in c.remove and not lk.startswith(b":"):
            out.append((lk, v))
    out.append((b"te", b"trailers"))  # gRPC servers require it (PROTOCOL-HTTP2.md "Requests")
    out += [(k.lower(), v) for k, v in c.add]
    return out


# ---------------------------------------------------------------- one answer, read under caps


@dataclass(slots=True, eq=False)
class Answer:
    """What has arrived of one stream's answer."""

    keep: int
    limit: int
    budget: MemoryBudget | None
    digest: hashlib._Hash | None = None
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    interim: int = 0
    size: int = 0
    kept: list[bytes] = field(default_factory=list)
    kept_size: int = 0
    received: bool = False  # any frame of the answer arrived

    def _fail(self, reason: str, message: str) -> ReadError:
        return ReadError(reason, message, self.status)

    def _fields(self, raw: list[tuple[bytes, bytes]], what: str) -> list[tuple[bytes, bytes]]:
        if len(raw) > MAX_HEADERS:
            raise self._fail("head_limit", f"more than {MAX_HEADERS} {what} fields")
        if sum(len(k) + len(v) + 32 for k, v in raw) > MAX_HEAD:  # RFC 9113 6.5.2: 32 bytes per field
            raise self._fail("head_limit", f"{what} over {MAX_HEAD} bytes")
        return raw

    def interim_head(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.received = True
        self._fields(raw, "interim header")
        self.interim += 1
        if self.interim > MAX_INTERIM:
            raise self._fail("interim_limit", f"more than {MAX_INTERIM} interim (1xx) responses")

    def head(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.received = True
        raw = self._fields(raw, "response header")
        status = None
        headers = []
        for k, v in raw:
            if k == b":status":
                if not (len(v) == 3 and v.isdigit()):
                    raise self._fail("bad_response", f"status {v[:20]!r} is not three digits")
                status = int(v)
            elif not k.startswith(b":"):
                headers.append((k, v))
                if k == b"content-length" and v.isdigit() and int(v) > self.limit:
                    self.status = status
                    raise self._fail("response_limit", f"response body of {int(v)} bytes, over the {self.limit} read")
        self.status, self.headers = status, headers

    def data(self, data: bytes) -> None:
        self.received = True
        take_body(self, data)

    def trailer_head(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.trailers = self._fields(raw, "trailer")


# ---------------------------------------------------------------- the protocol, without I/O


def _code(n: int | None) -> str:
    try:
        return h2.errors.ErrorCodes(n).name if n is not None else "none"
    except ValueError:
        return str(n)


@dataclass(slots=True)
class Done:
    stream_id: int
    answer: Answer


@dataclass(slots=True)
class Failed:
    stream_id: int
    error: ReadError


@dataclass(slots=True)
class Lost:
    """The connection can carry nothing more. `unprocessed`: streams the service said it never started (GOAWAY
    last-stream-id), which may be sent again elsewhere."""

    reason: str
    message: str
    unprocessed: list[int] = field(default_factory=list)


# As mitmproxy's own HTTP/2 layers (proxy/layers/http/_http2.py h2_conf_defaults): the copy's header block is built
# here (lower-case names, no connection-specific fields), so h2 need not check and normalise it again; the
# service's answer is still validated, as an answer from an untrusted peer.
CONFIG = h2.config.H2Configuration(
    client_side=True,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    normalize_inbound_headers=False,
)


class Session:
    """One client HTTP/2 connection's protocol state: `start` a stream, `receive` bytes, `outgoing` to write."""

    def __init__(self, budget: MemoryBudget | None = None) -> None:
        conn = h2.connection.H2Connection(CONFIG)
        s = conn.local_settings
        s.enable_push = 0
        s.max_concurrent_streams = 0  # the service may open no stream towards us
        s.max_header_list_size = MAX_HEAD * 2  # advertised; the decoder enforces it below
        s.acknowledge()  # h2 sends the settings as they are now (mitmproxy's Http2Client does the same)
        conn.decoder.max_header_list_size = MAX_HEAD * 2  # hpack stops a larger block while decoding it
        conn.initiate_connection()
        self.conn = conn
        self.budget = budget
        self.answers: dict[int, Answer] = {}
        self.bodies: dict[int, tuple[memoryview, tuple[tuple[bytes, bytes], ...]]] = {}  # left to send, trailers
        self.closed = False
        self.first: bytes | None = b""  # the service's first bytes, until they show its preface is a SETTINGS frame

    @property
    def capacity(self) -> int:
        remote = self.conn.remote_settings.max_concurrent_streams
        return min(remote, MAX_STREAMS) if remote is not None else MAX_STREAMS

    def has_room(self) -> bool:
        # Stream ids run out at 2^31: a connection that far along takes no more (the next copy opens another).
        fresh = self.conn.highest_outbound_stream_id < LAST_STREAM_ID
        return not self.closed and fresh and len(self.answers) < self.capacity

    def start(
        self, headers: list[tuple[bytes, bytes]], body: bytes, trailers: tuple[tuple[bytes, bytes], ...], answer: Answer
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, headers, end_stream=not body and not trailers)
        self.answers[sid] = answer
        if body or trailers:
            self.bodies[sid] = (memoryview(body), trailers)
            self._pump(sid)
        return sid

    def _pump(self, sid: int) -> None:
        """Send what flow control allows of a request body, then its trailers (or the end of the stream)."""
        view, trailers = self.bodies[sid]
        conn = self.conn
        while view:
            n = min(len(view), conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if n <= 0:
                self.bodies[sid] = (view, trailers)
                return  # the rest when the service opens its window
            conn.send_data(sid, view[:n].tobytes())
            view = view[n:]
        del self.bodies[sid]
        if trailers:
            conn.send_headers(sid, [(k.lower(), v) for k, v in trailers], end_stream=True)
        else:
            conn.end_stream(sid)

    def cancel(self, sid: int) -> Answer | None:
        """Give up on a stream (timeout): RST_STREAM CANCEL, as a client abandoning a call does."""
        a = self.answers.pop(sid, None)
        self.bodies.pop(sid, None)
        if a is not None and not self.closed:
            try:
                self.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.H2Error:
                pass  # already closed on its side
        return a

    def outgoing(self) -> bytes:
        return self.conn.data_to_send()

    def receive(self, data: bytes) -> list[Done | Failed | Lost]:
        """Feed bytes from the service; the streams that ended, failed, or the connection's loss."""
        if self.closed:
            return []
        if self.first is not None:
            # RFC 9113 3.4: the server's preface is a SETTINGS frame. An HTTP/1 answer would otherwise be read as
            # the head of a huge frame and waited for until the timeout.
            self.first += data
            if len(self.first) >= 4:
                if self.first[3] != 0x4:
                    return [self._lost("bad_response", "the service does not speak HTTP/2 (no SETTINGS frame first)")]
                self.first = None
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.DenialOfServiceError as e:
            return [self._lost("head_limit", f"HTTP/2: {e}")]
        except h2.exceptions.ProtocolError as e:
            return [self._lost("bad_response", f"HTTP/2 protocol error: {e}")]
        out: list[Done | Failed | Lost] = []
        for ev in events:
            sid = getattr(ev, "stream_id", None)
            a = self.answers.get(sid) if sid is not None else None
            try:
                if isinstance(ev, h2.events.DataReceived):
                    if ev.flow_controlled_length:
                        self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    if a is not None and ev.data:
                        a.data(ev.data)
                elif isinstance(ev, h2.events.ResponseReceived):
                    if a is not None:
                        a.head(list(ev.headers))
                elif isinstance(ev, h2.events.InformationalResponseReceived):
                    if a is not None:
                        a.interim_head(list(ev.headers))
                elif isinstance(ev, h2.events.TrailersReceived):
                    if a is not None:
                        a.trailer_head(list(ev.headers))
                elif isinstance(ev, h2.events.StreamEnded):
                    if a is not None:
                        del self.answers[ev.stream_id]
                        out.append(Done(ev.stream_id, a))
                elif isinstance(ev, h2.events.StreamReset):
                    if a is not None:
                        del self.answers[ev.stream_id]
                        self.bodies.pop(ev.stream_id, None)
                        why = f"stream reset by the service ({_code(ev.error_code)})"
                        out.append(Failed(ev.stream_id, ReadError("reset", why)))
                elif isinstance(ev, h2.events.WindowUpdated):
                    for s in [ev.stream_id] if ev.stream_id else list(self.bodies):
                        if s in self.bodies:
                            self._pump(s)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    last = ev.last_stream_id if ev.last_stream_id is not None else 0
                    unprocessed = [s for s in self.answers if s > last]
                    why = f"the service ended the connection (GOAWAY {_code(ev.error_code)})"
                    out.append(self._lost("reset", why, unprocessed))
                    return out
            except ReadError as e:
                sid = getattr(ev, "stream_id", None)  # only stream events fail a read
                if sid is not None:
                    self.cancel(sid)
                    out.append(Failed(sid, e))
        return out

    def _lost(self, reason: str, message: str, unprocessed: list[int] | None = None) -> Lost:
        self.closed = True
        return Lost(reason, message, unprocessed or [])


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
        self._flush()

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
        data = self.session.outgoing()
        t = self.transport
        if data and t is not None and not t.is_closing():
            t.write(data)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
