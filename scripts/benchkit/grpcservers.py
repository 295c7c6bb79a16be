"""The gRPC upstreams, run as a child (`python -m benchkit.grpcservers NAMES`): one grpcio (asyncio) server per
name on loopback, answering the unary method GRPC_METHOD with its request, counting what it received; controlled
as benchkit.servers is, one JSON line each way on stdin/stdout ("stats", "quit")."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

from benchkit.procs import HOST

GRPC_SERVICE = "bench.Echo"
GRPC_METHOD = f"/{GRPC_SERVICE}/Unary"
GRPC_MESSAGE = 1024  # bytes of every request message (the answer echoes it)
MARKER = "x-mitmproxy-shadow"  # the addon's copy mark (shadow_addon/copies.py)


@dataclass(slots=True)
class CallStats:
    requests: int = 0  # calls received
    marked: int = 0  # ... of which carried the addon's copy mark
    answered: int = 0  # calls answered


async def serve(names: list[str]) -> None:
    import grpc

    stats: dict[str, CallStats] = {}
    ports: dict[str, int] = {}
    servers = []
    for name in names:
        st = stats[name] = CallStats()

        def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes], st: CallStats = st) -> bytes:
            st.requests += 1
            if any(k == MARKER for k, _ in context.invocation_metadata() or ()):
                st.marked += 1
            st.answered += 1
            return request

        handler = grpc.method_handlers_generic_handler(
            GRPC_SERVICE, {"Unary": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        ports[name] = server.add_insecure_port(f"{HOST}:0")
        await server.start()
        servers.append(server)
    sys.stdout.write(json.dumps({"ports": ports}) + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        for _ in range(10_000_000):  # bounded; EOF (the parent closed stdin or went away) ends it
            command = (await reader.readline()).strip()
            if not command or command == b"quit":
                break
            answer: dict[str, Any] = {k: asdict(v) for k, v in stats.items()} if command == b"stats" else {}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        for server in servers:
            await server.stop(0)


def main() -> None:
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    asyncio.run(serve(sys.argv[1].split(",")))


if __name__ == "__main__":
    main()
