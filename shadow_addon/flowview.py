"""A shadow exchange as a mitmproxy flow, so mitmweb and the console show it beside the production flow."""

from __future__ import annotations

import logging
import time
from typing import Any

from mitmproxy import connection, flow, http

from .compare import Comparison
from .h2fields import request_headers
from .sender import Copy, Outcome, sent_fields

logger = logging.getLogger("shadow")

MARK = ":ghost:"


def shadow_flow(c: Copy, out: Outcome, production_id: str) -> http.HTTPFlow:
    """Build a finished (not live) flow holding the copy as sent and the shadow's response or error."""
    now = time.time()
    start = out.timestamp_start or now
    a = c.address
    client = connection.Client(peername=("shadow", 0), sockname=("shadow", 0), timestamp_start=start)
    server = connection.Server(address=(a.host, a.port), tls=a.scheme == "https")
    f = http.HTTPFlow(client, server)
    if c.http2:  # as sent over HTTP/2: mitmweb shows it as the gRPC call it is, trailers included
        fields = tuple((k, v) for k, v in request_headers(c, a.scheme) if not k.startswith(b":"))
        version, authority = b"HTTP/2.0", c.host.encode("utf-8", "surrogateescape")
    else:
        fields, version, authority = tuple(sent_fields(c)), b"HTTP/1.1", b""
    f.request = http.Request(
        a.host,
        a.port,
        c.method.encode(),
        a.scheme.encode(),
        authority,
        c.path.encode("utf-8", "surrogateescape"),
        version,
        fields,
        c.body,
        http.Headers(c.trailers) if c.trailers else None,
        start,
        start,
    )
    if out.status is not None:
        f.response = http.Response(
            out.http_version.encode(),
            out.status,
            b"",
            tuple(out.headers),
            out.body,
            http.Headers(out.trailers) if out.trailers else None,
            start + out.seconds,
            start + out.seconds,
        )
    else:
        f.error = flow.Error(f"shadow {out.reason}: {out.error}", start + out.seconds)
    f.marked = MARK
    outcome = str(out.status) if out.status is not None else out.reason
    f.comment = f"shadow of {production_id} -> {c.service} ({outcome})"
    f.metadata["shadow_of"] = production_id
    f.metadata["shadow_mapping"] = c.mapping
    return f


def show(view: Any, c: Copy, out: Outcome, result: Comparison | None) -> None:
    """One shadow exchange: a flow in mitmweb and the console (`view`), else one log line (shadow_flows=on)."""
    if view is not None:
        f = shadow_flow(c, out, str(c.context))
        if result is not None and result.result != "skipped":
            f.comment += f" {result.result}" + (": " + "; ".join(result.diffs[:5]) if result.diffs else "")
        view.add([f])
    else:
        outcome = out.status if out.status is not None else out.reason
        verdict = f" {result.result}" if result is not None else ""
        ms = out.seconds * 1e3
        logger.info("shadow %s %s -> %s: %s%s (%.1f ms)", c.method, c.path, c.address, outcome, verdict, ms)
