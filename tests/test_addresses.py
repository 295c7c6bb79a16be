"""Service addresses and host:port: one reading for Mappings, the admin address, Host headers and the command line."""

from __future__ import annotations

import pytest

from shadow_addon import addresses, admin, cli


@pytest.mark.parametrize(
    ("text", "split"),
    [
        ("example.com:80", ("example.com", "80")),
        ("example.com", ("example.com", None)),
        ("[::1]:8877", ("::1", "8877")),
        ("[::1]", ("::1", None)),
        ("::1", ("::1", None)),
        (" 127.0.0.1:9 ", ("127.0.0.1", "9")),
    ],
)
def test_split_host_port(text: str, split: tuple[str, str | None]) -> None:
    assert addresses.split_host_port(text) == split


def test_the_admin_address_takes_a_bare_ipv6_host_with_its_port_last() -> None:
    assert admin.parse_listen("::1:8877") == ("::1", 8877)
    assert admin.parse_listen("[::1]:8877") == ("::1", 8877)
    assert admin.parse_listen("127.0.0.1:8877") == ("127.0.0.1", 8877)
    for bad in ("8877", ":8877", "localhost:", "localhost:0", "localhost:65536", "localhost:\u00b2", "h:+1"):
        with pytest.raises(ValueError, match="expected HOST:PORT"):
            admin.parse_listen(bad)


def test_host_of_a_host_header() -> None:
    assert admin.host_of("Example.COM.:8080") == "example.com"
    assert admin.host_of("[::1]:80") == "::1"
    assert admin.host_of("::1") == "::1"


def test_the_command_line_web_port_in_every_spelling() -> None:
    for argv in (
        ["--web-port", "9000"],
        ["--web-port=9000"],
        ["--set", "web_port=9000"],
        ["--set=web_port=9000"],
    ):
        assert cli.web_address(argv) == ("127.0.0.1", 9000), argv
    assert cli.web_address(["--web-port"]) == ("127.0.0.1", 8081)


def test_service_addresses_with_emissary_defaults() -> None:
    assert str(addresses.service_address("https://[::1]")) == "https://[::1]:443"
    assert str(addresses.service_address("svc.ns:8080")) == "http://svc.ns:8080"
    with pytest.raises(ValueError, match="service port must be 1..65535"):
        addresses.service_address("svc:0")
