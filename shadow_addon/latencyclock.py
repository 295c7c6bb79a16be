"""When production's request really goes out and when mitmproxy is done with its answer's head, seen from the end
of mitmproxy's addon chain, so that production's latency (`production.latency`) leaves out the proxy's own hook
chains, as the shadow's (measured on the sender's own connection) has none.

mitmproxy writes a request only once every addon's `request` hook has run, then every addon's `update` (a
kept-alive connection), or, on a new connection, every addon's `server_connected` (and, with TLS,
`tls_established_server`) hook; it reads an answer's head (`timestamp_start`), then holds the answer while every
addon's `responseheaders` hook runs, then `update`, and sets `timestamp_end` only after. The Shadow addon appends
a `LatencyClock` to the chain (in `running`, so after every addon and script loaded at start-up) and removes it
in `done` (a hot-reloaded script gets a new one); its hooks record the time each of these chains ended.

Its state is bounded: a flow's marks live from its `request` to its `response` or `error`, a connection's time
from its `server_connected` to its `server_disconnected`, and each table keeps at most `LIMIT` entries (the
oldest go first), so an end mitmproxy never reported costs nothing lasting. An addon added to the chain later
(by another addon, at run time) runs after the clock: its hooks are then counted, as all were before.

Cost: mitmproxy dispatches every hook of every flow to every addon in its chain, so one more addon costs its
dispatch (about half of the clock's cost) besides its own hooks: `scripts/bench_handoff.py`, docs/benchmark.md.
Marks taken from the Shadow addon's own hooks with `loop.call_soon` (after the hook's task step) would avoid the
extra addon, but such a callback runs behind whatever else the loop has queued, so its marks come late and
shorten production's figure (measured: docs/benchmark.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from mitmproxy import http, tls
from mitmproxy.flow import Flow
from mitmproxy.proxy import server_hooks

LIMIT = 65536  # flows (and server connections) under way at once; past it, the oldest one's marks are dropped


@dataclass(slots=True)
class Marks:
    """time.time() values of one flow: `sent`, when its request went out (the `request` and `update` hook chains
    done, or the later set-up of the connection it went on); `head_done`, when the `responseheaders` and
    `update` chains that hold its answer were done (0: not yet, or never, as for an answer made by an addon)."""

    sent: float
    head_done: float = 0.0
    refine: bool = True  # the `update` chain that follows the last hook is still to end: it moves that hook's mark


class LatencyClock:
    """The addon at the end of the chain that records `Marks` per flow; `marks(flow)` reads them."""

    def __init__(self) -> None:
        # Addon names are unique in a chain: a second Shadow addon (an odd set-up) gets a clock of its own.
        self.name = f"shadow-latency-clock-{id(self):x}"
        self.flows: dict[str, Marks] = {}
        self.conns: dict[str, float] = {}  # server connection id: when its set-up's last hook chain ended

    def marks(self, flow: http.HTTPFlow) -> Marks | None:
        return self.flows.get(flow.id)

    # ------------------------------------------------------------------ hooks

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.live:  # a recorded flow (`-r`) sends nothing
            _put(self.flows, flow.id, Marks(time.time()))

    def update(self, flows: Sequence[Flow]) -> None:
        # mitmproxy follows each of a flow's hooks with an `update` chain, before it goes on.
        m = self.flows.get(flows[0].id) if len(flows) == 1 else None
        if m is not None and m.refine:
            m.refine = False
            if m.head_done:
                m.head_done = time.time()
            else:
                m.sent = time.time()

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        _put(self.conns, data.server.id, time.time())

    def tls_established_server(self, data: tls.TlsData) -> None:
        _put(self.conns, data.conn.id, time.time())

    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self.conns.pop(data.server.id, None)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        m = self.flows.get(flow.id)
        if m is not None:
            m.head_done, m.refine = time.time(), True
            # Read now: the connection's entry goes at its `server_disconnected`, which may come before `response`.
            m.sent = max(m.sent, self.conns.get(flow.server_conn.id, 0.0))

    def response(self, flow: http.HTTPFlow) -> None:
        self.flows.pop(flow.id, None)  # the last addon's `response`: the Shadow addon has read the marks

    def error(self, flow: http.HTTPFlow) -> None:
        self.flows.pop(flow.id, None)


def _put[V](table: dict[str, V], key: str, value: V) -> None:
    if len(table) >= LIMIT and key not in table:
        del table[next(iter(table))]  # the oldest: most likely one whose end mitmproxy never reported
    table[key] = value
