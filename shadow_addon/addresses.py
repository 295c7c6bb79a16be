"""Service addresses: a Mapping's `service` (`[scheme://]host[.namespace][:port]`) as Emissary reads it, the
`mapping_services` replacements, and which replacement stands for which service. No YAML here: the sender imports
this."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .words import show as _show


@dataclass(frozen=True, slots=True)
class Address:
    scheme: str  # "http" or "https"
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


# A host is a DNS name, an IPv4 address or a bracketed IPv6 address: nothing that could corrupt a Host header.
_SERVICE_RE = re.compile(
    r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>\[[0-9A-Za-z:.%_-]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>[^/]*))?$"
)


def parse_service(service: str) -> tuple[str | None, str, int | None]:
    """`[scheme://]host[.namespace][:port]` -> (scheme or None, host, port or None).

    Emissary: irbasemapping.py normalize_service_name, ircluster.py (scheme http/https, no path).
    """
    m = _SERVICE_RE.match(service.strip())
    if not m:
        raise ValueError(f"service must be [scheme://]host[:port], got {_show(service)}")
    scheme = m.group("scheme")
    if scheme is not None:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"service scheme must be http or https, got {_show(scheme)}")
    host = m.group("host").strip("[]")
    port_s = m.group("port")
    port = None
    if port_s is not None:
        # isascii: str.isdigit accepts other scripts' digits (and superscripts, which int() refuses)
        if not (port_s.isascii() and port_s.isdigit()) or len(port_s) > 5 or not 0 < int(port_s) < 65536:
            raise ValueError(f"service port must be 1..65535, got {_show(port_s)}")
        port = int(port_s)
    return scheme, host, port


def service_address(service: str) -> Address:
    """The address a `service` names, with Emissary's defaults: http, port 80 (443 for https)."""
    scheme, host, port = parse_service(service)
    scheme = scheme or "http"
    return Address(scheme, host, port or (443 if scheme == "https" else 80))


def parse_service_override(spec: str) -> tuple[str, Address, bool]:
    """`NAME=[scheme://]HOST:PORT` -> (NAME, address, scheme_given). Raises ValueError."""
    name, sep, target = spec.partition("=")
    name, target = name.strip(), target.strip()
    if not sep or not name or not target:
        raise ValueError(f"expected NAME=[scheme://]HOST:PORT, got {_show(spec)}")
    scheme, host, port = parse_service(target)
    addr = Address(scheme or "http", host, port or (443 if scheme == "https" else 80))
    return name, addr, scheme is not None


def is_ip(host: str) -> bool:
    return ":" in host or bool(re.fullmatch(r"[0-9.]+", host))


def override_matches(name: str, service: str, namespace: str) -> bool:
    """Does a `mapping_services` NAME stand for this Mapping's `service`?

    NAME matches with or without its `.namespace` suffix and port, and without the scheme:
    `myservice` matches `myservice.default:8080`, `myservice.default` matches `myservice` in namespace
    `default`.
    """
    try:
        _, host, port = parse_service(service)
        _, n_host, n_port = parse_service(name)
    except ValueError:
        return False
    if n_port is not None and n_port != port:
        return False
    host, n_host = host.lower(), n_host.lower()
    if n_host == host:
        return True
    if is_ip(host):
        return False
    forms = {host.split(".", 1)[0]} if "." in host else {f"{host}.{namespace.lower()}"}
    return n_host in forms


def split_host_port(authority: str, *, last_colon: bool = False) -> tuple[str, str | None]:
    """`host:port`, `[v6]:port`, `host` or `[v6]` -> (host without brackets, port text or None): the one reading of
    host:port for the admin address, Host headers and the command line. A bare IPv6 address (two colons or more)
    has no port, unless `last_colon`: then the text after its last colon is the port (`::1:8877`)."""
    a = authority.strip()
    if a.startswith("["):
        end = a.find("]")
        if end < 0:
            return a[1:], None
        rest = a[end + 1 :]
        return a[1:end], rest[1:] if rest.startswith(":") else None
    if a.count(":") == 1 or (last_colon and ":" in a):
        host, _, port = a.rpartition(":")
        return host, port
    return a, None


def parse_port(text: str | None) -> int | None:
    """A TCP port 1..65535 written in ASCII digits, or None."""
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 5 or not 0 < int(text) < 65536:
        return None
    return int(text)


def parse_host_port(spec: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets, or bare with the port after its last colon) -> (host, port). Raises ValueError."""
    host, port_text = split_host_port(spec, last_colon=True)
    port = parse_port(port_text)
    if not host or port is None:
        raise ValueError(f"expected HOST:PORT, got {spec!r}")
    return host, port


@dataclass(frozen=True, slots=True)
class ServiceOverride:
    """A `mapping_services` entry: NAME=[scheme://]HOST:PORT (`scheme_given`: the scheme was written)."""

    name: str
    address: Address
    scheme_given: bool


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback IP address (no name is resolved)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
