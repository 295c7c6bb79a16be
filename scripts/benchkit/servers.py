"""The upstream servers, run as a child (`python -m benchkit.servers`): lean asyncio HTTP/1.1 keep-alive servers
for production and every shadow, each counting what it received, controlled by one JSON line per command.

Hand-written rather than h11: they share a CPU with the load generator and must cost far less than mitmdump.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from benchkit import answers
from benchkit.procs import HOST

SLOW_DELAY = 0.2  # s: the slow shadows' answer delay
PUMP_BLOCKS = 8  # blocks an endless answer writes per turn of the loop, so every connection gets its turn
STREAM_CAP = 64 << 30  # bytes: an endless answer stops here (bounded; the copy's timeout ends it long before)
REBIND_ATTEMPTS = 50  # x 0.1 s: leaving "down", re-binding the same port may briefly fail


@dataclass(slots=True)
class ServerStats:
    requests: int = 0  # complete requests received
    marked: int = 0  # ... of which carried the addon's copy mark
    answered: int = 0  # answers begun
    connections: int = 0  # accepted in total
    open: int = 0  # open now


@dataclass(slots=True)
class Behaviour:
    """How a server answers. Fixed per server, except the switchable one, which changes its instance at runtime."""

    delay: float = 0.0  # seconds before answering
    blackhole: bool = False  # read requests, never answer
    response: bytes = b""  # the complete answer
    responses: tuple[bytes, ...] = ()  # instead of `response`: these in turn, one per request
    endless: answers.Endless | None = None  # instead of `response`: an answer that never ends


def _ok(delay: float = 0.0) -> Callable[[int], Behaviour]:
    return lambda _mib: Behaviour(delay, response=answers.response(answers.BODY))


def _endless(make: Callable[[], answers.Endless]) -> Callable[[int], Behaviour]:
    return lambda _mib: Behaviour(endless=make())


# Every server by name -> its behaviour (built only when the server is asked for: the bombs take seconds), given
# the bombs' size in MiB.
SERVERS: dict[str, Callable[[int], Behaviour]] = {
    "prod": _ok(),
    "healthy": _ok(),
    "slow": _ok(SLOW_DELAY),
    "veryslow": _ok(2.0),
    "blackhole": lambda _mib: Behaviour(blackhole=True),
    "flood": _endless(answers.flood),
    "hints": _endless(answers.hints),
    "stream": _endless(answers.stream),
    "stream10": _endless(answers.stream10),
    "bomb": lambda mib: Behaviour(response=answers.bomb_br(mib)),
    "bombgz": lambda mib: Behaviour(response=answers.bomb_gzip(mib)),
    # The comparison's hard cases (production's side, then the shadow's).
    "prodlist": lambda _mib: Behaviour(response=answers.list_answer("a")),
    "listsame": lambda _mib: Behaviour(response=answers.list_answer("a")),
    "listdiff": lambda _mib: Behaviour(response=answers.list_answer("b")),
    "bigjson": lambda _mib: Behaviour(response=answers.big_json()),
    "gzjson": lambda _mib: Behaviour(response=answers.gzip_json()),
    "proddeep": lambda _mib: Behaviour(response=answers.deep_answer()),
    "deepsame": lambda _mib: Behaviour(response=answers.deep_answer()),
    "proddeepts": lambda _mib: Behaviour(responses=(answers.deep_answer(1, 1), answers.deep_answer(1, 2))),
    "deepleaf": lambda _mib: Behaviour(response=answers.deep_answer(2, 3)),
    "wide": lambda _mib: Behaviour(response=answers.wide_answer("k")),
}
# The soak's switchable shadow ("flap", one port): mode -> (delay, black hole); None: down (port closed).
SWITCH_MODES: dict[str, tuple[float, bool] | None] = {
    "healthy": (0.0, False),
    "slow": (SLOW_DELAY, False),
    "blackhole": (0.0, True),
    "down": None,
}


class UpstreamProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive server: Content-Length bodies only (the proxy and the copies send GETs)."""

    def __init__(self, stats: ServerStats, behaviour: Behaviour, live: set[UpstreamProtocol] | None = None) -> None:
        self.stats, self.behaviour, self.live = stats, behaviour, live
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.endless: answers.Endless | None = None  # the endless answer under way
        self.paused = self.scheduled = False
        self.sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.stats.connections += 1
        self.stats.open += 1
        if self.live is not None:
            self.live.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.open -= 1
        self.transport = None
        if self.live is not None:
            self.live.discard(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.endless is not None:
            return  # an endless answer is under way: whatever the client sends now is ignored
        buf = self.buf
        buf += data
        while self.transport is not None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self.transport.close()
                return
            head = bytes(buf[:end]).lower()
            length = 0
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                try:
                    length = int(head[i + 17 : j if j >= 0 else len(head)].strip())
                except ValueError:
                    self.transport.close()
                    return
            elif b"\r\ntransfer-encoding:" in head:
                self.transport.close()  # chunked request bodies are not supported (the benchmark sends none)
                return
            total = end + 4 + length
            if len(buf) < total:
                return
            del buf[:total]
            self.stats.requests += 1
            if answers.MARK in head:
                self.stats.marked += 1
            how = self.behaviour
            if how.blackhole:
                continue
            if how.endless is not None:
                self._begin_endless(how.endless)
                return
            if how.delay:
                asyncio.get_running_loop().call_later(how.delay, self._answer)
            else:
                self._answer()

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            how = self.behaviour
            n = self.stats.answered
            self.transport.write(how.responses[n % len(how.responses)] if how.responses else how.response)
            self.stats.answered += 1

    def _begin_endless(self, e: answers.Endless) -> None:
        assert self.transport is not None
        self.endless = e
        self.stats.answered += 1
        self.buf.clear()
        if e.head:
            self.transport.write(e.head)
        self._pump()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._schedule()

    def _schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        """Write blocks until the socket and the transport's buffer are full (resume_writing goes on from there),
        a few per turn of the loop."""
        self.scheduled = False
        e = self.endless
        for _ in range(PUMP_BLOCKS):
            t = self.transport
            if e is None or t is None or t.is_closing() or self.paused or self.sent >= STREAM_CAP:
                return
            t.write(e.block)
            self.sent += len(e.block)
        self._schedule()


class SwitchServer:
    """One address whose behaviour changes at runtime: the soak's flapping shadow (modes: SWITCH_MODES).

    Leaving "blackhole" closes the connections it held, as a restarting service would; "down" closes the listening
    socket (new connections are refused) and every open connection; leaving "down" binds the same port again
    (SO_REUSEADDR: the closed connections' TIME_WAIT does not block it).
    """

    def __init__(self, stats: ServerStats) -> None:
        self.stats = stats
        self.behaviour = Behaviour(response=answers.response(answers.BODY))
        self.mode = "healthy"
        self.live: set[UpstreamProtocol] = set()
        self.server: asyncio.Server | None = None
        self.port = 0  # 0 until the first bind, then always the same

    def _protocol(self) -> UpstreamProtocol:
        return UpstreamProtocol(self.stats, self.behaviour, self.live)

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._protocol, HOST, self.port, backlog=1024, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    def close_connections(self) -> int:
        live = list(self.live)
        for proto in live:
            proto.close()
        return len(live)

    async def set_mode(self, mode: str) -> dict[str, Any]:
        if mode not in SWITCH_MODES:
            return {"error": f"unknown mode {mode!r}"}
        previous, closed, error = self.mode, 0, None
        if previous == "blackhole" or mode == "down":
            closed = self.close_connections()
        how = SWITCH_MODES[mode]
        if how is None:
            if self.server is not None:
                self.server.close()  # closes the listening socket at once; connections were closed above
                self.server = None
        else:
            self.behaviour.delay, self.behaviour.blackhole = how
            for _ in range(REBIND_ATTEMPTS if self.server is None else 0):
                try:
                    await self.listen()
                    error = None
                    break
                except OSError as e:
                    error = f"bind {HOST}:{self.port}: {e}"
                    await asyncio.sleep(0.1)
        self.mode = mode
        return {
            "mode": mode,
            "previous": previous,
            "closed": closed,
            "listening": self.server is not None,
            "port": self.port,
            "error": error,
        }


async def serve(names: list[str], bomb_mib: int) -> None:
    """Start the named servers ("flap": the switchable one), print their ports, answer control lines on stdin until
    EOF: "stats" (every server's counts), "mode NAME" (switch the flapping shadow), "quit"; each is answered with
    one JSON line."""
    loop = asyncio.get_running_loop()
    stats: dict[str, ServerStats] = {}
    servers: list[asyncio.Server] = []
    ports: dict[str, int] = {}
    hows = {name: SERVERS[name](bomb_mib) for name in names if name != "flap"}
    for name, how in hows.items():
        st = stats[name] = ServerStats()

        def factory(st: ServerStats = st, how: Behaviour = how) -> UpstreamProtocol:
            return UpstreamProtocol(st, how)

        srv = await loop.create_server(factory, HOST, 0, backlog=1024)
        servers.append(srv)
        ports[name] = srv.sockets[0].getsockname()[1]
    switch = SwitchServer(stats.setdefault("flap", ServerStats())) if "flap" in names else None
    if switch is not None:
        await switch.listen()
        ports["flap"] = switch.port
    sizes = {name: len(how.response or how.responses[0]) for name, how in hows.items() if how.response or how.responses}
    sys.stdout.write(json.dumps({"ports": ports, "answer_bytes": sizes}) + "\n")
    sys.stdout.flush()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    for _ in range(10_000_000):  # bounded; EOF (the parent closed stdin or went away) ends it
        line = await reader.readline()
        if not line:
            break
        command, _, arg = line.strip().partition(b" ")
        if command == b"quit":
            break
        if command == b"stats":
            answer: dict[str, Any] = {k: asdict(v) for k, v in stats.items()}
        elif command == b"mode" and switch is not None:
            answer = await switch.set_mode(arg.decode(errors="replace").strip())
        else:
            answer = {"error": f"unknown command {line.strip()[:40]!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    if switch is not None:
        switch.close_connections()
    for srv in [*servers, *([switch.server] if switch and switch.server else [])]:
        srv.close()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchkit.servers")
    p.add_argument("names", help="comma-separated servers: " + ", ".join([*SERVERS, "flap"]))
    p.add_argument("--bomb-mib", type=int, default=answers.BOMB_MIB)
    args = p.parse_args()
    try:
        asyncio.run(serve(args.names.split(","), args.bomb_mib))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
