"""A shadow exchange as a mitmproxy flow, so mitmweb and the console show it beside the production flow."""

from __future__ import annotations

import time

from mitmproxy import connection, flow, http

from .sender import Copy, Outcome, sent_fields

MARK = ":ghost:"


def shadow_flow(c: Copy, out: Outcome, production_id: str) -> http.HTTPFlow:
    """Build a finished (not live) flow holding the copy as sent and the shadow's response or error."""
    now = time.time()
    start = out.timestamp_start or now
    a = c.address
    client = connection.Client(peername=("shadow", 0), sockname=("shadow", 0), timestamp_start=start)
    server = connection.Server(address=(a.host, a.port), tls=a.scheme == "https")
    f = http.HTTPFlow(client, server)
    f.request = http.Request(
        a.host,
        a.port,
        c.method.encode(),
        a.scheme.encode(),
        b"",
        c.path.encode("utf-8", "surrogateescape"),
        b"HTTP/1.1",
        tuple(sent_fields(c)),
        c.body,
        None,
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
            None,
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
