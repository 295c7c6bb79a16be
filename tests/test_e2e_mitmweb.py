"""mitmweb shows each shadow exchange as its own flow, beside the production flow."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

from support import free_port, mapping, wait_until, write_mappings

PASSWORD = "shadow-test"


def web_flows(port: int) -> list[dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/flows", headers={"Authorization": f"Bearer {PASSWORD}"})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, (r.status, body[:200])
        return json.loads(body)
    finally:
        conn.close()


def test_shadow_flows_in_mitmweb(tmp_path: Path, upstream, proxy, fault) -> None:
    reverse, api, sh = upstream("reverse"), upstream("api"), upstream("shadow")
    hole = fault("blackhole")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("api", prefix="/api/", service="api", rewrite="/v1/"),
        mapping("api-shadow", prefix="/api/", service="cand", shadow=True),
        mapping("slow", prefix="/slow/", service="api"),
        mapping("slow-shadow", prefix="/slow/", service="hole", shadow=True, timeout_ms=100),
    )
    web_port = free_port()
    p = proxy(
        f"http://{reverse.address}",
        web=True,
        sets={
            "mappings": str(m),
            "mapping_services": [f"api={api.address}", f"cand={sh.address}", f"hole={hole.address}"],
            "web_port": str(web_port),
            "web_host": "127.0.0.1",
            "web_password": PASSWORD,
            "confdir": str(tmp_path / "conf"),
            "shadow_timeout": "0.5",
            "shadow_compare": "true",
        },
    )
    assert p.request("POST", "/api/items?x=1", body=b"payload")[0] == 200
    assert p.request("GET", "/slow/x")[0] == 200

    def flows() -> list[dict]:
        return web_flows(web_port)

    assert wait_until(lambda: len(flows()) == 4, 10), flows()
    fl = flows()
    prod = next(f for f in fl if f["request"]["path"] == "/v1/items?x=1" and f["marked"] == "")
    shadow = next(f for f in fl if f["comment"].startswith(f"shadow of {prod['id']}"))
    assert shadow["marked"] == "👻"
    # The comment says how the shadow answered differently (the two test servers echo their own names).
    assert shadow["comment"].startswith(f"shadow of {prod['id']} -> cand (200) mismatch: ")
    assert '/name: "api" -> "shadow"' in shadow["comment"]
    assert (shadow["request"]["method"], shadow["request"]["path"], shadow["request"]["port"]) == (
        "POST",
        "/v1/items?x=1",
        sh.port,
    )
    assert shadow["response"]["status_code"] == 200 and shadow["response"]["contentLength"] > 0
    failed = next(f for f in fl if f["comment"].startswith("shadow of") and "hole" in f["comment"])
    assert failed["error"]["msg"].startswith("shadow timeout") and failed["comment"].endswith("(timeout)")
    assert not any(f["comment"].startswith("shadow of") for f in fl if f["request"]["port"] == api.port)
