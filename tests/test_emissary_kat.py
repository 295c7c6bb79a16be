"""Emissary's own KAT routing tests (python/tests/src/tests/kat/), ported to run without Kubernetes.

Each Mapping set is written as the KAT writes it (the flat form: apiVersion, kind, name and the fields at the top
level); each service name is pointed at a real server on loopback with `mapping_services`. Where Emissary answers
404 (no route), this proxy passes the request to its reverse target, the `prod` server here: that is the one
deliberate difference, and the tests check it as such.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from pathlib import Path

from support import Seen, make_cert, metric_sum, metrics_of, server_tls, wait_until

NAME = "shadowtest"  # the KAT's {self.name}


def flat(text: str, tmp_path: Path) -> Path:
    f = tmp_path / "kat.yaml"
    f.write_text(text)
    return f


def get(p, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:  # type: ignore[no-untyped-def]
    return p.request("GET", path, headers=headers)


def backend(p, path: str, headers: dict[str, str] | None = None) -> str:  # type: ignore[no-untyped-def]
    status, _, body = get(p, path, headers)
    assert status == 200, (status, body[:200])
    return json.loads(body)["name"]


# ---------------------------------------------------------------- t_shadow.py ShadowTestCANFLAKE

SHADOW_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-target
hostname: "*"
prefix: /{name}/mark/
rewrite: /mark/
service: https://target.default.svc.cluster.local
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-weighted-target
hostname: "*"
prefix: /{name}/weighted-mark/
rewrite: /mark/
service: https://target.default.svc.cluster.local
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-shadow
hostname: "*"
prefix: /{name}/mark/
rewrite: /mark/
service: shadow.default.svc.cluster.local
shadow: true
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-weighted-shadow
hostname: "*"
prefix: /{name}/weighted-mark/
rewrite: /mark/
service: shadow.default.svc.cluster.local
weight: 10
shadow: true
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-checkshadow
hostname: "*"
prefix: /{name}/check/
rewrite: /check/
service: shadow.default.svc.cluster.local
"""


class ShadowBackend:
    """The KAT's test-shadow image: counts GET /mark/<bucket>, answers the counts at /check/."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            if seen.path.startswith("/mark/"):
                self.counts[seen.path[len("/mark/") :]] += 1
                return 200, {"content-type": "application/json"}, b"{}"
            if seen.path.startswith("/check/"):
                return 200, {"content-type": "application/json"}, json.dumps(dict(self.counts)).encode()
        return 404, {}, b""


def test_kat_shadow(tmp_path: Path, upstream, proxy) -> None:
    """t_shadow.py ShadowTestCANFLAKE: its five Mappings load with no error; 100 requests to /<name>/mark/<i % 10>
    reach the TLS target and each bucket reaches the shadow 10 times (weight 100); 500 to /<name>/weighted-mark/
    with a weight-10 shadow copy about 50 (v3route.py request_mirror_policies runtime_fraction = shadow weight);
    the client never sees the shadow's answer (no X-Shadowed)."""
    cert, key = make_cert(tmp_path)
    prod, target, shadow = upstream("prod"), upstream("target", tls=server_tls(cert, key)), upstream("shadow")
    counts = ShadowBackend()
    shadow.behaviour.responder = counts
    m = flat(SHADOW_KAT.format(name=NAME), tmp_path)
    p = proxy(
        f"http://{prod.address}",
        sets={
            "mappings": str(m),
            "mapping_services": [f"target={target.address}", f"shadow={shadow.address}"],
            "ssl_verify_upstream_trusted_ca": str(cert),
        },
    )
    diag = json.loads(p.admin("/diag")[1])
    assert diag["errors"] == [] and len(diag["mappings"]) == 5
    paths = [f"/{NAME}/mark/{i % 10}" for i in range(100)]
    paths += [f"/{NAME}/weighted-mark/{(i % 10) + 100}" for i in range(500)]
    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
    try:
        for path in paths:  # one kept-alive connection, one request at a time, as the KAT's client
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            assert r.status == 200 and r.getheader("X-Shadowed") is None
    finally:
        conn.close()
    assert target.count() == 600 and prod.count() == 0
    assert all(s.path.startswith("/mark/") for s in target.seen)

    def idle() -> bool:  # every copy submitted (before each answer) has completed
        mm = metrics_of(p)
        return metric_sum(mm, "shadow_inflight") == 0 and metric_sum(mm, "shadow_backlog") == 0

    assert wait_until(idle, 60, 0.1)
    data = json.loads(backend_body(p, f"/{NAME}/check/"))
    for i in range(10):
        assert data.get(str(i), -1) == 10, (i, data)
    weighted = sum(data.get(str(i + 100), 0) for i in range(10))
    # Binomial(500, 0.1): mean 50, sd 6.7; 17..83 is +-5 sd (a false failure about once in two million runs).
    assert 17 <= weighted <= 83, weighted
    assert metric_sum(metrics_of(p), "shadow_dropped_total") == 0


def backend_body(p, path: str) -> bytes:  # type: ignore[no-untyped-def]
    status, _, body = get(p, path)
    assert status == 200, (status, body[:200])
    return body


# ---------------------------------------------------------------- t_headerrouting.py HeaderRoutingTest

HEADER_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-target1
hostname: "*"
prefix: /{name}/
service: http://target1.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-target2
hostname: "*"
prefix: /{name}/
service: http://target2.default
headers:
    X-Route: target2
"""


def test_kat_header_routing(tmp_path: Path, upstream, proxy) -> None:
    """t_headerrouting.py HeaderRoutingTest: the Mapping with a header match wins when the header is there
    (irhttpmapping.py _route_weight: its header length ranks it first)."""
    prod, t1, t2 = upstream("prod"), upstream("target1"), upstream("target2")
    m = flat(HEADER_KAT.format(name=NAME), tmp_path)
    p = proxy(
        f"http://{prod.address}",
        sets={"mappings": str(m), "mapping_services": [f"target1={t1.address}", f"target2={t2.address}"]},
    )
    assert backend(p, f"/{NAME}/") == "target1"
    assert backend(p, f"/{NAME}/", {"X-Route": "target2"}) == "target2"


# ---------------------------------------------------------------- t_queryparameter_routing.py

QUERY_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-target1
hostname: "*"
prefix: /target/
service: http://target1.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-target2
hostname: "*"
prefix: /target/
service: http://target2.default
query_parameters:
    test_param: target2
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-regex
hostname: "*"
prefix: /regex/
service: http://target1.default
regex_query_parameters:
    test_param: "^[a-z].*"
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-present
hostname: "*"
prefix: /present/
service: http://target2.default
regex_query_parameters:
    test_param: ".*"
"""


def test_kat_query_parameter_routing(tmp_path: Path, upstream, proxy) -> None:
    """t_queryparameter_routing.py QueryParameterRoutingTest, ...WithRegexTest, ...PresentRoutingTest: exact,
    regex (RE2 full match, case-sensitive) and present matches on the query; Emissary's 404s reach `prod`."""
    prod, t1, t2 = upstream("prod"), upstream("target1"), upstream("target2")
    m = flat(QUERY_KAT.format(name=NAME), tmp_path)
    p = proxy(
        f"http://{prod.address}",
        sets={"mappings": str(m), "mapping_services": [f"target1={t1.address}", f"target2={t2.address}"]},
    )
    assert backend(p, "/target/") == "target1"
    assert backend(p, "/target/?test_param=target2") == "target2"
    assert backend(p, "/regex/?test_param=hello") == "target1"
    assert backend(p, "/regex/") == "prod" and backend(p, "/regex/?test_param=HeLlO") == "prod"
    assert backend(p, "/present/?test_param=true") == "target2"
    assert backend(p, "/present/") == "prod"


# ---------------------------------------------------------------- t_regexrewrite_forwarding.py

REGEX_REWRITE_KAT = r"""
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  regex_rewrite_mapping
hostname: "*"
prefix: /foo/
service: http://foo.default
regex_rewrite:
    pattern: "/foo/([0-9]*)/list"
    substitution: "/bar/\\1"
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  regex_rewrite_mapping_2
hostname: "*"
prefix: /foo2/
service: http://foo.default
regex_rewrite:
    pattern: "/foo2/baz"
    substitution: "/baz/foo"
"""


def test_kat_regex_rewrite_forwarding(tmp_path: Path, upstream, proxy) -> None:
    """t_regexrewrite_forwarding.py RegexRewriteForwardingTest and ...WithExtractAndSubstituteTest (the second's
    prefix renamed /foo2/ so both fit one file): regex_rewrite replaces what the pattern matches, leaves the rest."""
    prod, foo = upstream("prod"), upstream("foo")
    m = flat(REGEX_REWRITE_KAT, tmp_path)
    p = proxy(f"http://{prod.address}", sets={"mappings": str(m), "mapping_services": [f"foo={foo.address}"]})
    assert json.loads(get(p, "/foo/123456789/list")[2])["path"] == "/bar/123456789"
    assert json.loads(get(p, "/foo/987654321/list")[2])["path"] == "/bar/987654321"
    assert json.loads(get(p, "/foo/")[2])["path"] == "/foo/"  # no match: the path is left as it is
    assert backend(p, "/fooooo/123456789/list") == "prod"
    assert json.loads(get(p, "/foo2/bar")[2])["path"] == "/foo2/bar"
    assert json.loads(get(p, "/foo2/baz")[2])["path"] == "/baz/foo"
    assert backend(p, "/ffoo/") == "prod"


# ---------------------------------------------------------------- t_mappingtests_plain.py

PLAIN_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  simple
hostname: "*"
prefix: /simple/
service: http://target.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  hostheader
prefix: /hostheader/
service: http://target.default
host: inspector.external
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  redirect
hostname: "*"
prefix: /redirect/
service: foobar.com
host_redirect: true
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  redirect-2
hostname: "*"
prefix: /redirect-2/
case_sensitive: false
service: foobar.com
host_redirect: true
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  redirect-3
hostname: "*"
prefix: /redirect-3/foo/
service: foobar.com
host_redirect: true
path_redirect: /redirect/
redirect_response_code: 302
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  redirect-4
hostname: "*"
prefix: /redirect-4/foo/bar/baz
service: foobar.com
host_redirect: true
prefix_redirect: /foobar/baz
redirect_response_code: 307
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  redirect-5
hostname: "*"
prefix: /redirect-5/assets/([a-f0-9]{12})/images
prefix_regex: true
service: foobar.com
host_redirect: true
regex_redirect:
  pattern: /redirect-5/assets/([a-f0-9]{12})/images
  substitution: /images/\\1
redirect_response_code: 308
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  canary0
hostname: "*"
prefix: /canary0/
service: http://target.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  canary0-canary
hostname: "*"
prefix: /canary0/
service: http://canary.default
weight: 0
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  canary100
hostname: "*"
prefix: /canary100/
service: http://target.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  canary100-canary
hostname: "*"
prefix: /canary100/
service: http://canary.default
weight: 100
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  addreq
hostname: "*"
prefix: /addreq/
service: http://target.default
add_request_headers:
    zoo:
        append: False
        value: Zoo
    aoo:
        append: True
        value: aoo
    boo:
        value: boo
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  removereq
hostname: "*"
prefix: /removereq/
service: target.default
remove_request_headers:
- zoo
- aoo
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  tls
hostname: "*"
prefix: /tls/
service: https://secure.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  websocket
hostname: "*"
prefix: /websocket/
service: target.default
use_websocket: true
"""


def test_kat_mappingtests_plain(tmp_path: Path, upstream, proxy) -> None:
    """t_mappingtests_plain.py: SimpleMapping (a path with `..` is normalised before routing, v3listener.py
    normalize_path), HostHeaderMapping (exact host, a port in Host does not match), HostRedirectMapping (codes and
    Locations), CanaryMapping weights 0 and 100, AddReqHeadersMapping, RemoveReqHeadersMapping, TLSOrigination."""
    cert, key = make_cert(tmp_path)
    prod, target, canary = upstream("prod"), upstream("target"), upstream("canary")
    secure = upstream("secure", tls=server_tls(cert, key))
    m = flat(PLAIN_KAT, tmp_path)
    p = proxy(
        f"http://{prod.address}",
        sets={
            "mappings": str(m),
            "mapping_services": [f"target={target.address}", f"canary={canary.address}", f"secure={secure.address}"],
            "ssl_verify_upstream_trusted_ca": str(cert),
        },
    )
    assert json.loads(p.admin("/diag")[1])["errors"] == []
    assert backend(p, "/simple/") == "target"
    assert backend(p, "/need-normalization/../simple/") == "target"
    assert target.seen[-1].path == "/"
    assert backend(p, "/hostheader/") == "prod"
    assert backend(p, "/hostheader/", {"Host": "inspector.internal"}) == "prod"
    assert backend(p, "/hostheader/", {"Host": "inspector.external"}) == "target"
    assert backend(p, "/hostheader/", {"Host": "inspector.external:80"}) == "prod"

    def redirect(path: str) -> tuple[int, str | None]:
        status, h, _ = get(p, path)
        return status, h.get("location")

    assert redirect("/redirect/anything?itworked=true") == (301, "http://foobar.com/redirect/anything?itworked=true")
    assert backend(p, "/REDIRECT/anything?itworked=true") == "prod"
    assert redirect("/redirect-2/anything?itworked=true") == (
        301,
        "http://foobar.com/redirect-2/anything?itworked=true",
    )
    assert redirect("/REDIRECT-2/anything?itworked=true") == (
        301,
        "http://foobar.com/REDIRECT-2/anything?itworked=true",
    )
    assert redirect("/redirect-3/foo/anything") == (302, "http://foobar.com/redirect/")
    assert redirect("/redirect-4/foo/bar/baz/anything") == (307, "http://foobar.com/foobar/baz/anything")
    assert redirect("/redirect-5/assets/abcd0000f123/images") == (308, "http://foobar.com/images/abcd0000f123")
    assert redirect("/redirect-5/assets/abcd0000f123/images?itworked=true") == (
        308,
        "http://foobar.com/images/abcd0000f123?itworked=true",
    )
    assert {backend(p, "/canary0/") for _ in range(20)} == {"target"}
    assert {backend(p, "/canary100/") for _ in range(20)} == {"canary"}
    backend(p, "/addreq/", {"zoo": "ZooZ", "aoo": "AooA", "boo": "BooB"})
    seen = target.seen[-1]
    assert [v for k, v in seen.headers if k.lower() == "zoo"] == ["Zoo"]
    assert [v for k, v in seen.headers if k.lower() == "aoo"] == ["AooA", "aoo"]
    assert [v for k, v in seen.headers if k.lower() == "boo"] == ["BooB", "boo"]
    backend(p, "/removereq/headers", {"zoo": "ZooZ", "aoo": "AooA", "foo": "FooF"})
    seen = target.seen[-1]
    assert seen.header("foo") == "FooF" and seen.header("zoo") is None and seen.header("aoo") is None
    assert backend(p, "/tls/") == "secure"  # TLSOrigination: the server only speaks TLS
    # WebSocketMapping: the upgrade is allowed on its route (use_websocket) and refused (403) elsewhere.
    up = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "x"}
    assert get(p, "/simple/", up)[0] == 403
    n = target.count()
    get(p, "/websocket/", up)
    assert target.count() == n + 1  # forwarded (the echo server answers it as a plain request)
    assert metric_sum(metrics_of(p), "shadow_dropped_total") == 0


# ---------------------------------------------------------------- t_basics.py

BASICS_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind:  Module
name:  ambassador
config:
  use_ambassador_namespace_for_service_resolution: true
"""
for _prefix, _ids in (
    ("findme", "[kat]"),
    ("findme-array", "[kat, missme]"),
    ("findme-array2", "[missme, kat]"),
    ("missme", "[missme]"),
    ("missme-array", "[missme1, missme2]"),
):
    BASICS_KAT += f"""
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  ambassadoridtest-{_prefix}
hostname: "*"
prefix: /{_prefix}/
service: target.default
ambassador_id: {_ids}
"""
BASICS_KAT += """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata:
  name:  invalidresources-m-good-crd
spec:
  ambassador_id: ["kat"]
  hostname: "*"
  prefix: /good-crd/
  service: target.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata:
  name:  invalidresources-m-bad-crd
spec:
  ambassador_id: ["kat"]
  hostname: "*"
  prefix_bad: /bad-crd/
  service: target.default
"""


def test_kat_basics_ambassador_id_and_invalid_resources(tmp_path: Path, upstream, proxy) -> None:
    """t_basics.py AmbassadorIDTest (config.py good_ambassador_id: a string or any list holding this instance's
    id) and InvalidResources (an invalid Mapping is left out, the good one beside it serves); the Module is
    skipped with a notice."""
    prod, target = upstream("prod"), upstream("target")
    p = proxy(
        f"http://{prod.address}",
        sets={
            "mappings": str(flat(BASICS_KAT, tmp_path)),
            "mapping_services": [f"target={target.address}"],
            "mapping_ambassador_id": "kat",
        },
    )
    for path in ("/findme/", "/findme-array/", "/findme-array2/", "/good-crd/"):
        assert backend(p, path) == "target", path
    for path in ("/missme/", "/missme-array/", "/bad-crd/"):
        assert backend(p, path) == "prod", path
    diag = json.loads(p.admin("/diag")[1])
    assert sorted(i["mapping"] for i in diag["ignored"]) == [
        "ambassadoridtest-missme-array.default",
        "ambassadoridtest-missme.default",
    ]
    assert [e["message"] for e in diag["errors"]] == [
        f"{tmp_path / 'kat.yaml'} doc 8 (Mapping invalidresources-m-bad-crd.default): unknown field 'prefix_bad'"
    ]


# ---------------------------------------------------------------- t_request_header.py

ENVOY_HEADERS_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-target
hostname: "*"
prefix: /target/
rewrite: /rewrite/
timeout_ms: 5001
service: http://target
"""


def test_kat_envoy_headers(tmp_path: Path, upstream, proxy) -> None:
    """t_request_header.py EnvoyHeadersTest: the upstream sees x-envoy-expected-rq-timeout-ms from timeout_ms
    (router.cc setTimeoutHeaders) and x-envoy-original-path, the path before the rewrite (config_impl.cc
    finalizePathHeader). SuppressEnvoyHeadersTest sets the Module's suppress_envoy_headers; its counterpart here
    is mapping_envoy_headers=false, and neither header is sent."""
    prod, target = upstream("prod"), upstream("target")
    m = flat(ENVOY_HEADERS_KAT.format(name=NAME), tmp_path)
    sets = {"mappings": str(m), "mapping_services": [f"target={target.address}"]}
    p = proxy(f"http://{prod.address}", sets=sets)
    assert backend(p, "/target/") == "target"
    seen = target.seen[-1]
    assert seen.path == "/rewrite/"
    assert seen.header("x-envoy-expected-rq-timeout-ms") == "5001"
    assert seen.header("x-envoy-original-path") == "/target/"
    p.stop()
    p = proxy(f"http://{prod.address}", sets={**sets, "mapping_envoy_headers": "false"})
    assert backend(p, "/target/") == "target"
    seen = target.seen[-1]
    assert seen.header("x-envoy-expected-rq-timeout-ms") is None and seen.header("x-envoy-original-path") is None


# ---------------------------------------------------------------- t_mappingtests_default.py, t_optiontests.py

DEFAULT_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}
hostname: "*"
prefix: /{name}/status/
rewrite: /status/
service: httpbin
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name: target
namespace: same-mapping-1
hostname: "*"
prefix: /{name}-1/
service: target.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name: target
namespace: same-mapping-2
hostname: "*"
prefix: /{name}-2/
service: target.default
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name: {name}-case
hostname: "*"
prefix: /{name}-case/
service: target.default
case_sensitive: false
"""


def test_kat_merge_slashes_off_same_name_other_namespace_and_case_insensitive(tmp_path: Path, upstream, proxy) -> None:
    """t_mappingtests_default.py MergeSlashesDisabled (merge_slashes is off: an extra slash before or inside the
    prefix does not match; Emissary's 404 is the reverse target here), SameMappingDifferentNamespaces (the same
    name in two namespaces is two Mappings), and t_optiontests.py CaseSensitive (`case_sensitive: false`: the
    path upper-cased still routes)."""
    prod, httpbin, target = upstream("prod"), upstream("httpbin"), upstream("target")
    m = flat(DEFAULT_KAT.format(name=NAME), tmp_path)
    p = proxy(
        f"http://{prod.address}",
        sets={"mappings": str(m), "mapping_services": [f"httpbin={httpbin.address}", f"target={target.address}"]},
    )
    status, _, body = get(p, f"/{NAME}/status/200")
    assert status == 200 and json.loads(body) == json.loads(body) | {"name": "httpbin", "path": "/status/200"}
    for path in (f"//{NAME}/status/200", f"//{NAME}//status/200", f"/{NAME}//status/200"):
        assert backend(p, path) == "prod", path
    assert backend(p, f"/{NAME}-1/") == "target" and backend(p, f"/{NAME}-2/") == "target"
    assert backend(p, f"/{NAME}-case/".upper()) == "target"
    assert backend(p, f"/{NAME}-case/x") == "target"


CANARY_DIFF_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-{w}
hostname: "*"
prefix: /{name}-{w}/
service: http://target
host_rewrite: canary.1.example.com
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-{w}-canary
hostname: "*"
prefix: /{name}-{w}/
service: http://canary
host_rewrite: canary.2.example.com
weight: {w}
"""


def test_kat_canary_diff_mapping_each_route_its_own_host_rewrite(tmp_path: Path, upstream, proxy) -> None:
    """t_mappingtests_plain.py CanaryDiffMapping, weights 0 and 100: each canary route has its own host_rewrite
    (v3route.py V3Route: host_rewrite_literal from the route's Mapping, not the group)."""
    prod, target, canary = upstream("prod"), upstream("target"), upstream("canary")
    m = flat("".join(CANARY_DIFF_KAT.format(name=NAME, w=w) for w in (0, 100)), tmp_path)
    p = proxy(
        f"http://{prod.address}",
        sets={"mappings": str(m), "mapping_services": [f"target={target.address}", f"canary={canary.address}"]},
    )
    for _ in range(20):
        assert backend(p, f"/{NAME}-0/") == "target"
        assert backend(p, f"/{NAME}-100/") == "canary"
    assert {s.header("host") for s in target.seen} == {"canary.1.example.com"}
    assert {s.header("host") for s in canary.seen} == {"canary.2.example.com"}


OPTIONS_KAT = """
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
name:  {name}-options
hostname: "*"
prefix: /{name}-options/
service: target
rewrite: /foo
add_request_headers: {{foo: {{value: bar}}, moo: {{value: arf}}, zoo: {{append: true, value: bar}},
                      xoo: {{append: false, value: dwe}}, aoo: {{value: tyu}}}}
add_response_headers: {{foo: {{value: bar}}, moo: {{value: arf}}, zoo: {{append: true, value: bar}},
                       xoo: {{append: false, value: dwe}}, aoo: {{value: tyu}}}}
"""


def test_kat_option_tests(tmp_path: Path, upstream, proxy) -> None:
    """t_optiontests.py AddRequestHeaders and AddResponseHeaders (all five values on one Mapping: `{value}` and
    `{append, value}` each give exactly one header), Rewrite (`rewrite: /foo`: the backend sees /foo)."""
    prod, target = upstream("prod"), upstream("target")
    m = flat(OPTIONS_KAT.format(name=NAME), tmp_path)
    p = proxy(f"http://{prod.address}", sets={"mappings": str(m), "mapping_services": [f"target={target.address}"]})
    status, headers, _ = get(p, f"/{NAME}-options/")
    assert status == 200
    seen = target.seen[-1]
    assert seen.path == "/foo"
    expected = {"foo": "bar", "moo": "arf", "zoo": "bar", "xoo": "dwe", "aoo": "tyu"}
    for k, v in expected.items():
        assert [x for n, x in seen.headers if n.lower() == k] == [v], k
        assert headers.get(k) == v, k
