"""gRPC through a real mitmdump with the addon: grpcio clients and servers on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpcsupport import STREAM_COUNT, GrpcService, channel, stream, unary
from support import Proxy, make_cert, mapping, metric_sum, metrics_of, wait_until, write_mappings

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
