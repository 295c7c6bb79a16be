"""The sender on its own, against real loopback sockets: how often it dials a service that refuses."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable

import pytest

from shadow_addon.mappings import Address
from shadow_addon.metrics import Metrics
from shadow_addon.sender import CONNECT_BACKOFF, Copy, Outcome, Sender

BURST = 50


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def copy(port: int) -> Copy:
    return Copy("cand", "cand-svc", Address("http", "127.0.0.1", port), "GET", "/x", "cand", (), b"", 3.0)


@pytest.fixture(params=["eager", "default"])
async def dials(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], int]]:
    """Count connection attempts (loop.create_connection wrapped; the real call still happens), under mitmproxy's
    eager task factory and under asyncio's default one."""
    loop = asyncio.get_running_loop()
    if request.param == "eager":
        loop.set_task_factory(asyncio.eager_task_factory)
    count = 0
    real = loop.create_connection

    async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal count
        count += 1
        return await real(*args, **kwargs)

    loop.create_connection = counted  # type: ignore[method-assign]
    yield lambda: count
    loop.create_connection = real  # type: ignore[method-assign]
    loop.set_task_factory(None)


async def settle(outcomes: list[Outcome], n: int) -> None:
    for _ in range(200):  # <= 4 s
        if len(outcomes) >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(outcomes)} of {n} copies finished")


async def test_a_burst_at_a_refusing_service_dials_it_once(dials: Callable[[], int]) -> None:
    outcomes: list[Outcome] = []
    metrics = Metrics()
    sender = Sender(metrics, on_result=lambda c, out: outcomes.append(out))
    port = closed_port()
    for _ in range(BURST):  # submitted together, as copies are while a refused connect is still pending
        sender.submit(copy(port))
    await settle(outcomes, BURST)
    assert dials() == 1
    assert metrics.dropped == {("cand", "connect_error"): BURST}
    await asyncio.sleep(CONNECT_BACKOFF + 0.05)
    for _ in range(BURST):
        sender.submit(copy(port))
    await settle(outcomes, 2 * BURST)
    assert dials() == 2
    assert all(o.reason == "connect_error" for o in outcomes)
    sender.close()


async def test_copies_that_waited_for_a_connect_go_out_once_it_succeeds(dials: Callable[[], int]) -> None:
    outcomes: list[Outcome] = []
    sender = Sender(Metrics(), on_result=lambda c, out: outcomes.append(out))
    port = closed_port()
    sender.submit(copy(port))  # refused: the service is now suspect
    await settle(outcomes, 1)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = await asyncio.start_server(answer, "127.0.0.1", port)  # the service comes back
    try:
        deadline = time.monotonic() + CONNECT_BACKOFF + 0.05
        await asyncio.sleep(deadline - time.monotonic())
        for _ in range(10):
            sender.submit(copy(port))
        pool = next(iter(sender.pools.values()))
        assert (pool.connecting, len(pool.backlog)) == (1, 9)  # one attempt; the rest wait for it
        await settle(outcomes, 11)
        assert [o.status for o in outcomes[1:]] == [200] * 10
        assert 2 <= dials() <= 11
        assert not pool.suspect and not pool.backlog
    finally:
        sender.close()
        server.close()
        await server.wait_closed()
