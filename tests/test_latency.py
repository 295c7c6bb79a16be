"""Production's latency as the shadow's: from the request going out to the last byte of the answer, without
mitmproxy's hold of the answer for the `responseheaders` hooks (`production.latency` with the Shadow addon's
marks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHeadersHook, HttpResponseHook
from mitmproxy.test import taddons, tflow, tutils
from support import mapping, write_mappings

from shadow_addon import shadow
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
    monkeypatch.setattr(shadow, "time", t)
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
    f.server_conn.timestamp_tls_setup = 100.625
    assert latency(f, Marks(100.25)) == 0.375
    assert latency(f, Marks(100.75)) == 0.25  # the connection's own hooks after its set-up are not counted either
    f.server_conn.timestamp_tcp_setup = f.server_conn.timestamp_tls_setup = 102.0  # a later connection's
    assert latency(f, Marks(100.25)) == 0.75


def test_the_hold_of_the_answer_for_the_responseheaders_hooks_is_not_counted() -> None:
    # Head read at 101, held by the hooks until 101.5; the body (there since 101) taken at 101.625.
    f = answered(100.0, 101.0, 101.625)
    assert latency(f, Marks(100.5, head_done=101.5)) == 0.625  # 101.125 - 100.5: the hold's 0.5 s left out
    assert latency(f, Marks(100.5)) == 1.125  # no mark of the hold: timestamp_end as mitmproxy set it
    # A body still arriving after the hold (ended at 103): short by at most the hold, as documented.
    f.response.timestamp_end = 103.0
    assert latency(f, Marks(100.5, head_done=101.5)) == 2.0
    # Never earlier than the head itself.
    f.response.timestamp_end = 101.25
    assert latency(f, Marks(100.5, head_done=102.0)) == 0.5
    # A hold mark before the head (no hold known): nothing taken off.
    assert latency(f, Marks(100.5, head_done=100.75)) == 0.75


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
        f = tflow.tflow(req=tutils.treq(path=b"/x"), resp=False)
        f.request.timestamp_end = 0.5
        sh.requestheaders(f)
        clock_time.now = 1.0
        await tctx.master.addons.handle_lifecycle(HttpRequestHook(f))  # the request goes out: 1.0
        f.response = tutils.tresp(timestamp_start=1.5, timestamp_end=None)
        clock_time.now = 2.0
        await tctx.master.addons.handle_lifecycle(HttpResponseHeadersHook(f))  # held 1.5 .. 2.0
        f.response.timestamp_end = 2.25
        await tctx.master.addons.handle_lifecycle(HttpResponseHook(f))
        h = sh.metrics.durations[("a", "127.0.0.1:9", PRODUCTION)]
        assert (h.count, h.total) == (1, 0.75)  # 1.0 .. 1.75 (2.25 less the hold)
        assert sh.pending == {}
        assert tctx.master.addons.chain == chain  # no addon of its own: the marks cost production no dispatch
        sh.done()
