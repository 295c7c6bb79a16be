"""Emissary's routing rules as pure functions, with cases from Emissary's own documentation."""

from __future__ import annotations

import random

import pytest
from mitmproxy.http import Headers

from shadow_addon import mappings, routing
from shadow_addon.mappings import Address
from shadow_addon.routing import RequestView, resolve


def M(name: str, **kw: object) -> mappings.Mapping:
    spec = {"prefix": "/", "service": name + "-svc", **kw}
    return mappings.build_mapping(name, "default", "t", spec)


def view(path: str, method: str = "GET", host: str = "example.com", **headers: str) -> RequestView:
    return RequestView(method, path, host, Headers(**headers))


def table(*ms: mappings.Mapping, overrides: tuple[routing.ServiceOverride, ...] = ()) -> routing.Table:
    return routing.build_table(ms, overrides)


def pick(t: routing.Table, req: RequestView, canary: float = 0.0, shadow: float = 0.0) -> routing.Route | None:
    return resolve(t, req, canary, shadow)


# ---------------------------------------------------------------- rewrite (Emissary docs: mappings.md, rewrite)


@pytest.mark.parametrize(
    ("kw", "path", "expected"),
    [
        ({"prefix": "/backend/"}, "/backend/foo?x=1", "/foo?x=1"),  # default rewrite "/"
        ({"prefix": "/backend/", "rewrite": "/v1/"}, "/backend/foo", "/v1/foo"),
        ({"prefix": "/backend/", "rewrite": ""}, "/backend/foo", "/backend/foo"),  # "" = no rewrite
        ({"prefix": "/productpage/", "rewrite": "/productpage"}, "/productpage/x", "/productpagex"),  # as Envoy does
        ({"prefix": "/exact", "prefix_exact": True, "rewrite": "/other"}, "/exact?q=1", "/other?q=1"),
        ({"prefix": "/u/[0-9]+", "prefix_regex": True, "rewrite": ""}, "/u/12", "/u/12"),
        (
            {"prefix": "/u/", "regex_rewrite": {"pattern": "^/u/([0-9]+)$", "substitution": "/users/\\1"}},
            "/u/42?a=b",
            "/users/42?a=b",
        ),
    ],
)
def test_rewrite_path(kw: dict[str, object], path: str, expected: str) -> None:
    assert routing.rewrite_path(M("m", **kw), path) == expected


# ---------------------------------------------------------------- groups and their order


def test_longest_prefix_wins_regardless_of_file_order() -> None:
    # Emissary docs (mappings.md): catch-all `/` and httpbin `/httpbin/`
    t = table(M("catch-all", prefix="/"), M("httpbin", prefix="/httpbin/"))
    assert pick(t, view("/httpbin/get")).mapping.name == "httpbin"  # type: ignore[union-attr]
    assert pick(t, view("/other")).mapping.name == "catch-all"  # type: ignore[union-attr]


def test_precedence_beats_prefix_length() -> None:
    # The documented consequence: precedence 1 on the catch-all takes everything.
    t = table(M("catch-all", prefix="/", precedence=1), M("httpbin", prefix="/httpbin/"))
    assert pick(t, view("/httpbin/get")).mapping.name == "catch-all"  # type: ignore[union-attr]


def test_more_header_constraints_first_at_equal_prefix() -> None:
    t = table(M("plain", prefix="/a/"), M("canary-users", prefix="/a/", headers={"x-canary": "yes"}))
    assert pick(t, view("/a/x", **{"x-canary": "yes"})).mapping.name == "canary-users"  # type: ignore[union-attr]
    assert pick(t, view("/a/x")).mapping.name == "plain"  # type: ignore[union-attr]
    assert pick(t, view("/a/x", **{"x-canary": "no"})).mapping.name == "plain"  # type: ignore[union-attr]


def test_group_key_ignores_weight_and_shadow_but_not_method_or_precedence() -> None:
    """irhttpmapping.py IRHTTPMapping.__init__ / _group_id: `method` becomes a `:method` header and host/hostname
    (even "*") an `:authority` one, both in the id; weight and shadow are not."""
    a, b = M("a", prefix="/x/"), M("b", prefix="/x/", weight=10)
    s = M("s", prefix="/x/", shadow=True)
    assert routing.group_key(a) == routing.group_key(b) == routing.group_key(s)
    assert routing.group_key(a) != routing.group_key(M("c", prefix="/x/", method="POST"))
    assert routing.group_key(a) != routing.group_key(M("d", prefix="/x/", precedence=2))
    # No method, method GET and method POST are three groups; no hostname and hostname "*" are two.
    get, post = M("e", prefix="/x/", method="GET"), M("f", prefix="/x/", method="POST")
    assert len({routing.group_key(a), routing.group_key(get), routing.group_key(post)}) == 3
    assert routing.group_key(a) != routing.group_key(M("g", prefix="/x/", hostname="*"))
    # A `:authority` header is the host; case_sensitive and prefix_exact are not in the id (core keys).
    assert routing.group_key(M("h", prefix="/x/", headers={":authority": "a.com"})) == routing.group_key(
        M("i", prefix="/x/", hostname="a.com")
    )
    assert routing.group_key(a) == routing.group_key(M("j", prefix="/x/", case_sensitive=False))


def test_method_host_query_and_regex_matches() -> None:
    t = table(
        M("post", prefix="/m/", method="POST"),
        M("host", prefix="/h/", host="diag.example.com"),
        M("glob", prefix="/g/", hostname="*.example.com"),
        M("query", prefix="/q/", query_parameters={"debug": True}),
        M("rxq", prefix="/rq/", regex_query_parameters={"id": "[0-9]+"}),
        M("rxh", prefix="/rh/", regex_headers={"x-user": "u-[a-z]+"}),
        M("rx", prefix="/users/[0-9]+", prefix_regex=True),
        M("exact", prefix="/exact", prefix_exact=True),
        M("ci", prefix="/CI/", case_sensitive=False),
    )

    def name(req: RequestView) -> str | None:
        r = pick(t, req)
        return r.mapping.name if r and r.mapping else None

    assert name(view("/m/", "POST")) == "post" and name(view("/m/", "GET")) is None
    # Envoy exact :authority match: the whole value, port included (t_mappingtests_plain.py HostHeaderMapping).
    assert name(view("/h/", host="diag.example.com")) == "host" and name(view("/h/", host="x.com")) is None
    assert name(view("/h/", host="diag.example.com:8080")) is None
    assert name(view("/g/", host="a.example.com")) == "glob" and name(view("/g/", host="example.org")) is None
    assert name(view("/q/?debug")) == "query" and name(view("/q/?other=1")) is None
    assert name(view("/rq/?id=12")) == "rxq" and name(view("/rq/?id=x12")) is None
    assert name(view("/rh/", **{"x-user": "u-abc"})) == "rxh" and name(view("/rh/", **{"x-user": "u-1"})) is None
    assert name(view("/users/12?x=1")) == "rx" and name(view("/users/12/more")) is None
    assert name(view("/exact?x=1")) == "exact" and name(view("/exactly")) is None
    assert name(view("/ci/x")) == "ci"


# ---------------------------------------------------------------- canary weights (Emissary docs: canary.md)


def names(ws: tuple[list[tuple[mappings.Mapping, int]], list[str]]) -> list[tuple[str, int]]:
    assert ws[1] == []
    return [(m.name, w) for m, w in ws[0]]


def test_canary_weights_cumulative_weighted_first() -> None:
    assert names(routing.canary_weights([M("quote"), M("quotev2", weight=10)])) == [("quotev2", 10), ("quote", 100)]
    assert names(routing.canary_weights([M("a"), M("b"), M("c")])) == [("a", 33), ("b", 66), ("c", 100)]
    assert names(routing.canary_weights([M("a", weight=30), M("b", weight=20)])) == [("a", 30), ("b", 50)]
    assert names(routing.canary_weights([M("a", weight=100), M("b")])) == [("a", 100), ("b", 100)]  # b gets 0%
    assert names(routing.canary_weights([M("only", weight=10)])) == [("only", 100)]


def test_weights_over_100_post_emissarys_errors_and_keep_the_weights_so_far() -> None:
    """irbasemappinggroup.py normalize_weights_in_mappings: the error texts; routes keep their order, Mappings
    reached keep their cumulative weight, the others Envoy's default 100 (v3route.py `_weight`)."""
    ws, errs = routing.canary_weights([M("a", weight=60), M("b", weight=50), M("c")])
    assert [(m.name, w) for m, w in ws] == [("a", 60), ("b", 110), ("c", 100)]
    assert errs == [
        "Total weight of mappings exceeds 100, please reconfigure for correct behavior...",
        "Could not normalize mapping weights, ignoring...",
    ]
    ws, errs = routing.canary_weights([M("a", weight=30), M("b", weight=150), M("c", weight=10)])
    assert [(m.name, w) for m, w in ws] == [("a", 30), ("b", 100), ("c", 100)]
    assert errs[0] == "Mapping b has invalid weight 150"


def test_canary_pick_and_fall_through_when_weights_do_not_reach_100() -> None:
    t = table(M("quote", prefix="/backend/"), M("quotev2", prefix="/backend/", weight=10))
    assert pick(t, view("/backend/"), canary=9.99).mapping.name == "quotev2"  # type: ignore[union-attr]
    assert pick(t, view("/backend/"), canary=10.0).mapping.name == "quote"  # type: ignore[union-attr]
    partial = table(M("a", prefix="/p/", weight=30), M("b", prefix="/p/", weight=20), M("rest", prefix="/"))
    assert pick(partial, view("/p/x"), canary=40).mapping.name == "b"  # type: ignore[union-attr]
    assert pick(partial, view("/p/x"), canary=70).mapping.name == "rest"  # type: ignore[union-attr]


def test_group_over_100_is_reported_and_still_routes() -> None:
    """irhttpmappinggroup.py finalize: "Could not normalize mapping weights, ignoring..." is posted, yet the routes
    made so far stay (V3Route.generate loops group.mappings)."""
    t = table(M("a", prefix="/p/", weight=60), M("b", prefix="/p/", weight=50))
    assert [(e.mapping, e.message) for e in t.errors] == [
        ("a.default", "Total weight of mappings exceeds 100, please reconfigure for correct behavior..."),
        ("a.default", "Could not normalize mapping weights, ignoring..."),
    ]
    assert pick(t, view("/p/x"), canary=10).mapping.name == "a"  # type: ignore[union-attr]
    assert pick(t, view("/p/x"), canary=70).mapping.name == "b"  # type: ignore[union-attr]


def test_canary_split_statistics() -> None:
    rng = random.Random(7)
    t = table(M("quote", prefix="/b/"), M("quotev2", prefix="/b/", weight=10))
    n = 20000
    hits = sum(pick(t, view("/b/"), rng.random() * 100).mapping.name == "quotev2" for _ in range(n))  # type: ignore[union-attr]
    assert abs(hits / n - 0.10) < 0.01  # 0.10 +- ~4.7 sigma


# ---------------------------------------------------------------- shadows


def test_shadow_takes_no_production_traffic_and_is_sampled_by_weight() -> None:
    t = table(M("myservice", prefix="/myservice/"), M("shadow", prefix="/myservice/", shadow=True, weight=10))
    r = pick(t, view("/myservice/x"), canary=0, shadow=9.9)
    assert r is not None and r.mapping.name == "myservice" and r.shadow.name == "shadow"  # type: ignore[union-attr]
    r = pick(t, view("/myservice/x"), canary=0, shadow=10.0)
    assert r is not None and r.shadow is None and r.sampled_out
    assert [m.name for m, _ in t.groups[0].production] == ["myservice"]


def test_second_shadow_is_an_error_and_the_first_by_name_namespace_is_kept() -> None:
    t = table(
        M("prod", prefix="/a/"), M("z-shadow", prefix="/a/", shadow=True), M("b-shadow", prefix="/a/", shadow=True)
    )
    assert t.groups[0].shadow.name == "b-shadow"  # type: ignore[union-attr]
    assert [e.message for e in t.errors] == ["cannot accept z-shadow as second shadow after b-shadow"]


def test_each_service_its_own_shadow() -> None:
    t = table(
        M("a", prefix="/a/"),
        M("a-sh", prefix="/a/", shadow=True),
        M("b", prefix="/b/"),
        M("b-sh", prefix="/b/", shadow=True),
    )
    assert pick(t, view("/a/")).shadow.name == "a-sh"  # type: ignore[union-attr]
    assert pick(t, view("/b/")).shadow.name == "b-sh"  # type: ignore[union-attr]


def test_shadow_only_group_has_no_route_and_copies_nothing() -> None:
    """v3route.py V3Route.generate makes routes from group.mappings only: a shadow alone in its group mirrors
    nothing and never changes where production requests go."""
    t = table(M("sh", prefix="/", shadow=True, rewrite="/ignored/"), M("api", prefix="/api/"))
    assert pick(t, view("/other?x=1")) is None  # the reverse target serves it; no copy
    r = pick(t, view("/api/x"))
    assert r is not None and r.mapping.name == "api" and r.shadow is None  # type: ignore[union-attr]
    # The shadow meant for `api` but written with hostname "*" is in another group: it copies nothing either.
    t = table(M("api", prefix="/api/"), M("api-shadow", prefix="/api/", hostname="*", shadow=True))
    r = pick(t, view("/api/x"))
    assert r is not None and r.mapping.name == "api" and r.shadow is None  # type: ignore[union-attr]


def test_copy_inherits_production_timeout_and_shadow_service_address() -> None:
    t = table(M("p", prefix="/a/", timeout_ms=750), M("s", prefix="/a/", shadow=True, service="https://sh.ns:8443"))
    r = pick(t, view("/a/x"))
    assert r is not None and r.timeout_ms == 750 and r.shadow_address == Address("https", "sh.ns", 8443)


def test_mapping_services_overrides() -> None:
    o = routing.ServiceOverride("myservice", Address("http", "127.0.0.1", 9001), False)
    t = table(M("p", prefix="/", service="https://myservice.default"), overrides=(o,))
    assert t.addresses["p.default"] == Address("https", "127.0.0.1", 9001)  # scheme kept unless given


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("foo", "foo-shadow"),
        ("foo:8000", "foo-shadow:8000"),
        ("cluster1:80", "cluster1-shadow:80"),
        ("127.0.0.1:8080", "127.0.0.1-shadow:8080"),
        ("[::1]:80", "[::1]-shadow:80"),
        ("[::1]", "[::1]-shadow"),
        ("sni.lyft.com", "sni.lyft.com-shadow"),
    ],
)
def test_shadow_host_suffix_before_port(host: str, expected: str) -> None:
    assert routing.shadow_host(host) == expected


def test_sticky_sample_draw() -> None:
    assert routing.sample_draw(None) is None
    assert routing.sample_draw("user-1") == routing.sample_draw("user-1")
    draws = [routing.sample_draw(f"user-{i}") for i in range(5000)]
    assert all(0 <= d < 100 for d in draws)  # type: ignore[operator]
    assert abs(sum(d < 10 for d in draws) / 5000 - 0.10) < 0.02  # type: ignore[operator]


def test_edit_headers_removes_then_adds() -> None:
    adds = {"x-a": "new", "x-b": {"value": "2", "append": False}}
    m = M("m", remove_request_headers=["x-a"], add_request_headers=adds)
    h = Headers(**{"x-a": "old", "x-b": "1"})
    routing.edit_headers(h, m.remove_request_headers, m.add_request_headers)
    assert h.get_all("x-a") == ["new"] and h.get_all("x-b") == ["2"]


@pytest.mark.parametrize(
    ("substitution", "expected"),
    [
        ("/users/\\1", "/users/42"),
        ("/v2\\0", "/v2/u/42"),  # Envoy (RE2): \0 is the whole match; Python's re.sub would write a NUL here
        ("/a\\\\b/\\1", "/a\\b/42"),  # \\ is one backslash
    ],
)
def test_regex_rewrite_follows_re2_rewrite_rules(substitution: str, expected: str) -> None:
    m = M("m", prefix="/u/", regex_rewrite={"pattern": "^/u/([0-9]+)$", "substitution": substitution})
    assert routing.rewrite_path(m, "/u/42?q=1") == expected + "?q=1"


# ---------------------------------------------------------------- Emissary's rules, one test each


def test_present_header_query_and_host_in_the_group_id() -> None:
    """irhttpmapping.py _group_id: header and query names and values are in the id; `true` means present."""
    base = M("a", prefix="/x/")
    assert routing.group_key(M("b", prefix="/x/", headers={"x-a": True})) == "HTTP-GET/x/x-a"
    assert routing.group_key(M("c", prefix="/x/", query_parameters={"q": "1"})) == "HTTP-GET/x/q1"
    assert routing.group_key(M("d", prefix="/x/", hostname="*")) == "HTTP-GET/x/:authority*"
    assert routing.group_key(M("e", prefix="/x/", method="POST", precedence=3)) == "HTTP-GET/x/:methodPOST3"
    assert routing.group_key(base) == "HTTP-GET/x/"


def test_method_and_host_count_in_route_order() -> None:
    """irhttpmapping.py _route_weight: `:method` and `:authority` count in the header length like any header, and
    a present-only header counts its name plus one ("*"), so a `method` Mapping can outrank a header one."""
    by_method = M("m", prefix="/x/", method="GET")  # ":method" + "GET" = 10
    by_header = M("h", prefix="/x/", headers={"x-a": "1"})  # 4
    present = M("p", prefix="/x/", headers={"x-long-name": True})  # 11 + 1 = 12
    assert route_len(by_method) == 10 and route_len(by_header) == 4 and route_len(present) == 12
    t = table(by_header, by_method, present)
    assert [g.members[0].name for g in t.groups] == ["p", "m", "h"]
    assert pick(t, view("/x/", **{"x-a": "1"})).mapping.name == "m"  # type: ignore[union-attr]


def route_len(m: mappings.Mapping) -> int:
    w = routing.route_weight(m)
    assert isinstance(w[2], int)
    return w[2]


def test_group_wide_settings_from_the_production_mappings() -> None:
    """irhttpmappinggroup.py finalize + v3route.py V3Route: add_*_headers merged over the group; remove_*_headers
    and regex_rewrite from the last Mapping (by name) that sets them, for every route of the group."""
    a = M("a", prefix="/x/", add_request_headers={"x-a": "1"}, remove_request_headers=["x-gone"], weight=50)
    b = M("b", prefix="/x/", add_request_headers={"x-b": "2"}, regex_rewrite={"pattern": "/x/", "substitution": "/"})
    c = M("c", prefix="/x/", shadow=True, add_request_headers={"x-shadow": "no"})
    t = table(a, b, c)
    s = t.groups[0].settings
    assert [h.name for h in s.add_request_headers] == ["x-a", "x-b"] and s.remove_request_headers == ("x-gone",)
    r = pick(t, view("/x/y"), canary=10)
    assert r is not None and r.mapping.name == "a" and r.path == "/y"  # type: ignore[union-attr]
    # A later Mapping without regex_rewrite clears it for the whole group (every Mapping carries the key).
    t = table(b, M("z", prefix="/x/", rewrite="/z/"))
    assert t.groups[0].settings.regex_rewrite is None
    assert pick(t, view("/x/y"), canary=10).path == "/x/y"  # type: ignore[union-attr]  # b's rewrite is ""


def test_core_keys_must_agree_even_for_a_shadow() -> None:
    """irhttpmappinggroup.py add_mapping: a later Mapping whose CoreMappingKeys differ is refused, in Emissary's
    words; the check runs before the shadow branch."""
    t = table(M("a", prefix="/x/", connect_timeout_ms=100), M("s", prefix="/x/", shadow=True, connect_timeout_ms=200))
    assert t.groups[0].shadow is None
    assert [(e.mapping, e.message) for e in t.errors] == [
        (
            "s.default",
            "cannot accept new mapping s with mismatched connect_timeout_ms: 200 != 100."
            "Please verify field is set with the same value in all related mappings."
            "Example: When canary is configured, related mappings should have same fields and values",
        )
    ]
    t = table(M("a", prefix="/x/"), M("b", prefix="/x/", prefix_exact=False))
    assert "prefix_exact: False != -unset-" in t.errors[0].message and len(t.groups[0].members) == 1


def test_ambassador_id_selects_mappings() -> None:
    """config.py good_ambassador_id: ids as a string or a list; "_automatic_" always; default "default"."""
    ms = [
        M("plain", prefix="/a/"),
        M("blue", prefix="/b/", ambassador_id="blue"),
        M("both", prefix="/c/", ambassador_id=["default", "blue"]),
        M("auto", prefix="/d/", ambassador_id=["_automatic_"]),
    ]
    assert sorted(m.name for m in routing.build_table(ms).mappings) == ["auto", "both", "plain"]
    blue = routing.build_table(ms, (), "blue")
    assert sorted(m.name for m in blue.mappings) == ["auto", "blue", "both"]
    assert [m.name for m in blue.ignored] == ["plain"]


def test_matching_as_envoy_does() -> None:
    """Envoy route matching as v3route.py configures it: exact host on the whole :authority (case and port);
    globs are suffix/prefix matches; method_regex; the first raw query value; case_sensitive ignored for
    prefix_regex; the path normalised first (v3listener.py normalize_path)."""
    t = table(
        M("exact", prefix="/e/", hostname="Api.example.com"),
        M("glob", prefix="/g/", hostname="*.example.com"),
        M("mrx", prefix="/m/", method="GET|HEAD", method_regex=True),
        M("q", prefix="/q/", query_parameters={"a": "x%20y"}),
        M("rx", prefix="/R/[0-9]+", prefix_regex=True, case_sensitive=False),
        M("b", prefix="/b/"),
    )

    def name(req: RequestView) -> str | None:
        r = pick(t, req)
        return r.mapping.name if r and r.mapping else None

    assert name(view("/e/", host="Api.example.com")) == "exact"
    assert name(view("/e/", host="api.example.com")) is None and name(view("/e/", host="Api.example.com:80")) is None
    assert name(view("/g/", host="a.example.com")) == "glob" and name(view("/g/", host="a.example.com:8080")) is None
    assert name(view("/m/", "HEAD")) == "mrx" and name(view("/m/", "POST")) is None
    assert name(view("/q/?a=x%20y&a=z")) == "q" and name(view("/q/?a=z&a=x%20y")) is None
    assert name(view("/q/?a=x y")) is None  # raw, undecoded
    assert name(view("/R/12")) == "rx" and name(view("/r/12")) is None
    r = pick(t, view("/a/../b/c/./d"))
    assert r is not None and r.mapping.name == "b" and r.path == "/c/d"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/../b/", "/b/"),
        ("/need-normalization/../simple/", "/simple/"),
        ("/a/./b?x=/../", "/a/b?x=/../"),
        ("/a/%2e%2E/b", "/b"),
        ("/../a", "/a"),
        ("/a/b/..", "/a/"),
        ("/a//b/", "/a//b/"),  # merge_slashes stays off
        ("/a%2Fb/../c", "/c"),  # escaped slashes are not separators
        ("/.hidden/x", "/.hidden/x"),
    ],
)
def test_normalize_path(path: str, expected: str) -> None:
    """RFC 3986 5.2.4 remove_dot_segments, as Envoy's normalize_path (on in Emissary's v3listener.py)."""
    assert routing.normalize_path(path) == expected


def test_redirect_and_upgrade_answers() -> None:
    """v3route.py: a host_redirect group answers a redirect and mirrors nothing; an upgrade is allowed only where
    allow_upgrade/use_websocket lists it (Envoy answers 403 otherwise)."""
    t = table(
        M("r", prefix="/r/", service="foobar.com", host_redirect=True, redirect_response_code=302),
        M("rs", prefix="/r/", shadow=True),
        M("ws", prefix="/ws/", use_websocket=True),
        M("ws-false", prefix="/wsf/", use_websocket=False),  # irhttpmapping.py: the key alone adds websocket
        M("plain", prefix="/p/"),
    )
    r = pick(t, view("/r/x?q=1"))
    assert r is not None and r.shadow is None
    assert routing.local_reply(r, "GET", None, None) == (302, {"location": "http://foobar.com/r/x?q=1"})
    ws, plain = pick(t, view("/ws/")), pick(t, view("/p/"))
    assert ws is not None and plain is not None
    assert routing.local_reply(ws, "GET", "Upgrade", "websocket") is None
    wsf = pick(t, view("/wsf/"))
    assert wsf is not None and routing.local_reply(wsf, "GET", "Upgrade", "websocket") is None
    assert routing.local_reply(plain, "GET", "keep-alive, Upgrade", "websocket") == (403, {})
    assert routing.local_reply(plain, "GET", None, None) is None


def test_timeout_zero_means_none_for_the_copy() -> None:
    """v3route.py: timeout_ms becomes the route timeout, 0s = none in Envoy; the mirror inherits it."""
    t = table(M("p", prefix="/a/", timeout_ms=0), M("s", prefix="/a/", shadow=True))
    r = pick(t, view("/a/"))
    assert r is not None and r.timeout_ms == 0 and routing.copy_timeout(r.timeout_ms) == routing.NO_TIMEOUT_CAP
    assert routing.copy_timeout(750) == 0.75


# ---------------------------------------------------------------- details checked against Emissary's and Envoy's source


def test_case_sensitive_false_on_one_mapping_applies_to_the_group() -> None:
    """IRHTTPMappingGroup.finalize flattens case_sensitive onto the group; V3Route uses the group's value for a
    Mapping that does not set its own: `case_sensitive: false` on the second canary folds the first one too."""
    t = table(M("a", prefix="/Shop/", weight=50), M("b", prefix="/Shop/", case_sensitive=False))
    r = pick(t, view("/shop/x"), canary=10)
    assert r is not None and r.mapping is not None and r.mapping.name == "a"
    assert routing.route_case_sensitive([M("a"), M("b", case_sensitive=False)]) == [False, False]


def test_a_mapping_of_its_own_case_sensitive_keeps_it() -> None:
    """V3Route: the Mapping's own case_sensitive wins over the group's. Envoy tries the routes in order with the
    same draw: a route whose path does not match is skipped and the next one takes the request."""
    t = table(M("a", prefix="/Shop/", weight=50, case_sensitive=True), M("b", prefix="/Shop/", case_sensitive=False))
    r = pick(t, view("/shop/x"), canary=10)
    assert r is not None and r.mapping is not None and r.mapping.name == "b"
    r = pick(t, view("/Shop/x"), canary=10)
    assert r is not None and r.mapping is not None and r.mapping.name == "a"


@pytest.mark.parametrize(
    ("pattern", "substitution", "path", "expected"),
    [
        ("(.*)", "/v2\\1", "/rx/a", "/v2/rx/a"),  # Python's re.sub gives /v2/rx/a/v2
        ("a*", "-", "baaac", "-b-c-"),  # re.sub: -b--c-
        ("x", "-", "/abc", "/abc"),  # no match: unchanged
        ("b*", "-", "/ab", "-/-a-"),  # re.sub: -/-a--
    ],
)
def test_regex_rewrite_is_re2_global_replace(pattern: str, substitution: str, path: str, expected: str) -> None:
    """re2.cc RE2::GlobalReplace (Envoy regex.cc replaceAll): no empty match replaced right after a match."""
    m = M("m", prefix="/", regex_rewrite={"pattern": pattern, "substitution": substitution})
    assert routing.rewrite_path(m, path + "?q=1") == expected + "?q=1"


def test_regex_redirect_is_re2_global_replace() -> None:
    m = M(
        "r",
        prefix="/rx/",
        service="other.example",
        host_redirect=True,
        regex_redirect={"pattern": "(.*)", "substitution": "/v2\\1"},
    )
    r = pick(table(m), view("/rx/a"))
    assert r is not None and r.redirect == (301, "http://other.example/v2/rx/a")


def test_v2_true_header_is_a_regex_match_and_orders_as_one() -> None:
    """handwritten.conversion.go Convert_v2_MappingSpec_To_v3alpha1_MappingSpec: v2 `headers: {x-a: true}` is
    regex_headers `.*`, so its route weight is that of a regex `.*` match: it now sorts before an exact `x-a: b`
    (length 3+2+1 vs 3+1), where v3's present match sorts after it."""
    v2 = "getambassador.io/v2"
    present = mappings.build_mapping("p", "default", "t", {"prefix": "/", "service": "p", "headers": {"x-a": True}}, v2)
    exact = mappings.build_mapping("e", "default", "t", {"prefix": "/", "service": "e", "headers": {"x-ab": "c"}}, v2)
    assert routing.header_matches(present)[0] == routing.KeyValue("x-a", ".*", True)
    t = table(present, exact)
    assert [g.members[0].name for g in t.groups] == ["p", "e"]
    r = pick(t, view("/", **{"x-a": "1", "x-ab": "c"}))
    assert r is not None and r.mapping is not None and r.mapping.name == "p"
    v3 = table(M("p", headers={"x-a": True}), M("e", headers={"x-ab": "c"}))
    assert [g.members[0].name for g in v3.groups] == ["e", "p"]


def test_shadow_weight_over_100_copies_every_request_with_a_warning() -> None:
    """v3route.py V3Route passes the shadow weight unchecked as numerator/HUNDRED; Envoy protobuf/utility.cc
    evaluateFractionalPercent (random % 100 < numerator) mirrors every request. The load says so, and so does
    `explain`, which shows the 100% that happens rather than 150%."""
    from shadow_addon import explain

    r = mappings.parse_text(
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: p}\nspec: {prefix: /a/, service: p}\n"
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: s}\n"
        "spec: {prefix: /a/, service: s, shadow: true, weight: 150}\n",
        "m.yaml",
    )
    assert r.errors == []
    assert r.notices == [
        "m.yaml doc 2 (Mapping s.default): shadow weight 150 is over 100: every request is copied (100%)"
    ]
    t = table(*r.mappings)
    route = pick(t, view("/a/x"), shadow=99.99)
    assert route is not None and route.shadow is not None and not route.sampled_out
    text = explain.text(t)
    assert "copies 100% of the requests (weight over 100: Envoy copies every request)" in text
    assert "150%" not in text


def test_a_redirect_group_takes_its_mappings_case_sensitive() -> None:
    """IRHTTPMappingGroup.finalize: "Flatten the case_sensitive field for host_redirect if it exists"; V3Route
    builds the redirect route from no Mapping and so uses the group's (KAT HostRedirectMapping, `-2`)."""
    t = table(M("r", prefix="/Old/", service="new.example", host_redirect=True, case_sensitive=False))
    r = pick(t, view("/old/x"))
    assert r is not None and r.redirect == (301, "http://new.example/old/x")
    assert pick(table(M("s", prefix="/Old/", service="new.example", host_redirect=True)), view("/old/x")) is None


def test_the_table_knows_whether_a_route_matches_a_header_envoy_sets() -> None:
    """Routing must see what Envoy's connection manager sets (x-forwarded-*, x-envoy-*, x-request-id) only when a
    route matches on one of them; otherwise those headers are added after routing, to routed requests only."""
    assert not table(M("a", headers={"x-canary": "1"})).matches_envoy_headers
    assert table(M("a", headers={"X-Forwarded-Proto": "https"})).matches_envoy_headers
    assert table(M("b", regex_headers={"x-request-id": ".*"})).matches_envoy_headers


def test_header_and_query_matches_are_in_name_order_whatever_the_yaml_order() -> None:
    """Emissary's Python reads resources as JSON from its Go side (encoding/json sorts map keys): the group id
    (irhttpmapping.py _group_id) does not depend on the order the matches are written in, so these two are one
    group, a canary pair."""
    a = M("a", prefix="/x/", headers={"x-b": "1", "x-a": "2"}, query_parameters={"q": "1", "p": "2"}, weight=30)
    b = M("b", prefix="/x/", headers={"x-a": "2", "x-b": "1"}, query_parameters={"p": "2", "q": "1"})
    assert routing.group_key(a) == routing.group_key(b) == "HTTP-GET/x/x-a2x-b1p2q1"
    t = table(a, b)
    assert len(t.groups) == 1 and [m.name for m, _ in t.groups[0].production] == ["a", "b"]
    assert t.errors == ()
