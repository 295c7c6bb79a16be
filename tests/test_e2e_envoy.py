"""What Envoy does to a routed request's headers, on the wire through a real mitmdump: the headers it adds (and the
mirror's copy of them), and the Upgrade headers it drops before routing."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import Proxy, Upstream, mapping, start_proxy, write_mappings

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@dataclass
class Shadowed:
    """One mitmdump shared by the tests of this module that use it as it is: /api/ -> api (rewrite /v1/,
    timeout_ms 5001) with a shadow. Each test sends its own requests and waits for its own copy."""

    p: Proxy
    api: Upstream
    shadow: Upstream

    def send(self, path: str, headers: dict[str, str] | None = None, raw: bool = False) -> int:
        """Send one routed request and wait for its copy: api.seen[-1] and shadow.seen[-1] are then its own."""
        n = self.shadow.count()
        status = (
            raw_get(self.p.port, path, headers or {})[0] if raw else self.p.request("GET", path, headers=headers)[0]
        )
        assert self.shadow.wait_for(n + 1)
        return status


def start_shadowed(tmp: Path, **sets: object) -> tuple[Shadowed, list[Upstream]]:
    prod, api, shadow = Upstream("prod"), Upstream("api"), Upstream("shadow")
    m = write_mappings(
        tmp / "m.yaml",
        mapping("api", prefix="/api/", service="api", rewrite="/v1/", timeout_ms=5001),
        mapping("api-shadow", prefix="/api/", service="shadow", shadow=True),
    )
    services = [f"api={api.address}", f"shadow={shadow.address}"]
    p = start_proxy(tmp, f"http://{prod.address}", sets={"mappings": str(m), "mapping_services": services, **sets})
    return Shadowed(p, api, shadow), [prod, api, shadow]


@pytest.fixture(scope="module")
def envoy_on(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shadowed]:
    s, servers = start_shadowed(tmp_path_factory.mktemp("envoy-on"))
    yield s
    s.p.stop()
    for u in servers:
        u.stop()


@pytest.fixture(scope="module")
def envoy_off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shadowed]:
    s, servers = start_shadowed(tmp_path_factory.mktemp("envoy-off"), mapping_envoy_headers="false")
    yield s
    s.p.stop()
    for u in servers:
        u.stop()


def test_envoy_headers_reach_production_and_the_copy_carries_the_same_values(envoy_on: Shadowed) -> None:
    """conn_manager_utility.cc mutateRequestHeaders (Emissary: use_remote_address, no trusted hops, no internal
    addresses): x-forwarded-for, x-forwarded-proto, a new x-request-id, x-envoy-external-address; router.cc
    decodeHeaders: x-envoy-expected-rq-timeout-ms (timeout_ms), x-envoy-original-path (the route rewrites). The mirror
    is copied after them and Envoy's async client (async_client_impl.cc sendHeaders) marks it x-envoy-internal: true
    and appends its own address to x-forwarded-for."""
    p, api, shadow = envoy_on.p, envoy_on.api, envoy_on.shadow
    assert envoy_on.send("/api/items?x=1", {"x-request-id": "hello", "x-envoy-internal": "true"}) == 200
    prod_seen, copy = api.seen[-1], shadow.seen[-1]
    assert prod_seen.path == "/v1/items?x=1"
    rid = prod_seen.header("x-request-id")
    assert rid is not None and UUID.match(rid)  # the client's is replaced: every request is an edge request
    assert prod_seen.header("x-forwarded-proto") == "http"
    assert prod_seen.header("x-forwarded-for") == "127.0.0.1"
    assert prod_seen.header("x-envoy-internal") is None
    assert prod_seen.header("x-envoy-external-address") == "127.0.0.1"
    assert prod_seen.header("x-envoy-expected-rq-timeout-ms") == "5001"
    assert prod_seen.header("x-envoy-original-path") == "/api/items?x=1"
    assert copy.header("x-request-id") == rid
    assert copy.header("x-envoy-expected-rq-timeout-ms") == "5001"
    assert copy.header("x-envoy-original-path") == "/api/items?x=1"
    assert copy.header("x-forwarded-proto") == "http"
    assert copy.header("x-envoy-internal") == "true"
    assert copy.header("x-forwarded-for") == "127.0.0.1, 127.0.0.1"
    # Each request its own id.
    assert p.request("GET", "/api/other")[0] == 200
    assert api.seen[-1].header("x-request-id") not in (None, rid)


def test_a_client_behind_another_proxy(envoy_on: Shadowed) -> None:
    """conn_manager_utility.cc mutateRequestHeaders: the client's XFF is kept and the peer appended, its
    x-forwarded-proto replaced by the connection's scheme, its x-request-id replaced (preserve_external_request_id
    is false in Emissary), internal-only x-envoy-* headers removed."""
    api, shadow = envoy_on.api, envoy_on.shadow
    headers = {
        "x-request-id": "hello",
        "x-forwarded-for": "203.0.113.9",
        "x-forwarded-proto": "https",
        "x-envoy-internal": "true",
        "x-envoy-retry-on": "5xx",
    }
    assert envoy_on.send("/api/x", headers) == 200
    seen, copy = api.seen[-1], shadow.seen[-1]
    assert seen.header("x-request-id") not in (None, "hello")
    assert seen.header("x-forwarded-for") == "203.0.113.9, 127.0.0.1"
    assert seen.header("x-forwarded-proto") == "http"  # the connection's, not the client's claim
    assert seen.header("x-envoy-internal") is None and seen.header("x-envoy-retry-on") is None
    assert seen.header("x-envoy-external-address") == "127.0.0.1"
    assert copy.header("x-request-id") == seen.header("x-request-id")
    assert copy.header("x-envoy-internal") == "true"


def test_envoy_headers_can_be_turned_off(envoy_off: Shadowed) -> None:
    api, shadow = envoy_off.api, envoy_off.shadow
    assert envoy_off.send("/api/x", {"x-request-id": "hello"}) == 200
    for seen in (api.seen[-1], shadow.seen[-1]):  # the client's headers as they came
        names = {k.lower() for k, _ in seen.headers}
        assert not names & {"x-forwarded-for", "x-forwarded-proto", "x-envoy-internal", "x-envoy-original-path"}
        assert "x-envoy-expected-rq-timeout-ms" not in names
        assert seen.header("x-request-id") == "hello"


def test_unrouted_requests_get_no_envoy_headers(envoy_on: Shadowed) -> None:
    p, api, shadow = envoy_on.p, envoy_on.api, envoy_on.shadow
    before = api.count(), shadow.count()
    prod = p.get_json("/elsewhere")
    assert prod["name"] == "prod"
    assert envoy_on.send("/api/after") == 200  # a later request's copy: none came before it for /elsewhere
    assert (api.count(), shadow.count()) == (before[0] + 1, before[1] + 1)
    assert shadow.seen[-1].path == "/v1/after"


def raw_get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_h2c_upgrade_is_stripped_routed_and_mirrored(envoy_on: Shadowed) -> None:
    """`curl --http2 http://...` sends `Upgrade: h2c`: Envoy's HTTP/1 codec (codec_impl.cc
    ConnectionImpl::onHeadersComplete) removes Upgrade, HTTP2-Settings and their Connection tokens, so the request
    is served as plain HTTP/1.1, routed and mirrored (not refused as an upgrade the route does not allow)."""
    api, shadow = envoy_on.api, envoy_on.shadow
    status = envoy_on.send(
        "/api/h2c",
        {"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"},
        raw=True,
    )
    assert status == 200
    for seen in (api.seen[-1], shadow.seen[-1]):
        assert seen.path == "/v1/h2c"
        assert seen.header("upgrade") is None and seen.header("http2-settings") is None
        assert "upgrade" not in (seen.header("connection") or "").lower()


def test_upgrade_without_connection_upgrade_is_dropped_routed_and_mirrored(envoy_off: Shadowed) -> None:
    """An Upgrade header without `Connection: upgrade` is no upgrade (http/utility.cc Utility::isUpgrade):
    conn_manager_utility.cc mutateRequestHeaders removes it and the request is routed and mirrored."""
    api, shadow = envoy_off.api, envoy_off.shadow
    status = envoy_off.send("/api/ws", {"Upgrade": "websocket"}, raw=True)
    assert status == 200
    assert api.seen[-1].header("upgrade") is None and shadow.seen[-1].header("upgrade") is None


def test_a_websocket_upgrade_the_route_does_not_allow_is_still_refused(envoy_on: Shadowed) -> None:
    """A real upgrade (Connection: upgrade) keeps Envoy's 403 when the route has no allow_upgrade for it."""
    p, api, shadow = envoy_on.p, envoy_on.api, envoy_on.shadow
    before = api.count(), shadow.count()
    status, _ = raw_get(p.port, "/api/ws", {"Connection": "Upgrade", "Upgrade": "websocket"})
    assert status == 403
    assert envoy_on.send("/api/after") == 200  # a later request's copy: none came before it for the refused one
    assert (api.count(), shadow.count()) == (before[0] + 1, before[1] + 1)
    assert shadow.seen[-1].path == "/v1/after"


def test_mappings_match_on_the_headers_envoy_sets_before_routing(tmp_path: Path, upstream, proxy) -> None:
    """conn_manager_utility.cc mutateRequestHeaders runs before the route is picked: a Mapping matching
    x-forwarded-proto sees the connection's scheme (http here), not what the client claims."""
    prod, plain = upstream("prod"), upstream("plain")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("plain", prefix="/p/", service="plain", headers={"x-forwarded-proto": "http"}),
    )
    sets = {"mappings": str(m), "mapping_services": [f"plain={plain.address}"]}
    p = proxy(f"http://{prod.address}", sets=sets)
    assert p.get_json("/p/", headers={"x-forwarded-proto": "https"})["name"] == "plain"
    assert p.get_json("/p/")["name"] == "plain"
    p.stop()
    p = proxy(f"http://{prod.address}", sets={**sets, "mapping_envoy_headers": "false"})
    assert p.get_json("/p/", headers={"x-forwarded-proto": "https"})["name"] == "prod"


def test_the_copy_gets_the_timeout_header_again_from_the_mirrors_router(tmp_path: Path, upstream, proxy) -> None:
    """The mirror goes through Envoy's async client and its own router, which writes
    x-envoy-expected-rq-timeout-ms from the mirror's timeout (router.cc: the production route's), so the copy has
    it even where the route's remove_request_headers takes it off production's request."""
    prod, api, shadow = upstream("prod"), upstream("api"), upstream("shadow")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("api", prefix="/api/", service="api", remove_request_headers=["x-envoy-expected-rq-timeout-ms"]),
        mapping("api-shadow", prefix="/api/", service="shadow", shadow=True),
    )
    p = proxy(
        f"http://{prod.address}",
        sets={"mappings": str(m), "mapping_services": [f"api={api.address}", f"shadow={shadow.address}"]},
    )
    assert p.request("GET", "/api/x")[0] == 200
    assert shadow.wait_for(1)
    assert api.seen[-1].header("x-envoy-expected-rq-timeout-ms") is None
    assert shadow.seen[-1].header("x-envoy-expected-rq-timeout-ms") == "3000"
