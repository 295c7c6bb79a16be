"""gRPC calls through the proxy: passed on as they come, both ways, so client-, server- and bidi-streaming calls
work; what the copy and the comparison need is kept on the side, bounded.

mitmproxy buffers a message whole before passing it on, which holds a stream's messages until its end and stalls
a bidi call that waits for an answer before sending more. A call routed by a `grpc: true` Mapping is streamed
instead (`request.stream`, `response.stream`): the request through the copy's tee (`budget.Tee`, up to
`shadow_body_limit`), the answer through another (up to what comparison keeps), both held against the memory
budget. Once a side is complete, what was kept becomes the flow's body, so the flow, a capture written with `-w`
and the comparison see it as buffered.
"""

from __future__ import annotations

from mitmproxy import http

from .grpcwire import is_grpc


def is_call(req: http.Request) -> bool:
    """A gRPC call: HTTP/2 with a gRPC content-type (grpcio, grpc-go... never call over HTTP/1)."""
    return req.http_version == "HTTP/2.0" and is_grpc(req.headers.get("content-type"))
