"""Undo a body's content-encoding with a cap on the output: a small compressed body can inflate to gigabytes.

Input is fed in bounded slices and every decoder is asked for at most what is left under the cap, so decoding
costs at most `limit` bytes of output (and a few ms) however the body was built. Nothing is decoded on trust:
over the cap, truncated, garbage or an unknown coding all give None, and the caller compares the bytes as sent.

One exception to "a few ms": a brotli decoder fills its window (up to 16 MiB) before the output cap applies,
about 40 ms for a bomb with the largest window. `off_loop` tells the caller which bodies to decode in a worker
thread (the decoder releases the GIL).
"""

from __future__ import annotations

import hashlib
import sys
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable

import brotli

if sys.version_info >= (3, 14):
    from compression import zstd
else:  # the backport mitmproxy itself installs before Python 3.14
    from backports import zstd

SLICE = 64 * 1024  # input bytes fed to a decoder at a time
ZSTD_WINDOW_LOG = 23  # RFC 9659 section 3: zstd content-encoding windows are at most 8 MiB
# A small body known not to decode within a cap is not decoded again: a shadow that answers the same bomb to
# every copy costs one decoding (a brotli bomb's first output alone takes several ms), not one per answer.
REFUSED_BODY = 64 * 1024
REFUSED_KEPT = 256
_refused: OrderedDict[tuple[str, int, bytes], None] = OrderedDict()
_refused_lock = threading.Lock()  # the worker thread (see off_loop) remembers refusals too
LOOP_WINDOW_BITS = 20  # a brotli window up to 1 MiB costs the loop a few ms at most, like the output cap itself


def _refused_key(body: bytes, content_encoding: str, limit: int) -> tuple[str, int, bytes] | None:
    if not body or len(body) > REFUSED_BODY or content_encoding.strip().lower() in ("", "identity"):
        return None
    return (content_encoding, limit, hashlib.blake2b(body, digest_size=16).digest())


def decode_capped(body: bytes, content_encoding: str, limit: int) -> bytes | None:
    """`body` without its content-encoding(s) (`gzip`, `deflate`, `br`, `zstd`, `identity`, stacked as in
    `gzip, br`), or None when it cannot be decoded or decodes to more than `limit` bytes."""
    if not content_encoding:  # no coding (most answers): the body as it is
        return body if len(body) <= limit else None
    key = _refused_key(body, content_encoding, limit)
    if key is None:
        return _decode(body, content_encoding, limit)
    with _refused_lock:
        if key in _refused:
            _refused.move_to_end(key)
            return None
    data = _decode(body, content_encoding, limit)
    if data is None:
        with _refused_lock:
            _refused[key] = None
            if len(_refused) > REFUSED_KEPT:
                _refused.popitem(last=False)
    return data


def known_refused(body: bytes, content_encoding: str, limit: int) -> bool:
    """Whether `body` (a small one) was found before not to decode within `limit`: it is compared as sent."""
    key = _refused_key(body, content_encoding, limit)
    return key is not None and key in _refused  # one lookup: atomic under the GIL


def off_loop(body: bytes, content_encoding: str, limit: int) -> bool:
    """Whether decoding `body` may hold the event loop for more than a few ms: any coding when `limit` is over
    1 MiB (the output alone then costs more), else a brotli stream whose window is over 1 MiB, unless it says it
    is one last block of at most 1 MiB (the decoder then sizes its ring buffer to it). A brotli coding under
    another one is not seen until that one is undone: off the loop too. (A body `known_refused` is not decoded
    at all.)"""
    coding_list = codings(content_encoding)
    if not coding_list or not body:
        return False
    if limit > 1 << LOOP_WINDOW_BITS:
        return True
    if "br" not in coding_list:
        return False
    if coding_list[-1] != "br":
        return True
    head = brotli_head(body)
    if head is None:
        return True
    window_bits, last, length = head
    return window_bits > LOOP_WINDOW_BITS and not (last and length is not None and length <= 1 << LOOP_WINDOW_BITS)


def brotli_head(body: bytes) -> tuple[int, bool, int | None] | None:
    """The start of a brotli stream (RFC 7932 sections 9.1 and 9.2): window bits, whether the first meta-block is
    the last, and its uncompressed length (0 for an empty stream, None for a metadata block). None: not brotli as
    RFC 7932 defines it (the large-window extension included)."""
    bits = int.from_bytes(body[:8], "little")  # bits are read from the least significant end
    pos = 0

    def take(n: int) -> int:
        nonlocal pos
        v = (bits >> pos) & ((1 << n) - 1)
        pos += n
        return v

    if take(1) == 0:
        window_bits = 16
    elif n := take(3):
        window_bits = 17 + n
    else:
        m = take(3)
        if m == 1:
            return None  # large window: not in RFC 7932
        window_bits = 8 + m if m else 17
    last = take(1) == 1
    if last and take(1):
        return window_bits, True, 0  # ISLASTEMPTY
    nibbles = take(2)
    if nibbles == 3:
        return window_bits, last, None  # a metadata block
    if len(body) * 8 < pos + 4 * (nibbles + 4):
        return None
    return window_bits, last, take(4 * (nibbles + 4)) + 1


def codings(content_encoding: str) -> list[str]:
    """The codings in the order applied (RFC 9110 section 8.4), identity left out."""
    return [c for c in (c.strip() for c in content_encoding.lower().split(",")) if c not in ("", "identity")]


def _decode(body: bytes, content_encoding: str, limit: int) -> bytes | None:
    data = body
    for coding in reversed(codings(content_encoding)):  # undone last first
        decoder = _DECODERS.get(coding)
        if decoder is None:
            return None
        if not data:
            continue  # an empty body (HEAD, 204) carries the header without a stream
        decoded = decoder(data, limit)
        if decoded is None:
            return None
        data = decoded
    return data if len(data) <= limit else None


def _gzip(body: bytes, limit: int) -> bytes | None:
    return _zlib(body, limit, 16 + zlib.MAX_WBITS, members=True)


def _deflate(body: bytes, limit: int) -> bytes | None:
    # "deflate" is zlib-wrapped by the standard, raw deflate by some servers: both are accepted, as browsers do.
    out = _zlib(body, limit, zlib.MAX_WBITS, members=False)
    return out if out is not None else _zlib(body, limit, -zlib.MAX_WBITS, members=False)


def _zlib(body: bytes, limit: int, wbits: int, members: bool) -> bytes | None:
    out = bytearray()
    rest = body
    try:
        while True:  # one gzip member per round; each consumes input, so the rounds are bounded by its size
            d = zlib.decompressobj(wbits)
            i = 0
            while i < len(rest) and not d.eof:
                chunk = rest[i : i + SLICE]
                i += SLICE
                while chunk and not d.eof:
                    out += d.decompress(chunk, limit + 1 - len(out))
                    if len(out) > limit:
                        return None
                    chunk = d.unconsumed_tail
            if not d.eof:
                return None  # truncated
            rest = d.unused_data + rest[i:]
            if not rest:
                return bytes(out)
            if not members:
                return None  # bytes after the end of the stream
    except zlib.error:
        return None


def _brotli(body: bytes, limit: int) -> bytes | None:
    d = brotli.Decompressor()
    out = bytearray()
    try:
        for i in range(0, len(body), SLICE):
            if d.is_finished():
                return None  # bytes after the end of the stream
            out += d.process(body[i : i + SLICE], output_buffer_limit=limit + 1 - len(out))
            # Output held back by the buffer limit is drained with empty input, still within the cap.
            while len(out) <= limit and not d.is_finished() and not d.can_accept_more_data():
                out += d.process(b"", output_buffer_limit=limit + 1 - len(out))
            if len(out) > limit:
                return None
    except brotli.error:
        return None
    return bytes(out) if d.is_finished() else None


def _zstd(body: bytes, limit: int) -> bytes | None:
    out = bytearray()
    rest = body
    try:
        while rest:  # one frame per round (a body may hold several)
            d = zstd.ZstdDecompressor(options={zstd.DecompressionParameter.window_log_max: ZSTD_WINDOW_LOG})
            i = 0
            while i < len(rest) and not d.eof:
                out += d.decompress(rest[i : i + SLICE], limit + 1 - len(out))
                i += SLICE
                while len(out) <= limit and not d.needs_input and not d.eof:
                    out += d.decompress(b"", limit + 1 - len(out))
                if len(out) > limit:
                    return None
            if not d.eof:
                return None  # truncated
            rest = d.unused_data + rest[i:]
    except zstd.ZstdError:
        return None
    return bytes(out)


_DECODERS: dict[str, Callable[[bytes, int], bytes | None]] = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}
