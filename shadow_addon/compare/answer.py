"""A shadow's (or the secondary's) answer as comparison reads it: the sender's outcome of one copy, seen through
the few fields comparison needs, so comparison does not depend on the transport."""

from __future__ import annotations

from typing import Protocol


class Answer(Protocol):
    @property
    def status(self) -> int | None: ...  # None: no answer
    @property
    def reason(self) -> str | None: ...  # why there is no answer (a drop reason)
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def trailers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def body(self) -> bytes: ...  # as read, up to the answer cap
    @property
    def body_size(self) -> int: ...  # the whole body's size
    @property
    def body_sha256(self) -> str: ...  # the whole body's digest, "" when not taken
