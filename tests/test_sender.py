"""The sender on its own, against real loopback sockets: how often it dials a service that refuses."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons, tflow, tutils
from support import KeptAliveAnswers, LoopbackServer, mapping, write_mappings

from shadow_addon import metrics as metrics_mod
from shadow_addon import pages
from shadow_addon.budget import MemoryBudget
from shadow_addon.mappings import Address
from shadow_addon.metrics import Metrics
from shadow_addon.sender import CAP_BACKOFF_MAX, CONNECT_BACKOFF, Copy, Outcome, Sender, cap_backoff
from shadow_addon.shadow import Shadow

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


class Clock:
    """Monotonic time that a test can move on: back-off runs out without waiting for it."""

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skew

    def advance(self, seconds: float) -> None:
        self.skew += seconds


async def settle(outcomes: list[Outcome], n: int) -> None:
    for _ in range(200):  # <= 4 s
        if len(outcomes) >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(outcomes)} of {n} copies finished")


async def test_a_burst_at_a_refusing_service_dials_it_once(dials: Callable[[], int]) -> None:
    outcomes: list[Outcome] = []
    metrics = Metrics()
    clock = Clock()
    sender = Sender(metrics, on_result=lambda c, out: outcomes.append(out), clock=clock)
    port = closed_port()
    for _ in range(BURST):  # submitted together, as copies are while a refused connect is still pending
        sender.submit(copy(port))
    await settle(outcomes, BURST)
    assert dials() == 1
    assert metrics.dropped == {("cand", "connect_error"): BURST}
    clock.advance(CONNECT_BACKOFF + 0.05)
    for _ in range(BURST):
        sender.submit(copy(port))
    await settle(outcomes, 2 * BURST)
    assert dials() == 2
    assert all(o.reason == "connect_error" for o in outcomes)
    sender.close()


async def test_copies_that_waited_for_a_connect_go_out_once_it_succeeds(dials: Callable[[], int]) -> None:
    outcomes: list[Outcome] = []
    clock = Clock()
    sender = Sender(Metrics(), on_result=lambda c, out: outcomes.append(out), clock=clock)
    port = closed_port()
    sender.submit(copy(port))  # refused: the service is now suspect
    await settle(outcomes, 1)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = await asyncio.start_server(answer, "127.0.0.1", port)  # the service comes back
    try:
        clock.advance(CONNECT_BACKOFF + 0.05)
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


class Blackhole(LoopbackServer):
    """A loopback server that reads every request and never answers."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass


def body_copy(port: int, body: bytes, service: str = "cand-svc") -> Copy:
    return Copy("cand", service, Address("http", "127.0.0.1", port), "POST", "/x", "cand", (), body, 30.0)


async def wait_for(cond: Callable[[], bool]) -> None:
    for _ in range(250):  # <= 5 s
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_closing_gives_every_copy_an_outcome_and_frees_its_memory() -> None:
    outcomes: list[Outcome] = []
    metrics = Metrics()
    sender = Sender(metrics, max_inflight=2, max_backlog=10, on_result=lambda c, out: outcomes.append(out))
    async with Blackhole() as bh:
        for _ in range(6):
            sender.submit(body_copy(bh.port, b"b" * 1000))
        pool = sender.pools[Address("http", "127.0.0.1", bh.port)]
        await wait_for(lambda: len(bh.writers) == 2)
        assert (pool.inflight, len(pool.backlog), sender.budget.held) == (2, 4, 6000)
        sender.close()
        assert [o.reason for o in outcomes] == ["cancelled"] * 6
        assert metrics.dropped == {("cand", "cancelled"): 6}
        assert (pool.inflight, len(pool.backlog), sender.budget.held) == (0, 0, 0)
        assert not any(k[2] == "shadow" for k in metrics.upstream)  # never an answer nor an error of the shadow
        await asyncio.sleep(0.1)  # the aborted connections' callbacks run: no second outcome
        assert len(outcomes) == 6


async def test_closing_while_connecting_gives_the_outcome_once() -> None:
    outcomes: list[Outcome] = []
    sender = Sender(Metrics(), on_result=lambda c, out: outcomes.append(out))
    async with Blackhole() as bh:
        sender.submit(body_copy(bh.port, b"x"))  # the connect is under way (its task has not run to the end)
        sender.close()
        await asyncio.sleep(0.1)
    assert [o.reason for o in outcomes] == ["cancelled"] and sender.budget.held == 0


async def test_a_connection_to_this_proxy_is_dropped_as_loop_with_the_copies_waiting_for_it() -> None:
    outcomes: list[Outcome] = []
    metrics = Metrics()
    async with Blackhole() as bh:
        asked: list[tuple[str, int]] = []

        def is_self(ip: str, port: int) -> bool:
            asked.append((ip, port))
            return port == bh.port

        sender = Sender(metrics, on_result=lambda c, out: outcomes.append(out), is_self=is_self)
        for _ in range(5):  # the first dials; the others wait for that connection
            sender.submit(body_copy(bh.port, b"x"))
        await wait_for(lambda: len(outcomes) == 5)
        assert asked == [("127.0.0.1", bh.port)]
        assert [o.reason for o in outcomes] == ["loop"] * 5 and metrics.dropped == {("cand", "loop"): 5}
        await wait_for(lambda: bool(bh.writers))
        assert sender.budget.held == 0 and sum(p.inflight for p in sender.pools.values()) == 0
        sender.close()


async def test_the_memory_budget_bounds_bodies_held_across_services() -> None:
    outcomes: list[Outcome] = []
    metrics = Metrics()
    budget = MemoryBudget(3000)
    sender = Sender(metrics, budget=budget, on_result=lambda c, out: outcomes.append(out))
    async with Blackhole() as a, Blackhole() as b:
        for _ in range(4):
            sender.submit(body_copy(a.port, b"a" * 1000, "svc-a"))
            sender.submit(body_copy(b.port, b"b" * 1000, "svc-b"))
        assert budget.held == 3000
        assert metrics.dropped == {("cand", "overload"): 5}
        gauges = {
            (name, tuple(labels.items())): v for name, _, labels, v in metrics_mod.sender_gauges(sender.occupancy())
        }
        assert gauges[("shadow_memory_bytes", ())] == 3000.0
        held = {k[1]: v for k, v in gauges.items() if k[0] in ("shadow_inflight", "shadow_backlog")}
        assert set(held) == {(("service", "svc-a"),), (("service", "svc-b"),)}  # the Mapping's service, not address
        assert sum(v for k, v in gauges.items() if k[0] in ("shadow_inflight", "shadow_backlog")) == 3
        sender.close()
    assert budget.held == 0


def scrape(sh: Shadow) -> dict[str, float]:
    """The addon's /metrics page through Prometheus' own parser: {sample name: sum over labels}."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(pages.pages(sh)["/metrics"]()[1].decode()):
        for s in fam.samples:
            key = s.name + ("" if "reason" not in s.labels else f":{s.labels['reason']}")
            out[key] = out.get(key, 0.0) + s.value
    return out


async def test_rebuilding_the_sender_releases_every_copy_and_comparison(tmp_path: Path) -> None:
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("api", prefix="/api/", service="api"),
        mapping("api-shadow", prefix="/api/", service="cand", shadow=True),
    )
    sh = Shadow()
    async with Blackhole() as bh:
        with taddons.context(sh, Proxyserver()) as tctx:
            tctx.configure(
                sh,
                mappings=str(m),
                mapping_services=["api=127.0.0.1:1", f"cand=127.0.0.1:{bh.port}"],
                shadow_compare=True,
                shadow_timeout="60",
                shadow_admin="",
            )
            if sh.sender is None:
                sh.running()
            for i in range(3):
                f = tflow.tflow(req=tutils.treq(path=b"/api/%d" % i))
                sh.requestheaders(f)
                sh.request(f)
                f.response = tutils.tresp()
                sh.response(f)
            await wait_for(lambda: len(bh.writers) == 3)
            before = scrape(sh)
            assert (before["shadow_inflight"], before["shadow_compare_pending"]) == (3, 3)
            tctx.configure(sh, shadow_max_inflight=10)  # rebuilds the sender while the shadow holds 3 copies
            after = scrape(sh)
            assert after.get("shadow_inflight", 0) == 0 and after["shadow_compare_pending"] == 0
            assert after["shadow_dropped_total:cancelled"] == 3
            assert sh.pairing is not None and sh.pairing.learner.held > 0  # noise prints stay, in the budget
            # What else stays held is the judgement's bookkeeping (endpoint names, per-field counts), not a copy.
            kept = sh.pairing.namer.held + sh.pairing.judge.held + sh.pairing.learner.held
            assert after["shadow_compare_total"] == 3 and after["shadow_memory_bytes"] == kept
            sh.done()


@pytest.mark.parametrize("option", ["shadow_response_limit", "shadow_memory_limit"])
def test_size_options_are_parsed_once_and_applied_live(option: str) -> None:
    sh = Shadow()
    with taddons.context(sh, Proxyserver()) as tctx:
        tctx.configure(sh)
        sh.files.running = True  # at run time a bad value raises, and mitmproxy rolls it back
        with pytest.raises(exceptions.OptionsError) as e:
            tctx.configure(sh, **{option: "lots"})
        assert str(e.value) == f"{option}: expected a size such as 512k or 1m, got 'lots'"
        sh._rebuild_sender()
        tctx.configure(sh, **{option: "2m"})
        assert sh.sender is not None and sh.sender.budget is sh.budget
        live = sh.sender.response_limit if option == "shadow_response_limit" else sh.budget.limit
        assert live == 2 * 1024 * 1024


async def test_a_service_whose_answers_break_a_cap_again_is_left_alone_for_a_moment() -> None:
    """Each answer stopped by a cap costs a new connection and a buffer's worth of reading: after two in a row
    the service is backed off as a refusing one is, and the copies meanwhile are counted under the same reason.
    One good answer in between resets the count."""
    outcomes: list[Outcome] = []
    metrics = Metrics()
    clock = Clock()
    sender = Sender(metrics, on_result=lambda c, out: outcomes.append(out), clock=clock)
    accepted = 0
    flood = b"HTTP/1.1 100 Continue\r\n\r\n" * 64

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.readuntil(b"\r\n\r\n")
        try:
            for _ in range(100):  # bounded: the sender closes after its interim cap
                writer.write(flood)
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        for n in (1, 2):
            sender.submit(copy(port))
            await settle(outcomes, n)
        for _ in range(10):  # while backing off: dropped at once, nothing dialled
            sender.submit(copy(port))
        await settle(outcomes, 12)
        assert accepted == 2
        assert metrics.dropped == {("cand", "interim_limit"): 12}
        clock.advance(CONNECT_BACKOFF + 0.05)
        sender.submit(copy(port))  # dialled again after the back-off
        await settle(outcomes, 13)
        assert accepted == 3
    finally:
        sender.close()
        server.close()


def test_the_back_off_after_capped_answers_doubles_up_to_its_maximum() -> None:
    assert [cap_backoff(n) for n in range(8)] == [0.0, 0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert cap_backoff(10_000) == CAP_BACKOFF_MAX


def big_answer(size: int) -> bytes:
    """An answer of `size` bytes of JSON."""
    body = b'{"a":"' + b"x" * (size - 8) + b'"}'
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body


async def test_an_answer_whose_comparison_was_given_up_is_drained_unkept_on_its_kept_alive_connection(
    tmp_path: Path,
) -> None:
    """A pair admitted when its copy was sent, whose comparison's share of the loop is spent when the shadow's
    head arrives, ends at that head as skipped (budget); the shadow's body is read to its last byte (timed,
    counted, the connection kept for the next copy) but neither kept nor hashed. While the share allows, the
    next answer is kept as before."""
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("api", prefix="/api/", service="api"),
        mapping("api-shadow", prefix="/api/", service="cand", shadow=True),
    )
    sh = Shadow()
    size = 300_000
    async with KeptAliveAnswers(big_answer(size)) as big:
        with taddons.context(sh, Proxyserver()) as tctx:
            tctx.configure(
                sh,
                mappings=str(m),
                mapping_services=["api=127.0.0.1:1", f"cand=127.0.0.1:{big.port}"],
                shadow_compare=True,
                shadow_admin="",
                shadow_flows="off",
            )
            if sh.sender is None:
                sh.running()
            assert sh.sender is not None and sh.pairing is not None
            seen: list[tuple[bytes, int, str, float]] = []
            forward = sh.sender.on_result
            assert forward is not None

            def record(c: Copy, out: Outcome) -> None:
                seen.append((out.body, out.body_size, out.body_sha256, out.seconds))
                forward(c, out)

            sh.sender.on_result = record
            for i, spent in enumerate((True, False)):
                sh.pairing.loop.tokens = sh.pairing.loop.cap
                f = tflow.tflow(req=tutils.treq(path=b"/api/%d" % i))
                sh.requestheaders(f)
                sh.request(f)
                await asyncio.sleep(0)  # the copy is made once the request hooks' loop step is over
                assert f.id in sh.pairing.pairs  # admitted when the copy was sent
                if spent:
                    sh.pairing.loop.spend(10.0)  # the share spent before the shadow's head arrives
                f.response = tutils.tresp()
                sh.response(f)
                await wait_for(lambda n=i + 1: len(seen) == n)
            (body0, size0, sha0, secs0), (body1, size1, _, _) = seen
            assert (body0, size0, sha0) == (b"", size, "") and secs0 > 0
            assert len(body1) == size1 == size  # kept for comparison while the share allows
            assert sh.pairing.metrics.compare_skipped[("api-shadow", "budget")] == 1
            assert big.connections == 1  # the drained answer left its connection reusable
            counts = scrape(sh)
            assert counts["shadow_compare_total"] == 2 and counts["shadow_compare_pending"] == 0
            sh.done()
