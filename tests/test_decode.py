"""Decoding bodies with an output cap: every coding round-trips under the cap, and nothing inflates past it."""

from __future__ import annotations

import gzip
import sys
import tracemalloc
import zlib
from collections.abc import Callable

import brotli
import pytest
from bombs import br_bomb, deflate_bomb, gzip_bomb

from shadow_addon.compare import decode, decode_capped

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

LIMIT = 1024 * 1024
DATA = b"".join(b"line %d of a compressible body\n" % i for i in range(20000))  # 600 KB


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
}


@pytest.mark.parametrize("coding", list(ENCODERS))
def test_every_coding_round_trips_under_the_cap(coding: str) -> None:
    encoded = ENCODERS[coding](DATA)
    assert len(encoded) < len(DATA) // 4
    assert decode_capped(encoded, coding, LIMIT) == DATA
    assert decode_capped(encoded, coding.upper() + " ", LIMIT) == DATA  # codings are case-insensitive


def test_raw_deflate_is_accepted_as_deflate() -> None:
    assert decode_capped(raw_deflate(DATA), "deflate", LIMIT) == DATA


def test_stacked_codings_are_undone_last_first() -> None:
    assert decode_capped(brotli.compress(gzip.compress(DATA)), "gzip, br", LIMIT) == DATA
    assert decode_capped(gzip.compress(zstd.compress(DATA)), "zstd,gzip", LIMIT) == DATA
    assert decode_capped(gzip.compress(DATA), "identity, gzip", LIMIT) == DATA
    assert decode_capped(gzip.compress(DATA), "br, gzip", LIMIT) is None  # the inner stream is not brotli


def test_identity_and_empty() -> None:
    assert decode_capped(DATA, "", LIMIT) == DATA
    assert decode_capped(DATA, "identity", LIMIT) == DATA
    assert decode_capped(DATA, "", len(DATA) - 1) is None  # over the cap as sent
    for coding in ENCODERS:
        assert decode_capped(b"", coding, LIMIT) == b""  # a HEAD or 204 answer with a content-encoding


def test_cap_is_inclusive() -> None:
    for coding, encode in ENCODERS.items():
        encoded = encode(DATA)
        assert decode_capped(encoded, coding, len(DATA)) == DATA, coding
        assert decode_capped(encoded, coding, len(DATA) - 1) is None, coding


def test_several_gzip_members_and_zstd_frames_are_concatenated() -> None:
    assert decode_capped(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", LIMIT) == b"abcd"
    assert decode_capped(zstd.compress(b"ab") + zstd.compress(b"cd"), "zstd", LIMIT) == b"abcd"


@pytest.mark.parametrize("coding", list(ENCODERS))
def test_truncated_garbage_and_trailing_bytes_are_undecodable(coding: str) -> None:
    encoded = ENCODERS[coding](DATA)
    assert decode_capped(encoded[:-7], coding, LIMIT) is None
    assert decode_capped(encoded[: len(encoded) // 2], coding, LIMIT) is None
    assert decode_capped(b"\x00garbage" * 50, coding, LIMIT) is None
    if coding not in ("gzip", "x-gzip", "zstd"):  # those read on as a next member: see the test below
        assert decode_capped(encoded + b"junk", coding, LIMIT) is None


def test_trailing_junk_after_a_gzip_member_or_zstd_frame_is_undecodable() -> None:
    assert decode_capped(gzip.compress(DATA) + b"junk", "gzip", LIMIT) is None
    assert decode_capped(zstd.compress(DATA) + b"junk", "zstd", LIMIT) is None


def test_unknown_coding_is_undecodable() -> None:
    assert decode_capped(DATA, "compress", LIMIT) is None
    assert decode_capped(gzip.compress(DATA), "gzip, snappy", LIMIT) is None


def test_zstd_window_over_8_mib_is_refused() -> None:
    # A stream that does not declare its size keeps the window it asks for: 128 MiB here, which a decoder would
    # have to allocate. RFC 9659 caps zstd content-encoding windows at 8 MiB.
    c = zstd.ZstdCompressor(options={zstd.CompressionParameter.window_log: 27})
    big_window = c.compress(DATA) + c.flush()
    assert zstd.decompress(big_window) == DATA  # valid zstd, only its window is too large
    assert decode_capped(big_window, "zstd", LIMIT) is None


def zstd_bomb(size: int = 1 << 30) -> bytes:
    zeros = bytes(16 * 1024 * 1024)
    c = zstd.ZstdCompressor()
    return b"".join(c.compress(zeros) for _ in range(size // len(zeros))) + c.flush()


def _inflates_past(coding: str, bomb: bytes, n: int) -> bool:
    """Whether the bomb really holds more than n bytes: inflated with the libraries themselves, stopped at n."""
    if coding == "br":
        d = brotli.Decompressor()
        out = d.process(bomb, output_buffer_limit=n + 1)
        return len(out) > n and not d.is_finished()
    if coding == "zstd":
        return len(zstd.ZstdDecompressor().decompress(bomb, n + 1)) > n
    wbits = 16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS
    return len(zlib.decompressobj(wbits).decompress(bomb, n + 1)) > n


BOMBS: dict[str, Callable[[], tuple[str, bytes]]] = {
    "gzip 1 MiB -> 1 GiB": lambda: ("gzip", gzip_bomb()),
    "br 6.5 KB -> 4 GiB": lambda: ("br", br_bomb()),
    "zstd -> 1 GiB": lambda: ("zstd", zstd_bomb()),
    "deflate -> 1 GiB": lambda: ("deflate", deflate_bomb()),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_bombs_stop_at_the_cap(name: str) -> None:
    coding, bomb = BOMBS[name]()
    assert len(bomb) <= LIMIT + 16 * 1024 and _inflates_past(coding, bomb, 64 * LIMIT)
    tracemalloc.start()
    try:
        assert decode_capped(bomb, coding, LIMIT) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * LIMIT  # the output buffers the decoder built: about the cap, never the inflated size


def test_stacked_bomb_stops_at_the_cap() -> None:
    inner = br_bomb()
    bomb = gzip.compress(inner)  # br applied first, then gzip: "br, gzip"
    assert decode_capped(bomb, "br, gzip", LIMIT * 100) is None
    tracemalloc.start()
    try:
        assert decode_capped(bomb, "br, gzip", LIMIT) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * LIMIT


def test_bomb_under_a_small_cap_produces_little() -> None:
    bomb = br_bomb(64 * 1024 * 1024)
    tracemalloc.start()
    try:
        assert decode_capped(bomb, "br", 4096) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < LIMIT


def test_a_small_body_that_did_not_decode_is_not_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shadow answering the same bomb to every copy costs one decoding, not one per answer."""
    from shadow_addon.compare import decode

    monkeypatch.setattr(decode, "_refused", type(decode._refused)())
    calls: list[str] = []
    real = decode._decode
    monkeypatch.setattr(decode, "_decode", lambda b, c, lim: calls.append(c) or real(b, c, lim))
    bomb = br_bomb()
    good = brotli.compress(b"ok")
    assert [decode_capped(bomb, "br", LIMIT) for _ in range(3)] == [None, None, None]
    assert [decode_capped(good, "br", LIMIT) for _ in range(2)] == [b"ok", b"ok"]
    assert decode_capped(bomb, "br", LIMIT * 2) is None  # another cap is another question
    assert calls == ["br", "br", "br", "br"]


# ------------------------------------------------------------------ which bodies are decoded off the loop


@pytest.mark.parametrize("quality", [0, 1, 5, 11])
@pytest.mark.parametrize("size", [0, 1, 5000, 300_000, (1 << 20) + 5])
def test_brotli_head_reads_the_window_and_the_first_block(quality: int, size: int) -> None:
    data = bytes(range(256)) * (size // 512) + b"a" * (size - 256 * (size // 512))
    for lgwin in range(10, 25):
        body = brotli.compress(data, quality=quality, lgwin=lgwin)
        head = decode.brotli_head(body)
        assert head is not None, lgwin
        window_bits, last, length = head
        assert window_bits == (max(lgwin, 18) if quality < 2 else lgwin), lgwin  # the fastest levels use 18 or more
        if last:
            assert length == len(data), lgwin  # one last block holds it all (0: the empty stream)
        else:
            assert length is not None and 0 < length <= len(data), lgwin


def test_brotli_head_refuses_what_is_not_rfc_7932() -> None:
    assert decode.brotli_head(b"\x11") is None  # the large-window extension's marker
    assert decode.brotli_head(b"\x0b") is None  # window bits, then a block length cut short


def test_only_a_brotli_stream_with_a_large_window_is_decoded_off_the_loop() -> None:
    bomb = br_bomb(64 << 20)  # default window: 4 MiB
    assert decode.off_loop(bomb, "br", LIMIT)
    assert decode_capped(bomb, "br", LIMIT) is None
    assert decode.known_refused(bomb, "br", LIMIT)  # known now: compared as sent, never decoded again
    c = brotli.Compressor(quality=5, lgwin=20)
    small_window = b"".join(c.process(bytes(1 << 20)) for _ in range(64)) + c.finish()
    assert not decode.off_loop(small_window, "br", LIMIT)  # a 1 MiB window costs what the output cap does
    assert not decode.off_loop(brotli.compress(DATA[:50_000], lgwin=24), "br", LIMIT)  # one last block, sized
    assert decode.off_loop(brotli.compress(DATA * 4, lgwin=24), "br", LIMIT)  # blocks of a 16 MiB window
    assert decode.off_loop(gzip.compress(bomb), "br, gzip", LIMIT)  # brotli under gzip: not seen from here
    assert not decode.off_loop(gzip_bomb(64 << 20), "gzip", LIMIT)  # gzip stops at the cap itself
    assert decode.off_loop(gzip.compress(DATA), "gzip", 4 * LIMIT)  # a cap over 1 MiB: its output alone costs
    assert not decode.off_loop(DATA, "identity", 4 * LIMIT)
    assert not decode.off_loop(b"", "br", LIMIT)
