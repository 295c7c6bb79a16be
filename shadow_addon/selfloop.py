"""Is an address this proxy's own? Decided by address, not spelling.

A shadow at this proxy's own listen address would copy its own copies. `127.1`, `0x7f000001`, `2130706433`,
`127.0.0.2` or the machine's own IP (when the proxy listens on every address), and a name resolving to one of
them all reach the proxy, so hosts are compared as IP addresses. `Listen.is_self` is cheap and never resolves
names (the sender may call it for each new connection's peer); `loop_errors` resolves names and blocks: call it
only off the event loop (the Mapping files are read in a thread).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from mitmproxy.proxy import mode_specs

from .mappings import LoadError
from .routing import Table

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def ip_of(text: str) -> IPAddress | None:
    """An address as the socket layer reports it ('127.0.0.1', '::ffff:127.0.0.1', 'fe80::1%eth0'), or None."""
    try:
        a = ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


@lru_cache(maxsize=256)
def is_local_ip(a: IPAddress) -> bool:
    """An address of this machine: a loopback or unspecified one, or one a socket can bind (nothing is sent)."""
    if a.is_loopback or a.is_unspecified:
        return True
    family = socket.AF_INET6 if a.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((str(a), 0))
    except OSError:
        return False
    return True


def addresses(host: str, resolve_names: bool) -> list[IPAddress]:
    """The IP addresses a host stands for. Numeric forms (also `127.1`, `0x7f000001`) never touch DNS; names
    are resolved only with `resolve_names` (blocking). Unresolvable: none."""
    h = host.strip("[]")
    try:
        infos = socket.getaddrinfo(h, None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        if not resolve_names:
            return []
        try:
            infos = socket.getaddrinfo(h, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError):
            return []
    out: list[IPAddress] = []
    for info in infos:
        a = ip_of(str(info[4][0]))
        if a is not None and a not in out:
            out.append(a)
    return out


@dataclass(frozen=True, slots=True)
class Listen:
    """Where this proxy accepts TCP connections: ports on every local address, and specific (address, port)s."""

    wildcard_ports: frozenset[int] = frozenset()
    specific: frozenset[tuple[IPAddress, int]] = frozenset()
    ports: frozenset[int] = field(default=frozenset())

    @classmethod
    def of(cls, endpoints: Iterable[tuple[str, int]]) -> Listen:
        """From (listen host, port) pairs; the empty host, `0.0.0.0` and `::` mean every local address. A named
        listen host is resolved (as mitmproxy does to bind it)."""
        wildcard: set[int] = set()
        specific: set[tuple[IPAddress, int]] = set()
        for host, port in endpoints:
            if host in _WILDCARDS:
                wildcard.add(port)
            else:
                specific.update((a, port) for a in addresses(host, resolve_names=True))
        ports = frozenset(wildcard | {p for _, p in specific})
        return cls(frozenset(wildcard), frozenset(specific), ports)

    @classmethod
    def from_options(cls, modes: Sequence[str], listen_host: str, listen_port: int | None) -> Listen:
        """From mitmproxy's `mode`, `listen_host` and `listen_port` options (TCP servers only)."""
        endpoints = []
        for spec in modes:
            try:
                mode = mode_specs.ProxyMode.parse(spec)
            except ValueError:
                continue
            port = mode.listen_port(listen_port)
            if port and mode.transport_protocol in ("tcp", "both"):
                endpoints.append((mode.listen_host(listen_host), port))
        return cls.of(endpoints)

    def is_self(self, ip: str, port: int) -> bool:
        """Whether a connection to (ip, port) reaches this proxy. No DNS: `ip` is numeric."""
        if port not in self.ports:
            return False
        a = ip_of(ip)
        if a is None:
            return False
        return (a, port) in self.specific or (port in self.wildcard_ports and is_local_ip(a))

    def own(self, host: str, port: int) -> IPAddress | None:
        """The address of `host` (resolved: blocking) at which `port` reaches this proxy, if any."""
        if port not in self.ports:  # most shadows: no resolution at all
            return None
        return next((a for a in addresses(host, resolve_names=True) if self.is_self(str(a), port)), None)


def loop_errors(table: Table, listen: Listen) -> list[LoadError]:
    """One line per shadow that points at this proxy itself (blocking: resolves names)."""
    errs = []
    for g in table.groups:
        if g.shadow is None:
            continue
        a = table.addresses[g.shadow.key]
        own = listen.own(a.host, a.port)
        if own is not None:
            at = f"[{own}]:{a.port}" if own.version == 6 else f"{own}:{a.port}"
            where = f"{g.shadow.source} (Mapping {g.shadow.key})"
            message = f"service {a} is this proxy's own listen address ({at}); a shadow must be another service"
            errs.append(LoadError.at(where, message, g.shadow.file, g.shadow.doc, g.shadow.key, "service"))
    return errs
