"""One shadow answer over HTTP/2, read under the same caps as an HTTP/1 answer (`reader.py`): interim answers,
head and trailer size and field count, body bytes read, body bytes kept (from the memory budget)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .budget import MemoryBudget
from .reader import MAX_HEAD, MAX_HEADERS, MAX_INTERIM, ReadError, take_body


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
