"""Production's latency as the shadow's: from the request going out to the last byte of the answer."""

from __future__ import annotations

from mitmproxy.test import tflow

from shadow_addon.production import latency


def test_production_latency_starts_when_its_request_goes_out() -> None:
    f = tflow.tflow(resp=True)
    f.request.timestamp_end = 100.0
    f.server_conn.timestamp_tcp_setup = 99.0  # connected before (eager): not counted
    f.server_conn.timestamp_tls_setup = None
    f.response.timestamp_end = 101.0
    assert latency(f) == 1.0
    assert latency(f, request_done=100.25) == 0.75  # the proxy's own work before the request leaves is not
    f.server_conn.timestamp_tcp_setup = 100.5  # connected after the hooks (lazy): the set-up is not counted
    assert latency(f, request_done=100.25) == 0.5
    f.server_conn.timestamp_tls_setup = 100.75
    assert latency(f, request_done=100.25) == 0.25
    f.server_conn.timestamp_tcp_setup = f.server_conn.timestamp_tls_setup = 102.0  # a later connection's
    assert latency(f, request_done=100.25) == 0.75


def test_no_latency_without_an_answer() -> None:
    f = tflow.tflow()
    assert latency(f) is None
