"""The routing index returns exactly the route the ordered scan returns, on random tables and on a large one."""

from __future__ import annotations

import dataclasses
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy.http import Headers

from shadow_addon import mappings, routeindex, routing
from shadow_addon.routing import RequestView


def M(name: str, **kw: object) -> mappings.Mapping:
    spec = {"prefix": "/", "service": name + "-svc", **kw}
    return mappings.build_mapping(name, "default", "t", spec)


def scan(t: routing.Table) -> routing.Table:
    """The same table without its index: `resolve` tries every group in order."""
    return dataclasses.replace(t, index=None)


def both(t: routing.Table, req: RequestView, canary: float, shadow: float) -> routing.Route | None:
    assert t.index is not None
    indexed = routing.resolve(t, req, canary, shadow)
    scanned = routing.resolve(scan(t), req, canary, shadow)
    assert indexed == scanned, (req, indexed, scanned)
    return indexed


# ---------------------------------------------------------------- the literal every match starts with


def test_regex_literal_is_what_re2_says_every_match_starts_with() -> None:
    lit = routeindex.regex_literal
    assert lit("/users/[0-9]+") == "/users/"
    assert lit("^/api/v[0-9]+/.*") == "/api/v"
    assert lit("/ab*") == "/a"  # `b*` may be empty
    assert lit("/ab|/ac") == "/a"  # either side
    assert lit("/a|b") == ""
    assert lit("(?i)/Api/x") == "/"  # case folded: only the slash is certain
    assert lit(".*\\.js") == ""
    assert lit("/caf\u00e9/.*") == "/caf"  # the ASCII part
    assert lit("(") == ""  # not a pattern: no literal, the group is tried for every path


def test_fold_keeps_positions() -> None:
    assert routeindex.fold("/API/x") == "/api/x"
    # KELVIN SIGN lower-cases to an ASCII k; a dotted capital I to two characters, so it stays as it is.
    assert routeindex.fold("/\u212aey/\u0130x") == "/key/\u0130x"


def test_candidates_are_the_groups_whose_literal_the_path_starts_with_in_route_order() -> None:
    t = routing.build_table(
        [
            M("root", prefix="/"),
            M("api", prefix="/api/"),
            M("apiv1", prefix="/api/v1/"),
            M("Users", prefix="/Users/", case_sensitive=False),
            M("rx", prefix="/api/v[0-9]+/items", prefix_regex=True),
            M("anyjs", prefix=".*\\.js", prefix_regex=True),
            M("shadowonly", prefix="/s/", shadow=True),
        ]
    )
    assert t.index is not None

    def names(path: str) -> list[str]:
        return [g.members[0].name for g in t.index.candidates(path)]  # type: ignore[union-attr]

    order = [g.members[0].name for g in t.groups]
    assert order == ["rx", "apiv1", "Users", "anyjs", "api", "shadowonly", "root"]  # route order: longest first
    assert names("/api/v1/x") == ["rx", "apiv1", "anyjs", "api", "root"]
    assert names("/users/1") == ["Users", "anyjs", "root"]
    assert names("/s/x") == ["anyjs", "root"]  # a group with only a shadow makes no route
    assert names("/\u00e9") == ["rx", "anyjs", "root"]  # not ASCII: every regex group is tried


# ---------------------------------------------------------------- random tables against the scan

SEGMENTS = ["a", "A", "b", "ab", "api", "API", "v1", "x.js", "\u212a", "\u00e9"]
PREFIXES = ["/", "/a", "/a/", "/A/", "/ab", "/a/b", "/a/b/", "/api/", "/API/v1", "/b", "/\u00e9", "/\u212a/", "/\u0130"]
REGEXES = ["/a/[a-z]+", "/a.*", "(?i)/API/.*", "/a|/b.*", ".*\\.js", "/[ab]/v1", "^/ab?", "/\u00e9.*", "/k.*"]
HOSTS = ["example.com", "Example.com", "*.example.com", "api.*", "*", "example.com:8080"]


@st.composite
def a_mapping(draw: st.DrawFn, i: int) -> mappings.Mapping:
    kw: dict[str, object] = {}
    if draw(st.booleans()):
        kw["prefix"], kw["prefix_regex"] = draw(st.sampled_from(REGEXES)), True
    else:
        kw["prefix"] = draw(st.sampled_from(PREFIXES))
        if draw(st.booleans()):
            kw["prefix_exact"] = True
    if draw(st.booleans()):
        kw["case_sensitive"] = False
    if draw(st.integers(0, 3)) == 0:
        kw["precedence"] = draw(st.integers(-1, 2))
    if draw(st.integers(0, 3)) == 0:
        kw["hostname"] = draw(st.sampled_from(HOSTS))
    if draw(st.integers(0, 3)) == 0:
        kw["method"] = draw(st.sampled_from(["GET", "POST"]))
    if draw(st.integers(0, 4)) == 0:
        kw["headers"] = {"x-v": draw(st.sampled_from(["1", "2", True]))}
    if draw(st.integers(0, 4)) == 0:
        kw["regex_headers"] = {"x-r": "[0-9]+"}
    if draw(st.integers(0, 4)) == 0:
        kw["query_parameters"] = {"q": "1"}
    if draw(st.integers(0, 3)) == 0:
        kw["weight"] = draw(st.integers(0, 100))
    if draw(st.integers(0, 4)) == 0:
        kw["shadow"] = True
    return M(f"m{i}", **kw)


@st.composite
def a_table(draw: st.DrawFn) -> list[mappings.Mapping]:
    n = draw(st.integers(1, 12))
    return [draw(a_mapping(i)) for i in range(n)]


@st.composite
def a_request(draw: st.DrawFn) -> RequestView:
    segs = draw(st.lists(st.sampled_from([*SEGMENTS, "..", "."]), max_size=4))
    path = "/" + "/".join(segs) + draw(st.sampled_from(["", "/", "?q=1", "/?x=2&q=1", "?q=2"]))
    headers = Headers()
    if draw(st.booleans()):
        headers["x-v"] = draw(st.sampled_from(["1", "2"]))
    if draw(st.booleans()):
        headers["x-r"] = draw(st.sampled_from(["12", "x"]))
    host = draw(st.sampled_from(["example.com", "api.example.com", "Example.com", "example.com:8080", "other"]))
    return RequestView(draw(st.sampled_from(["GET", "POST"])), path, host, headers)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a_table(), st.lists(a_request(), min_size=1, max_size=8), st.floats(0, 99.99), st.floats(0, 99.99))
def test_index_routes_exactly_as_the_ordered_scan(
    ms: list[mappings.Mapping], reqs: list[RequestView], canary: float, shadow: float
) -> None:
    t = routing.build_table(ms)
    for req in reqs:
        both(t, req, canary, shadow)


# ---------------------------------------------------------------- a large table


def large_table(n: int, rng: random.Random) -> list[mappings.Mapping]:
    """n Mappings as a large cluster writes them: a prefix per service, some per host or method, some canaries
    and shadows, some regexes, and a catch-all."""
    out = [M("catch-all", prefix="/")]
    for i in range(n):
        kind = rng.random()
        kw: dict[str, object] = {"prefix": f"/svc-{i % (n // 2)}/"}
        if kind < 0.05:
            kw = {"prefix": f"/svc-{i}/[0-9]+", "prefix_regex": True}
        elif kind < 0.15:
            kw["hostname"] = f"h{i % 7}.example.com"
        elif kind < 0.2:
            kw["method"] = "POST"
        elif kind < 0.25:
            kw["weight"] = 50
        elif kind < 0.3:
            kw["shadow"] = True
        elif kind < 0.35:
            kw["case_sensitive"] = False
            kw["prefix"] = f"/SVC-{i}/"
        out.append(M(f"m{i}", **kw))
    return out


def test_a_table_of_ten_thousand_mappings_routes_like_the_scan() -> None:
    rng = random.Random(7)
    t = routing.build_table(large_table(10_000, rng))
    assert t.index is not None and len(t.groups) > 7_000
    hits = 0
    for _ in range(600):
        i = rng.randrange(10_000)
        path = rng.choice([f"/svc-{i % 5000}/x", f"/svc-{i}/{i}", f"/SVC-{i}/y", f"/Svc-{i}/", "/other", "/"])
        host = rng.choice(["example.com", f"h{i % 7}.example.com"])
        req = RequestView(rng.choice(["GET", "POST"]), path, host, Headers())
        r = both(t, req, rng.uniform(0, 99.99), rng.uniform(0, 99.99))
        hits += r is not None and r.mapping is not None and r.mapping.name != "catch-all"
    assert hits > 100  # most requests reach a specific Mapping, not only the catch-all
