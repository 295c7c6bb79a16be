"""Routing through real mitmdump processes and real HTTP servers on loopback."""

from __future__ import annotations

import http.client
import json
import subprocess
from pathlib import Path

from support import (
    ADDON,
    MITMDUMP,
    Upstream,
    free_port,
    make_cert,
    mapping,
    metric_sum,
    metrics_of,
    run_process,
    server_tls,
    spawn,
    stop,
    wait_until,
    write_mappings,
)


def services(**ups: object) -> list[str]:
    return [f"{name}={u.address}" for name, u in ups.items()]  # type: ignore[attr-defined]


def test_prefix_rewrite_headers_and_pass_through(tmp_path: Path, upstream, proxy) -> None:
    prod, api, users = upstream("prod"), upstream("api"), upstream("users")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping(
            "api",
            prefix="/api/",
            service="api-svc.default",
            rewrite="/v1/",
            add_request_headers={"x-added": "yes"},
            remove_request_headers=["x-secret"],
            add_response_headers={"x-served-by": "api"},
            remove_response_headers=["x-drop"],
        ),
        mapping("users", prefix="/users/", service="users-svc:8080"),  # default rewrite "/"
        mapping("raw", prefix="/raw/", service="users-svc:8080", rewrite=""),
    )
    p = proxy(
        f"http://{prod.address}",
        sets={"mappings": str(m), "mapping_services": services(**{"api-svc": api, "users-svc": users})},
    )
    s, h, body = p.request("GET", "/api/items?page=2", headers={"x-secret": "s3", "x-keep": "k"})
    assert s == 200 and json.loads(body)["name"] == "api" and h["x-served-by"] == "api"
    seen = api.seen[-1]
    assert seen.path == "/v1/items?page=2"
    assert seen.header("x-added") == "yes" and seen.header("x-secret") is None and seen.header("x-keep") == "k"
    # Envoy keeps the client's Host: mapping_keep_host (default on) turns on keep_host_header.
    assert seen.header("host") == f"127.0.0.1:{p.port}"
    assert json.loads(p.request("GET", "/users/7")[2])["path"] == "/7"
    assert json.loads(p.request("GET", "/raw/7")[2])["path"] == "/raw/7"
    # No Mapping matches: the reverse target (the implicit production service) answers, unchanged.
    assert json.loads(p.request("GET", "/elsewhere?x=1")[2]) == {
        "name": "prod",
        "method": "GET",
        "path": "/elsewhere?x=1",
        "host": f"127.0.0.1:{p.port}",
        "size": 0,
    }
    m = metrics_of(p)
    assert metric_sum(m, "shadow_upstream_requests_total", mapping="api", role="production", code="200") == 1
    assert metric_sum(m, "shadow_upstream_requests_total", service="reverse-target", role="production") == 1


def test_longest_prefix_and_precedence(tmp_path: Path, upstream, proxy) -> None:
    prod, a, b = upstream("prod"), upstream("a"), upstream("b")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("catch-all", prefix="/", service="a", rewrite=""),
        mapping("httpbin", prefix="/httpbin/", service="b"),
    )
    p = proxy(f"http://{prod.address}", sets={"mappings": str(m), "mapping_services": services(a=a, b=b)})
    assert json.loads(p.request("GET", "/httpbin/get")[2])["name"] == "b"
    assert json.loads(p.request("GET", "/x")[2])["name"] == "a"
    # precedence beats length (Emissary docs: the catch-all with precedence 1 takes everything)
    write_mappings(
        m,
        mapping("catch-all", prefix="/", service="a", rewrite="", precedence=1),
        mapping("httpbin", prefix="/httpbin/", service="b"),
    )
    assert wait_until(lambda: json.loads(p.request("GET", "/httpbin/get")[2])["name"] == "a", 10, 0.2)


def test_header_and_host_matching_with_keep_host_header(tmp_path: Path, upstream, proxy) -> None:
    prod, diag, canary = upstream("prod"), upstream("diag"), upstream("canary")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("diag", prefix="/diag/", rewrite="/diag/", host="diag.example.com", service="diag"),
        mapping("canary", prefix="/", rewrite="", headers={"x-canary": "1"}, service="canary"),
        mapping("hr", prefix="/hr/", host_rewrite="backend.internal", service="diag"),
    )
    p = proxy(
        f"http://{prod.address}",
        sets={"mappings": str(m), "keep_host_header": "true", "mapping_services": services(diag=diag, canary=canary)},
    )
    assert json.loads(p.request("GET", "/diag/x", headers={"Host": "diag.example.com"})[2])["name"] == "diag"
    assert diag.seen[-1].header("host") == "diag.example.com"  # the client's Host is kept
    assert json.loads(p.request("GET", "/diag/x", headers={"Host": "other.example.com"})[2])["name"] == "prod"
    assert json.loads(p.request("GET", "/p", headers={"x-canary": "1"})[2])["name"] == "canary"
    assert json.loads(p.request("GET", "/p", headers={"x-canary": "0"})[2])["name"] == "prod"
    assert json.loads(p.request("GET", "/hr/a", headers={"Host": "client.example"})[2])["host"] == "backend.internal"


def test_canary_split_over_1000_requests(tmp_path: Path, upstream, proxy) -> None:
    prod, quote, quotev2 = upstream("prod"), upstream("quote"), upstream("quotev2")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("quote-backend", prefix="/backend/", service="quote"),
        mapping("quote-backend2", prefix="/backend/", service="quotev2", weight=10),
    )
    p = proxy(
        f"http://{prod.address}", sets={"mappings": str(m), "mapping_services": services(quote=quote, quotev2=quotev2)}
    )
    n = 1200
    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
    try:
        for _ in range(n):
            conn.request("GET", "/backend/q")
            r = conn.getresponse()
            r.read()
            assert r.status == 200
    finally:
        conn.close()
    assert quote.count() + quotev2.count() == n and prod.count() == 0
    # 10% of 1200 = 120, sd ~10.4: 5 sd either side
    assert 68 <= quotev2.count() <= 172, quotev2.count()


def test_https_service_with_verified_tls(tmp_path: Path, upstream, proxy) -> None:
    cert, key = make_cert(tmp_path)
    prod, secure = upstream("prod"), upstream("secure", tls=server_tls(cert, key))
    m = write_mappings(tmp_path / "m.yaml", mapping("secure", prefix="/s/", service="https://secure-svc"))
    p = proxy(
        f"http://{prod.address}",
        sets={
            "mappings": str(m),
            "mapping_services": [f"secure-svc={secure.address}"],
            "ssl_verify_upstream_trusted_ca": str(cert),
        },
    )
    s, _, body = p.request("GET", "/s/hello")
    assert s == 200 and json.loads(body) == {
        "name": "secure",
        "method": "GET",
        "path": "/hello",
        "host": f"127.0.0.1:{p.port}",  # the client's Host, as Envoy keeps it
        "size": 0,
    }


def start_up_failure(prod: Upstream, *sets: str) -> subprocess.CompletedProcess[str]:
    """mitmdump with the addon in front of `prod`, these `--set`s, run until it exits (it is expected to)."""
    cmd = [str(MITMDUMP), "-s", str(ADDON), "--mode", f"reverse:http://{prod.address}", "--listen-host", "127.0.0.1"]
    cmd += ["-p", str(free_port())] + [arg for kv in sets for arg in ("--set", kv)]
    return run_process(cmd, 60)


def test_bad_file_stops_start_up_with_one_line(tmp_path: Path, upstream) -> None:
    """mappings_strict restores "any error stops start-up" (for CI); without it Emissary's per-resource validity
    applies (test_hostile_mappings.py::test_an_invalid_mapping_invalidates_itself_only)."""
    prod = upstream("prod")
    m = write_mappings(
        tmp_path / "shop.yaml",
        mapping("a", prefix="/a/", service="a"),
        mapping("cart", prefix="/cart/", service="cart", weight="oops"),
    )
    r = start_up_failure(prod, f"mappings={m}", "shadow_admin=", "mappings_strict=true")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert f"{m} doc 2 (Mapping cart.default): weight must be an integer 0..100, got 'oops'" in out
    assert "Traceback" not in out


def test_hot_reload_good_bad_fixed(tmp_path: Path, upstream, proxy) -> None:
    prod, one, two = upstream("prod"), upstream("one"), upstream("two")
    d = tmp_path / "mappings"
    d.mkdir()
    write_mappings(d / "a.yaml", mapping("a", prefix="/a/", service="one"))
    p = proxy(f"http://{prod.address}", sets={"mappings": str(d), "mapping_services": services(one=one, two=two)})

    def name() -> str:
        return json.loads(p.request("GET", "/a/x")[2])["name"]

    assert name() == "one"
    (d / "a.yaml").write_text(mapping("a", prefix="/a/", service="two") + "\n---\nkind: [Mapping\n")
    assert wait_until(lambda: "a.yaml doc 2: YAML syntax error" in p.log, 10, 0.1), p.log
    assert "reload failed; the previous configuration keeps serving" in p.log
    assert name() == "one"  # a file that is not YAML: the last good configuration keeps serving
    diag = json.loads(p.admin("/diag")[1])
    assert any("YAML syntax error" in e["message"] for e in diag["errors"])
    write_mappings(d / "a.yaml", mapping("a", prefix="/a/", service="two"))
    assert wait_until(lambda: name() == "two", 10, 0.1)
    (d / "b.yaml").write_text(mapping("b", prefix="/b/", service="one"))  # a new file is picked up
    assert wait_until(lambda: json.loads(p.request("GET", "/b/x")[2])["name"] == "one", 10, 0.1)
    (d / "b.yaml").unlink()  # and a deleted one is dropped
    assert wait_until(lambda: json.loads(p.request("GET", "/b/x")[2])["name"] == "prod", 10, 0.1)
    m = metrics_of(p)
    assert metric_sum(m, "shadow_config_reloads_total", result="failure") >= 1
    assert metric_sum(m, "shadow_config_reloads_total", result="success") >= 3


def test_admin_port_in_use_is_a_clear_start_up_error(tmp_path: Path, upstream) -> None:
    import socket

    prod = upstream("prod")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = start_up_failure(prod, f"shadow_admin=127.0.0.1:{port}")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert f"shadow_admin: cannot listen on 127.0.0.1:{port}: Address already in use" in out
    assert "Traceback" not in out


def test_mitmshadow_console_script_loads_the_addon(tmp_path: Path, upstream) -> None:
    """The installed entry point: mitmdump with the addon, every argument passed through."""
    import http.client
    import sys

    prod, sh = upstream("prod"), upstream("shadow")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("all", prefix="/", service="app", rewrite=""),
        mapping("all-shadow", prefix="/", service="cand", shadow=True),
    )
    port = free_port()
    exe = Path(sys.executable).parent / "mitmshadow"
    proc = spawn(
        [
            str(exe),
            "--mode",
            f"reverse:http://{prod.address}",
            "--listen-host",
            "127.0.0.1",
            "-p",
            str(port),
            "--set",
            f"mappings={m}",
            "--set",
            f"mapping_services=cand={sh.address}",
            "--set",
            f"mapping_services=app={prod.address}",
            "--set",
            "shadow_admin=",
        ],
        tmp_path / "mitmshadow.log",
    )
    try:

        def answered() -> bool:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/hello")
                ok = conn.getresponse().status == 200
                conn.close()
                return ok
            except OSError:
                return False

        assert wait_until(answered, 20, 0.2)
        assert sh.wait_for(1) and sh.seen[0].path == "/hello"
    finally:
        stop(proc, 15)


def test_emissary_rules_through_mitmdump(tmp_path: Path, upstream, proxy) -> None:
    """Through a real mitmdump: a shadow alone in its group copies nothing (v3route.py V3Route.generate); a
    `method` Mapping outranks a header one (irhttpmapping.py _route_weight); header additions are the group's
    (irhttpmappinggroup.py finalize); ambassador_id selects Mappings (config.py good_ambassador_id); a v2 Mapping
    without host gets hostname "*" (handwritten.conversion.go); `..` is normalised (v3listener.py)."""
    prod, api, by_method, by_header, blue, sh = (upstream(n) for n in ("prod", "api", "m", "h", "blue", "sh"))
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("api", prefix="/api/", service="api", hostname="*", add_request_headers={"x-a": "1"}, weight=50),
        mapping("api-b", prefix="/api/", service="api", hostname="*", add_request_headers={"x-b": "2"}),
        mapping("api-shadow", prefix="/api/", service="sh", shadow=True),  # no hostname: another group
        mapping("by-method", prefix="/o/", service="m", method="GET"),
        mapping("by-header", prefix="/o/", service="h", headers={"x-a": "1"}),
        mapping("blue", prefix="/blue/", service="blue", ambassador_id=["blue"]),
        json.dumps(
            {
                "apiVersion": "getambassador.io/v2",
                "kind": "Mapping",
                "metadata": {"name": "v2"},
                "spec": {"prefix": "/v2/", "service": "api"},
            }
        ),
    )
    svc = [f"{n}={u.address}" for n, u in (("api", api), ("m", by_method), ("h", by_header), ("blue", blue))]
    p = proxy(f"http://{prod.address}", sets={"mappings": str(m), "mapping_services": [*svc, f"sh={sh.address}"]})
    for _ in range(10):
        assert json.loads(p.request("GET", "/api/x")[2])["name"] == "api"
        seen = api.seen[-1]
        assert seen.header("x-a") == "1" and seen.header("x-b") == "2"  # merged over the group, either Mapping
    assert json.loads(p.request("GET", "/o/", headers={"x-a": "1"})[2])["name"] == "m"
    assert json.loads(p.request("POST", "/o/", headers={"x-a": "1"})[2])["name"] == "h"
    assert json.loads(p.request("GET", "/blue/")[2])["name"] == "prod"
    assert json.loads(p.request("GET", "/v2/x", headers={"Host": "any.example"})[2])["path"] == "/x"
    assert json.loads(p.request("GET", "/elsewhere/../api/y")[2])["path"] == "/y"  # normalised, then rewritten
    assert sh.count() == 0
    diag = json.loads(p.admin("/diag")[1])
    assert [i["mapping"] for i in diag["ignored"]] == ["blue.default"]
    assert any(n.startswith("shadow api-shadow.default is alone in its group") for n in diag["notices"])


def test_mapping_keep_host_off_follows_the_routed_service(tmp_path: Path, upstream, proxy) -> None:
    """With mapping_keep_host=false (and keep_host_header off) Host follows the re-route, and a Mapping that matches
    on host cannot match: the warning is in the log and /diag."""
    prod, api = upstream("prod"), upstream("api")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("api", prefix="/api/", service="api"),
        mapping("h", prefix="/h/", service="api", hostname="a.example"),
    )
    p = proxy(
        f"http://{prod.address}",
        sets={"mappings": str(m), "mapping_services": [f"api={api.address}"], "mapping_keep_host": "false"},
    )
    assert json.loads(p.request("GET", "/api/x")[2])["host"] == api.address
    assert json.loads(p.request("GET", "/h/", headers={"Host": "a.example"})[2])["name"] == "prod"
    assert "some Mappings match on host" in p.log
    assert any("some Mappings match on host" in n for n in json.loads(p.admin("/diag")[1])["notices"])
