"""Recorded exchanges as mitmproxy flows, built for `mitmshadow replay` at a fraction of mitmproxy's own cost.

mitmproxy type-checks every field of every message it builds (`MessageData.__post_init__`), parses each HAR URL
through urllib and sets each body through its text codecs (`io.har.request_to_flow`, ~1 ms an entry), and reads a
flow file through a tnetstring parser that walks memoryviews byte by byte (`io.tnetstring`, `Flow.from_state`,
~1.5 ms a flow): at 100,000 entries that alone is minutes. Here the same flows are built from the same fields,
checked once by type where the file could hold anything, with mitmproxy's own functions for every conversion
that has a rule (URL parsing, charsets, header fields). An entry outside the common case (an encoded body, a
charset that cannot hold the text, a field of an unexpected type) is handed to mitmproxy's own reader instead, so
each flow is the one mitmproxy would read (tests/test_recorded.py compares the two on varied captures).
"""

from __future__ import annotations

from .flowfile import MAX_PREFIX, flow_of, payloads, request_line, state_flow, states
from .harentries import har_flow
from .messages import headers, new_flow, request, response

__all__ = [
    "MAX_PREFIX",
    "flow_of",
    "har_flow",
    "headers",
    "new_flow",
    "payloads",
    "request_line",
    "request",
    "response",
    "state_flow",
    "states",
]
