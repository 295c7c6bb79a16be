"""The HTTP/2 protocol of one copy connection, without I/O: the `h2` library's state machine (mitmproxy's own
HTTP/2 dependency) with the answers read under their caps (`h2answer`). `start` a stream, `receive` bytes, write
`outgoing`.

Lean per stream, since every copy is one: header blocks come from `h2fields` (no dynamic table, each field encoded
once), and the receive windows are large enough (RFC 9113 6.9.2) that WINDOW_UPDATE frames go out in bulk, once
per several megabytes, instead of with every answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from .budget import MemoryBudget
from .h2answer import Answer
from .h2fields import BlockEncoder
from .reader import MAX_HEAD, ReadError

LAST_STREAM_ID = 2**31 - 1 - 2 * 100  # client stream ids are odd, up to 2^31 - 1
MAX_STREAMS = 100  # streams opened on one connection before the service's SETTINGS say how many it takes
STREAM_WINDOW = 1 << 20  # bytes a stream's answer may send unacknowledged (what is read is capped apart)
CONNECTION_WINDOW = 16 << 20  # the same for the connection, all streams together
DEFAULT_WINDOW = 65_535  # RFC 9113 6.9.2: every window's size before SETTINGS or WINDOW_UPDATE


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
        conn.encoder = BlockEncoder()
        s = conn.local_settings
        s.enable_push = 0
        s.max_concurrent_streams = 0  # the service may open no stream towards us
        s.max_header_list_size = MAX_HEAD * 2  # advertised; the decoder enforces it below
        s.initial_window_size = STREAM_WINDOW
        s.acknowledge()  # h2 sends the settings as they are now (mitmproxy's Http2Client does the same)
        conn.decoder.max_header_list_size = MAX_HEAD * 2  # hpack stops a larger block while decoding it
        conn.initiate_connection()
        conn.increment_flow_control_window(CONNECTION_WINDOW - DEFAULT_WINDOW)
        self.conn = conn
        self.budget = budget
        self.answers: dict[int, Answer] = {}
        self.bodies: dict[int, tuple[memoryview, tuple[tuple[bytes, bytes], ...]]] = {}  # left to send, trailers
        self.closed = False
        self.first: bytes | None = b""  # the service's first bytes, until they show its preface is a SETTINGS frame
        self.pumped = False  # request body data became sendable while receiving (write it without delay)

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
            last = n == len(view) and not trailers
            conn.send_data(sid, view[:n].tobytes(), end_stream=last)  # the last DATA frame ends the stream
            view = view[n:]
            if last:
                del self.bodies[sid]
                return
        del self.bodies[sid]
        if trailers:
            conn.send_headers(sid, [(k.lower(), v) for k, v in trailers], end_stream=True)
        else:
            conn.end_stream(sid)  # an empty body

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
        self.pumped = False
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
        answers = self.answers
        for ev in events:
            sid = getattr(ev, "stream_id", None)
            a = answers.get(sid) if sid is not None else None
            try:
                if isinstance(ev, h2.events.DataReceived):
                    if ev.flow_controlled_length:
                        self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    if a is not None and ev.data:
                        a.data(ev.data)
                elif isinstance(ev, h2.events.ResponseReceived):
                    if a is not None:
                        a.head(list(ev.headers))
                elif isinstance(ev, h2.events.StreamEnded):
                    if a is not None:
                        del answers[ev.stream_id]
                        out.append(Done(ev.stream_id, a))
                elif isinstance(ev, h2.events.TrailersReceived):
                    if a is not None:
                        a.trailer_head(list(ev.headers))
                elif isinstance(ev, h2.events.InformationalResponseReceived):
                    if a is not None:
                        a.interim_head(list(ev.headers))
                elif isinstance(ev, h2.events.StreamReset):
                    if a is not None:
                        del answers[ev.stream_id]
                        self.bodies.pop(ev.stream_id, None)
                        why = f"stream reset by the service ({_code(ev.error_code)})"
                        out.append(Failed(ev.stream_id, ReadError("reset", why)))
                elif isinstance(ev, h2.events.WindowUpdated):
                    for s in [ev.stream_id] if ev.stream_id else list(self.bodies):
                        if s in self.bodies:
                            self._pump(s)
                            self.pumped = True
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    last = ev.last_stream_id if ev.last_stream_id is not None else 0
                    unprocessed = [s for s in answers if s > last]
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
