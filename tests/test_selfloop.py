"""The loop guard decides by address: every spelling of this proxy's own address is refused, others are not."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest
from support import free_port, mapping, metric_sum, metrics_of, run_refused, wait_until, write_mappings

from shadow_addon import mappings, routing, selfloop
from shadow_addon.selfloop import Listen

ip = ipaddress.ip_address


def own_ip() -> str | None:
    """This machine's address on its outgoing interface (a UDP connect sends nothing), if it is not loopback."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if ip(addr).is_loopback or ip(addr).is_unspecified else addr


# ---------------------------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize("spelling", ["127.0.0.1", "127.1", "0x7f000001", "2130706433", "017700000001"])
def test_numeric_spellings_of_loopback_need_no_dns(spelling: str) -> None:
    assert selfloop.addresses(spelling, resolve_names=False) == [ip("127.0.0.1")]


def test_names_are_resolved_only_when_asked() -> None:
    assert selfloop.addresses("localhost", resolve_names=False) == []
    assert ip("127.0.0.1") in selfloop.addresses("localhost", resolve_names=True)
    assert selfloop.addresses("[::1]", resolve_names=False) == [ip("::1")]


def test_a_wildcard_listen_is_every_local_address() -> None:
    listen = Listen.of([("", 8080)])
    assert listen.is_self("127.0.0.1", 8080) and listen.is_self("127.0.0.2", 8080)
    assert listen.is_self("::1", 8080) and listen.is_self("::ffff:127.0.0.1", 8080) and listen.is_self("0.0.0.0", 8080)
    assert not listen.is_self("127.0.0.1", 8081)  # another port is another service
    assert not listen.is_self("203.0.113.9", 8080)  # not this machine's (TEST-NET-3)
    assert not listen.is_self("not-an-address", 8080)
    mine = own_ip()
    if mine is not None:
        assert listen.is_self(mine, 8080)
    for host in ("0.0.0.0", "::"):
        assert Listen.of([(host, 8080)]).is_self("127.0.0.2", 8080)


def test_a_specific_listen_is_that_address_only() -> None:
    listen = Listen.of([("127.0.0.1", 8080), ("localhost", 9090)])
    assert listen.is_self("127.0.0.1", 8080)
    assert not listen.is_self("127.0.0.2", 8080)  # nothing listens there: refused, not a loop
    assert listen.is_self("127.0.0.1", 9090)  # a named listen host is resolved
    assert listen.ports == {8080, 9090}


def test_listen_from_mitmproxy_options() -> None:
    listen = Listen.from_options(["reverse:http://127.0.0.1:1", "regular@127.0.0.5:8181"], "", 9000)
    assert listen.wildcard_ports == {9000}
    assert listen.specific == {(ip("127.0.0.5"), 8181)}
    assert Listen.from_options(["reverse:http://x:1"], "127.0.0.1", None).specific == {(ip("127.0.0.1"), 8080)}
    assert Listen.from_options(["reverse:udp://127.0.0.1:53@5353"], "", None).ports == frozenset()  # UDP only
    assert Listen.from_options(["nonsense:"], "", 9000).ports == frozenset()


def M(name: str, **spec: object) -> mappings.Mapping:
    return mappings.build_mapping(name, "default", "m.yaml doc 1", {"prefix": "/", **spec})


def test_loop_errors_name_the_mapping_and_the_address() -> None:
    table = routing.build_table([M("a", service="a"), M("loop", service="127.1:8080", shadow=True)])
    assert selfloop.loop_errors(table, Listen.of([("127.0.0.1", 8080)])) == [
        "m.yaml doc 1 (Mapping loop.default): service http://127.1:8080 is this proxy's own listen address "
        "(127.0.0.1:8080); a shadow must be another service"
    ]
    assert selfloop.loop_errors(table, Listen.of([("127.0.0.1", 8081)])) == []
    assert selfloop.loop_errors(table, Listen.of([("127.0.0.2", 8080)])) == []


def test_a_loop_error_carries_its_file_document_mapping_and_field() -> None:
    text = "---\n".join(
        f"apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {n}}}\n"
        f"spec: {{prefix: /, service: '{svc}', shadow: {str(shadow).lower()}}}\n"
        for n, svc, shadow in (("a", "a", False), ("loop", "127.1:8080", True))
    )
    table = routing.build_table(mappings.parse_text(text, "m.yaml").mappings)
    (e,) = selfloop.loop_errors(table, Listen.of([("127.0.0.1", 8080)]))
    assert (e.file, e.doc, e.mapping, e.field) == ("m.yaml", 2, "loop.default", "service")


# ---------------------------------------------------------------------------------------------- real mitmdump


@pytest.mark.parametrize(
    ("service_host", "listen_host"),
    [
        ("127.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("localhost", "127.0.0.1"),
        ("127.0.0.2", "0.0.0.0"),
    ],
)
@pytest.mark.e2e
def test_every_spelling_of_the_proxy_itself_is_refused(
    tmp_path: Path, upstream, service_host: str, listen_host: str
) -> None:
    line = run_refused(tmp_path, upstream, service_host, listen_host)
    want = "127.0.0.2" if service_host == "127.0.0.2" else "127.0.0.1"
    assert f"({want}:" in line


@pytest.mark.e2e
def test_the_machines_own_address_is_refused_when_listening_everywhere(tmp_path: Path, upstream) -> None:
    mine = own_ip()
    if mine is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    line = run_refused(tmp_path, upstream, mine, "0.0.0.0")
    assert f"({mine}:" in line


def test_another_loopback_port_is_a_genuine_shadow(tmp_path: Path, upstream, proxy) -> None:
    reverse, api, shadow = upstream("reverse"), upstream("api"), upstream("shadow")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("a", prefix="/", service="a"),
        mapping("s", prefix="/", service=f"127.0.0.1:{shadow.port}", shadow=True),
    )
    # Listening on every address: 127.0.0.1 is this machine's, but the port is the shadow's, not the proxy's.
    p = proxy(
        f"http://{reverse.address}",
        sets={"mappings": str(m), "mapping_services": [f"a={api.address}"], "listen_host": "0.0.0.0"},
    )
    for i in range(3):
        assert p.request("GET", f"/x{i}")[0] == 200
    assert shadow.wait_for(3, 30), shadow.count()
    assert wait_until(lambda: metric_sum(metrics_of(p), "shadow_upstream_requests_total", role="shadow") == 3, 30)
    assert metric_sum(metrics_of(p), "shadow_dropped_total") == 0


def test_a_reload_into_a_loop_keeps_the_last_good_configuration(tmp_path: Path, upstream, proxy) -> None:
    reverse, api, shadow = upstream("reverse"), upstream("api"), upstream("shadow")
    path = tmp_path / "m.yaml"
    write_mappings(path, mapping("a", prefix="/", service="a"), mapping("s", prefix="/", service="s", shadow=True))
    port = free_port()
    p = proxy(
        f"http://{reverse.address}",
        port=port,
        sets={"mappings": str(path), "mapping_services": [f"a={api.address}", f"s={shadow.address}"]},
    )
    tmp = tmp_path / "m.tmp"
    write_mappings(
        tmp, mapping("a", prefix="/", service="a"), mapping("s", prefix="/", service=f"0x7f000001:{port}", shadow=True)
    )
    tmp.rename(path)
    assert wait_until(lambda: "(Mapping s.default): service http://0x7f000001" in p.log, 30), p.log
    assert metric_sum(metrics_of(p), "shadow_config_reloads_total", result="failure") >= 1
    assert p.request("GET", "/y")[0] == 200
    assert shadow.wait_for(1, 30)  # the previous shadow still gets the copies
