"""gRPC messages as comparable data, without their schema: protobuf's wire format decoded generically.

Each message becomes a dict keyed by field number (as text), a field seen more than once a list, in wire order.
Varints and fixed-width numbers are integers (unsigned: the schema alone says signed, zigzag or float). A
length-delimited field is text when it is printable UTF-8, else a nested message when its bytes parse as one
entirely, else text (any UTF-8), else `base64:...`. The cost is bounded: each nesting level reads a byte at most
once, and levels stop at MAX_DEPTH, so decoding is linear in the body times the depth.
"""

from __future__ import annotations

import base64
from typing import Any

from ..grpcwire import FramingError, split

MAX_DEPTH = 16
MAX_MESSAGES = 1024
# Fields decoded per body, across messages and levels: decoding is Python, on the event loop, about a microsecond a
# field; a body with more is compared by size and hash, as any body that cannot be parsed.
MAX_FIELDS = 10_000


class WireError(ValueError):
    pass


class _TooMany(Exception):
    """More fields than MAX_FIELDS: stops the whole body, not one nested attempt."""


def varint(b: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(b):
            raise WireError("varint cut short")
        c = b[i]
        i += 1
        value |= (c & 0x7F) << shift
        if not c & 0x80:
            return value, i
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def message(b: bytes, depth: int = 0, left: list[int] | None = None) -> dict[str, Any]:
    """One message's fields. Raises WireError when `b` is not a whole message. `left`: fields still allowed."""
    if left is None:
        left = [MAX_FIELDS]
    out: dict[str, list[Any]] = {}
    i, n = 0, len(b)
    while i < n:
        left[0] -= 1
        if left[0] < 0:
            raise _TooMany
        key, i = varint(b, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == 0:
            v, i = varint(b, i)
        elif wire == 1:
            if i + 8 > n:
                raise WireError("fixed64 cut short")
            v, i = int.from_bytes(b[i : i + 8], "little"), i + 8
        elif wire == 5:
            if i + 4 > n:
                raise WireError("fixed32 cut short")
            v, i = int.from_bytes(b[i : i + 4], "little"), i + 4
        elif wire == 2:
            length, i = varint(b, i)
            if i + length > n:
                raise WireError("length-delimited field cut short")
            v, i = _bytes(b[i : i + length], depth, left), i + length
        else:
            raise WireError(f"wire type {wire}")
        out.setdefault(str(number), []).append(v)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def _bytes(b: bytes, depth: int, left: list[int]) -> Any:
    try:
        text: str | None = b.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    # Printable text is taken as a string: an encoded message nearly always holds a byte below 0x20 (a length, a
    # small number, the tag of field 1 or 2), and text that happens to parse as one would turn into noise fields.
    if text is not None and _printable(text):
        return text
    if b and depth + 1 < MAX_DEPTH:
        try:
            return message(b, depth + 1, left)
        except WireError:
            pass
    return text if text is not None else "base64:" + base64.b64encode(b).decode()


def _printable(t: str) -> bool:
    return t.isprintable() or t.replace("\n", "").replace("\t", "").replace("\r", "").isprintable()


def body(b: bytes) -> list[dict[str, Any]] | None:
    """A gRPC body as a list of decoded messages; None when it is not one (cut, compressed, or not protobuf)."""
    try:
        messages = split(b, MAX_MESSAGES)
        if any(compressed for compressed, _ in messages):
            return None
        left = [MAX_FIELDS]
        return [message(m, 0, left) for _, m in messages]
    except (FramingError, WireError, _TooMany):
        return None
