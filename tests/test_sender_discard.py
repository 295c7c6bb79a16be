"""An answer's body that nobody keeps or hashes is dropped in the kernel (Linux: recv with MSG_TRUNC), counted to
its last byte, on a connection kept for the next copy; kept or hashed bodies, chunked ones and bytes past the
answer are read as before. The reader's rules as plain data, the sender against real loopback sockets."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import sys
from pathlib import Path

import pytest
from support import KeptAliveAnswers, make_cert, server_tls

from shadow_addon import connection
from shadow_addon.mappings import Address
from shadow_addon.metrics import Metrics
from shadow_addon.reader import ResponseReader
from shadow_addon.sender import Copy, Outcome, Sender, client_context

SIZE = 1_000_000
LIMIT = 2 << 20
linux = pytest.mark.skipif(sys.platform != "linux", reason="bytes are dropped unseen on Linux only")


def head(length: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % length


def test_only_a_content_length_body_nobody_keeps_or_hashes_is_discardable() -> None:
    r = ResponseReader()
    r.start("GET", 0, LIMIT)
    assert r.unseen() and r.discardable() == 0  # no head yet
    assert not r.feed(head(100) + b"x" * 10)
    assert r.discardable() == 89  # all but the last byte
    r.discarded(89)
    assert r.size == 99 and r.discardable() == 0 and not r.done
    assert r.feed(b"x") and r.size == 100 and r.reusable
    for keep, hashed in ((50, False), (0, True)):  # kept, or hashed: every byte is seen
        r.start("GET", keep, LIMIT, hash_body=hashed)
        assert not r.unseen()
        r.feed(head(100) + b"x" * 10)
        assert r.discardable() == 0
    r.start("GET", 50, LIMIT)
    r.feed(head(100) + b"x" * 60)
    assert r.discardable() == 39  # what was to be kept is in
    r.start("GET", 0, LIMIT)
    r.feed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nxxx")
    assert r.discardable() == 0  # chunked: h11 reads the framing


def answers(body: bytes, extra: bytes = b"", tls: ssl.SSLContext | None = None) -> KeptAliveAnswers:
    """A loopback server answering every request on a kept-alive connection with `body` (and `extra` bytes past
    the answer, in the same write)."""
    return KeptAliveAnswers(head(len(body)) + body + extra, tls)


async def one_by_one(
    port: int, n: int, keep: int = 0, hashed: bool = False, tls: ssl.SSLContext | None = None
) -> list[Outcome]:
    """`n` copies, each sent once the one before has its outcome; the sender is closed after."""
    outcomes: list[Outcome] = []
    done = asyncio.Event()
    sender = Sender(
        Metrics(), response_limit=LIMIT, on_result=lambda c, out: (outcomes.append(out), done.set()), ssl_context=tls
    )
    try:
        for i in range(n):
            done.clear()
            address = Address("https" if tls else "http", "127.0.0.1", port)
            c = Copy("cand", "svc", address, "GET", f"/{i}", "cand", (), b"", 5.0, keep_body=keep, hash_body=hashed)
            sender.submit(c)
            await asyncio.wait_for(done.wait(), 10)
    finally:
        sender.close()
    return outcomes


@pytest.fixture
def dropped(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts the reader was told were dropped unseen."""
    counts: list[int] = []
    real = ResponseReader.discarded

    def counted(self: ResponseReader, n: int) -> None:
        counts.append(n)
        real(self, n)

    monkeypatch.setattr(ResponseReader, "discarded", counted)
    return counts


@linux
async def test_a_body_nobody_keeps_is_dropped_unseen_counted_to_its_last_byte(dropped: list[int]) -> None:
    async with answers(b"x" * SIZE) as server:
        outcomes = await one_by_one(server.port, 4)
    assert [(o.status, o.body, o.body_size, o.reason) for o in outcomes] == [(200, b"", SIZE, None)] * 4
    assert all(o.seconds > 0 for o in outcomes)
    assert server.connections == 1  # each answer ended where it should: the connection carried the next copy
    assert dropped and 0 < sum(dropped) < 4 * SIZE  # most of the bytes dropped, the last of each read


@linux
async def test_a_kept_or_hashed_body_is_read_whole(dropped: list[int]) -> None:
    body = bytes(range(256)) * (SIZE // 256)
    async with answers(body) as server:
        kept = await one_by_one(server.port, 2, keep=LIMIT, hashed=True)
        hashed = await one_by_one(server.port, 2, keep=1000, hashed=True)
    assert [(o.body, o.body_size) for o in kept] == [(body, len(body))] * 2
    assert [(o.body, o.body_size) for o in hashed] == [(body[:1000], len(body))] * 2
    assert {o.body_sha256 for o in hashed} == {hashlib.sha256(body).hexdigest()}
    assert dropped == []


@linux
async def test_bytes_past_an_answer_are_read_not_dropped_with_it(dropped: list[int]) -> None:
    async with answers(b"x" * SIZE, extra=b"HTTP/1.1 200 OK\r\n") as server:
        outcomes = await one_by_one(server.port, 2)
    assert [(o.status, o.body_size) for o in outcomes] == [(200, SIZE)] * 2
    assert server.connections == 2  # the extra bytes were seen: that connection was not reused
    assert dropped


async def test_without_the_kernel_drop_every_byte_is_read(monkeypatch: pytest.MonkeyPatch, dropped: list[int]) -> None:
    monkeypatch.setattr(connection, "_DISCARD", 0)  # as on another platform
    async with answers(b"x" * SIZE) as server:
        outcomes = await one_by_one(server.port, 2)
    assert [(o.status, o.body_size) for o in outcomes] == [(200, SIZE)] * 2 and server.connections == 1
    assert dropped == []


async def test_over_tls_every_byte_is_read(tmp_path: Path, dropped: list[int]) -> None:
    """The socket under TLS carries records, not the body: nothing of it is dropped unseen."""
    cert, key = make_cert(tmp_path)
    async with answers(b"x" * SIZE, tls=server_tls(cert, key)) as server:
        outcomes = await one_by_one(server.port, 2, tls=client_context(False, str(cert)))
    assert [(o.status, o.body_size, o.reason) for o in outcomes] == [(200, SIZE, None)] * 2
    assert server.connections == 1 and dropped == []
