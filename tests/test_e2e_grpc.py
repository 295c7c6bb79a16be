"""gRPC through a real mitmdump with the addon: grpcio clients and servers on loopback."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
from grpcsupport import STREAM_COUNT, UNARY, GrpcService, channel, stream, unary
from support import (
    FaultServer,
    Proxy,
    make_cert,
    mapping,
    metric_sum,
    metrics_of,
    run_process,
    spawn,
    stop,
    wait_until,
    write_mappings,
)

from shadow_addon import grpcwire
from shadow_addon.ingress import PREFACE

PREFIX = "/shadowtest.Echo/"


@pytest.fixture
def service() -> Iterator[Callable[..., GrpcService]]:
    made: list[GrpcService] = []

    def make(name: str, **kw: object) -> GrpcService:
        s = GrpcService(name, **kw)  # type: ignore[arg-type]
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def grpc_mapping(name: str, service: str, **spec: object) -> str:
    return mapping(name, prefix=PREFIX, rewrite=PREFIX, service=service, grpc=True, **spec)


def start(proxy: Callable[..., Proxy], tmp_path: Path, prod: GrpcService, *docs: str, **sets: str) -> Proxy:
    f = write_mappings(tmp_path / "m.yaml", *docs)
    return proxy(f"http://{prod.address}", sets={"mappings": str(f), "confdir": str(tmp_path / "conf"), **sets})


def test_a_cleartext_grpc_client_reaches_a_cleartext_grpc_service(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    prod = service("prod")
    p = start(proxy, tmp_path, prod, grpc_mapping("echo", prod.address))
    with channel(p.port) as ch:
        answer, call = unary(ch, b"hello")
        assert answer == b"prod:hello"
        assert call.code() == grpc.StatusCode.OK
        assert ("x-served-by", "prod") in [(m.key, m.value) for m in call.trailing_metadata()]
        big = bytes(range(256)) * 40  # 10 KB
        assert unary(ch, big)[0] == b"prod:" + big
        assert stream(ch, b"s") == [b"prod:%d:s" % i for i in range(STREAM_COUNT)]
    assert prod.count == 3
    m = metrics_of(p)
    assert metric_sum(m, "shadow_upstream_requests_total", role="production", mapping="echo", code="200") == 3


def _raw_h2_call(port: int, split_at: int, body: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """One unary call over a raw socket, the client preface written in two parts (`split_at` bytes first, a pause,
    then the rest with the call): the answer's message and trailers."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    opening = conn.data_to_send()
    assert opening.startswith(PREFACE)
    conn.send_headers(
        1,
        [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"127.0.0.1:%d" % port),
            (b":path", UNARY.encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ],
    )
    conn.send_data(1, grpcwire.frame(body), end_stream=True)
    rest = opening[split_at:] + conn.data_to_send()
    answer, trailers = b"", []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(opening[:split_at])
        time.sleep(0.3)  # the proxy reads the first part alone
        sock.sendall(rest)
        for _ in range(1000):  # bounded: the answer is a few frames
            data = sock.recv(65536)
            if not data:
                break
            ended = False
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.DataReceived):
                    answer += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.TrailersReceived):
                    trailers = list(ev.headers)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended = True
            sock.sendall(conn.data_to_send())
            if ended:
                break
    return answer, trailers


@pytest.mark.parametrize("split_at", [3, 10, 23])
def test_a_client_preface_written_in_two_parts_is_still_http2(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path, split_at: int
) -> None:
    prod = service("prod")
    p = start(proxy, tmp_path, prod, grpc_mapping("echo", prod.address))
    answer, trailers = _raw_h2_call(p.port, split_at, b"pieces")
    assert grpcwire.split(answer) == [(False, b"prod:pieces")]
    assert (b"grpc-status", b"0") in trailers
    assert prod.count == 1


def test_a_grpc_error_status_reaches_the_client_with_its_message(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    prod = service("prod", fail=grpc.StatusCode.NOT_FOUND)
    p = start(proxy, tmp_path, prod, grpc_mapping("echo", prod.address))
    with channel(p.port) as ch, pytest.raises(grpc.RpcError) as e:
        unary(ch, b"x")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert e.value.details() == "prod fails"  # type: ignore[attr-defined]


def test_a_tls_grpc_client_reaches_a_tls_grpc_service(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    cert, key = make_cert(tmp_path)
    prod = service("prod", tls=(cert, key))
    f = write_mappings(tmp_path / "m.yaml", grpc_mapping("echo", f"https://{prod.address}"))
    conf = tmp_path / "conf"
    p = proxy(
        f"http://{prod.address}",
        sets={"mappings": str(f), "confdir": str(conf), "ssl_verify_upstream_trusted_ca": str(cert)},
    )
    assert wait_until(lambda: (conf / "mitmproxy-ca-cert.pem").exists())
    with channel(p.port, ca=conf / "mitmproxy-ca-cert.pem") as ch:
        answer, call = unary(ch, b"hello")
        assert answer == b"prod:hello"
        assert ("x-served-by", "prod") in [(m.key, m.value) for m in call.trailing_metadata()]
        assert stream(ch, b"s") == [b"prod:%d:s" % i for i in range(STREAM_COUNT)]
    assert prod.count == 2


@pytest.mark.parametrize("client_tls", [False, True], ids=["h2c-client-to-tls", "tls-client-to-h2c"])
def test_a_grpc_client_reaches_a_service_over_the_other_transport(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path, client_tls: bool
) -> None:
    """HTTP/2 to the service comes from its Mapping's `grpc: true`, whatever the client spoke: cleartext with
    prior knowledge to an http service, ALPN h2 alone offered to an https one."""
    cert, key = make_cert(tmp_path)
    prod = service("prod", tls=None if client_tls else (cert, key))
    svc = prod.address if client_tls else f"https://{prod.address}"
    f = write_mappings(tmp_path / "m.yaml", grpc_mapping("echo", svc))
    conf = tmp_path / "conf"
    p = proxy(
        "http://127.0.0.1:9",  # never used: the Mapping routes
        sets={"mappings": str(f), "confdir": str(conf), "ssl_verify_upstream_trusted_ca": str(cert)},
    )
    assert wait_until(lambda: (conf / "mitmproxy-ca-cert.pem").exists())
    with channel(p.port, ca=conf / "mitmproxy-ca-cert.pem" if client_tls else None) as ch:
        assert unary(ch, b"hello")[0] == b"prod:hello"


# ---------------------------------------------------------------- copies to gRPC shadows


def shadowed(proxy: Callable[..., Proxy], tmp_path: Path, prod: GrpcService, shadow_service: str, **sets: str) -> Proxy:
    return start(
        proxy,
        tmp_path,
        prod,
        grpc_mapping("echo", prod.address),
        grpc_mapping("echo-shadow", shadow_service, shadow=True),
        **sets,
    )


def test_grpc_calls_are_copied_over_http2_to_a_grpc_shadow(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    prod, shadow = service("prod"), service("shadow")
    p = shadowed(proxy, tmp_path, prod, shadow.address)
    big = bytes(range(256)) * 40  # 10 KB
    with channel(p.port) as ch:
        for i in range(5):
            assert unary(ch, b"call-%d" % i)[0] == b"prod:call-%d" % i  # the client's answer is production's
        assert unary(ch, big)[0] == b"prod:" + big
        assert stream(ch, b"s") == [b"prod:%d:s" % i for i in range(STREAM_COUNT)]
    assert wait_until(lambda: shadow.count == 7)
    got = sorted(c.request for c in shadow.calls if c.method == "Unary")
    assert got == sorted([b"call-%d" % i for i in range(5)] + [big])
    assert [c.request for c in shadow.calls if c.method == "Stream"] == [b"s"]
    assert all(c.metadata.get("x-mitmproxy-shadow") == "1" for c in shadow.calls)
    m = metrics_of(p)
    assert metric_sum(m, "shadow_upstream_requests_total", role="shadow", mapping="echo-shadow", code="200") == 7
    assert metric_sum(m, "shadow_grpc_calls_total", role="shadow", mapping="echo-shadow", grpc_status="0") == 7
    assert metric_sum(m, "shadow_grpc_calls_total", role="production", mapping="echo", grpc_status="0") == 7
    assert metric_sum(m, "shadow_dropped_total", mapping="echo-shadow") == 0


def test_a_shadow_answering_with_an_error_status_is_counted_by_grpc_status(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    prod, shadow = service("prod"), service("shadow", fail=grpc.StatusCode.NOT_FOUND)
    p = shadowed(proxy, tmp_path, prod, shadow.address)
    with channel(p.port) as ch:
        for _ in range(3):
            assert unary(ch, b"x")[0] == b"prod:x"
    assert wait_until(lambda: shadow.count == 3)

    def counted() -> float:
        return metric_sum(metrics_of(p), "shadow_grpc_calls_total", role="shadow", grpc_status="5")

    assert wait_until(lambda: counted() == 3)
    m = metrics_of(p)
    # HTTP says 200: only grpc-status tells the failure.
    assert metric_sum(m, "shadow_upstream_requests_total", role="shadow", code="200") == 3
    assert metric_sum(m, "shadow_grpc_calls_total", role="production", grpc_status="0") == 3
    report = p.admin("/report")[1].decode()
    [prod_line] = [line for line in report.splitlines() if line.startswith(PREFIX)]
    [shadow_line] = [line for line in report.splitlines() if "-> echo-shadow" in line]
    assert prod_line.endswith("200:3  grpc OK:3")
    assert shadow_line.endswith("200:3  grpc NOT_FOUND:3")
    rows = json.loads(p.admin("/report.json")[1])
    assert rows[0]["shadow"]["grpc"] == {"5": 3} and rows[0]["shadow"]["grpc_errors"] == 3


def test_a_shadow_that_is_down_never_reaches_the_client(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    from support import free_port

    prod = service("prod")
    p = shadowed(proxy, tmp_path, prod, f"127.0.0.1:{free_port()}")
    with channel(p.port) as ch:
        for i in range(5):
            assert unary(ch, b"%d" % i)[0] == b"prod:%d" % i
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_dropped_total", mapping="echo-shadow") == 5)
    m = metrics_of(p)
    assert metric_sum(m, "shadow_dropped_total", reason="connect_error") >= 1
    assert prod.count == 5


def test_a_slow_shadow_times_out_without_delaying_the_client(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    prod, shadow = service("prod"), service("shadow", delay=3.0)
    p = shadowed(proxy, tmp_path, prod, shadow.address, shadow_timeout="0.5")
    with channel(p.port) as ch:
        for i in range(3):
            answer, _ = unary(ch, b"%d" % i, timeout=2.0)  # a client waiting for the shadow would fail here
            assert answer == b"prod:%d" % i
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_dropped_total", reason="timeout") == 3)
    assert shadow.count == 3


def test_a_grpc_production_with_an_http1_shadow_is_warned_about(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    prod, shadow = service("prod"), service("shadow")
    p = start(
        proxy,
        tmp_path,
        prod,
        grpc_mapping("echo", prod.address),
        mapping("echo-shadow", prefix=PREFIX, rewrite=PREFIX, service=shadow.address, shadow=True),
    )
    line = "shadow echo-shadow.default has no grpc: true but production echo.default has: its copies go as HTTP/1.1"
    assert wait_until(lambda: line in p.log)
    diag = json.loads(p.admin("/diag")[1])
    assert any(line in n for n in diag["notices"])
    with channel(p.port) as ch:
        assert unary(ch, b"x")[0] == b"prod:x"  # production is unaffected


def test_the_readme_grpc_example_as_written(service: Callable[..., GrpcService], tmp_path: Path) -> None:
    """The README's gRPC command with mappings/grpc.yaml, its ports swapped for free ones: a cleartext gRPC call
    answered by greeter, copied to greeter-v2."""
    import re

    from support import ROOT, free_port, readme_commands

    [cmd] = [c for c in readme_commands() if "mappings/grpc.yaml" in c]
    prod = service("greeter", service="helloworld.Greeter")
    v2 = service("greeter-v2", service="helloworld.Greeter")
    port = free_port()
    cmd = cmd.replace("127.0.0.1:50051", prod.address).replace("127.0.0.1:50052", v2.address)
    cmd = re.sub(r" -p 8080\b", f" -p {port} --listen-host 127.0.0.1", cmd) + " --set shadow_admin="
    log = tmp_path / "mitmdump.log"
    proc = spawn(cmd, log, cwd=ROOT, shell=True)
    try:
        assert wait_until(lambda: proc.poll() is not None or "listening at" in log.read_text()), log.read_text()
        with channel(port) as ch:
            assert unary(ch, b"world", method="/helloworld.Greeter/Unary")[0] == b"greeter:world"
        assert wait_until(lambda: v2.count == 1)
        assert v2.calls[0].request == b"world"
        assert "has no grpc: true" not in log.read_text()
    finally:
        stop(proc)


def test_a_recorded_grpc_capture_replays_offline_to_a_grpc_shadow_over_http2(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    """gRPC calls recorded through the proxy (`-w`), then `mitmdump -n -r` with a `grpc: true` shadow: the copies go
    over HTTP/2 with the recorded messages, production is not contacted again."""

    from support import ADDON, MITMDUMP

    prod, shadow = service("prod"), service("shadow")
    capture = tmp_path / "grpc.mitm"
    f = write_mappings(tmp_path / "prod.yaml", grpc_mapping("echo", prod.address))
    p = proxy(f"http://{prod.address}", sets={"mappings": str(f)}, args=["-w", str(capture)])
    big = bytes(range(256)) * 40
    with channel(p.port) as ch:
        assert unary(ch, b"one")[0] == b"prod:one"
        assert unary(ch, big)[0] == b"prod:" + big
        assert stream(ch, b"s")[0] == b"prod:0:s"
    assert p.stop() == 0
    assert prod.count == 3
    m = write_mappings(
        tmp_path / "shadowed.yaml",
        grpc_mapping("echo", prod.address),
        grpc_mapping("echo-shadow", shadow.address, shadow=True),
    )
    cmd = [
        str(MITMDUMP),
        "-n",
        "-r",
        str(capture),
        "-s",
        str(ADDON),
        "--set",
        f"mappings={m}",
        "--set",
        "shadow_admin=",
    ]
    run = run_process(cmd, 120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(c.request for c in shadow.calls) == sorted([b"one", big, b"s"])
    assert prod.count == 3  # offline: production only as recorded


def test_the_comparison_finds_a_changed_protobuf_field_and_a_grpc_status(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    """With shadow_compare, answers are split by gRPC framing and decoded from protobuf's wire format: a field the
    shadow changed is named by its path of field numbers; a failing grpc-status is a status mismatch."""

    def answer(price: int) -> Callable[[bytes], bytes]:
        # {1: request, 2: price}: field 1 length-delimited, field 2 a varint
        return lambda req: b"\x0a" + bytes([len(req)]) + req + b"\x10" + bytes([price])

    prod = service("prod", reply=answer(10))
    shadow = service("shadow", reply=answer(12))
    p = shadowed(proxy, tmp_path, prod, shadow.address, shadow_compare="true")
    with channel(p.port) as ch:
        assert unary(ch, b"sku-1")[0] == answer(10)(b"sku-1")
        assert unary(ch, b"sku-2")[0] == answer(10)(b"sku-2")
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_compare_total") == 2)
    records = json.loads(p.admin("/diffs")[1])["records"]
    assert len(records) == 2
    assert all(r["diffs"] == ["/0/2: 10 -> 12"] for r in records)


def test_a_failing_grpc_shadow_is_a_status_mismatch(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    prod, shadow = service("prod"), service("shadow", fail=grpc.StatusCode.NOT_FOUND)
    p = shadowed(proxy, tmp_path, prod, shadow.address, shadow_compare="true")
    with channel(p.port) as ch:
        assert unary(ch, b"x")[0] == b"prod:x"
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_compare_total") == 1)
    assert metric_sum(metrics_of(p), "shadow_compare_mismatch_total", kind="status") == 1
    [record] = json.loads(p.admin("/diffs")[1])["records"]
    assert "grpc-status: 0 (OK) -> 5 (NOT_FOUND)" in record["diffs"]
    assert "header grpc-message: missing -> shadow fails" in record["diffs"]


def test_client_and_bidi_streaming_calls_flow_through_and_are_copied_once_complete(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    """A bidi call whose client waits for each answer before sending the next message works only if both ways
    are passed on as they come; the copy goes once the request is complete, with all its messages."""
    import queue

    from grpcsupport import CHAT, COLLECT

    prod, shadow = service("prod"), service("shadow")
    p = shadowed(proxy, tmp_path, prod, shadow.address)
    with channel(p.port) as ch:
        outbox: queue.Queue[bytes | None] = queue.Queue()

        def requests() -> Iterator[bytes]:
            while (m := outbox.get(timeout=10)) is not None:
                yield m

        outbox.put(b"ping-0")
        answers = ch.stream_stream(CHAT)(requests(), timeout=10)
        for i in range(3):
            assert next(answers) == b"prod:ping-%d" % i  # answered before the next message is sent
            outbox.put(b"ping-%d" % (i + 1) if i < 2 else None)
        assert list(answers) == []
        assert ch.stream_unary(COLLECT)(iter([b"a", b"b", b"c"]), timeout=10) == b"prod:a|b|c"
    assert wait_until(lambda: shadow.count == 2)
    got = {c.method: c.request for c in shadow.calls}
    assert got == {"Chat": b"ping-0|ping-1|ping-2", "Collect": b"a|b|c"}


def test_response_header_edits_reach_a_streamed_grpc_answer(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    prod = service("prod")
    p = start(proxy, tmp_path, prod, grpc_mapping("echo", prod.address, add_response_headers={"x-route": "echo"}))
    with channel(p.port) as ch:
        answer, call = unary(ch, b"x")
        assert answer == b"prod:x"
        assert ("x-route", "echo") in [(m.key, m.value) for m in call.initial_metadata()]
        assert stream(ch, b"s") == [b"prod:%d:s" % i for i in range(STREAM_COUNT)]


@pytest.mark.parametrize(
    "mode, reason",
    [("garbage", "bad_response"), ("truncated", "bad_response"), ("reset", "reset"), ("blackhole", "timeout")],
)
def test_a_misbehaving_grpc_shadow_leaves_production_correct(
    proxy: Callable[..., Proxy],
    service: Callable[..., GrpcService],
    fault: Callable[..., FaultServer],
    tmp_path: Path,
    mode: str,
    reason: str,
) -> None:
    """A shadow that answers HTTP/2 copies with something else (not HTTP/2 at all, HTTP/1), resets or never
    answers: every copy is counted under its reason, the client gets production's answers."""
    prod, bad = service("prod"), fault(mode)
    p = shadowed(proxy, tmp_path, prod, bad.address, shadow_timeout="0.5")
    with channel(p.port) as ch:
        for i in range(4):
            assert unary(ch, b"%d" % i, timeout=5)[0] == b"prod:%d" % i
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_dropped_total", mapping="echo-shadow") == 4)
    assert metric_sum(metrics_of(p), "shadow_dropped_total", mapping="echo-shadow", reason=reason) >= 1
    assert prod.count == 4


def test_a_call_over_the_body_limit_reaches_production_and_its_copy_is_counted(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    """A streamed call is kept for its copy up to shadow_body_limit only: past it production still gets it whole,
    and the copy is dropped as body_limit."""
    prod, shadow = service("prod"), service("shadow")
    p = shadowed(proxy, tmp_path, prod, shadow.address, shadow_body_limit="4k")
    big = bytes(range(256)) * 40  # 10 KB
    with channel(p.port) as ch:
        assert unary(ch, big)[0] == b"prod:" + big
        assert unary(ch, b"small")[0] == b"prod:small"
    assert wait_until(lambda: shadow.count == 1)
    assert shadow.calls[0].request == b"small"
    assert metric_sum(metrics_of(p), "shadow_dropped_total", mapping="echo-shadow", reason="body_limit") == 1


def test_with_a_descriptor_set_the_changed_field_is_named(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    from support import pb

    def answer(price: int) -> Callable[[bytes], bytes]:
        return lambda req: pb((1, req), (2, price))

    item = pb((1, b"Item"), (2, pb((1, b"sku"), (3, 1), (5, 9))), (2, pb((1, b"price"), (3, 2), (5, 3))))
    method = pb((1, b"Unary"), (2, b".shadowtest.Item"), (3, b".shadowtest.Item"))
    fds = pb((1, pb((1, b"echo.proto"), (2, b"shadowtest"), (4, item), (6, pb((1, b"Echo"), (2, method))))))
    (tmp_path / "echo.pb").write_bytes(fds)
    prod, shadow = service("prod", reply=answer(10)), service("shadow", reply=answer(12))
    p = shadowed(
        proxy,
        tmp_path,
        prod,
        shadow.address,
        shadow_compare="true",
        shadow_grpc_descriptors=str(tmp_path / "echo.pb"),
    )
    with channel(p.port) as ch:
        assert unary(ch, b"sku-1")[0] == answer(10)(b"sku-1")
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_compare_total") == 1)
    [record] = json.loads(p.admin("/diffs")[1])["records"]
    assert record["diffs"] == ["/0/price: 10 -> 12"]


def test_a_file_that_is_not_a_descriptor_set_stops_start_up_with_one_line(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    prod = service("prod")
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\x0a\x05ab")
    with pytest.raises(RuntimeError) as e:
        shadowed(proxy, tmp_path, prod, prod.address, shadow_compare="true", shadow_grpc_descriptors=str(bad))
    assert f"shadow_compare: descriptor set {bad}: not a FileDescriptorSet" in str(e.value)
    assert "Traceback" not in str(e.value)


def test_the_gate_replays_a_grpc_capture_over_http2_and_fails_on_a_changed_field(
    proxy: Callable[..., Proxy], service: Callable[..., GrpcService], tmp_path: Path
) -> None:
    """`mitmshadow replay` of a recorded gRPC capture: copies go to a `grpc: true` shadow over HTTP/2 and are compared
    with the recorded answers; a shadow answering alike passes the gate, one changing a protobuf field fails it."""
    from support import MITMDUMP, run_process

    def answer(price: int) -> Callable[[bytes], bytes]:
        return lambda req: b"\x0a" + bytes([len(req)]) + req + b"\x10" + bytes([price])  # {1: request, 2: price}

    prod = service("prod", reply=answer(10))
    capture = tmp_path / "grpc.mitm"
    f = write_mappings(tmp_path / "prod.yaml", grpc_mapping("echo", prod.address))
    p = proxy(f"http://{prod.address}", sets={"mappings": str(f)}, args=["-w", str(capture)])
    with channel(p.port) as ch:
        for sku in (b"sku-1", b"sku-2", b"sku-3"):
            assert unary(ch, sku)[0] == answer(10)(sku)
    assert p.stop() == 0
    m = write_mappings(
        tmp_path / "gate.yaml",
        grpc_mapping("echo", "echo-prod"),
        grpc_mapping("echo-next", "echo-next", shadow=True),
    )
    for price, code in ((10, 0), (12, 1)):
        shadow = service(f"shadow{price}", reply=answer(price))
        cmd = [str(MITMDUMP.parent / "mitmshadow"), "replay", str(capture), "--mappings", str(m)]
        cmd += ["--service", f"echo-next={shadow.address}"]
        run = run_process(cmd, 120)
        assert run.returncode == code, run.stdout + run.stderr
        assert sorted(c.request for c in shadow.calls) == [b"sku-1", b"sku-2", b"sku-3"]  # over HTTP/2: grpcio
    assert prod.count == 3  # production only as recorded
