"""HTTP/2 where mitmproxy 12 speaks it only over TLS: cleartext HTTP/2 from clients (h2c with prior knowledge,
what `grpc.insecure_channel` sends) and HTTP/2 to the services of `grpc: true` Mappings.

mitmproxy picks its HTTP/2 layers from ALPN alone: `HttpLayer._handle_event` serves a client with `Http2Server`
when `client.alpn == b"h2"`, and `HttpClient._handle_event` talks to a server with `Http2Client` when
`server.alpn == b"h2"` (proxy/layers/http/__init__.py). A cleartext connection has no ALPN, so a prior-knowledge
preface is read as an HTTP/1 request `PRI * HTTP/2.0` and killed (addons/disable_h2c.py), and a cleartext
service gets HTTP/1.1, which a gRPC server refuses. Two hooks set what ALPN would have negotiated:

- `next_layer`: a reverse-proxy client without TLS whose first bytes are the HTTP/2 preface gets `alpn = h2`
  before its HTTP layer starts;
- `server_connect`: a connection to a service that a `grpc: true` Mapping names gets `alpn = h2` (cleartext) or
  offers only `h2` in its TLS handshake (https), as Envoy's cluster with `http2_protocol_options` would.

mitmproxy shares server connections by address (`HttpLayer.get_connection` matches address, TLS and upstream
proxy): a service that one Mapping names with `grpc: true` gets HTTP/2 for every Mapping that routes to it.
"""

from __future__ import annotations

import logging

from mitmproxy.proxy import events, layer, mode_specs, server_hooks
from mitmproxy.proxy.layers import modes

from .addresses import Address
from .routing import Table

logger = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 3.4: the client connection preface
H2 = b"h2"


def preface(data: bytes) -> bool | None:
    """Whether a connection's first bytes are the HTTP/2 client preface: True, False, or None (too few to tell)."""
    if data.startswith(PREFACE):
        return True
    if len(data) < len(PREFACE) and PREFACE.startswith(data):
        return None
    return False


def h2_services(table: Table) -> frozenset[tuple[str, int, str]]:
    """(host, port, scheme) of every service a `grpc: true` Mapping routes or copies to."""
    out = set()
    for g in table.groups:
        for m in g.members:
            if m.grpc:
                a: Address | None = table.addresses.get(m.key)
                if a is not None:
                    out.add((a.host, a.port, a.scheme))
    return frozenset(out)


class PrefaceWait(layer.NextLayer):
    """Holds a cleartext client's first bytes while they may still become the HTTP/2 preface (fewer than 24, all
    matching it), then asks for the next layer again with them all. mitmproxy's own NextLayer decides on the first
    read (its `next_layer` addon runs after this addon's hook), so a client that writes the preface in pieces would
    otherwise be taken for HTTP/1. At most 24 bytes are held; a client that closes meanwhile is closed."""

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if (
            isinstance(event, events.DataReceived)
            and event.connection == self.context.client
            and preface(self.data_client() + event.data) is None
        ):
            self.events.append(event)
            return
        yield from super()._handle_event(event)


class Ingress:
    """The two hooks, for the addon to call; `services` follows the Mapping table."""

    def __init__(self) -> None:
        self._table: Table | None = None
        self._services: frozenset[tuple[str, int, str]] = frozenset()
        self.h2c_clients = 0  # cleartext HTTP/2 client connections taken

    def services(self, table: Table) -> frozenset[tuple[str, int, str]]:
        if table is not self._table:  # computed once per installed table
            self._table, self._services = table, h2_services(table)
        return self._services

    def next_layer(self, nextlayer: layer.NextLayer, http2: bool) -> None:
        c = nextlayer.context
        mode = c.client.proxy_mode
        if not http2 or c.client.tls or c.client.alpn is not None or c.client.transport_protocol != "tcp":
            return
        if not isinstance(mode, mode_specs.ReverseMode) or mode.scheme not in ("http", "https"):
            return
        if len(c.layers) != 1 or not isinstance(c.layers[0], modes.ReverseProxy):
            return  # only the layer right under the reverse proxy sees the connection's first bytes
        seen = preface(nextlayer.data_client())
        if seen:
            c.client.alpn = H2  # HttpLayer then serves this client with Http2Server
            self.h2c_clients += 1
        elif seen is None and not isinstance(nextlayer, PrefaceWait):
            # A preface cut short: mitmproxy's NextLayer would decide on these bytes alone. Wait for the rest.
            nextlayer.layer = PrefaceWait(c)

    def server_connect(self, data: server_hooks.ServerConnectionHookData, table: Table) -> None:
        s = data.server
        if s.address is None or s.transport_protocol != "tcp":
            return
        services = self.services(table)
        if not services:
            return
        host, port = s.address[0], s.address[1]
        if s.tls:
            if (host, port, "https") in services:
                s.alpn_offers = (H2,)  # gRPC servers refuse TLS without ALPN h2
        elif (host, port, "http") in services:
            s.alpn = H2  # HttpClient then talks to it with Http2Client (prior knowledge)
