"""The shadow engine through real mitmdump processes: what the copy is, how it is sampled, and that no
shadow behaviour reaches production."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import socket
import ssl
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
from support import (
    Proxy,
    free_port,
    make_cert,
    mapping,
    metric_sum,
    metrics_of,
    run_refused,
    server_tls,
    wait_until,
    write_mappings,
)

IGNORED_IN_COMPARISON = {"host", "x-mitmproxy-shadow", "content-length", "transfer-encoding", "connection"}


def shadow_setup(
    tmp_path: Path,
    upstream,
    proxy,
    shadow_address: str | None = None,
    prod_spec: dict | None = None,
    shadow_spec: dict | None = None,
    sets: dict | None = None,
    **kw: object,
):
    """A reverse proxy with one production Mapping (/api/ -> api, rewrite /v1/) and its shadow."""
    reverse, api = upstream("reverse"), upstream("api")
    sh = None
    if shadow_address is None:
        sh = upstream("shadow")
        shadow_address = sh.address
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("api", prefix="/api/", service="api-svc.default", rewrite="/v1/", **(prod_spec or {})),
        mapping("api-shadow", prefix="/api/", service="api-svc-shadow", shadow=True, **(shadow_spec or {})),
    )
    all_sets = {
        "mappings": str(m),
        "mapping_services": [f"api-svc={api.address}", f"api-svc-shadow={shadow_address}"],
        **(sets or {}),
    }
    p = proxy(f"http://{reverse.address}", sets=all_sets, **kw)
    return p, api, sh


def comparable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted((k.lower(), v) for k, v in headers if k.lower() not in IGNORED_IN_COMPARISON)


def test_copy_is_byte_for_byte_what_production_got(tmp_path: Path, upstream, proxy) -> None:
    p, api, sh = shadow_setup(
        tmp_path,
        upstream,
        proxy,
        sets={"shadow_body_limit": "8m"},
        prod_spec={"add_request_headers": {"x-added": "1"}, "remove_request_headers": ["x-gone"]},
    )
    body = os.urandom(3 * 1024 * 1024 + 7)  # several MiB of binary
    cases = [
        ("GET", "/api/search?q=a&q=b&empty=", None, {"accept": "application/json", "x-gone": "1", "x-multi": "a"}),
        ("POST", "/api/upload", body, {"content-type": "application/octet-stream"}),
        ("PUT", "/api/items/1", b'{"a": 1}', {"content-type": "application/json"}),
        ("DELETE", "/api/items/1", None, {}),
        ("POST", "/api/empty", b"", {}),
    ]
    for method, path, b, h in cases:
        s, _, out = p.request(method, path, body=b, headers=h)
        assert s == 200 and json.loads(out)["name"] == "api"
    assert sh.wait_for(len(cases))
    by_request = {(s.method, s.path): s for s in sh.seen}
    assert len(by_request) == len(api.seen) == len(cases)
    for prod_seen in api.seen:
        copy = by_request[prod_seen.method, prod_seen.path]
        assert (copy.method, copy.body) == (prod_seen.method, prod_seen.body)
        # Envoy's mirror (async_client_impl.cc sendHeaders) is marked x-envoy-internal and appends its own address
        # to production's XFF; everything else is production's.
        mirror_only = ("x-forwarded-for", "x-envoy-internal")
        assert comparable([h for h in copy.headers if h[0].lower() not in mirror_only]) == comparable(
            [h for h in prod_seen.headers if h[0].lower() not in mirror_only]
        )
        assert copy.header("x-forwarded-for") == f"{prod_seen.header('x-forwarded-for')}, 127.0.0.1"
        assert copy.header("x-envoy-internal") == "true" and prod_seen.header("x-envoy-internal") is None
        assert copy.header("x-added") == "1" and copy.header("x-gone") is None  # production's edits travel along
        assert copy.header("x-mitmproxy-shadow") == "1"
    assert by_request["POST", "/v1/upload"].body == body


def test_an_addon_after_this_one_edits_production_and_the_copy_alike(tmp_path: Path, upstream, proxy) -> None:
    """The copy is made once production's request is out (after every addon's `request` hook), so what a script
    loaded after the shadow addon does to the request reaches the copy too: Envoy mirrors what its route sent."""
    later = tmp_path / "later.py"
    later.write_text(
        "def request(flow):\n"
        "    flow.request.headers['x-later'] = 'edited'\n"
        "    flow.request.content = flow.request.content + b'+later'\n"
    )
    p, api, sh = shadow_setup(tmp_path, upstream, proxy, args=["-s", str(later)])
    for i in range(3):
        s, _, out = p.request("POST", f"/api/items/{i}", body=b"body%d" % i)
        assert s == 200 and json.loads(out)["name"] == "api"
    assert sh.wait_for(3)
    copies = {c.path: c for c in sh.seen}
    for prod_seen in api.seen:
        assert prod_seen.header("x-later") == "edited" and prod_seen.body.endswith(b"+later")
        copy = copies[prod_seen.path]
        assert (copy.header("x-later"), copy.body) == ("edited", prod_seen.body)


def test_chunked_upload_is_copied_whole(tmp_path: Path, upstream, proxy) -> None:
    p, api, sh = shadow_setup(tmp_path, upstream, proxy)
    parts = [os.urandom(1000), os.urandom(5000), b"end"]
    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
    try:
        conn.request(
            "POST", "/api/chunked", body=iter(parts), encode_chunked=True, headers={"transfer-encoding": "chunked"}
        )
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["size"] == 6003
    finally:
        conn.close()
    assert sh.wait_for(1) and sh.seen[0].body == b"".join(parts) == api.seen[0].body


def test_streamed_body_teed_within_limit_and_dropped_beyond(tmp_path: Path, upstream, proxy) -> None:
    p, api, sh = shadow_setup(tmp_path, upstream, proxy, sets={"stream_large_bodies": "64k", "shadow_body_limit": "1m"})
    small, big = os.urandom(500 * 1024), os.urandom(2 * 1024 * 1024)
    s, _, out = p.request("POST", "/api/streamed", body=small)
    assert s == 200 and json.loads(out)["size"] == len(small)
    s, _, out = p.request("POST", "/api/too-big", body=big)
    assert s == 200 and json.loads(out)["size"] == len(big)  # production is whole either way
    assert sh.wait_for(1) and sh.seen[0].body == small
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_dropped_total", reason="body_limit") == 1)
    assert [s.path for s in sh.seen] == ["/v1/streamed"]


def test_a_streamed_body_is_kept_within_the_memory_budget(tmp_path: Path, upstream, proxy) -> None:
    """What is kept of a streamed body for its copy is held against shadow_memory_limit like every other holder:
    past it the copy is dropped as `overload` (production whole), and the bytes come back when the flow ends."""
    sets = {"stream_large_bodies": "64k", "shadow_body_limit": "4m", "shadow_memory_limit": "1m"}
    p, api, sh = shadow_setup(tmp_path, upstream, proxy, sets=sets)
    big, small = os.urandom(2 * 1024 * 1024), os.urandom(300 * 1024)
    # While a body streams, what its tee has kept so far is held.
    head = f"POST /api/part HTTP/1.1\r\nHost: x\r\nContent-Length: {len(small)}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as c:
        c.sendall(head + small[: 200 * 1024])
        assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_memory_bytes") >= 128 * 1024, 10), metrics_of(p)
        c.sendall(small[200 * 1024 :])
        assert c.recv(12).startswith(b"HTTP/1.1 200")
    assert sh.wait_for(1) and sh.seen[0].body == small
    s, _, out = p.request("POST", "/api/big", body=big)
    assert s == 200 and json.loads(out)["size"] == len(big)  # under the body limit, over the memory budget
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_dropped_total", reason="overload") == 1)
    assert metric_sum(metrics_of(p), "shadow_memory_bytes") == 0  # what the tee had kept was given back
    s, _, out = p.request("POST", "/api/small", body=small)
    assert s == 200 and json.loads(out)["size"] == len(small)
    assert sh.wait_for(2) and sh.seen[1].body == small  # the budget is whole again: the next copy goes
    assert [c.path for c in sh.seen] == ["/v1/part", "/v1/small"]


def h2_request(
    port: int, method: str, path: str, authority: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
) -> tuple[int | None, bytes]:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
    try:
        assert sock.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        pseudo = [(":method", method), (":path", path), (":scheme", "https"), (":authority", authority)]
        conn.send_headers(sid, [*pseudo, *headers], end_stream=not body)
        if body:
            conn.send_data(sid, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, data = None, b""
        for _ in range(1000):
            raw = sock.recv(65536)
            if not raw:
                break
            ended = False
            for ev in conn.receive_data(raw):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended = True
            sock.sendall(conn.data_to_send())
            if ended:
                break
        return status, data
    finally:
        sock.close()


def test_http2_client_over_tls_is_copied_as_http11(tmp_path: Path, upstream, proxy) -> None:
    p, api, sh = shadow_setup(
        tmp_path, upstream, proxy, sets={"confdir": str(tmp_path / "conf"), "keep_host_header": "true"}
    )
    status, data = h2_request(
        p.port, "POST", "/api/h2?x=1", "client.example:8443", b"hello over h2", (("x-client", "h2"),)
    )
    assert status == 200 and json.loads(data)["path"] == "/v1/h2?x=1"
    assert sh.wait_for(1)
    copy = sh.seen[0]
    assert (copy.method, copy.path, copy.body) == ("POST", "/v1/h2?x=1", b"hello over h2")
    assert copy.header("host") == "client.example-shadow:8443" and copy.header("x-client") == "h2"
    assert copy.header("content-length") == "13"


@pytest.mark.parametrize(
    ("sets", "client_host", "expected"),
    [
        ({"mapping_keep_host": "false"}, None, "127.0.0.1-shadow:{api}"),  # Host follows the service address
        ({"keep_host_header": "true"}, "client.example:9999", "client.example-shadow:9999"),
        ({"keep_host_header": "true"}, "client.example", "client.example-shadow"),
        ({"keep_host_header": "true", "shadow_host_suffix": "false"}, "client.example:9999", "client.example:9999"),
    ],
)
def test_host_suffix_rules(tmp_path: Path, upstream, proxy, sets: dict, client_host: str | None, expected: str) -> None:
    p, api, sh = shadow_setup(tmp_path, upstream, proxy, sets=sets)
    assert p.request("GET", "/api/h", headers={"Host": client_host} if client_host else {})[0] == 200
    assert sh.wait_for(1)
    assert sh.seen[0].header("host") == expected.format(api=api.port)
    assert api.seen[0].header("host") == (client_host or api.address)  # production never sees the suffix


def test_host_rewrite_of_production_is_what_the_copy_carries(tmp_path: Path, upstream, proxy) -> None:
    p, api, sh = shadow_setup(tmp_path, upstream, proxy, prod_spec={"host_rewrite": "backend:8080"})
    assert p.request("GET", "/api/h")[0] == 200
    assert sh.wait_for(1) and sh.seen[0].header("host") == "backend-shadow:8080"


def test_added_and_removed_copy_headers(tmp_path: Path, upstream, proxy) -> None:
    p, api, sh = shadow_setup(
        tmp_path,
        upstream,
        proxy,
        sets={
            "shadow_add_headers": ["x-shadow: 1", "x-env: test"],
            "shadow_remove_headers": ["@credentials", "x-internal"],
        },
    )
    creds = {
        "Authorization": "Bearer prod-token",
        "Cookie": "session=1",
        "Proxy-Authorization": "Basic x",
        "x-internal": "1",
        "x-kept": "yes",
    }
    assert p.request("GET", "/api/h", headers=creds)[0] == 200
    assert sh.wait_for(1)
    copy, prod = sh.seen[0], api.seen[0]
    assert copy.header("x-shadow") == "1" and copy.header("x-env") == "test" and copy.header("x-kept") == "yes"
    for h in ("authorization", "cookie", "proxy-authorization", "x-internal"):
        assert copy.header(h) is None and prod.header(h) is not None  # production keeps everything
    assert prod.header("x-shadow") is None


def keepalive_requests(p: Proxy, n: int, path: str = "/api/x", headers_for=lambda i: {}, clients: int = 4) -> None:  # noqa: B008
    """n requests, request i with headers_for(i), from `clients` kept-alive connections at once (one request at a
    time on each, as a browser's connections): a sample as large, in a fraction of the time of one connection."""

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
        try:
            for i in range(k, n, clients):
                conn.request("GET", path, headers=headers_for(i))
                r = conn.getresponse()
                r.read()
                assert r.status == 200
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client, k) for k in range(clients)]:
            f.result()  # a failed request fails the test


def test_weight_samples_within_statistical_bounds(tmp_path: Path, upstream, proxy) -> None:
    p, api, sh = shadow_setup(tmp_path, upstream, proxy, shadow_spec={"weight": 10})
    n = 2000
    keepalive_requests(p, n)
    assert api.count() == n
    wait_until(lambda: metric_sum(metrics_of(p), "shadow_upstream_requests_total", role="shadow") == sh.count(), 5)
    # 10% of 2000 = 200, sd ~13.4: 5 sd either side
    assert 133 <= sh.count() <= 267, sh.count()
    assert metric_sum(metrics_of(p), "shadow_dropped_total") == 0  # sampled out is not a drop


def test_sticky_sampling_by_header(tmp_path: Path, upstream, proxy) -> None:
    p, api, sh = shadow_setup(
        tmp_path, upstream, proxy, shadow_spec={"weight": 50}, sets={"shadow_sample_key": "x-user"}
    )
    users, per_user = 40, 10
    keepalive_requests(p, users * per_user, headers_for=lambda i: {"x-user": f"user-{i % users}"})
    wait_until(lambda: metric_sum(metrics_of(p), "shadow_upstream_requests_total", role="shadow") == sh.count(), 5)
    copied: dict[str, int] = {}
    for prod in api.seen:
        copied.setdefault(prod.header("x-user"), 0)  # type: ignore[arg-type]
    for s in sh.seen:
        copied[s.header("x-user")] += 1  # type: ignore[index]
    assert set(copied.values()) <= {0, per_user}, copied  # each user: always or never
    assert 0 < sum(1 for v in copied.values() if v) < users


def test_single_shadow_rule_and_separate_shadows_per_resource(tmp_path: Path, upstream, proxy) -> None:
    reverse, a, b = upstream("reverse"), upstream("a"), upstream("b")
    sa1, sa2, sb = upstream("sa1"), upstream("sa2"), upstream("sb")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("a", prefix="/a/", service="a"),
        mapping("b", prefix="/b/", service="b"),
        mapping("z-second", prefix="/a/", service="sa2", shadow=True),
        mapping("a-first", prefix="/a/", service="sa1", shadow=True),
        mapping("b-shadow", prefix="/b/", service="sb", shadow=True),
    )
    svc = [f"{u.name}={u.address}" for u in (a, b, sa1, sa2, sb)]
    p = proxy(f"http://{reverse.address}", sets={"mappings": str(m), "mapping_services": svc})
    for _ in range(3):
        assert p.request("GET", "/a/x")[0] == 200 and p.request("GET", "/b/y")[0] == 200
    assert sa1.wait_for(3) and sb.wait_for(3)
    assert sa2.count() == 0
    assert "cannot accept z-second as second shadow after a-first" in p.log
    diag = json.loads(p.admin("/diag")[1])
    second = {"mapping": "z-second.default", "message": "cannot accept z-second as second shadow after a-first"}
    assert second | {"file": str(m), "doc": 3, "field": None} in diag["errors"]
    row = next(r for r in diag["mappings"] if r["name"] == "z-second")
    assert row["errors"] == [second["message"]]


def test_a_shadow_alone_in_its_group_copies_nothing(tmp_path: Path, upstream, proxy) -> None:
    """Emissary v3route.py V3Route.generate: only production Mappings make routes, so a lone shadow mirrors nothing;
    the reverse target still serves the request unchanged."""
    reverse, sh = upstream("reverse"), upstream("shadow")
    m = write_mappings(tmp_path / "m.yaml", mapping("everything-shadow", prefix="/", service="cand", shadow=True))
    p = proxy(f"http://{reverse.address}", sets={"mappings": str(m), "mapping_services": [f"cand={sh.address}"]})
    s, _, body = p.request("POST", "/orders?id=3", body=b"order")
    assert s == 200 and json.loads(body)["name"] == "reverse" and json.loads(body)["path"] == "/orders?id=3"
    assert sh.count() == 0
    assert metric_sum(metrics_of(p), "shadow_upstream_requests_total", role="shadow") == 0


def test_upgrades_and_marked_copies_are_not_copied(tmp_path: Path, upstream, proxy) -> None:
    # The route allows the upgrade (else Envoy answers 403 itself); the mirror never copies it.
    p, api, sh = shadow_setup(tmp_path, upstream, proxy, prod_spec={"allow_upgrade": ["websocket"]})
    ws = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    assert p.request("GET", "/api/ws", headers=ws)[0] == 200  # production answers (no 101 here)
    assert p.request("GET", "/api/again", headers={"x-mitmproxy-shadow": "1"})[0] == 200
    assert p.request("GET", "/api/normal")[0] == 200
    assert sh.wait_for(1)
    m = metrics_of(p)
    assert metric_sum(m, "shadow_dropped_total", reason="upgrade") == 1
    assert metric_sum(m, "shadow_dropped_total", reason="loop") == 1
    assert [s.path for s in sh.seen] == ["/v1/normal"]


def test_a_shadow_pointed_at_the_proxy_itself_is_refused(tmp_path: Path, upstream) -> None:
    run_refused(tmp_path, upstream, "127.0.0.1", "127.0.0.1")  # other spellings: test_selfloop.py


# ---------------------------------------------------------------- failing shadows never reach production


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("refuse", "connect_error"),
        ("blackhole", "timeout"),
        ("reset", "reset"),
        ("garbage", "bad_response"),
        ("truncated", "reset"),
        ("slow", None),
        ("close", None),
    ],
)
def test_failing_shadow_leaves_production_correct(
    tmp_path: Path, upstream, proxy, fault, mode: str, reason: str | None
) -> None:
    if mode == "refuse":
        address = f"127.0.0.1:{free_port()}"
    else:
        address = fault(mode, delay=0.3).address
    p, api, _ = shadow_setup(tmp_path, upstream, proxy, shadow_address=address, sets={"shadow_timeout": "1"})
    n = 20
    for i in range(n):
        s, _, body = p.request("GET", f"/api/item/{i}")
        assert s == 200 and json.loads(body) == {
            "name": "api",
            "method": "GET",
            "path": f"/v1/item/{i}",
            "host": f"127.0.0.1:{p.port}",  # the client's Host, kept as Envoy keeps it
            "size": 0,
        }

    def settled() -> bool:
        m = metrics_of(p)
        done = metric_sum(m, "shadow_upstream_requests_total", role="shadow") + metric_sum(
            m, "shadow_dropped_total", reason="connect_error"
        )  # backoff drops never reach upstream
        return done >= n

    assert wait_until(settled, 15, 0.2)
    m = metrics_of(p)
    if reason is None:
        assert metric_sum(m, "shadow_upstream_requests_total", role="shadow", code="200") == n
        assert metric_sum(m, "shadow_dropped_total") == 0
    else:
        assert metric_sum(m, "shadow_dropped_total", reason=reason) >= 1
        assert metric_sum(m, "shadow_dropped_total") == metric_sum(m, "shadow_dropped_total", reason=reason)
        assert metric_sum(m, "shadow_upstream_requests_total", role="shadow", code="200") == 0
    assert metric_sum(m, "shadow_upstream_requests_total", role="production", code="200") == n
    shadow_lines = [line for line in p.log.splitlines() if "shadow http://" in line]
    assert len(shadow_lines) <= 2, shadow_lines  # logged once per service and reason per interval


def test_client_never_waits_for_a_hung_shadow_and_overload_is_counted(tmp_path: Path, upstream, proxy, fault) -> None:
    hole = fault("blackhole")
    p, api, _ = shadow_setup(
        tmp_path,
        upstream,
        proxy,
        shadow_address=hole.address,
        sets={"shadow_timeout": "120", "shadow_max_inflight": "2", "shadow_max_backlog": "3"},
    )
    for i in range(10):
        # With a 120 s shadow timeout, a proxy that waited for the shadow would blow this 10 s client timeout.
        assert p.request("GET", f"/api/{i}", timeout=10)[0] == 200
    assert wait_until(lambda: hole.accepted == 2, 5)
    m = metrics_of(p)
    assert metric_sum(m, "shadow_dropped_total", reason="overload") == 10 - 2 - 3
    assert metric_sum(m, "shadow_inflight") == 2 and metric_sum(m, "shadow_backlog") == 3
    assert p.stop() == 0  # and it shuts down cleanly with copies still in flight
    assert "Task was destroyed but it is pending" not in p.log and "Traceback" not in p.log


def test_https_shadow_service(tmp_path: Path, upstream, proxy) -> None:
    cert, key = make_cert(tmp_path)
    secure = upstream("secure-shadow", tls=server_tls(cert, key))
    p, api, _ = shadow_setup(
        tmp_path,
        upstream,
        proxy,
        shadow_address=f"https://{secure.address}",
        sets={"ssl_verify_upstream_trusted_ca": str(cert)},
    )
    assert p.request("POST", "/api/tls", body=b"secret")[0] == 200
    assert secure.wait_for(1) and secure.seen[0].body == b"secret"


def test_https_shadow_with_untrusted_certificate_is_a_tls_error(tmp_path: Path, upstream, proxy) -> None:
    cert, key = make_cert(tmp_path)
    secure = upstream("secure-shadow", tls=server_tls(cert, key))
    p, api, _ = shadow_setup(tmp_path, upstream, proxy, shadow_address=f"https://{secure.address}")
    assert p.request("POST", "/api/tls", body=b"secret")[0] == 200
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_dropped_total", reason="tls_error") == 1, 10)
    assert secure.count() == 0


def test_mitmdump_prints_shadow_lines_only_when_asked(tmp_path: Path, upstream, proxy) -> None:
    quiet, _, sh = shadow_setup(tmp_path, upstream, proxy)
    assert quiet.request("GET", "/api/q")[0] == 200
    assert sh.wait_for(1)
    loud, _, sh2 = shadow_setup(tmp_path, upstream, proxy, sets={"shadow_flows": "on"})
    assert loud.request("GET", "/api/l")[0] == 200
    assert sh2.wait_for(1)
    assert wait_until(lambda: f"shadow GET /v1/l -> http://{sh2.address}: 200" in loud.log, 5), loud.log
    assert "shadow GET" not in quiet.log  # the dump stays readable by default
    assert quiet.stop() == 0
    assert quiet.log.count("mitmproxy-shadow: production vs shadow") == 1  # the summary, once, at exit
