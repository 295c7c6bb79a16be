"""Shadowing recorded traffic: a capture recorded here with plain mitmdump in front of a production app, replayed
offline (`mitmdump -r`, flow file and HAR), through `mitmshadow replay` (the CI gate) and by client replay (-C)."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mitmproxy import http as mhttp
from mitmproxy import io
from mitmproxy.test import tflow, tutils
from support import (
    MITMDUMP,
    Proxy,
    Seen,
    Upstream,
    free_port,
    mapping,
    run_process,
    spawn,
    wait_until,
    write_mappings,
)

from shadow_addon.cli import ADDON

MITMSHADOW = Path(sys.executable).parent / "mitmshadow"
# Production's address in offline replays: a port nothing listens on, since a replay never contacts production.
PRODUCTION = f"127.0.0.1:{free_port()}"
WAIT = 120  # s: generous bound on a whole replay run on a loaded machine (never a timing assertion)

# (method, path, headers, body) sent through the recording proxy. /api/price is the endpoint the candidate
# answers differently; /api/time carries a timestamp that differs on every call (noise, learned from the two
# recorded answers, first and last in the capture); /other is routed by no Mapping.
TRAFFIC: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("GET", "/api/time", {"x-trace": "t5"}, None),
    ("GET", "/api/users/1", {"x-trace": "t1", "x-drop": "secret"}, None),
    (
        "POST",
        "/api/orders?dry=1",
        {"content-type": "application/json", "x-trace": "t2"},
        b'{"sku": "a\\u00e9", "n": 2}',
    ),
    ("GET", "/api/price?id=7", {"x-trace": "t3"}, None),
    ("PUT", "/api/users/2", {"content-type": "application/octet-stream"}, bytes(range(256)) * 4),
    ("GET", "/api/price?id=8", {"x-trace": "t4"}, None),
    ("GET", "/other", {}, None),
    ("GET", "/api/time", {"x-trace": "t5"}, None),
]
COPIED = [t for t in TRAFFIC if t[1].startswith("/api/")]


def app(version: str):  # noqa: ANN201
    """Two releases of one service, identical except on /price; they answer by the last path segment, so the
    recorded paths (/api/...) and the rewritten ones (/v1/...) get the same answers."""

    def respond(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        path, _, query = seen.path.partition("?")
        name = path.rstrip("/").rsplit("/", 1)[-1]
        body: dict[str, object] = {"name": name, "query": query, "size": len(seen.body)}
        if name == "price":
            body["price"] = 12 if version == "v2" else 10
        if name == "time":
            body["ts"] = time.monotonic_ns()
        return 200, {"content-type": "application/json"}, json.dumps(body).encode()

    return respond


def mappings_file(tmp: Path) -> Path:
    return write_mappings(
        tmp / "mappings.yaml",
        mapping(
            "api",
            prefix="/api/",
            service="prod.default:8080",
            rewrite="/v1/",
            add_request_headers={"x-env": "prod"},
            remove_request_headers=["x-drop"],
        ),
        mapping("api-next", prefix="/api/", service="candidate", shadow=True),
    )


def record(tmp: Path, production: Upstream, traffic: list[tuple[str, str, dict[str, str], bytes | None]]) -> Path:
    """Record traffic with plain mitmdump -w in reverse mode in front of production; returns the flow file."""
    capture = tmp / "capture.mitm"
    port = free_port()
    log = tmp / "record.log"
    proc = spawn(
        [str(MITMDUMP), "--mode", f"reverse:http://{production.address}", "--listen-host", "127.0.0.1"]
        + ["-p", str(port), "-w", str(capture)],
        log,
    )
    p = Proxy(proc, port, log)
    try:
        assert wait_until(lambda: "listening at" in p.log or proc.poll() is not None, 30), p.log
        for method, path, headers, body in traffic:
            status, _, _ = p.request(method, path, body=body, headers=headers)
            assert status == 200
    finally:
        assert p.stop() == 0, p.log
    assert capture.stat().st_size > 0
    return capture


def to_har(tmp: Path, capture: Path) -> Path:
    """The same flows as a HAR file, written by mitmproxy's own HAR export."""
    har = tmp / "capture.har"
    run = run_process([str(MITMDUMP), "-q", "-n", "-r", str(capture), "--set", f"hardump={har}"], WAIT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(har.read_text())["log"]["entries"]
    return har


def replay_cli(tmp: Path, capture: Path, candidate: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_process(
        [str(MITMSHADOW), "replay", str(capture), "--mappings", str(mappings_file(tmp))]
        + ["--service", f"prod={PRODUCTION}", "--service", f"candidate={candidate}", *extra],
        WAIT,
        cwd=str(tmp),
    )


Received = tuple[str, str, str | None, dict[str, str], bytes]


def order(c: Received) -> tuple[str, str, str, bytes]:
    return c[1], c[0], repr(sorted(c[3].items())), c[4]


def copies(shadow: Upstream) -> list[Received]:
    """What the shadow received, in a comparable form, sorted (copies may arrive in any order)."""
    out = []
    for s in shadow.seen:
        wanted = ("x-trace", "x-env", "x-drop", "x-mitmproxy-shadow", "content-type")
        headers = {k: v for k in wanted if (v := s.header(k)) is not None}
        out.append((s.method, s.path, s.header("host"), headers, s.body))
    return sorted(out, key=order)


def expected_copies(production_address: str) -> list[Received]:
    host, port = production_address.rsplit(":", 1)
    out = []
    for method, path, headers, body in COPIED:
        h = {k: v for k, v in headers.items() if k != "x-drop"}
        h |= {"x-env": "prod", "x-mitmproxy-shadow": "1"}
        out.append((method, "/v1/" + path.removeprefix("/api/"), f"{host}-shadow:{port}", h, body or b""))
    return sorted(out, key=order)


def mismatches(report: Path) -> list[str]:
    return sorted(json.loads(line)["endpoint"] for line in report.read_text().splitlines())


@pytest.fixture
def recorded(tmp_path: Path, upstream) -> tuple[Path, Upstream]:
    production = upstream("production")
    production.behaviour.responder = app("v1")
    capture = record(tmp_path, production, TRAFFIC)
    assert production.count() == len(TRAFFIC)
    return capture, production


def test_offline_replay_copies_as_live_and_compares_with_the_recorded_answers(tmp_path: Path, upstream, recorded):
    capture, production = recorded
    candidate = upstream("candidate")
    candidate.behaviour.responder = app("v2")
    report = tmp_path / "mismatches.jsonl"
    sets = {
        "mappings": str(mappings_file(tmp_path)),
        "mapping_services": [f"prod={production.address}", f"candidate={candidate.address}"],
        "shadow_compare": "true",
        "shadow_compare_report": str(report),
        "shadow_admin": "",
    }
    cmd = [str(MITMDUMP), "-n", "-r", str(capture), "-s", ADDON]
    for k, v in sets.items():
        for item in v if isinstance(v, list) else [v]:
            cmd += ["--set", f"{k}={item}"]
    run = run_process(cmd, WAIT)
    assert run.returncode == 0, run.stdout + run.stderr
    # The copies are what production would have received live, shaped by the production Mapping.
    assert copies(candidate) == expected_copies(production.address)
    assert production.count() == len(TRAFFIC)  # production is never contacted
    # Only the differing endpoint mismatches; the summary at exit counts every pair.
    assert mismatches(report) == ["GET /v1/price", "GET /v1/price"]
    assert re.search(r"compared\s+match:3 mismatch:2 noise:2\n", run.stdout), run.stdout
    assert f"{len(TRAFFIC)} recorded flows, {len(COPIED)} copies, {len(COPIED)} done, 0 in flight" in run.stdout


def test_the_gate_exit_code_follows_the_threshold_for_a_flow_file_and_a_har(tmp_path: Path, upstream, recorded):
    capture, production = recorded
    candidate = upstream("candidate")
    candidate.behaviour.responder = app("v2")
    for name, cap in (("flows", capture), ("har", to_har(tmp_path, capture))):
        report = tmp_path / f"{name}.jsonl"
        strict = replay_cli(tmp_path, cap, candidate.address, "--report", str(report))
        assert strict.returncode == 1, strict.stdout + strict.stderr
        assert "FAIL: api-next: 2 of 7 pairs differ (28.6%; allowed 0.0%)" in strict.stdout
        assert mismatches(report) == ["GET /v1/price", "GET /v1/price"]
        lenient = replay_cli(tmp_path, cap, candidate.address, "--fail-on-mismatch", "50%")
        assert lenient.returncode == 0, lenient.stdout + lenient.stderr
        assert "ok: api-next: 2 of 7 pairs differ (28.6%; allowed 50.0%)" in lenient.stdout
        # The copy carries the Host production got when it was recorded, as a live copy carries the client's.
        assert copies(candidate) == sorted(expected_copies(production.address) * 2, key=order)
        candidate.seen.clear()


def test_a_har_is_replayed_entry_by_entry(tmp_path: Path, upstream, recorded) -> None:
    """A HAR is read as its entries are copied, not parsed whole first: one cut off after its fourth entry still
    has those four copied (a whole-file parse, mitmproxy's reader, copies none), then the run reports the cut."""
    capture, _ = recorded
    candidate = upstream("candidate")
    doc = json.loads(to_har(tmp_path, capture).read_text())
    entries = doc["log"]["entries"]
    assert [e["request"]["url"].split("/", 3)[3] for e in entries[:4]] == [t[1][1:] for t in TRAFFIC[:4]]
    text = json.dumps(doc)
    cut = tmp_path / "cut.har"
    cut.write_text(text[: text.index(json.dumps(entries[4])) + 20])
    # One copy at a time: each entry waits for the copy before it, so the reading is seen to keep pace with them.
    run = replay_cli(tmp_path, cut, candidate.address, "--no-compare", "--set", "shadow_max_inflight=1")
    assert run.returncode == 2, run.stdout + run.stderr  # the capture could not be read to its end
    assert wait_until(lambda: len(candidate.seen) >= 4, 10)
    assert sorted(c[1] for c in copies(candidate)) == sorted(
        ["/v1/time", "/v1/users/1", "/v1/orders?dry=1", "/v1/price?id=7"]
    )


def test_the_gate_refuses_bad_input_with_exit_code_2(tmp_path: Path, recorded) -> None:
    capture, _ = recorded
    missing = replay_cli(tmp_path, tmp_path / "missing.mitm", "127.0.0.1:9")
    assert missing.returncode == 2 and "cannot read capture" in missing.stderr
    bad_rate = replay_cli(tmp_path, capture, "127.0.0.1:9", "--fail-on-mismatch", "3")
    assert bad_rate.returncode == 2 and "expected a rate between 0 and 1" in bad_rate.stderr
    (tmp_path / "bad.yaml").write_text(mapping("api", prefix="/api/") + "\n")
    bad = run_process(
        [str(MITMSHADOW), "replay", str(capture), "--mappings", str(tmp_path / "bad.yaml"), "--compare"], WAIT
    )
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "bad.yaml doc 1 (Mapping api.default)" in bad.stdout + bad.stderr


def test_a_dead_shadow_ends_the_run_within_the_copy_timeout_with_every_copy_counted(
    tmp_path: Path, fault, recorded
) -> None:
    capture, _ = recorded
    hole = fault("blackhole")
    run = replay_cli(tmp_path, capture, hole.address, "--compare", "--set", "shadow_timeout=1")
    assert run.returncode == 1, run.stdout + run.stderr  # the process exited, and no pair matched
    assert re.search(rf"dropped\s+timeout:{len(COPIED)}\n", run.stdout), run.stdout
    # A copy that timed out is no difference, but the release was not checked on it: the gate fails, saying so.
    assert f"FAIL: api-next: 0 of 0 pairs differ (0.0%; allowed 0.0%); {len(COPIED)} copies timed out" in run.stdout


def test_copies_wait_for_the_shadow_instead_of_overflowing_its_backlog(tmp_path: Path, upstream, recorded) -> None:
    capture, _ = recorded
    candidate = upstream("candidate")
    candidate.behaviour.responder = app("v1")
    candidate.behaviour.delay = 0.2
    # One copy in flight and no backlog at all: live, every copy but the first would be dropped as overload.
    # The first /api/time pair is compared before the second is read: its noise is learned from the whole capture.
    limits = ["--set", "shadow_max_inflight=1", "--set", "shadow_max_backlog=0"]
    run = replay_cli(tmp_path, capture, candidate.address, "--compare", *limits)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"ok: api-next: 0 of {len(COPIED)} pairs differ" in run.stdout
    assert candidate.count() == len(COPIED) and "dropped" not in run.stdout


def test_client_replay_goes_to_production_and_is_shadowed_once(tmp_path: Path, upstream) -> None:
    production, candidate, reverse = upstream("production"), upstream("candidate"), upstream("reverse")
    production.behaviour.responder = candidate.behaviour.responder = app("v1")
    marked = ("GET", "/api/users/3", {"x-mitmproxy-shadow": "1"}, None)  # a copy made by another proxy
    capture = record(tmp_path, reverse, [*TRAFFIC, marked])
    reverse.seen.clear()
    port = free_port()
    cmd = [str(MITMDUMP), "-C", str(capture), "--mode", f"reverse:http://{reverse.address}", "-s", ADDON]
    cmd += ["--listen-host", "127.0.0.1", "-p", str(port), "--set", f"mappings={mappings_file(tmp_path)}"]
    cmd += [
        "--set",
        f"mapping_services=prod={production.address}",
        "--set",
        f"mapping_services=candidate={candidate.address}",
    ]
    cmd += ["--set", "shadow_admin="]
    run = run_process(cmd, WAIT, cwd=str(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    # Routed requests went to the production Mapping's service, rewritten; the rest to the reverse target.
    assert sorted(s.path for s in production.seen) == sorted(
        "/v1/" + t[1].removeprefix("/api/") for t in [*COPIED, marked]
    )
    assert [s.path for s in reverse.seen] == ["/other"]
    # Each replayed request was copied once, as live, with the Host it was sent with (the recording proxy had
    # given it the reverse target's); the marked one was not copied again.
    assert copies(candidate) == expected_copies(reverse.address)
    assert re.search(r"dropped\s+loop:1\n", run.stdout), run.stdout
    assert os.path.exists(capture)


def test_a_capture_recorded_through_the_addon_is_not_routed_twice(tmp_path: Path, upstream, proxy) -> None:
    production, live_shadow, offline_shadow, reverse = (upstream(n) for n in ("prod", "live", "offline", "reverse"))
    production.behaviour.responder = live_shadow.behaviour.responder = offline_shadow.behaviour.responder = app("v1")
    capture = tmp_path / "through-the-addon.mitm"
    services = [f"prod={production.address}"]
    p = proxy(
        f"http://{reverse.address}",
        sets={
            "mappings": str(mappings_file(tmp_path)),
            "mapping_services": [*services, f"candidate={live_shadow.address}"],
        },
        args=["-w", str(capture)],
    )
    for method, path, headers, body in COPIED:
        assert p.request(method, path, body=body, headers=headers)[0] == 200
    assert live_shadow.wait_for(len(COPIED), WAIT)
    assert p.stop() == 0
    cmd = [str(MITMDUMP), "-n", "-r", str(capture), "-s", ADDON, "--set", f"mappings={mappings_file(tmp_path)}"]
    cmd += ["--set", f"mapping_services={services[0]}", "--set", f"mapping_services=candidate={offline_shadow.address}"]
    run = run_process(cmd + ["--set", "shadow_admin="], WAIT)
    assert run.returncode == 0, run.stdout + run.stderr
    # The recorded requests were rewritten already: the offline copies are the live ones, not rewritten again.
    # Both carry the client's Host, which the proxy kept as Envoy does.
    assert copies(offline_shadow) == copies(live_shadow) == expected_copies(f"127.0.0.1:{p.port}")


class DevHandler(http.server.BaseHTTPRequestHandler):
    """An ordinary development server's handler: HTTP/1.0 (a connection per request), and 0.1 s of CPU per
    request, so its threads share one interpreter lock and each answer waits for every request in flight."""

    def do_GET(self) -> None:  # noqa: N802
        start = time.thread_time()
        while time.thread_time() - start < 0.1:  # bounded: 0.1 s of this thread's CPU
            pass
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class DevServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A copy given up on (its timeout) closes the connection before the answer: not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def written_capture(path: Path, n: int, prefix: str = "/api/") -> Path:
    """A flow file of `n` recorded GETs to PREFIXitem/N answered `{"ok": true}`, written by mitmproxy's writer."""
    with open(path, "wb") as fh:
        w = io.FlowWriter(fh)
        for i in range(n):
            req = tutils.treq(path=f"{prefix}item/{i}".encode(), host="shop.example", port=80)
            resp = tutils.tresp(content=b'{"ok": true}', headers=mhttp.Headers(content_type="application/json"))
            w.add(tflow.tflow(req=req, resp=resp))
    return path


def test_the_gate_against_a_development_server_times_nothing_out_and_counts_timeouts_apart(tmp_path: Path) -> None:
    """Python's ThreadingHTTPServer (listen backlog 5, one interpreter lock): 40 copies at once take 4 s of its
    CPU before any answers, past the 3 s copy timeout; a capture goes 4 at a time unless told otherwise."""
    server = DevServer(("127.0.0.1", 0), DevHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        capture = written_capture(tmp_path / "dev.mitm", 40)
        dev = f"127.0.0.1:{server.server_address[1]}"
        run = replay_cli(tmp_path, capture, dev)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "ok: api-next: 0 of 40 pairs differ (0.0%; allowed 0.0%)" in run.stdout
        assert "timed out" not in run.stdout + run.stderr
        hurried = replay_cli(tmp_path, capture, dev, "--set", "shadow_max_inflight=40")
        assert hurried.returncode == 1, hurried.stdout + hurried.stderr
        verdict = re.search(
            r"FAIL: api-next: 0 of (\d+) pairs differ \(0\.0%; allowed 0\.0%\); (\d+) copies timed out", hurried.stdout
        )
        assert verdict and int(verdict[1]) + int(verdict[2]) == 40, hurried.stdout
        assert "lower --set shadow_max_inflight=N" in hurried.stdout
        assert "copies timed out: the shadow did not answer within the copy timeout (shadow_timeout" in (
            hurried.stdout + hurried.stderr
        )
    finally:
        server.shutdown()
        server.server_close()


def test_a_capture_of_rewritten_paths_says_what_was_read_and_which_prefixes_exist(tmp_path: Path) -> None:
    """Recorded in front of the service itself, the paths lack the Mapping's prefix: nothing routes, and the gate
    says how many requests it read, shows one, and names the prefixes."""
    capture = written_capture(tmp_path / "behind.mitm", 12, prefix="/v1/")
    run = replay_cli(tmp_path, capture, "127.0.0.1:9")
    assert run.returncode == 2, run.stdout + run.stderr
    assert (
        "mitmshadow replay: no request of the capture went to a shadow: 12 read (e.g. GET /v1/item/0); prefixes "
        "with a shadow: /api/. A capture taken in front of the service itself holds paths its Mapping already "
        "rewrote: record requests as clients send them (README: Test a release against recorded traffic); "
        "nothing to compare"
    ) in run.stderr, run.stdout + run.stderr
