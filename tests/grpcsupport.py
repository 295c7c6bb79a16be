"""Real gRPC parts for end-to-end tests: grpcio servers on loopback with generic handlers over raw bytes (no
protoc), recording every call, and a grpcio client helper."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc

SERVICE = "shadowtest.Echo"
UNARY = f"/{SERVICE}/Unary"
STREAM = f"/{SERVICE}/Stream"
CHAT = f"/{SERVICE}/Chat"  # bidi: each message answered at once
COLLECT = f"/{SERVICE}/Collect"  # client streaming: the messages joined
STREAM_COUNT = 3


@dataclass
class Call:
    method: str
    request: bytes
    metadata: dict[str, str] = field(default_factory=dict)


class GrpcService:
    """A grpcio server on 127.0.0.1 answering `name:` + the request (Unary), or STREAM_COUNT messages (Stream).

    `delay`: seconds before each answer; `fail`: the status code every call ends with (the answer is then
    HTTP 200 with that grpc-status); `tls`: (cert.pem, key.pem) to serve over TLS (ALPN h2)."""

    def __init__(
        self,
        name: str,
        delay: float = 0.0,
        fail: grpc.StatusCode | None = None,
        tls: tuple[Path, Path] | None = None,
        service: str = SERVICE,
        reply: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.name = name
        self.reply = reply  # the Unary answer to a request (default: `name:` + the request)
        self.delay = delay
        self.fail = fail
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        handler = grpc.method_handlers_generic_handler(
            service,
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self._unary),
                "Stream": grpc.unary_stream_rpc_method_handler(self._stream),
                "Chat": grpc.stream_stream_rpc_method_handler(self._chat),
                "Collect": grpc.stream_unary_rpc_method_handler(self._collect),
            },
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(8))
        self.server.add_generic_rpc_handlers((handler,))
        if tls is not None:
            cert, key = tls
            creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
            self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        else:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _record(self, method: str, request: bytes, context: grpc.ServicerContext) -> None:
        md = {k: v if isinstance(v, str) else v.decode("latin-1") for k, v in context.invocation_metadata()}
        with self._lock:
            self.calls.append(Call(method, request, md))

    def _answer(self, context: grpc.ServicerContext) -> None:
        if self.delay:
            time.sleep(self.delay)
        if self.fail is not None:
            context.abort(self.fail, f"{self.name} fails")

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._record("Unary", request, context)
        self._answer(context)
        context.set_trailing_metadata((("x-served-by", self.name),))
        return self.reply(request) if self.reply is not None else self.name.encode() + b":" + request

    def _stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._record("Stream", request, context)
        self._answer(context)
        for i in range(STREAM_COUNT):
            yield b"%s:%d:%s" % (self.name.encode(), i, request)

    def _chat(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        seen = []
        for r in requests:
            seen.append(r)
            yield self.name.encode() + b":" + r
        self._record("Chat", b"|".join(seen), context)

    def _collect(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        joined = b"|".join(requests)
        self._record("Collect", joined, context)
        return self.name.encode() + b":" + joined

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.calls)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(0).wait(5)


def channel(port: int, ca: Path | None = None) -> grpc.Channel:
    """A client channel to the proxy: cleartext HTTP/2 with prior knowledge, or TLS trusting `ca` (mitmproxy's)."""
    if ca is None:
        return grpc.insecure_channel(f"127.0.0.1:{port}")
    creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    return grpc.secure_channel(f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", "localhost")])


def unary(ch: grpc.Channel, body: bytes, timeout: float = 10.0, method: str = UNARY) -> tuple[bytes, grpc.Call]:
    return ch.unary_unary(method).with_call(body, timeout=timeout)


def stream(ch: grpc.Channel, body: bytes, timeout: float = 10.0) -> list[bytes]:
    return list(ch.unary_stream(STREAM)(body, timeout=timeout))
