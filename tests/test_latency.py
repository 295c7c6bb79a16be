"""Production's latency as the shadow's: from the request going out to the last byte of the answer, without
mitmproxy's hold of the answer for its hooks (`production.latency` with the Shadow addon's marks)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.connection import ConnectionState
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHeadersHook, HttpResponseHook
from mitmproxy.test import taddons, tflow, tutils
from support import mapping, write_mappings

from shadow_addon import production
from shadow_addon.metrics import PRODUCTION
from shadow_addon.production import Marks, latency
from shadow_addon.shadow import Shadow


class FakeTime:
    """time.time() for the Shadow addon's marks: what `now` says."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    t = FakeTime()
    monkeypatch.setattr(production, "time", t)
    return t


def answered(req_end: float, head: float, end: float) -> tflow.HTTPFlow:
    f = tflow.tflow(resp=True)
    f.request.timestamp_end = req_end
    f.server_conn.timestamp_tcp_setup = f.server_conn.timestamp_tls_setup = None
    f.response.timestamp_start, f.response.timestamp_end = head, end
    return f


def test_production_latency_starts_when_its_request_goes_out() -> None:
    f = answered(100.0, 100.75, 101.0)
    f.server_conn.timestamp_tcp_setup = 99.0  # connected before (eager): not counted
    assert latency(f) == 1.0
    assert latency(f, Marks(100.25)) == 0.75  # the proxy's own work before the request leaves is not
    f.server_conn.timestamp_tcp_setup = 100.5  # connected after the hooks (lazy): the set-up is not counted
    assert latency(f, Marks(100.25)) == 0.5
    assert latency(f, Marks(100.25, connected=100.625)) == 0.375  # nor the connection's own hooks, which wrote it
    f.server_conn.timestamp_tls_setup = 100.6875
    assert latency(f, Marks(100.25)) == 0.3125
    f.server_conn.timestamp_tcp_setup = f.server_conn.timestamp_tls_setup = 102.0  # a later connection's
    assert latency(f, Marks(100.25)) == 0.75


def test_a_body_that_came_with_its_head_ends_at_the_head() -> None:
    # Head read at 101; the answer held by the hooks; the body, there since 101, taken at 101.625 in the step that
    # ran the hooks, which ended at 101.75.
    f = answered(100.0, 101.0, 101.625)
    assert latency(f, Marks(100.5, head_step=101.75)) == 0.5  # 101 - 100.5: none of the hold counted
    assert latency(f, Marks(100.5)) == 1.125  # no mark of that step: timestamp_end as mitmproxy set it
    # A body read after that step (it ended at 101.5): taken as it arrived.
    assert latency(f, Marks(100.5, head_step=101.5)) == 1.125


def test_no_latency_without_an_answer() -> None:
    f = tflow.tflow()
    assert latency(f) is None
    assert latency(f, Marks(1.0, 2.0)) is None


def _server_hook(f: tflow.HTTPFlow) -> server_hooks.ServerConnectionHookData:
    return server_hooks.ServerConnectionHookData(server=f.server_conn, client=f.client_conn)


async def test_the_shadow_addon_marks_its_requests_and_leaves_out_the_hold(
    tmp_path: Path, clock_time: FakeTime
) -> None:
    m = write_mappings(tmp_path / "m.yaml", mapping("a", prefix="/", service="127.0.0.1:9"))
    sh = Shadow()
    with taddons.context(sh, Proxyserver()) as tctx:
        tctx.configure(sh, mappings=str(m), shadow_admin="")
        sh.running()
        chain = list(tctx.master.addons.chain)
        hooks = tctx.master.addons.handle_lifecycle

        async def exchange(connect: bool, head: float, body: float | None) -> None:
            """One request and its answer, the clock moved on as mitmproxy's steps would. `body`: when mitmproxy
            takes the body, in the step of the hooks holding the head (before 2.0) or after it (None: 2.25)."""
            f = tflow.tflow(req=tutils.treq(path=b"/x"), resp=False)
            f.server_conn.timestamp_tcp_setup = f.server_conn.timestamp_tls_setup = None
            f.request.timestamp_end = clock_time.now = 0.5
            sh.requestheaders(f)
            await hooks(HttpRequestHook(f))
            clock_time.now = 1.0  # the rest of the step: mitmproxy writes the request on a kept-alive connection
            await asyncio.sleep(0)
            if connect:
                f.server_conn.state = ConnectionState.OPEN
                f.server_conn.timestamp_tcp_setup = 1.125
                await hooks(server_hooks.ServerConnectedHook(_server_hook(f)))
                clock_time.now = 1.25  # on a new connection, the request is written in the step of its hooks
                await asyncio.sleep(0)
            f.response = tutils.tresp(timestamp_start=head, timestamp_end=None)
            await hooks(HttpResponseHeadersHook(f))
            f.response.timestamp_end = body
            clock_time.now = 2.0
            await asyncio.sleep(0)
            if body is None:
                f.response.timestamp_end = 2.25
            await hooks(HttpResponseHook(f))
            if connect:
                await hooks(server_hooks.ServerDisconnectedHook(_server_hook(f)))

        def durations() -> tuple[int, float]:
            h = sh.metrics.durations[("a", "127.0.0.1:9", PRODUCTION)]
            return h.count, h.total

        await exchange(False, 1.5, 1.75)
        assert durations() == (1, 0.5)  # 1.0 .. 1.5: the body came with the head
        await exchange(False, 1.5, None)
        assert durations() == (2, 0.5 + 1.25)  # 1.0 .. 2.25: the body came after
        await exchange(True, 1.5, 1.75)
        assert durations() == (3, 0.5 + 1.25 + 0.25)  # 1.25 .. 1.5
        assert sh.pending == {} and sh.connections.at == {}
        assert tctx.master.addons.chain == chain  # no addon of its own: the marks cost production no dispatch
        sh.done()
