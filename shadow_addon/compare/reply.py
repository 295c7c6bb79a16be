"""One response as compared: status, headers and the body without its content-encoding, parsed at most once."""

from __future__ import annotations

import codecs
import decimal
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..grpcwire import is_grpc
from . import protowire
from .decode import decode_capped

BODY_LIMIT = 1024 * 1024

_UNPARSED: Any = object()
NOT_JSON: Any = object()  # what `Reply.parsed` returns for a body that is not JSON


def _str(v: str | bytes) -> str:
    return v.decode("latin-1") if isinstance(v, bytes) else v  # header bytes map 1:1 onto latin-1


_CODING_NAMES = (b"content-encoding", "content-encoding")


def content_coding(headers: Iterable[tuple[str | bytes, str | bytes]]) -> str:
    """The Content-Encoding values as one string, the key under which `decode` remembers a refused body: the one
    spelling for the reply built here and for the caller deciding where to build it."""
    # Asked of every reply built (most have no Content-Encoding): names of another length are not lower-cased.
    found = [v for k, v in headers if len(k) == 16 and k.lower() in _CODING_NAMES]
    return ", ".join([_str(v) for v in found]) if found else ""


@dataclass(slots=True)
class Reply:
    """One response as compared. `body`: the content without its content-encoding, None when it is over the body
    limit or cannot be decoded within it (then only size and hash count). `body_size` and `body_sha256` are those
    of the bytes as sent, so two answers one of which could not be decoded compare alike."""

    status: int
    headers: list[tuple[str, str]]  # names case-insensitive
    body: bytes | None
    body_size: int
    body_sha256: str  # hex; "" when unknown (only a prefix of an over-limit body was seen)
    encoded: bool = False  # whether `body` differs from the bytes as sent (it was decoded)
    # gRPC: names the decoded messages' fields (`Descriptors.namer` of the call's method), set before parsing
    schema: Any = field(default=None, init=False, repr=False, compare=False)
    _json: Any = field(default=_UNPARSED, init=False, repr=False, compare=False)
    _digest: tuple[int, str] | None = field(default=None, init=False, repr=False, compare=False)
    # `header`'s answers by lower-case name, made at its first call: a reply is asked for a few headers, each
    # several times (the learner's print, the comparison, the media type).
    _index: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)
    _hashes: tuple[tuple[str, ...], tuple[int, ...]] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(
        cls,
        status: int,
        headers: Iterable[tuple[str | bytes, str | bytes]],
        body: bytes,
        limit: int = BODY_LIMIT,
        *,
        size: int | None = None,
        sha256: str | None = None,
        decode: bool = True,
    ) -> Reply:
        """From the parts as sent (the body still content-encoded). `size`: the full body size when `body` is only
        its beginning (a sender that keeps a prefix); `sha256`: the full body's hash when the caller computed it
        while streaming. The body is decoded only when it is whole and within `limit`, and only up to `limit`;
        `decode=False`: not at all (the caller knows it does not decode within `limit`)."""
        items = headers if isinstance(headers, list | tuple) else list(headers)
        try:  # header bytes (a sender's or mitmproxy's) map 1:1 onto latin-1
            fields = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in items]  # type: ignore[union-attr]
        except AttributeError:  # some are str already
            fields = [(_str(k), _str(v)) for k, v in items]
        total = len(body) if size is None else size
        whole = total == len(body)
        digest = sha256 if sha256 is not None else hashlib.sha256(body).hexdigest() if whole else ""
        kept = None
        if decode and whole and total <= limit:
            kept = decode_capped(body, content_coding(fields), limit)
        return cls(status, fields, kept, total, digest, kept is not None and kept is not body)

    def header(self, name: str) -> str | None:
        """All values of a header (case-insensitive), stripped and joined by ", "; None when absent."""
        index = self._index
        if index is None:
            index = {}
            for k, v in self.headers:
                k = k.lower()
                index[k] = f"{index[k]}, {v.strip()}" if k in index else v.strip()
            self._index = index
        found = index.get(name)  # callers ask in lower case: lowered only when that finds nothing
        return found if found is not None or name.islower() else index.get(name.lower())

    def header_hashes(self, names: tuple[str, ...]) -> tuple[int, ...]:
        """The hash of each of `names`' values (`header`): what a noise print keeps of the compared headers, asked
        of one reply a few times (is it the same answer again, then its print)."""
        kept = self._hashes
        if kept is None or kept[0] != names:
            kept = self._hashes = (names, tuple(hash(self.header(h)) for h in names))
        return kept[1]

    def media(self) -> tuple[str, str | None]:
        """(type/subtype in lower case, charset or None) of the content-type."""
        mime, *params = (self.header("content-type") or "").split(";")
        charset = None
        for p in params:
            k, _, v = p.partition("=")
            if k.strip().lower() == "charset":
                charset = v.strip().strip('"') or None
        return mime.strip().lower(), charset

    def parsed(self) -> Any:
        """The body as JSON when its content-type is JSON and it parses exactly; NOT_JSON otherwise. Parsed once.

        Exact: numbers with a fraction or exponent are `Decimal`s as written (`1e400` and `1e401` differ, where
        floats would both be inf), and an object with a duplicate key is not JSON here (parsers disagree on which
        value wins, so such a body is compared as text, byte for byte)."""
        if self._json is _UNPARSED:
            self._json = NOT_JSON
            mime = self.media()[0]
            if self.body is not None and _is_json(mime):
                try:
                    self._json = json.loads(
                        self.body, parse_constant=_reject_constant, parse_float=Decimal, object_pairs_hook=_unique
                    )
                # Invalid, nested deeper than Python's recursion limit, or a number whose exponent is beyond any
                # Decimal (`1e99999999999999999999`): compared as text, byte for byte, which stays exact.
                except (ValueError, RecursionError, decimal.InvalidOperation):
                    pass
            elif self.body is not None and is_grpc(mime):
                # gRPC messages, decoded from protobuf's wire format: compared field by field as JSON is.
                messages = protowire.body(self.body)
                if messages is not None:
                    self._json = messages if self.schema is None else self.schema(messages)
        return self._json

    def will_parse(self) -> bool:
        """Whether `parsed` has yet to parse the body (work to be paid for); False once parsed or when not JSON."""
        return self._json is _UNPARSED and self.body is not None and _is_json(self.media()[0])

    def text(self) -> str | None:
        """The body as text, decoded strictly by its charset (UTF-8 when none is given); None when it is not text,
        its charset is unknown or not a text encoding (`base64`, `rot13`, `hex` are codecs too), or a byte sequence
        is invalid in it: such a body is compared as bytes."""
        if self.body is None or not self.is_text():
            return None
        charset = self.media()[1] or "utf-8"
        try:
            info = codecs.lookup(charset)
        except LookupError:
            return None
        if not getattr(info, "_is_text_encoding", True):
            return None
        try:
            return self.body.decode(info.name)
        except (UnicodeDecodeError, ValueError):
            return None

    def digest(self) -> tuple[int, str]:
        """(size, sha256) of the content: the decoded body when it is kept, else the bytes as sent."""
        if self._digest is None:
            if self.body is not None and self.encoded:
                self._digest = (len(self.body), hashlib.sha256(self.body).hexdigest())
            else:
                self._digest = (self.body_size, self.body_sha256)
        return self._digest

    def is_text(self) -> bool:
        mime, charset = self.media()
        return (
            charset is not None
            or mime.startswith("text/")
            or _is_json(mime)
            or mime in ("application/xml", "application/javascript")
            or mime.endswith("+xml")
        )


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ValueError("duplicate key")
    return d


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN would never equal itself


def _is_json(mime: str) -> bool:
    return mime == "application/json" or mime.endswith("+json")
