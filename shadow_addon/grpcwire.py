"""gRPC on the wire, as pure functions: the status of an answer and the framing of its messages.

A gRPC call's outcome is not its HTTP status: a failed call is HTTP 200 whose `grpc-status` (in the trailers, or
in the headers of a trailers-only answer) is not 0 (grpc/doc/PROTOCOL-HTTP2.md "Responses"). Messages in a body
are length-prefixed: one flag byte (1: compressed), a 4-byte big-endian length, then the message.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote

CODES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
INVALID = "invalid"  # a grpc-status that is not one of the codes: counted, never used as a label as sent
MISSING = "missing"  # a gRPC answer (content-type application/grpc) that ended without any grpc-status
PREFIX = 5  # flag byte + 4-byte length


def _get(fields: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in fields:
        if k.lower() == name:
            return v
    return None


def is_grpc(content_type: bytes | str | None) -> bool:
    """Whether a content-type is gRPC's (`application/grpc`, `application/grpc+proto`, `application/grpc;...`)."""
    if content_type is None:
        return False
    ct = content_type.encode("latin-1") if isinstance(content_type, str) else content_type
    ct = ct.strip().lower()
    return ct == b"application/grpc" or ct.startswith((b"application/grpc+", b"application/grpc;"))


def code_label(value: bytes | str | None) -> str:
    """A grpc-status value as a bounded metric label: its code number, or `invalid`."""
    if value is None:
        return MISSING
    v = value.decode("latin-1") if isinstance(value, bytes) else value
    v = v.strip()
    if v.isascii() and v.isdigit() and len(v) <= 2 and int(v) < len(CODES):
        return str(int(v))
    return INVALID


def status(headers: Iterable[tuple[bytes, bytes]], trailers: Iterable[tuple[bytes, bytes]] | None) -> str | None:
    """The call's grpc-status label (see `code_label`), or None when the answer is not gRPC at all (neither a gRPC
    content-type nor a grpc-status anywhere)."""
    headers = list(headers)
    if trailers is not None:
        v = _get(trailers, b"grpc-status")
        if v is not None:
            return code_label(v)
    v = _get(headers, b"grpc-status")  # trailers-only answer
    if v is not None:
        return code_label(v)
    return MISSING if is_grpc(_get(headers, b"content-type")) else None


def message(headers: Iterable[tuple[bytes, bytes]], trailers: Iterable[tuple[bytes, bytes]] | None) -> str:
    """The grpc-message (percent-decoded as the protocol says), or ""."""
    v = _get(trailers, b"grpc-message") if trailers is not None else None
    if v is None:
        v = _get(headers, b"grpc-message")
    return unquote(v.decode("latin-1")) if v else ""


def code_name(label: str) -> str:
    """`5` -> `NOT_FOUND`; other labels as they are."""
    return CODES[int(label)] if label.isdigit() and int(label) < len(CODES) else label


class FramingError(ValueError):
    pass


def split(body: bytes, max_messages: int = 1024) -> list[tuple[bool, bytes]]:
    """The messages of a gRPC body: (compressed, message) each. Raises FramingError on a cut or overlong body."""
    out: list[tuple[bool, bytes]] = []
    i, n = 0, len(body)
    while i < n:
        if len(out) >= max_messages:
            raise FramingError(f"more than {max_messages} messages")
        if n - i < PREFIX:
            raise FramingError("body ends inside a message prefix")
        flag = body[i]
        if flag > 1:
            raise FramingError(f"message flag {flag}, not 0 or 1")
        length = int.from_bytes(body[i + 1 : i + PREFIX], "big")
        start = i + PREFIX
        if start + length > n:
            raise FramingError(f"message of {length} bytes, only {n - start} left")
        out.append((flag == 1, body[start : start + length]))
        i = start + length
    return out


def frame(msg: bytes, compressed: bool = False) -> bytes:
    """One message with its prefix."""
    return bytes((1 if compressed else 0,)) + len(msg).to_bytes(4, "big") + msg
