"""Emissary's KATs through a real mitmdump: the shadow KAT whole, and the plain KAT's kinds of route.

test_emissary_kat.py checks every KAT fact against the routing table and the addon's hooks in-process; this one
proves the same rules hold end to end: Mapping files read from disk, `mapping_services`, real servers on loopback,
TLS origination, the headers an upstream receives, answers given by the proxy itself, and shadow copies sampled
and sent while the client sees production's answer only.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from pathlib import Path

from kat import NAME, PLAIN_KAT, SHADOW_KAT
from support import Proxy, Seen, make_cert, metric_sum, metrics_of, server_tls, wait_until


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


def get(p: Proxy, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return p.request("GET", path, headers=headers)


def backend(p: Proxy, path: str, headers: dict[str, str] | None = None) -> str:
    status, _, body = get(p, path, headers)
    assert status == 200, (status, body[:200])
    return json.loads(body)["name"]


def test_kat_shadow_and_plain_through_mitmdump(tmp_path: Path, upstream, proxy) -> None:  # type: ignore[no-untyped-def]
    """t_shadow.py ShadowTestCANFLAKE: its five Mappings load with no error; 100 requests to /<name>/mark/<i % 10>
    reach the TLS target and each bucket reaches the shadow 10 times (weight 100); 500 to /<name>/weighted-mark/
    with a weight-10 shadow copy about 50 (v3route.py request_mirror_policies runtime_fraction = shadow weight);
    the client never sees the shadow's answer (no X-Shadowed). Beside it, from t_mappingtests_plain.py, one
    request of each kind: a routed and a normalised path, a host match, redirects, a canary, header edits, TLS
    origination, and a WebSocket upgrade refused and allowed."""
    cert, key = make_cert(tmp_path)
    prod, target, shadow = upstream("prod"), upstream("target", tls=server_tls(cert, key)), upstream("shadow")
    plain, canary, secure = upstream("plain"), upstream("canary"), upstream("secure", tls=server_tls(cert, key))
    counts = ShadowBackend()
    shadow.behaviour.responder = counts
    d = tmp_path / "kat"
    d.mkdir()
    (d / "shadow.yaml").write_text(SHADOW_KAT.format(name=NAME))
    (d / "plain.yaml").write_text(PLAIN_KAT)
    p = proxy(
        f"http://{prod.address}",
        sets={
            "mappings": str(d),
            "mapping_services": [
                f"target.default.svc.cluster.local={target.address}",  # the shadow KAT's target (https)
                f"shadow={shadow.address}",
                f"target.default={plain.address}",  # the plain KAT's target (http)
                f"canary={canary.address}",
                f"secure={secure.address}",
            ],
            "ssl_verify_upstream_trusted_ca": str(cert),
        },
    )
    diag = json.loads(p.admin("/diag")[1])
    assert diag["errors"] == [] and len(diag["mappings"]) == 5 + 15

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
    status, _, body = get(p, f"/{NAME}/check/")
    assert status == 200, (status, body[:200])
    data = json.loads(body)
    for i in range(10):
        assert data.get(str(i), -1) == 10, (i, data)
    weighted = sum(data.get(str(i + 100), 0) for i in range(10))
    # Binomial(500, 0.1): mean 50, sd 6.7; 17..83 is +-5 sd (a false failure about once in two million runs).
    assert 17 <= weighted <= 83, weighted

    # The plain KAT (SimpleMapping, HostHeaderMapping, HostRedirectMapping, CanaryMapping, AddReqHeadersMapping,
    # RemoveReqHeadersMapping, TLSOrigination, WebSocketMapping).
    assert backend(p, "/need-normalization/../simple/") == "plain"
    assert plain.seen[-1].path == "/"
    assert backend(p, "/hostheader/", {"Host": "inspector.external"}) == "plain"
    assert backend(p, "/hostheader/", {"Host": "inspector.external:80"}) == "prod"
    status, h, _ = get(p, "/redirect/anything?itworked=true")
    assert (status, h.get("location")) == (301, "http://foobar.com/redirect/anything?itworked=true")
    status, h, _ = get(p, "/redirect-5/assets/abcd0000f123/images?itworked=true")
    assert (status, h.get("location")) == (308, "http://foobar.com/images/abcd0000f123?itworked=true")
    assert backend(p, "/canary100/") == "canary"
    backend(p, "/addreq/", {"zoo": "ZooZ", "aoo": "AooA", "boo": "BooB"})
    seen = plain.seen[-1]
    assert [v for k, v in seen.headers if k.lower() == "zoo"] == ["Zoo"]
    assert [v for k, v in seen.headers if k.lower() == "aoo"] == ["AooA", "aoo"]
    assert [v for k, v in seen.headers if k.lower() == "boo"] == ["BooB", "boo"]
    backend(p, "/removereq/headers", {"zoo": "ZooZ", "aoo": "AooA", "foo": "FooF"})
    seen = plain.seen[-1]
    assert seen.header("foo") == "FooF" and seen.header("zoo") is None and seen.header("aoo") is None
    assert backend(p, "/tls/") == "secure"  # the server only speaks TLS
    up = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "x"}
    assert get(p, "/simple/", up)[0] == 403
    n = plain.count()
    get(p, "/websocket/", up)
    assert plain.count() == n + 1  # forwarded (the echo server answers it as a plain request)
    assert metric_sum(metrics_of(p), "shadow_dropped_total") == 0
