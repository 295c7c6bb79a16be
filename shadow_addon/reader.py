"""Reads HTTP/1.x responses from bytes as they arrive, at a bounded cost whatever the peer sends.

No I/O: the connection hands over what it received and asks whether the response is complete. Parsing is h11's
(`h11.Connection`, client side: status line, fields, framing, `Connection` tokens, 1xx, chunked with extensions
and trailers, close-delimited bodies); measured faster here than mitmproxy's HTTP/1 head reader with h11's body
readers (scripts/bench_parser.py). This module adds the caps: interim (1xx) responses, head size and field
count, and body bytes read.
"""

from __future__ import annotations

import hashlib

import h11

from .budget import MemoryBudget

MAX_INTERIM = 8  # 1xx responses accepted before the final one
MAX_HEAD = 16 * 1024  # bytes buffered for one head, chunk line or trailer section (nginx buffers 4-8 KiB)
MAX_HEADERS = 256  # fields in one head or in the trailers


class ReadError(Exception):
    """The response cannot be (or is no longer) read; `reason` is the drop reason it is counted under, `status`
    the final status if it had arrived."""

    def __init__(self, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason, self.status = reason, status


_REQUESTS: dict[str, h11.Request] = {}
_END = h11.EndOfMessage()  # events are immutable: one serves every request


def _request(method: str) -> h11.Request:
    """What h11 needs to know of the request to frame the response: its method. The bytes it would write are not
    used (the sender writes the copy itself), so one event per method serves every copy."""
    r = _REQUESTS.get(method)
    if r is None:
        r = h11.Request(method=method, target="/", headers=[("Host", "shadow"), ("Content-Length", "0")])
        if len(_REQUESTS) < 64:
            _REQUESTS[method] = r
    return r


class ResponseReader:
    """The reading side of one connection, one response at a time.

    `start` before each request; then `feed` until it returns True (complete) or raises ReadError, after which
    the connection must be closed. At most `keep` body bytes are kept (each taken from `budget`: the caller
    releases `kept_size` once done with the body), at most `limit` read.
    """

    __slots__ = (
        "conn",
        "budget",
        "keep",
        "limit",
        "digest",
        "status",
        "headers",
        "http_version",
        "size",
        "kept",
        "kept_size",
        "interim",
        "done",
        "closed",
    )

    def __init__(self, budget: MemoryBudget | None = None) -> None:
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.budget = budget
        self.closed = False  # the peer closed: nothing more can be read
        self._reset(0, 0, False)

    def _reset(self, keep: int, limit: int, hash_body: bool) -> None:
        self.keep, self.limit = keep, max(limit, keep)
        # Hashed while reading only when the body may outgrow what is kept: a kept body is hashed when compared,
        # and one past the limit is not compared at all.
        self.digest = hashlib.sha256() if hash_body and self.limit > keep else None
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.http_version = "HTTP/1.1"
        self.size = 0  # body bytes read
        self.kept: list[bytes] = []
        self.kept_size = 0
        self.interim = 0
        self.done = False

    def start(self, method: str, keep: int, limit: int, hash_body: bool = False) -> None:
        """A request is being sent on this connection (a fresh one, or one whose last exchange `reusable`)."""
        conn = self.conn
        if conn.our_state is h11.DONE:
            conn.start_next_cycle()
        self._reset(keep, limit, hash_body)
        conn.send(_request(method))
        conn.send(_END)

    @property
    def reusable(self) -> bool:
        """The response is complete, both sides may go on, and nothing was sent beyond it."""
        conn = self.conn
        return (
            self.done
            and not self.closed
            and conn.our_state is h11.DONE
            and conn.their_state is h11.DONE
            and not conn.trailing_data[0]
        )

    @property
    def body(self) -> bytes:
        return b"".join(self.kept)

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest() if self.digest is not None else ""

    def feed(self, data: bytes) -> bool:
        """Consume `data`; True once the response is complete. Raises ReadError."""
        if self.done:
            return True
        if not data:  # h11 reads b"" as the end of the stream
            return False
        conn = self.conn
        while self.status is None and len(data) > MAX_HEAD:
            # h11 bounds only an incomplete event: a complete 60 KB head handed over in one read would be parsed
            # whole before any cap applies. Until the final head is in, it gets a head's worth at a time.
            conn.receive_data(data[:MAX_HEAD])
            data = data[MAX_HEAD:]
            if self._events():
                conn.receive_data(data)  # bytes past the response: the connection is then not reused
                return True
        conn.receive_data(data)
        return self._events()

    def eof(self) -> bool:
        """The peer closed: True if that completes the response (a body delimited by the close)."""
        self.closed = True
        if self.done:
            return True
        self.conn.receive_data(b"")
        try:
            return self._events()
        except ReadError:
            return False

    def _fail(self, reason: str, message: str) -> ReadError:
        return ReadError(reason, message, self.status)

    def _events(self) -> bool:
        conn = self.conn
        while True:
            try:
                ev = conn.next_event()
            except h11.RemoteProtocolError as e:
                if e.error_status_hint == 431:
                    raise self._fail(
                        "head_limit", f"response head, chunk line or trailers over {MAX_HEAD} bytes"
                    ) from None
                raise self._fail("bad_response", str(e)) from None
            t = type(ev)
            if t is h11.Data:
                self._data(ev.data)  # type: ignore[union-attr]
            elif ev is h11.NEED_DATA:
                return False
            elif t is h11.Response:
                self._head(ev)  # type: ignore[arg-type]
            elif t is h11.InformationalResponse:
                self.interim += 1  # 100 Continue, 103 Early Hints...: the final answer follows
                if self.interim > MAX_INTERIM:
                    raise self._fail("interim_limit", f"more than {MAX_INTERIM} interim (1xx) responses")
                if len(ev.headers) > MAX_HEADERS:  # type: ignore[union-attr]
                    raise self._fail("head_limit", f"more than {MAX_HEADERS} response header fields")
            elif t is h11.EndOfMessage:
                if len(ev.headers) > MAX_HEADERS:  # type: ignore[union-attr]
                    raise self._fail("head_limit", f"more than {MAX_HEADERS} trailer fields")
                self.done = True
                return True
            else:  # ConnectionClosed before a response, or PAUSED (a 101 nobody asked for)
                raise self._fail("bad_response", "connection closed or switched protocols before the answer")

    def _head(self, ev: h11.Response) -> None:
        if len(ev.headers) > MAX_HEADERS:
            raise self._fail("head_limit", f"more than {MAX_HEADERS} response header fields")
        self.status = ev.status_code
        self.headers = list(ev.headers.raw_items())
        self.http_version = "HTTP/" + ev.http_version.decode()

    def _data(self, data: bytes | bytearray) -> None:
        n = len(data)
        size = self.size + n
        if size > self.limit:
            raise self._fail("response_limit", f"response body over the {self.limit} bytes read")
        if self.size < self.keep:
            part = bytes(data[: self.keep - self.size])
            if self.budget is not None and not self.budget.take(len(part)):
                raise self._fail("overload", "memory limit reached while keeping the response body")
            self.kept.append(part)
            self.kept_size += len(part)
        if self.digest is not None:
            self.digest.update(data)
        self.size = size
