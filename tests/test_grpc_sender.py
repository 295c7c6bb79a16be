"""The sender's HTTP/2 copies against a real HTTP/2 service on loopback (an asyncio server on the h2 library)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from support import make_cert, server_tls

from shadow_addon import grpcwire
from shadow_addon.budget import MemoryBudget
from shadow_addon.mappings import Address
from shadow_addon.metrics import Metrics
from shadow_addon.sender import Copy, Outcome, Sender, client_context


class H2Service:
    """An HTTP/2 gRPC-like service: answers every stream with one message and grpc-status `status`, after `delay`
    seconds; `close_after`: closes each connection after that many answers."""

    def __init__(
        self, status: bytes = b"0", delay: float = 0.0, close_after: int = 0, goaway: bool = False, ping: bool = False
    ) -> None:
        self.status, self.delay, self.close_after = status, delay, close_after
        self.ping = ping  # a PING after every answer (as grpc-core's BDP probe sends them); `pings_acked` counts
        self.pings_acked = 0
        self.goaway = goaway  # the first connection answers its first stream, then GOAWAY: the others never start
        self.connections = 0
        self.requests: list[tuple[list[tuple[bytes, bytes]], bytes]] = []
        self.server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        bodies: dict[int, bytes] = {}
        heads: dict[int, list[tuple[bytes, bytes]]] = {}
        answered = first = 0
        try:
            while data := await reader.read(65536):
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        heads[ev.stream_id], bodies[ev.stream_id] = list(ev.headers), b""
                    elif isinstance(ev, h2.events.DataReceived):
                        bodies[ev.stream_id] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        if self.goaway and answered == 1:
                            conn.close_connection(last_stream_id=first)
                            self.goaway = False
                            break
                        first = ev.stream_id
                        self.requests.append((heads[ev.stream_id], bodies[ev.stream_id]))
                        if self.delay:
                            await asyncio.sleep(self.delay)
                        conn.send_headers(ev.stream_id, [(b":status", b"200"), (b"content-type", b"application/grpc")])
                        conn.send_data(ev.stream_id, grpcwire.frame(b"ok"))
                        conn.send_headers(ev.stream_id, [(b"grpc-status", self.status)], end_stream=True)
                        answered += 1
                        if self.ping:
                            conn.ping(b"%08d" % answered)
                    elif isinstance(ev, h2.events.PingAckReceived):
                        self.pings_acked += 1
                writer.write(conn.data_to_send())
                await writer.drain()
                if self.close_after and answered >= self.close_after:
                    break
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def services() -> AsyncIterator[list[H2Service]]:
    made: list[H2Service] = []
    yield made
    for s in made:
        await s.stop()


def a_copy(port: int, scheme: str = "http", timeout: float = 3.0) -> Copy:
    return Copy(
        "cand",
        "cand-svc",
        Address(scheme, "127.0.0.1", port),
        "POST",
        "/pkg.Svc/Call",
        "api-shadow",
        ((b"content-type", b"application/grpc"),),
        grpcwire.frame(b"hi"),
        timeout,
        http2=True,
    )


async def settle(outcomes: list[Outcome], n: int) -> None:
    for _ in range(250):  # <= 5 s
        if len(outcomes) >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(outcomes)} of {n} copies finished")


async def test_copies_to_one_service_are_multiplexed_on_one_connection(services: list[H2Service]) -> None:
    svc = H2Service()
    services.append(svc)
    port = await svc.start()
    outcomes: list[Outcome] = []
    metrics = Metrics()
    sender = Sender(metrics, on_result=lambda c, out: outcomes.append(out))
    for _ in range(50):
        sender.submit(a_copy(port))
    await settle(outcomes, 50)
    assert [o.status for o in outcomes] == [200] * 50 and {o.http_version for o in outcomes} == {"HTTP/2.0"}
    assert svc.connections == 1
    assert metrics.grpc == {("cand", "cand-svc", "shadow", "0"): 50}
    assert all((b":authority", b"api-shadow") in h for h, _ in svc.requests)
    for _ in range(10):  # and the connection is kept for later copies
        sender.submit(a_copy(port))
    await settle(outcomes, 60)
    assert svc.connections == 1
    sender.close()


async def test_acknowledgements_wait_for_the_next_copy_but_never_longer_than_a_moment(
    services: list[H2Service],
) -> None:
    svc = H2Service(ping=True)
    services.append(svc)
    port = await svc.start()
    outcomes: list[Outcome] = []
    sender = Sender(Metrics(), on_result=lambda c, out: outcomes.append(out))
    for i in range(3):
        sender.submit(a_copy(port))
        await settle(outcomes, i + 1)
    for _ in range(250):  # <= 5 s: no copy follows the last answer, its PING is acknowledged all the same
        if svc.pings_acked == 3:
            break
        await asyncio.sleep(0.02)
    assert svc.pings_acked == 3 and [o.status for o in outcomes] == [200] * 3
    sender.close()


async def test_copies_go_over_tls_with_alpn_h2(services: list[H2Service], tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    tls = server_tls(cert, key)
    tls.set_alpn_protocols(["h2"])
    svc = H2Service(status=b"7")
    services.append(svc)
    port = await svc.start(tls)
    outcomes: list[Outcome] = []
    metrics = Metrics()
    sender = Sender(
        metrics,
        on_result=lambda c, out: outcomes.append(out),
        h2_ssl_context=client_context(False, str(cert), ["h2"]),
    )
    for _ in range(5):
        sender.submit(a_copy(port, "https"))
    await settle(outcomes, 5)
    assert [o.status for o in outcomes] == [200] * 5
    assert all(o.trailers == [(b"grpc-status", b"7")] for o in outcomes)
    assert metrics.grpc == {("cand", "cand-svc", "shadow", "7"): 5}
    sender.close()


async def test_a_tls_service_that_refuses_h2_is_a_tls_error(services: list[H2Service], tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    tls = server_tls(cert, key)
    tls.set_alpn_protocols(["http/1.1"])
    svc = H2Service()
    services.append(svc)
    port = await svc.start(tls)
    outcomes: list[Outcome] = []
    metrics = Metrics()
    sender = Sender(
        metrics,
        on_result=lambda c, out: outcomes.append(out),
        h2_ssl_context=client_context(False, str(cert), ["h2"]),
    )
    sender.submit(a_copy(port, "https"))
    await settle(outcomes, 1)
    assert outcomes[0].reason == "tls_error"
    sender.close()


async def test_a_service_that_closes_its_connections_gets_the_next_copies_on_new_ones(
    services: list[H2Service],
) -> None:
    svc = H2Service(close_after=1)
    services.append(svc)
    port = await svc.start()
    outcomes: list[Outcome] = []
    sender = Sender(Metrics(), on_result=lambda c, out: outcomes.append(out))
    for i in range(4):
        sender.submit(a_copy(port))
        await settle(outcomes, i + 1)
        await asyncio.sleep(0.05)
    assert [o.status for o in outcomes] == [200] * 4
    assert svc.connections == 4
    sender.close()


async def test_closing_gives_every_http2_copy_an_outcome_and_frees_its_memory(services: list[H2Service]) -> None:
    svc = H2Service(delay=5.0)
    services.append(svc)
    port = await svc.start()
    outcomes: list[Outcome] = []
    budget = MemoryBudget(1 << 20)
    metrics = Metrics()
    sender = Sender(metrics, on_result=lambda c, out: outcomes.append(out), budget=budget)
    for _ in range(3):
        sender.submit(a_copy(port))
    for _ in range(100):
        if svc.requests:
            break
        await asyncio.sleep(0.02)
    sender.close()
    assert [o.reason for o in outcomes] == ["cancelled"] * 3
    assert budget.held == 0
    assert metrics.dropped == {("cand", "cancelled"): 3}


async def test_a_slow_service_times_out_per_stream(services: list[H2Service]) -> None:
    svc = H2Service(delay=2.0)
    services.append(svc)
    port = await svc.start()
    outcomes: list[Outcome] = []
    metrics = Metrics()
    sender = Sender(metrics, on_result=lambda c, out: outcomes.append(out))
    sender.submit(a_copy(port, timeout=0.3))
    await settle(outcomes, 1)
    assert outcomes[0].reason == "timeout"
    assert metrics.dropped == {("cand", "timeout"): 1}
    sender.close()


async def test_a_copy_to_this_proxy_itself_is_dropped_as_loop(services: list[H2Service]) -> None:
    svc = H2Service()
    services.append(svc)
    port = await svc.start()
    outcomes: list[Outcome] = []
    metrics = Metrics()
    sender = Sender(metrics, on_result=lambda c, out: outcomes.append(out), is_self=lambda ip, p: p == port)
    sender.submit(a_copy(port))
    await settle(outcomes, 1)
    assert outcomes[0].reason == "loop" and not svc.requests
    sender.close()


async def test_copies_a_service_never_started_go_again_on_a_new_connection(services: list[H2Service]) -> None:
    svc = H2Service(goaway=True)
    services.append(svc)
    port = await svc.start()
    outcomes: list[Outcome] = []
    sender = Sender(Metrics(), on_result=lambda c, out: outcomes.append(out))
    sender.submit(a_copy(port))
    await settle(outcomes, 1)  # the connection is up and has served
    for _ in range(3):
        sender.submit(a_copy(port))
    await settle(outcomes, 4)
    assert [o.status for o in outcomes] == [200] * 4, [o.error for o in outcomes]
    assert svc.connections >= 2 and len(svc.requests) == 4
    sender.close()
