"""Emissary's own KAT routing tests (python/tests/src/tests/kat/), ported to run without Kubernetes.

Each Mapping set (kat.py) is read by the addon's reader, its service names pointed at loopback addresses as
`mapping_services` does, and every request the KAT sends becomes a row: where `routing.resolve` sends it, and the
upstream path. What the proxy does to the request once routed (header edits, the headers Envoy adds, Host,
local answers) is checked through the addon's own hooks in-process. Where Emissary answers 404 (no route), this
proxy passes the request to its reverse target (`prod` in the rows, `resolve` gives no route): that is the one
deliberate difference, and the rows check it as such. test_e2e_emissary_kat.py runs a few of these through a real
mitmdump with real servers, TLS and shadow copies.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kat import (
    BASICS_KAT,
    CANARY_DIFF_KAT,
    DEFAULT_KAT,
    ENVOY_HEADERS_KAT,
    HEADER_KAT,
    NAME,
    OPTIONS_KAT,
    PLAIN_KAT,
    QUERY_KAT,
    REGEX_REWRITE_KAT,
    SHADOW_KAT,
)
from mitmproxy import http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons, tflow, tutils

from shadow_addon import mappings, routing
from shadow_addon.mappings import LoadResult
from shadow_addon.routing import RequestView, Route, Table
from shadow_addon.shadow import Shadow

HOST = "127.0.0.1:8080"  # the client's Host, as a client of the proxy on loopback sends it
PATH = "kat.yaml"
SERVICES = ("target", "target1", "target2", "canary", "secure", "shadow", "foo", "httpbin")
PORTS = {name: 10001 + i for i, name in enumerate(SERVICES)}  # one loopback address per service, as the KAT's pods
BACKEND = {port: name for name, port in PORTS.items()}

# id: (Mapping text, services pointed at loopback, ambassador_id)
KATS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "shadow": (SHADOW_KAT.format(name=NAME), ("target", "shadow"), "default"),
    "header": (HEADER_KAT.format(name=NAME), ("target1", "target2"), "default"),
    "query": (QUERY_KAT.format(name=NAME), ("target1", "target2"), "default"),
    "regex_rewrite": (REGEX_REWRITE_KAT, ("foo",), "default"),
    "plain": (PLAIN_KAT, ("target", "canary", "secure"), "default"),
    "basics": (BASICS_KAT, ("target",), "kat"),
    "envoy": (ENVOY_HEADERS_KAT.format(name=NAME), ("target",), "default"),
    "default": (DEFAULT_KAT.format(name=NAME), ("httpbin", "target"), "default"),
    "canary_diff": ("".join(CANARY_DIFF_KAT.format(name=NAME, w=w) for w in (0, 100)), ("target", "canary"), "default"),
    "options": (OPTIONS_KAT.format(name=NAME), ("target",), "default"),
}


def services(kat: str) -> list[str]:
    return [f"{s}=127.0.0.1:{PORTS[s]}" for s in KATS[kat][1]]


@functools.cache
def load(kat: str) -> tuple[LoadResult, Table]:
    """The KAT's Mappings as the addon reads them, and the routing table it builds (read once per run)."""
    text, _, ambassador_id = KATS[kat]
    result = mappings.parse_text(text, PATH)
    assert result.blocking() == [], result.blocking()
    overrides = []
    for spec in services(kat):
        name, address, given = mappings.parse_service_override(spec)
        overrides.append(routing.ServiceOverride(name, address, given))
    return result, routing.build_table(result.mappings, tuple(overrides), ambassador_id)


def route(
    kat: str,
    path: str,
    headers: dict[str, str] | None = None,
    host: str = HOST,
    canary: float = 0.0,
    shadow: float = 0.0,
) -> Route | None:
    return routing.resolve(
        load(kat)[1], RequestView("GET", path, host, http.Headers(**(headers or {}))), canary, shadow
    )


def backend(r: Route | None) -> str:
    """The server a request reaches: a KAT service, or `prod` (the reverse target) when no route matches."""
    if r is None:
        return "prod"
    assert r.address is not None and r.address.host == "127.0.0.1", r
    return BACKEND[r.address.port]


# ---------------------------------------------------------------- where each request goes


def row(kat: str, path: str, to: str, upstream: str | None = None, **headers: str) -> object:
    return pytest.param(kat, path, headers, to, upstream, id=f"{kat}:{path}:{'+'.join(headers.values())}")


ROUTES = [
    # t_shadow.py: the production routes of the shadow KAT (the shadow's own /check/ route reads its counts)
    *[row("shadow", f"/{NAME}/mark/{i}", "target", f"/mark/{i}") for i in (0, 9)],
    *[row("shadow", f"/{NAME}/weighted-mark/{i}", "target", f"/mark/{i}") for i in (100, 109)],
    row("shadow", f"/{NAME}/check/", "shadow", "/check/"),
    # t_headerrouting.py: the header match wins when the header is there (irhttpmapping.py _route_weight)
    row("header", f"/{NAME}/", "target1"),
    row("header", f"/{NAME}/", "target2", **{"X-Route": "target2"}),
    # t_queryparameter_routing.py: exact, regex (RE2 full match, case-sensitive) and present matches on the query
    row("query", "/target/", "target1"),
    row("query", "/target/?test_param=target2", "target2"),
    row("query", "/regex/?test_param=hello", "target1"),
    row("query", "/regex/", "prod"),
    row("query", "/regex/?test_param=HeLlO", "prod"),
    row("query", "/present/?test_param=true", "target2"),
    row("query", "/present/", "prod"),
    # t_regexrewrite_forwarding.py: regex_rewrite replaces what the pattern matches, leaves the rest
    row("regex_rewrite", "/foo/123456789/list", "foo", "/bar/123456789"),
    row("regex_rewrite", "/foo/987654321/list", "foo", "/bar/987654321"),
    row("regex_rewrite", "/foo/", "foo", "/foo/"),  # no match: the path is left as it is
    row("regex_rewrite", "/fooooo/123456789/list", "prod"),
    row("regex_rewrite", "/foo2/bar", "foo", "/foo2/bar"),
    row("regex_rewrite", "/foo2/baz", "foo", "/baz/foo"),
    row("regex_rewrite", "/ffoo/", "prod"),
    # t_mappingtests_plain.py SimpleMapping: a path with `..` is normalised before routing (v3listener.py
    # normalize_path); HostHeaderMapping: the exact host, a port in Host does not match; TLSOrigination
    row("plain", "/simple/", "target", "/"),
    row("plain", "/need-normalization/../simple/", "target", "/"),
    row("plain", "/hostheader/", "prod"),
    row("plain", "/hostheader/", "prod", Host="inspector.internal"),
    row("plain", "/hostheader/", "target", Host="inspector.external"),
    row("plain", "/hostheader/", "prod", Host="inspector.external:80"),
    row("plain", "/REDIRECT/anything?itworked=true", "prod"),  # HostRedirectMapping: case-sensitive by default
    row("plain", "/tls/", "secure", "/"),
    row("plain", "/websocket/", "target", "/"),
    row("plain", "/addreq/", "target", "/"),
    row("plain", "/removereq/headers", "target", "/headers"),
    # t_basics.py AmbassadorIDTest (config.py good_ambassador_id: a string or any list holding this instance's
    # id) and InvalidResources (an invalid Mapping is left out, the good one beside it serves)
    *[row("basics", p, "target") for p in ("/findme/", "/findme-array/", "/findme-array2/", "/good-crd/")],
    *[row("basics", p, "prod") for p in ("/missme/", "/missme-array/", "/bad-crd/")],
    # t_request_header.py EnvoyHeadersTest
    row("envoy", "/target/", "target", "/rewrite/"),
    # t_mappingtests_default.py MergeSlashesDisabled (an extra slash before or inside the prefix does not match),
    # SameMappingDifferentNamespaces (the same name in two namespaces is two Mappings); t_optiontests.py
    # CaseSensitive (`case_sensitive: false`: the path upper-cased still routes)
    row("default", f"/{NAME}/status/200", "httpbin", "/status/200"),
    *[row("default", p, "prod") for p in (f"//{NAME}/status/200", f"//{NAME}//status/200", f"/{NAME}//status/200")],
    row("default", f"/{NAME}-1/", "target"),
    row("default", f"/{NAME}-2/", "target"),
    row("default", f"/{NAME}-case/".upper(), "target"),
    row("default", f"/{NAME}-case/x", "target"),
    # t_optiontests.py Rewrite: `rewrite: /foo`, the backend sees /foo
    row("options", f"/{NAME}-options/", "target", "/foo"),
]


@pytest.mark.parametrize(("kat", "path", "headers", "to", "upstream"), ROUTES)
def test_kat_routes(kat: str, path: str, headers: dict[str, str], to: str, upstream: str | None) -> None:
    headers = dict(headers)
    r = route(kat, path, headers, headers.pop("Host", HOST))
    assert backend(r) == to
    if r is not None:
        assert r.redirect is None
    if upstream is not None:
        assert r is not None and r.path == upstream


def test_kat_every_route_in_the_table_is_taken() -> None:
    """The rows reach every production Mapping of their KATs (a Mapping no row reaches would be checked by none);
    the plain KAT's redirects and canaries have their own tables below."""
    taken = set()
    for p in ROUTES:
        kat, path, headers, _, _ = p.values  # type: ignore[attr-defined]
        headers = dict(headers)
        r = route(kat, path, headers, headers.pop("Host", HOST))
        if r is not None and r.mapping is not None:
            taken.add((kat, r.mapping.key))
    for kat in KATS:
        if kat == "canary_diff":
            continue
        for g in load(kat)[1].groups:
            for m, _ in g.production:
                assert (kat, m.key) in taken or (kat == "plain" and m.name.startswith("canary")), (kat, m.key)


def test_kat_tls_origination_and_the_shadow_target_speak_tls() -> None:
    """TLSOrigination and the shadow KAT's target: `https://` in the service, kept when `mapping_services` names
    an address without a scheme."""
    for kat, path in (("plain", "/tls/"), ("shadow", f"/{NAME}/mark/1"), ("shadow", f"/{NAME}/weighted-mark/101")):
        r = route(kat, path)
        assert r is not None and r.address is not None and r.address.scheme == "https", (kat, path)
    r = route("plain", "/simple/")
    assert r is not None and r.address is not None and r.address.scheme == "http"


# ---------------------------------------------------------------- redirects (HostRedirectMapping)


@pytest.mark.parametrize(
    ("path", "code", "location"),
    [
        ("/redirect/anything?itworked=true", 301, "http://foobar.com/redirect/anything?itworked=true"),
        ("/redirect-2/anything?itworked=true", 301, "http://foobar.com/redirect-2/anything?itworked=true"),
        ("/REDIRECT-2/anything?itworked=true", 301, "http://foobar.com/REDIRECT-2/anything?itworked=true"),
        ("/redirect-3/foo/anything", 302, "http://foobar.com/redirect/"),
        ("/redirect-4/foo/bar/baz/anything", 307, "http://foobar.com/foobar/baz/anything"),
        ("/redirect-5/assets/abcd0000f123/images", 308, "http://foobar.com/images/abcd0000f123"),
        (
            "/redirect-5/assets/abcd0000f123/images?itworked=true",
            308,
            "http://foobar.com/images/abcd0000f123?itworked=true",
        ),
    ],
)
def test_kat_host_redirects(path: str, code: int, location: str) -> None:
    r = route("plain", path)
    assert r is not None and r.mapping is None and r.redirect == (code, location)
    assert routing.local_reply(r, "GET", None, None) == (code, {"location": location})


# ---------------------------------------------------------------- canary weights and the shadow's sample

DRAWS = (0.0, 0.01, 25.0, 50.0, 99.99)  # draws are in [0, 100)


def test_kat_canary_weights_0_and_100() -> None:
    """CanaryMapping and CanaryDiffMapping, weights 0 and 100: every draw picks the same backend."""
    for kat, prefix in (("plain", "/canary"), ("canary_diff", f"/{NAME}-")):
        assert {backend(route(kat, f"{prefix}0/", canary=d)) for d in DRAWS} == {"target"}, kat
        assert {backend(route(kat, f"{prefix}100/", canary=d)) for d in DRAWS} == {"canary"}, kat


@pytest.mark.parametrize(
    ("path", "draw", "copied"),
    [
        # weight 100 (no weight): every request, whatever the draw
        *[(f"/{NAME}/mark/{i}", d, True) for i, d in ((0, 0.0), (5, 50.0), (9, 99.99))],
        # weight 10: the copy is made when the draw is below the shadow's weight (v3route.py
        # request_mirror_policies runtime_fraction = shadow weight)
        (f"/{NAME}/weighted-mark/100", 0.0, True),
        (f"/{NAME}/weighted-mark/101", 9.99, True),
        (f"/{NAME}/weighted-mark/102", 10.0, False),
        (f"/{NAME}/weighted-mark/103", 99.99, False),
        (f"/{NAME}/check/", 0.0, False),  # the shadow service's own route has no shadow
    ],
)
def test_kat_shadow_sampling(path: str, draw: float, copied: bool) -> None:
    """t_shadow.py ShadowTestCANFLAKE: the copy goes to the shadow service with production's rewritten path."""
    r = route("shadow", path, shadow=draw)
    assert r is not None and backend(r) in ("target", "shadow")
    if copied:
        assert r.shadow is not None and r.shadow_address is not None and not r.sampled_out
        assert BACKEND[r.shadow_address.port] == "shadow" and r.shadow_address.scheme == "http"
        assert r.path.startswith("/mark/")  # the copy is production's request after the route's rewrite
    else:
        assert r.shadow is None
        assert r.sampled_out == ("weighted" in path)


# ---------------------------------------------------------------- what loads


def test_kat_shadow_and_plain_load_without_errors() -> None:
    """ShadowTestCANFLAKE's five Mappings and the plain KAT's load with no error (what /diag shows)."""
    for kat, n in (("shadow", 5), ("plain", 15)):
        result, table = load(kat)
        assert result.errors == [] and table.errors == () and len(table.mappings) == n, kat


def test_kat_basics_ambassador_id_and_invalid_resources() -> None:
    """t_basics.py AmbassadorIDTest and InvalidResources (the rows above route them): the Mappings for other ids are
    ignored, the invalid one is one error line naming file, document, Mapping and field; the Module is skipped."""
    result, table = load("basics")
    assert sorted(m.key for m in table.ignored) == [
        "ambassadoridtest-missme-array.default",
        "ambassadoridtest-missme.default",
    ]
    assert result.errors == [f"{PATH} doc 8 (Mapping invalidresources-m-bad-crd.default): unknown field 'prefix_bad'"]
    assert table.errors == ()
    assert any("Module" in n for n in result.notices), result.notices


# ---------------------------------------------------------------- what a routed request carries (the hooks)


@contextmanager
def addon(tmp_path: Path, kat: str) -> Iterator[tuple[Shadow, taddons.context]]:
    """The addon in mitmproxy's test context, with the KAT's Mappings loaded as mitmdump would load them."""
    f = tmp_path / PATH
    f.write_text(KATS[kat][0])
    sh = Shadow()
    with taddons.context(Proxyserver(), sh) as tctx:
        tctx.configure(sh, mappings=str(f), mapping_services=services(kat), mapping_ambassador_id=KATS[kat][2])
        yield sh, tctx


def send(sh: Shadow, path: str, headers: dict[str, str] | None = None) -> http.HTTPFlow:
    """A client's request through the request-headers hook, as mitmdump runs it."""
    h = http.Headers(host=HOST, **(headers or {}))
    f = tflow.tflow(req=tutils.treq(path=path.encode(), headers=h, content=b""))
    sh.requestheaders(f)
    return f


def seen(f: http.HTTPFlow, name: str) -> list[str]:
    return f.request.headers.get_all(name)


def test_kat_add_and_remove_request_headers(tmp_path: Path) -> None:
    """AddReqHeadersMapping (`append: False` replaces, `append: True` and no append add) and
    RemoveReqHeadersMapping."""
    with addon(tmp_path, "plain") as (sh, _):
        f = send(sh, "/addreq/", {"zoo": "ZooZ", "aoo": "AooA", "boo": "BooB"})
        assert f.request.port == PORTS["target"] and f.response is None
        assert seen(f, "zoo") == ["Zoo"]
        assert seen(f, "aoo") == ["AooA", "aoo"]
        assert seen(f, "boo") == ["BooB", "boo"]
        f = send(sh, "/removereq/headers", {"zoo": "ZooZ", "aoo": "AooA", "foo": "FooF"})
        assert f.request.port == PORTS["target"]
        assert seen(f, "foo") == ["FooF"] and seen(f, "zoo") == [] and seen(f, "aoo") == []


def test_kat_websocket_upgrade_only_where_allowed(tmp_path: Path) -> None:
    """WebSocketMapping: the upgrade is allowed on its route (use_websocket) and refused (403) elsewhere."""
    up = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "x"}
    with addon(tmp_path, "plain") as (sh, _):
        f = send(sh, "/simple/", up)
        assert f.response is not None and f.response.status_code == 403
        f = send(sh, "/websocket/", up)
        assert f.response is None and f.request.port == PORTS["target"]  # forwarded
        f = send(sh, "/redirect/anything?itworked=true")  # a redirect is answered by the proxy, not forwarded
        assert f.response is not None and f.response.status_code == 301
        assert f.response.headers["location"] == "http://foobar.com/redirect/anything?itworked=true"


def test_kat_envoy_headers(tmp_path: Path) -> None:
    """t_request_header.py EnvoyHeadersTest: the upstream sees x-envoy-expected-rq-timeout-ms from timeout_ms
    (router.cc setTimeoutHeaders) and x-envoy-original-path, the path before the rewrite (config_impl.cc
    finalizePathHeader). SuppressEnvoyHeadersTest sets the Module's suppress_envoy_headers; its counterpart here
    is mapping_envoy_headers=false, and neither header is sent."""
    with addon(tmp_path, "envoy") as (sh, tctx):
        f = send(sh, "/target/")
        assert f.request.port == PORTS["target"] and f.request.path == "/rewrite/"
        assert seen(f, "x-envoy-expected-rq-timeout-ms") == ["5001"]
        assert seen(f, "x-envoy-original-path") == ["/target/"]
        tctx.configure(sh, mapping_envoy_headers=False)
        f = send(sh, "/target/")
        assert f.request.port == PORTS["target"] and f.request.path == "/rewrite/"
        assert seen(f, "x-envoy-expected-rq-timeout-ms") == [] and seen(f, "x-envoy-original-path") == []


def test_kat_canary_diff_mapping_each_route_its_own_host_rewrite(tmp_path: Path) -> None:
    """t_mappingtests_plain.py CanaryDiffMapping, weights 0 and 100: each canary route has its own host_rewrite
    (v3route.py V3Route: host_rewrite_literal from the route's Mapping, not the group)."""
    with addon(tmp_path, "canary_diff") as (sh, _):
        for _ in range(20):  # the canary draw is random in the hook: every pick the same
            f = send(sh, f"/{NAME}-0/")
            assert (f.request.port, f.request.host_header) == (PORTS["target"], "canary.1.example.com")
            f = send(sh, f"/{NAME}-100/")
            assert (f.request.port, f.request.host_header) == (PORTS["canary"], "canary.2.example.com")


def test_kat_option_tests(tmp_path: Path) -> None:
    """t_optiontests.py AddRequestHeaders and AddResponseHeaders (all five values on one Mapping: `{value}` and
    `{append, value}` each give exactly one header), Rewrite (`rewrite: /foo`: the backend sees /foo)."""
    with addon(tmp_path, "options") as (sh, _):
        f = send(sh, f"/{NAME}-options/")
        assert f.request.port == PORTS["target"] and f.request.path == "/foo"
        f.response = tutils.tresp(headers=http.Headers(content_type="application/json"))
        sh.response(f)
        expected = {"foo": "bar", "moo": "arf", "zoo": "bar", "xoo": "dwe", "aoo": "tyu"}
        for k, v in expected.items():
            assert seen(f, k) == [v], k
            assert f.response.headers.get_all(k) == [v], k
