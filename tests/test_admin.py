"""The admin server: who it answers, the headers every answer carries, and JSON that is safe to sniff."""

from __future__ import annotations

import html
import http.client
import json
import socket
from pathlib import Path

import pytest
from support import Proxy, Seen, mapping, wait_until, write_mappings

from shadow_addon import admin

PAGES = ("/", "/metrics", "/diag", "/report", "/report.json", "/diffs", "/static/dashboard.css")
SCRIPT = "<script>alert(1)</script>"


def get(
    port: int, path: str, host: str | None, method: str = "GET", version: str = "HTTP/1.1"
) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly the Host given (None: no Host header), over a raw socket; the answer parsed."""
    head = f"{method} {path} {version}\r\n" + (f"Host: {host}\r\n" if host is not None else "") + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode())
        r = http.client.HTTPResponse(s, method=method)
        r.begin()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body


# ---------------------------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("authority", "admin_host", "allowed"),
    [
        ("127.0.0.1:8877", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.1", True),
        ("127.9.8.7:1", "127.0.0.1", True),
        ("localhost", "127.0.0.1", True),
        ("LOCALHOST:8877", "127.0.0.1", True),
        ("localhost.:8877", "127.0.0.1", True),
        ("[::1]:8877", "::1", True),
        ("[::1]", "127.0.0.1", True),
        ("evil.example", "127.0.0.1", False),
        ("evil.example:8877", "127.0.0.1", False),
        ("localhost.evil.example", "127.0.0.1", False),
        ("127.0.0.1.evil.example", "127.0.0.1", False),
        ("10.0.0.1:8877", "127.0.0.1", False),
        ("", "127.0.0.1", False),
        ("[::1", "127.0.0.1", True),
        ("192.0.2.7:8877", "192.0.2.7", True),  # the configured address itself
        ("192.0.2.8:8877", "192.0.2.7", False),
        ("192.0.2.7:8877", "0.0.0.0", False),  # a wildcard admin address does not bless any Host
        ("admin.internal:8877", "admin.internal", True),
    ],
)
def test_host_allowed(authority: str, admin_host: str, allowed: bool) -> None:
    assert admin.host_allowed(authority, admin_host) is allowed


def test_json_safe_escapes_markup_and_keeps_the_value() -> None:
    doc = {"body": f'{SCRIPT} & "q" > <', "n": [1, 2]}
    raw = admin.json_safe(json.dumps(doc).encode())
    assert b"<" not in raw and b">" not in raw and b"&" not in raw
    assert json.loads(raw) == doc


def test_respond_checks_host_before_anything_else() -> None:
    calls: list[str] = []

    def page() -> tuple[str, bytes]:
        calls.append("page")
        return "text/plain", b"ok"

    pages = {"/": page}
    assert admin.respond("POST", "/nowhere", "evil.example", "127.0.0.1", pages)[0] == 421
    assert admin.respond("GET", "/", None, "127.0.0.1", pages)[0] == 421
    assert admin.respond("GET", "/", "evil.example", "127.0.0.1", pages)[0] == 421
    assert calls == []  # a foreign request never runs a page
    assert admin.respond("POST", "/", "localhost", "127.0.0.1", pages)[0] == 405
    assert admin.respond("GET", "/x", "localhost", "127.0.0.1", pages)[0] == 404
    assert admin.respond("GET", "/", "localhost", "127.0.0.1", pages) == (200, "text/plain", b"ok")


# ---------------------------------------------------------------------------------------------- real mitmdump


@pytest.fixture
def running(tmp_path: Path, upstream, proxy) -> Proxy:
    """A proxy with a shadow and comparison on, after one request whose production answer carries markup."""
    reverse, prod, shadow = upstream("reverse"), upstream("prod"), upstream("shadow")

    def answer(version: int):  # noqa: ANN202
        def respond(seen: Seen) -> tuple[int, dict[str, str], bytes]:
            return 200, {"content-type": "application/json"}, json.dumps({"html": SCRIPT, "v": version}).encode()

        return respond

    prod.behaviour.responder, shadow.behaviour.responder = answer(1), answer(2)
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping(f"api{SCRIPT}", prefix="/api/", service="prod"),
        mapping("api-next", prefix="/api/", service="shadow", shadow=True),
    )
    p = proxy(
        f"http://{reverse.address}",
        sets={
            "mappings": str(m),
            "mapping_services": [f"prod={prod.address}", f"shadow={shadow.address}"],
            "shadow_compare": "true",
        },
    )
    assert p.request("GET", f"/api/x?{SCRIPT}")[0] == 200

    def diffs() -> dict[str, object]:
        status, body = p.admin("/diffs")
        assert status == 200
        return json.loads(body)

    assert wait_until(lambda: len(diffs()["records"]) == 1, 30), diffs()
    return p


def test_foreign_hosts_are_refused(running: Proxy) -> None:
    port = running.admin_port
    assert port
    for host in ("evil.example", f"evil.example:{port}", "10.0.0.1", f"10.0.0.1:{port}", "localhost.evil.example"):
        for path in PAGES:
            status, headers, body = get(port, path, host)
            assert 400 <= status < 500 and status == 421, (host, path, status)
            assert body.count(b"\n") == 1 and b"<" not in body, body  # one plain line
            assert headers["x-content-type-options"] == "nosniff"
    status, _, _ = get(port, "/", None, version="HTTP/1.0")  # no Host at all
    assert status == 421
    status, _, _ = get(port, "/", "evil.example", method="POST")
    assert status == 421


def test_loopback_hosts_are_answered(running: Proxy) -> None:
    port = running.admin_port
    assert port
    for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", "127.0.0.1", "127.1.2.3:9", f"[::1]:{port}"):
        status, _, body = get(port, "/diag", host)
        assert status == 200, (host, status, body[:200])
        assert json.loads(body)["mappings"]


def test_every_answer_carries_the_protective_headers(running: Proxy) -> None:
    port = running.admin_port
    assert port
    answers = {path: get(port, path, f"127.0.0.1:{port}") for path in PAGES}
    answers["404"] = get(port, "/flows", "localhost")
    answers["405"] = get(port, "/", "localhost", method="POST")
    answers["HEAD /"] = get(port, "/", "localhost", method="HEAD")
    for what, (_, headers, body) in answers.items():
        assert headers["x-content-type-options"] == "nosniff", what
        assert headers["cache-control"] == "no-store", what
        assert int(headers["content-length"]) == len(body) or what == "HEAD /", what
    assert [answers[p][0] for p in PAGES] == [200] * len(PAGES)
    assert (answers["404"][0], answers["405"][0], answers["HEAD /"][0], answers["HEAD /"][2]) == (404, 405, 200, b"")
    html_pages = [w for w, (_, h, _) in answers.items() if h["content-type"].startswith("text/html")]
    assert html_pages == ["/", "HEAD /"]
    for what in html_pages:
        csp = {d.strip().split(" ", 1)[0]: d.strip() for d in answers[what][1]["content-security-policy"].split(";")}
        assert csp["default-src"] == "default-src 'none'"
        assert csp["style-src"] == "style-src 'self'"
        assert csp["img-src"] == "img-src data:"
        assert csp["frame-ancestors"] == "frame-ancestors 'none'"
    assert answers["/static/dashboard.css"][1]["content-type"].startswith("text/css")
    assert b'href="/static/dashboard.css"' in answers["/"][2]
    assert answers["/metrics"][1]["content-type"].startswith("text/plain")


def test_json_pages_carry_no_raw_markup(running: Proxy) -> None:
    port = running.admin_port
    assert port
    for path in ("/diffs", "/diag", "/report.json"):
        status, headers, body = get(port, path, "localhost")
        assert status == 200 and headers["content-type"].startswith("application/json")
        assert b"<" not in body and b">" not in body and b"&" not in body, (path, body[:300])
    _, _, body = get(port, "/diffs", "localhost")
    assert b"\\u003cscript\\u003e" in body
    record = json.loads(body)["records"][0]
    # Escaped on the wire, intact once parsed: the production body and the request path both carry the markup.
    assert SCRIPT in json.dumps(record, ensure_ascii=False)
    assert SCRIPT in record["request"]["path"]
    _, _, page = get(port, "/", "localhost")
    assert b"<script" not in page and SCRIPT.encode() not in page


def test_garbage_and_oversized_heads_are_shrugged_off(running: Proxy) -> None:
    port = running.admin_port
    assert port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01garbage\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400 ")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        assert s.recv(100).split(b" ")[1] in (b"400", b"431")
    assert get(port, "/metrics", "localhost")[0] == 200


def test_host_match_warning_is_a_diag_notice(tmp_path: Path, upstream, proxy) -> None:
    reverse, api = upstream("reverse"), upstream("api")
    m = write_mappings(tmp_path / "m.yaml", mapping("by-host", prefix="/", service="api", host="shop.example"))
    services = [f"api={api.address}"]
    p = proxy(
        f"http://{reverse.address}",
        sets={"mappings": str(m), "mapping_services": services, "mapping_keep_host": "false"},
    )
    warning = "some Mappings match on host, but mitmproxy replaces the client's Host"
    assert warning in p.log
    notices = json.loads(p.admin("/diag")[1])["notices"]
    assert [n for n in notices if warning in n and "mapping_keep_host is off" in n], notices
    assert warning in html.unescape(get(p.admin_port or 0, "/", "localhost")[2].decode())  # the dashboard too
    q = proxy(
        f"http://{reverse.address}",
        sets={"mappings": str(m), "mapping_services": services},  # the default: the client's Host is kept
    )
    assert not [n for n in json.loads(q.admin("/diag")[1])["notices"] if warning in n]


# ------------------------------------------------------------------ clients that do not read, pages with a query


async def test_a_client_that_does_not_read_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A page larger than the socket buffers, asked for by a client that never reads: after WRITE_TIMEOUT the
    connection is aborted and the server holds nothing for it; a reading client is served meanwhile."""
    import asyncio

    monkeypatch.setattr(admin, "WRITE_TIMEOUT", 0.5)
    big = b"x" * (32 << 20)
    server = admin.AdminServer({"/big": lambda: ("text/plain", big), "/small": lambda: ("text/plain", b"ok")})
    server.bind("127.0.0.1", 0)
    await server.serve()
    try:
        stuck = socket.create_connection(("127.0.0.1", server.port))
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for _ in range(50):
            await asyncio.sleep(0.05)
            if server.clients:
                break
        assert len(server.clients) == 1
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")
        writer.close()
        for _ in range(60):  # bounded: 3 s
            await asyncio.sleep(0.05)
            if not server.clients:
                break
        assert not server.clients  # dropped, its unsent answer with it
        stuck.close()
    finally:
        server.close()


async def test_connections_beyond_the_limit_are_closed_unanswered(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    monkeypatch.setattr(admin, "MAX_CLIENTS", 2)
    server = admin.AdminServer({"/small": lambda: ("text/plain", b"ok")})
    server.bind("127.0.0.1", 0)
    await server.serve()
    try:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        for _ in range(50):
            await asyncio.sleep(0.02)
            if len(server.clients) == 2:
                break
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            got = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:  # aborted: a reset rather than a close
            got = b""
        assert got == b""
        writer.close()
        for _, w in idle:
            w.close()
    finally:
        server.close()


def test_query_pages_get_the_query_and_others_ignore_it() -> None:
    seen: list[dict[str, str]] = []
    pages = {
        "/q": admin.QueryPage(lambda q: (seen.append(q), ("text/plain", b"q"))[1]),
        "/p": lambda: ("text/plain", b"p"),
    }
    assert admin.respond("GET", "/q", "127.0.0.1", "", pages, admin.query_of("/q?offset=5&limit=2"))[2] == b"q"
    assert seen == [{"offset": "5", "limit": "2"}]
    assert admin.respond("GET", "/p", "127.0.0.1", "", pages, {"a": "b"})[2] == b"p"
    with pytest.raises(ValueError):
        admin.query_of("/q?" + "&".join(f"k{i}=1" for i in range(admin.MAX_QUERY + 1)))
