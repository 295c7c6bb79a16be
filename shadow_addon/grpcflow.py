"""gRPC calls through the proxy: passed on as they come, both ways, so client-, server- and bidi-streaming calls
work; what the copy and the comparison need is kept on the side, bounded.

mitmproxy buffers a message whole before passing it on, which holds a stream's messages until its end and stalls
a bidi call that waits for an answer before sending more. A call routed by a `grpc: true` Mapping is streamed
instead (`request.stream`, `response.stream`): the request through the copy's tee (`copies.tee`, up to
`shadow_body_limit`), the answer through `Tee` (up to what comparison keeps). Once a side is complete, what was
kept becomes the flow's body, so the flow, a capture written with `-w` and the comparison see it as buffered.
"""

from __future__ import annotations

from mitmproxy import http

from .grpcwire import is_grpc


def is_call(req: http.Request) -> bool:
    """A gRPC call: HTTP/2 with a gRPC content-type (grpcio, grpc-go... never call over HTTP/1)."""
    return req.http_version == "HTTP/2.0" and is_grpc(req.headers.get("content-type"))


class Tee:
    """A `response.stream` function that passes chunks through and keeps up to `limit` bytes of them."""

    __slots__ = ("limit", "kept", "over")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.over = False

    def __call__(self, chunk: bytes) -> bytes:
        if not self.over:
            if len(self.kept) + len(chunk) > self.limit:
                self.over, self.kept = True, bytearray()  # past the limit: free what was kept
            else:
                self.kept += chunk
        return chunk

    def body(self) -> bytes | None:
        """The whole body, or None when it outgrew the limit."""
        return None if self.over else bytes(self.kept)
