"""The copy's shaping from the request as production got it (copies.py), in-process."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.test import tutils

from shadow_addon import copies


@pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/1.1", b"HTTP/2.0", b"HTTP/3"])
@pytest.mark.parametrize(
    "fields",
    [(), ((b"Host", b"a.example:81"),), ((b"host", b"a"), (b"HOST", b"b")), ((b"host", b"\xff\xfe"),)],
)
def test_host_header_reads_as_mitmproxy_does(version: bytes, fields: tuple[tuple[bytes, bytes], ...]) -> None:
    for authority in (b"", b"auth.example"):
        req = tutils.treq(http_version=version, headers=http.Headers(fields), authority=authority)
        assert copies.host_header(req) == req.host_header


def test_not_copied_reads_the_head_only() -> None:
    def req(method: bytes = b"GET", **headers: str) -> http.Request:
        return tutils.treq(method=method, headers=http.Headers(**headers))

    assert copies.not_copied(req()) is None
    assert copies.not_copied(req(b"CONNECT")) == "upgrade"
    assert copies.not_copied(req(Upgrade="websocket", x_mitmproxy_shadow="1")) == "upgrade"  # upgrade first
    assert copies.not_copied(req(X_Mitmproxy_Shadow="1")) == "loop"
    assert copies.not_copied(req(b"POST"), frozenset({"GET"})) == "method"
