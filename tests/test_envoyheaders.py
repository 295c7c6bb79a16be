"""The headers Envoy changes, as pure functions (the wire is in test_e2e_envoy.py)."""

from __future__ import annotations

import pytest
from mitmproxy.http import Headers

from shadow_addon import envoyheaders as eh


@pytest.mark.parametrize(
    ("given", "expected", "changed"),
    [
        (
            {"connection": "Upgrade, HTTP2-Settings", "upgrade": "h2c", "http2-settings": "AA"},
            {},
            True,
        ),
        ({"connection": "close, upgrade", "upgrade": "H2C"}, {"connection": "close"}, True),  # other tokens stay
        ({"upgrade": "websocket"}, {}, True),  # no `Connection: upgrade`: not an upgrade, dropped
        ({"connection": "keep-alive", "upgrade": "websocket"}, {"connection": "keep-alive"}, True),
        ({"connection": "upgrade", "upgrade": "websocket"}, {"connection": "upgrade", "upgrade": "websocket"}, False),
        (
            {"connection": "upgrade", "upgrade": "h2c, websocket"},
            {"connection": "upgrade", "upgrade": "h2c, websocket"},
            False,
        ),
        ({"connection": "close"}, {"connection": "close"}, False),
    ],
)
def test_drop_unsupported_upgrade(given: dict[str, str], expected: dict[str, str], changed: bool) -> None:
    h = Headers(**{k.replace("-", "_"): v for k, v in given.items()})
    assert eh.drop_unsupported_upgrade(h) is changed
    assert {k.lower(): v for k, v in h.items()} == expected


def test_connection_manager_treats_every_request_as_an_edge_request() -> None:
    """No address is internal without internal_address_config (Emissary sets none): even a private client's
    x-request-id is replaced and its x-envoy-* headers are removed (conn_manager_utility.cc mutateRequestHeaders)."""
    private = eh.Downstream("10.0.0.5", "10.0.0.1", tls=True)
    h = Headers(
        x_request_id="abc",
        x_envoy_internal="true",
        x_envoy_expected_rq_timeout_ms="1",
        x_envoy_max_retries="9",
        keep_alive="timeout=5",
        proxy_connection="keep-alive",
    )
    eh.connection_manager(h, private, request_id="new")
    assert "keep-alive" not in h and "proxy-connection" not in h
    assert h["x-request-id"] == "new" and "x-envoy-internal" not in h
    assert "x-envoy-expected-rq-timeout-ms" not in h and "x-envoy-max-retries" not in h
    assert h["x-envoy-external-address"] == "10.0.0.5"
    assert h["x-forwarded-for"] == "10.0.0.5" and h["x-forwarded-proto"] == "https"
    loopback = eh.Downstream("127.0.0.1", "192.0.2.7", tls=False)
    h = Headers(x_forwarded_for="203.0.113.9")
    eh.connection_manager(h, loopback)
    assert h["x-forwarded-for"] == "203.0.113.9, 192.0.2.7"  # a loopback peer: Envoy's own address appended
    assert h["x-forwarded-proto"] == "http"


def test_router_headers_and_the_mirror() -> None:
    h = Headers()
    eh.router(h, 0, None)  # timeout 0 is none (router.cc: only a timeout > 0 is written)
    assert not h
    eh.router(h, 3000, "/a/b?c")
    assert h["x-envoy-expected-rq-timeout-ms"] == "3000" and h["x-envoy-original-path"] == "/a/b?c"
    mirrored = Headers(eh.mirror(Headers(x_forwarded_for="1.2.3.4").fields, "10.0.0.1", 3000))
    assert mirrored["x-forwarded-for"] == "1.2.3.4, 10.0.0.1" and mirrored["x-envoy-internal"] == "true"
    assert mirrored["x-envoy-expected-rq-timeout-ms"] == "3000"  # the async client's router sets it again
    assert "x-envoy-expected-rq-timeout-ms" not in Headers(eh.mirror(Headers().fields, None, 0))
