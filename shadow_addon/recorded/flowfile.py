"""Flow files (`-w`) as flows: tnetstring payloads read in one pass over the bytes, the HTTP flows built from
their states without the per-field check; anything else through mitmproxy's own reader."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from mitmproxy import connection, flow, http, version
from mitmproxy.io import compat

from .messages import SERVER, headers, new_flow, request, response

MAX_PREFIX = 12  # digits of a tnetstring length, as mitmproxy's reader allows


def _items(buf: bytes, start: int, end: int) -> list[Any]:
    """The tnetstrings from `start` to `end` in `buf`, in mitmproxy's format (`mitmproxy.io.tnetstring`: typed
    netstrings with `;` for text). Strings, lists and None, the most of a flow's values, are taken here without a
    call each."""
    out: list[Any] = []
    append = out.append
    find = buf.find
    while start < end:
        colon = find(b":", start, end)
        if colon < 0 or colon - start > MAX_PREFIX:
            raise ValueError("not a tnetstring: missing or invalid length prefix")
        first = colon + 1
        last = first + int(buf[start:colon])
        if last >= end:
            raise ValueError("not a tnetstring: invalid length prefix")
        tag = buf[last]
        if tag == 0x3B:  # ;
            append(buf[first:last].decode())
        elif tag == 0x2C:  # ,
            append(buf[first:last])
        elif tag == 0x5D:  # ]
            append(_items(buf, first, last))
        elif tag == 0x7D:  # }
            append(_dict(buf, first, last))
        elif tag == 0x7E and first == last:  # ~
            append(None)
        else:
            append(_typed(tag, buf, first, last))
        start = last + 1
    return out


def _dict(buf: bytes, start: int, end: int) -> dict[Any, Any]:
    """The dict from `start` to `end` in `buf`: `_items` taken two at a time, built as it is read."""
    out: dict[Any, Any] = {}
    find = buf.find
    while start < end:
        colon = find(b":", start, end)
        if colon < 0 or colon - start > MAX_PREFIX:
            raise ValueError("not a tnetstring: missing or invalid length prefix")
        first = colon + 1
        last = first + int(buf[start:colon])
        if last >= end:
            raise ValueError("not a tnetstring: invalid length prefix")
        tag = buf[last]
        key = buf[first:last].decode() if tag == 0x3B else _typed(tag, buf, first, last)
        start = last + 1
        if start >= end:
            raise ValueError("not a tnetstring: a key without its value")
        colon = find(b":", start, end)
        if colon < 0 or colon - start > MAX_PREFIX:
            raise ValueError("not a tnetstring: missing or invalid length prefix")
        first = colon + 1
        last = first + int(buf[start:colon])
        if last >= end:
            raise ValueError("not a tnetstring: invalid length prefix")
        tag = buf[last]
        if tag == 0x3B:  # ;
            out[key] = buf[first:last].decode()
        elif tag == 0x2C:  # ,
            out[key] = buf[first:last]
        elif tag == 0x5D:  # ]
            out[key] = _items(buf, first, last)
        elif tag == 0x7E and first == last:  # ~
            out[key] = None
        else:
            out[key] = _typed(tag, buf, first, last)
        start = last + 1
    return out


def _typed(tag: int, buf: bytes, start: int, end: int) -> Any:
    if tag == 0x2C:  # ,
        return buf[start:end]
    if tag == 0x3B:  # ;
        return buf[start:end].decode()
    if tag == 0x7D:  # }
        return _dict(buf, start, end)
    if tag == 0x5D:  # ]
        return _items(buf, start, end)
    if tag == 0x23:  # #
        return int(buf[start:end])
    if tag == 0x5E:  # ^
        return float(buf[start:end])
    if tag == 0x21:  # !
        word = buf[start:end]
        if word not in (b"true", b"false"):
            raise ValueError(f"not a tnetstring: invalid boolean literal: {word!r}")
        return word == b"true"
    if tag == 0x7E and start == end:  # ~
        return None
    raise ValueError(f"unknown type tag: {tag}")


def _span(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Where the data of the tnetstring at `pos` starts and ends (its type tag is at the end)."""
    colon = buf.find(b":", pos, end)
    if colon < 0 or colon - pos > MAX_PREFIX:
        raise ValueError("not a tnetstring: missing or invalid length prefix")
    last = colon + 1 + int(buf[pos:colon])
    if last >= end:
        raise ValueError("not a tnetstring: invalid length prefix")
    return colon + 1, last


_SETUP_TIMES = frozenset((b"timestamp_tcp_setup", b"timestamp_tls_setup"))


def _flow_fields(buf: bytes, end: int) -> dict[str, Any]:
    """A flow's state without its connections (about half its values): the client's is not read, of the server's
    only the set-up times (production's latency), as `server_times`. `_span` inlined: this runs a few dozen times
    a flow."""
    out: dict[str, Any] = {}
    find = buf.find
    pos = 0
    while pos < end:
        colon = find(b":", pos, end)
        if colon < 0 or colon - pos > MAX_PREFIX:
            raise ValueError("not a tnetstring: missing or invalid length prefix")
        last = colon + 1 + int(buf[pos:colon])
        if last >= end:
            raise ValueError("not a tnetstring: invalid length prefix")
        key = buf[colon + 1 : last].decode() if buf[last] == 0x3B else None
        pos = last + 1
        colon = find(b":", pos, end)
        if colon < 0 or colon - pos > MAX_PREFIX:
            raise ValueError("not a tnetstring: missing or invalid length prefix")
        first = colon + 1
        pos = first + int(buf[pos:colon])
        if pos >= end:
            raise ValueError("not a tnetstring: invalid length prefix")
        if key == "client_conn":
            out[key] = None
        elif key == "server_conn" and buf[pos] == 0x7D:
            out["server_times"] = _setup_times(buf, first, pos)
        else:
            out[str(key)] = _typed(buf[pos], buf, first, pos)
        pos += 1
    return out


def _setup_times(buf: bytes, at: int, end: int) -> dict[str, Any]:
    """Of the server connection's state (a dict from `at` to `end`), only its set-up times: read up to the second
    of them (mitmproxy writes them second and fourth of its ~20 fields; the rest, like the client's, unread)."""
    times: dict[str, Any] = {}
    find = buf.find
    while at < end:
        colon = find(b":", at, end)
        if colon < 0 or colon - at > MAX_PREFIX:
            raise ValueError("not a tnetstring: missing or invalid length prefix")
        a = colon + 1
        b = a + int(buf[at:colon])
        if b >= end:
            raise ValueError("not a tnetstring: invalid length prefix")
        name = buf[a:b]
        at = b + 1
        colon = find(b":", at, end)
        if colon < 0 or colon - at > MAX_PREFIX:
            raise ValueError("not a tnetstring: missing or invalid length prefix")
        a = colon + 1
        b = a + int(buf[at:colon])
        if b >= end:
            raise ValueError("not a tnetstring: invalid length prefix")
        if name in _SETUP_TIMES:
            times[name.decode()] = _typed(buf[b], buf, a, b)
            if len(times) == len(_SETUP_TIMES):
                break
        at = b + 1
    return times


def _field(buf: bytes, start: int, end: int, name: bytes) -> tuple[int, int] | None:
    """Where the value of key `name` in the tnetstring dict from `start` to `end` starts and ends (tag at the end)."""
    pos = start
    while pos < end:
        a, b = _span(buf, pos, end)
        key = buf[a:b]
        a, pos = _span(buf, b + 1, end)
        if key == name:
            return a, pos
        pos += 1
    return None


def request_line(data: bytes) -> tuple[bytes, bytes] | None:
    """The method and path of an HTTP flow's request in a flow file's value (`payloads`), read without building
    the flow; None for any other flow. Raises ValueError on bad data."""
    n = len(data) - 1
    if n < 0 or data[n] != 0x7D:
        return None
    req = _field(data, 0, n, b"request")
    if req is None or data[req[1]] != 0x7D:
        return None
    method, path = _field(data, req[0], req[1], b"method"), _field(data, req[0], req[1], b"path")
    if method is None or path is None:
        return None
    return data[method[0] : method[1]], data[path[0] : path[1]]


def flow_of(data: bytes) -> flow.Flow:
    """The flow of a flow file's value (`payloads`), as `Flow.from_state` makes it after `compat.migrate_flow`:
    an HTTP flow of the current format is built here, from its request, response, error, id, metadata and the
    server's set-up times; any other flow through mitmproxy. Raises ValueError as mitmproxy's reader does."""
    n = len(data) - 1
    try:
        state = _flow_fields(data, n) if data[n] == 0x7D else None
        f = _http_flow(state) if state is not None else None
    except Exception:  # noqa: BLE001 - outside the common case: mitmproxy's reader decides, and raises its error
        f = None
    return f if f is not None else state_flow(_typed(data[n], data, 0, n))


def payloads(fo: BinaryIO) -> Iterator[bytes]:
    """The values of a flow file, one at a time, unparsed (each with its type tag at the end), as
    `tnetstring.load` reads them. Raises ValueError on bad data."""
    while True:
        prefix = b""
        c = fo.read(1)
        if not c:
            return
        while c.isdigit():
            prefix += c
            if len(prefix) > MAX_PREFIX:
                raise ValueError("not a tnetstring: absurdly large length prefix")
            c = fo.read(1)
        if c != b":" or not prefix:
            raise ValueError("not a tnetstring: missing or invalid length prefix")
        n = int(prefix)
        data = fo.read(n + 1)
        if len(data) != n + 1:
            raise ValueError("not a tnetstring: the file ends inside a flow")
        yield data


def states(fo: BinaryIO) -> Iterator[Any]:
    """The values of a flow file, one at a time, as `tnetstring.load` reads them. Raises ValueError on bad data."""
    for data in payloads(fo):
        yield _typed(data[-1], data, 0, len(data) - 1)


_TIME = (int, float)  # mitmproxy's check takes an int where a float is declared
_REQUEST = {
    "http_version": bytes,
    "content": (bytes, type(None)),
    "timestamp_start": _TIME,
    "timestamp_end": (*_TIME, type(None)),
    "host": str,
    "port": int,
    "method": bytes,
    "scheme": bytes,
    "authority": bytes,
    "path": bytes,
}
_RESPONSE = {
    "http_version": bytes,
    "content": (bytes, type(None)),
    "timestamp_start": _TIME,
    "timestamp_end": (*_TIME, type(None)),
    "status_code": int,
    "reason": bytes,
}


def _message(state: Any, types: dict[str, Any]) -> dict[str, Any] | None:
    """A message's fields from its state, when each is of the type mitmproxy's check wants; else None."""
    if not isinstance(state, dict) or state.keys() != types.keys() | {"headers", "trailers"}:
        return None
    for k, t in types.items():
        if not isinstance(state[k], t):
            return None
    fields = dict(state)
    fields["headers"] = _headers_of(state["headers"])
    if state["trailers"] is not None:
        fields["trailers"] = _headers_of(state["trailers"])
    return fields


def _headers_of(state: Any) -> http.Headers:
    """`Headers.from_state`: checked here by type, as its constructor checks, and built without it."""
    if isinstance(state, list) and all(
        isinstance(x, list) and len(x) == 2 and type(x[0]) is bytes and type(x[1]) is bytes for x in state
    ):
        return headers((x[0], x[1]) for x in state)
    return http.Headers.from_state(state)


def state_flow(state: Any) -> flow.Flow:
    """The flow `Flow.from_state` makes of a flow file's value (migrated to the current format first): an
    HTTP flow built here, any other through mitmproxy. Raises ValueError as mitmproxy's reader does."""
    if not isinstance(state, dict):
        raise ValueError(f"Invalid flow: {state=}")
    state = compat.migrate_flow(state)
    return flow.Flow.from_state(state)


def _http_flow(state: dict[str, Any]) -> http.HTTPFlow | None:
    """An HTTP flow of the current format from `_flow_fields`, or None for any other."""
    if state.get("version") != version.FLOW_FORMAT_VERSION or state.get("type") != "http":
        return None
    req_state, resp_state = state.get("request"), state.get("response")
    req = _message(req_state, _REQUEST)
    resp = _message(resp_state, _RESPONSE) if resp_state is not None else {}
    sc = state.get("server_times")
    if req is None or resp is None or not isinstance(sc, dict) or not isinstance(state.get("id"), str):
        return None
    metadata, error = state.get("metadata"), state.get("error")
    if not isinstance(metadata, dict) or state.get("websocket") is not None:
        return None
    tcp, tls = sc.get("timestamp_tcp_setup"), sc.get("timestamp_tls_setup")
    if not isinstance(tcp, (*_TIME, type(None))) or not isinstance(tls, (*_TIME, type(None))):
        return None
    server = SERVER
    if tcp is not None or tls is not None:
        server = connection.Server(address=None, timestamp_tcp_setup=tcp, timestamp_tls_setup=tls)
    f = new_flow(request(req), response(resp) if resp else None, server)
    f.id, f.metadata = state["id"], metadata
    f.is_replay = state.get("is_replay")
    if error is not None:
        f.error = flow.Error.from_state(error)
    return f
