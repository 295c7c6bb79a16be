"""Reads HTTP/1.x responses from bytes as they arrive, at a bounded cost whatever the peer sends.

No I/O: the connection hands over what it received and asks whether the response is complete. Parsing is h11's
(`h11.Connection`, client side: status line, fields, framing, `Connection` tokens, 1xx, chunked with extensions
and trailers, close-delimited bodies); measured faster here than mitmproxy's HTTP/1 head reader with h11's body
readers (scripts/bench_parser.py). This module adds the caps: interim (1xx) responses, head size and field
count, and body bytes read.

One shape is read without h11: the answer nearly every healthy service gives, an HTTP/1.1 final response whose
whole head arrives in the first read, every line in the strict RFC 9112 grammar, framed by one Content-Length.
h11's state machine costs several times the rest of the addon's work on that answer (scripts/bench_parser.py);
anything else (1xx, chunked, close-delimited, HEAD, obs-fold, odd bytes, a head split across reads) goes to h11
from its first byte, so the fast path never decides anything h11 would decide differently
(tests/test_sender_parser.py compares the two on every shape).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Protocol

import h11

from .budget import MemoryBudget
from .httpsyntax import TOKEN_BYTES

MAX_INTERIM = 8  # 1xx responses accepted before the final one
MAX_HEAD = 16 * 1024  # bytes buffered for one head, chunk line or trailer section (nginx buffers 4-8 KiB)
MAX_HEADERS = 256  # fields in one head or in the trailers

# RFC 9112 / 9110: tchar for field names; a field value of VCHAR, obs-text, SP and HTAB (no CR, LF, NUL or other
# control). h11 accepts these heads too and reads them the same way; any other head goes to h11.
_TOKEN = TOKEN_BYTES
_VALUE = rb"[\t\x20-\x7e\x80-\xff]*"
_SIMPLE_HEAD = re.compile(
    rb"HTTP/1\.1 ([2-5][0-9][0-9]) " + _VALUE + rb"\r\n((?:" + _TOKEN + rb":" + _VALUE + rb"\r\n)*)\r\n"
)
_FIELD = re.compile(b"(" + _TOKEN + rb"):[ \t]*(" + _VALUE + rb"?)[ \t]*\r\n")
_NO_BODY = (204, 304)


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


# Asked once, when an answer's final head has arrived (status, declared Content-Length or None): None to read the
# body as asked; else the (keep, hash) to read it with from then on (an answer no longer wanted, drained unkept).
AtHead = Callable[[int, int | None], "tuple[int, bool] | None"]


class BodyHolder(Protocol):
    """An answer being read: what `take_body` counts, keeps and hashes (HTTP/1 `ResponseReader`, HTTP/2 `Answer`)."""

    limit: int
    keep: int
    size: int
    kept: list[bytes]
    kept_size: int
    budget: MemoryBudget | None
    digest: hashlib._Hash | None

    def _fail(self, reason: str, message: str) -> ReadError: ...


def take_body(r: BodyHolder, data: bytes | bytearray | memoryview) -> None:
    """One piece of an answer's body, under the read limit: kept up to `keep` bytes (taken from the memory
    budget), hashed if asked, counted."""
    size = r.size + len(data)
    if size > r.limit:
        raise r._fail("response_limit", f"response body over the {r.limit} bytes read")
    if r.size < r.keep:
        part = bytes(data[: r.keep - r.size])
        if r.budget is not None and not r.budget.take(len(part)):
            raise r._fail("overload", "memory limit reached while keeping the response body")
        r.kept.append(part)
        r.kept_size += len(part)
    if r.digest is not None:
        r.digest.update(data)
    r.size = size


class ResponseReader:
    """The reading side of one connection, one response at a time.

    `start` before each request; then `feed` until it returns True (complete) or raises ReadError, after which
    the connection must be closed. At most `keep` body bytes are kept (each taken from `budget`: the caller
    releases `kept_size` once done with the body), at most `limit` read.
    """

    __slots__ = (
        "conn",
        "budget",
        "method",
        "h11_used",
        "remaining",
        "keep_alive",
        "extra",
        "keep",
        "limit",
        "digest",
        "at_head",
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
        self.method = "GET"
        self._reset(0, 0, False)

    def _reset(self, keep: int, limit: int, hash_body: bool, at_head: AtHead | None = None) -> None:
        self.h11_used = False  # this response goes through h11 (the fast path did not take it)
        self.remaining: int | None = None  # fast path: Content-Length body bytes still to come
        self.keep_alive = True  # fast path: no `Connection: close`
        self.extra = False  # fast path: bytes arrived past the response
        self.keep, self.limit = keep, max(limit, keep)
        # Hashed while reading only when the body may outgrow what is kept: a kept body is hashed when compared,
        # and one past the limit is not compared at all.
        self.digest = hashlib.sha256() if hash_body and self.limit > keep else None
        self.at_head = at_head
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.http_version = "HTTP/1.1"
        self.size = 0  # body bytes read
        self.kept: list[bytes] = []
        self.kept_size = 0
        self.interim = 0
        self.done = False

    def start(self, method: str, keep: int, limit: int, hash_body: bool = False, at_head: AtHead | None = None) -> None:
        """A request is being sent on this connection (a fresh one, or one whose last exchange `reusable`).
        `at_head`: asked when the final head has arrived, before any body byte is kept or hashed."""
        self.method = method
        self._reset(keep, limit, hash_body, at_head)

    def _decide(self, length: int | None) -> None:
        """The final head is in: the body is read as `at_head` now says (the limit read stays as it was, so an
        answer no longer kept still ends, and is timed, at its last byte)."""
        ask, self.at_head = self.at_head, None
        if ask is None or self.status is None:
            return
        change = ask(self.status, length)
        if change is not None:
            keep, hash_body = change
            self.keep = min(keep, self.keep)
            if not hash_body:
                self.digest = None

    def _use_h11(self) -> None:
        """h11 reads this response: it learns of the request now (its state machine frames the answer by it)."""
        conn = self.conn
        if conn.our_state is h11.DONE:
            conn.start_next_cycle()
        conn.send(_request(self.method))
        conn.send(_END)
        self.h11_used = True

    @property
    def reusable(self) -> bool:
        """The response is complete, both sides may go on, and nothing was sent beyond it."""
        if not self.h11_used:
            return self.done and not self.closed and self.keep_alive and not self.extra
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

    def feed(self, data: bytes | memoryview) -> bool:
        """Consume `data`; True once the response is complete. Raises ReadError. `data` may be a view of a buffer
        the caller reuses: nothing of it is kept beyond this call but copies."""
        if self.done:
            return True
        if not data:  # h11 reads b"" as the end of the stream
            return False
        if self.remaining is not None:
            return self._rest(data)  # body bytes: counted, kept (copied) or hashed, never held as given
        if not isinstance(data, bytes):
            data = bytes(data)
        if not self.h11_used:
            done = self._fast(data)
            if done is not None:
                return done
            self._use_h11()
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

    def _fast(self, data: bytes) -> bool | None:
        """Read a plain Content-Length response whose head is all in `data`; None: h11 reads it instead."""
        end = data.find(b"\r\n\r\n", 0, MAX_HEAD)
        if end < 0 or self.method == "HEAD":
            return None
        m = _SIMPLE_HEAD.fullmatch(data, 0, end + 4)
        if m is None or int(m[1]) in _NO_BODY:
            return None
        fields: list[tuple[bytes, bytes]] = _FIELD.findall(data, m.start(2), m.end(2))
        if len(fields) > MAX_HEADERS:
            return None
        length = None
        keep_alive = True
        for k, v in fields:
            lk = k.lower()
            if lk == b"content-length":
                if length is not None or not v.isdigit() or len(v) > 18:
                    return None  # repeated or odd: h11 decides
                length = int(v)
            elif lk == b"transfer-encoding":
                return None
            elif lk == b"connection" and b"close" in [t.strip().lower() for t in v.split(b",")]:
                keep_alive = False
        if length is None:
            return None  # delimited by the close: h11
        self.status, self.headers, self.keep_alive = int(m[1]), fields, keep_alive
        self._check_length(length)
        if self.at_head is not None:
            self._decide(length)
        self.remaining = length
        return self._rest(data[end + 4 :])

    def _rest(self, data: bytes | memoryview) -> bool:
        """Fast path: body bytes of a Content-Length response."""
        left = self.remaining
        assert left is not None
        if len(data) > left:
            self.extra = True  # bytes past the response: the connection is then not reused
            data = data[:left]
        if data:
            self._data(data)
            left -= len(data)
        self.remaining = left
        if left == 0:
            self.done = True
        return self.done

    def unseen(self) -> bool:
        """Whether the body, whatever comes, is neither kept nor hashed (so may be dropped unseen once framed)."""
        return self.keep <= 0 and self.digest is None

    def discardable(self) -> int:
        """Body bytes that may be dropped without being seen: on the fast path (framed by Content-Length), once
        nothing more is to be kept or hashed, all but the last byte still to come (that one is read as any other,
        so the response completes, and is timed, where it always did)."""
        left = self.remaining
        if left is None or left <= 1 or self.digest is not None or self.size < self.keep:
            return 0
        return left - 1

    def discarded(self, n: int) -> None:
        """`n` (at most `discardable()`) body bytes were dropped unseen: counted as read."""
        assert self.remaining is not None and 0 < n < self.remaining
        self.size += n
        self.remaining -= n

    def _check_length(self, length: int) -> None:
        """A body declared longer than the limit is refused at its head, never read."""
        if length > self.limit:
            raise self._fail("response_limit", f"response body of {length} bytes, over the {self.limit} bytes read")

    def eof(self) -> bool:
        """The peer closed: True if that completes the response (a body delimited by the close)."""
        self.closed = True
        if self.done:
            return True
        if not self.h11_used:
            return False  # a Content-Length body cut short, or no answer at all
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
        length = None
        if self.method != "HEAD" and ev.status_code not in _NO_BODY:
            framing = dict(ev.headers)  # h11 has checked them: one Content-Length, or chunked
            if b"transfer-encoding" not in framing and b"content-length" in framing:
                length = int(framing[b"content-length"])
                self._check_length(length)
        else:
            length = 0
        if self.at_head is not None:
            self._decide(length)

    def _data(self, data: bytes | bytearray | memoryview) -> None:
        take_body(self, data)
