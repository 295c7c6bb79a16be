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

import base64
import functools
import itertools
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, BinaryIO

from mitmproxy import connection, flow, http, version
from mitmproxy.io import compat, har
from mitmproxy.net import encoding
from mitmproxy.net.http import status_codes, url
from mitmproxy.net.http.headers import infer_content_encoding

MAX_PREFIX = 12  # digits of a tnetstring length, as mitmproxy's reader allows
_VERSIONS = {"http/2.0": b"HTTP/2", "HTTP/2": b"HTTP/2", "HTTP/3": b"HTTP/3"}  # har.request_to_flow's mapping
_ids = itertools.count(1)

# One client and one server connection for every flow built here: replay reads neither but the server's set-up
# times (production's latency), which a HAR does not record; a flow file's are given per flow.
_CLIENT = connection.Client(peername=("127.0.0.1", 0), sockname=("127.0.0.1", 0), timestamp_start=0.0)
_SERVER = connection.Server(address=None)


# ---------------------------------------------------------------- messages without the per-field type check


def request(data: dict[str, Any]) -> http.Request:
    """A Request holding `data` (RequestData's fields, already of their types)."""
    d = http.RequestData.__new__(http.RequestData)
    d.__dict__.update(data)
    r = http.Request.__new__(http.Request)
    r.data = d
    return r


def response(data: dict[str, Any]) -> http.Response:
    d = http.ResponseData.__new__(http.ResponseData)
    d.__dict__.update(data)
    r = http.Response.__new__(http.Response)
    r.data = d
    return r


def headers(fields: Iterable[tuple[bytes, bytes]]) -> http.Headers:
    """Headers of fields already bytes (http.Headers checks each)."""
    h = http.Headers.__new__(http.Headers)
    h.fields = tuple(fields)
    return h


# What HTTPFlow.__init__ sets, but the id (a random UUID each, a few microseconds) and the metadata.
_FLOW = vars(http.HTTPFlow(_CLIENT, _SERVER))


def new_flow(req: http.Request, resp: http.Response | None, server: connection.Server = _SERVER) -> http.HTTPFlow:
    f = http.HTTPFlow.__new__(http.HTTPFlow)
    f.__dict__.update(_FLOW)
    f.server_conn, f.metadata = server, {}
    f.request, f.response = req, resp
    return f


@functools.lru_cache(maxsize=256)
def _charset(content_type: str) -> str:
    return infer_content_encoding(content_type)


# ---------------------------------------------------------------- HAR


Fields = list[tuple[bytes, bytes]]
# A URL urllib and mitmproxy's checks take as they are: http(s), a lower-case DNS name or IPv4 address, a port
# without a leading zero, printable ASCII after it without a fragment. Any other goes through `url.parse`.
_PLAIN_URL = re.compile(
    r"(https?)://((?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)"
    r"(?::([1-9][0-9]{0,4}))?([/?][!-\"$-~]*)?"
)


def _url(text: str) -> tuple[bytes, bytes, int, bytes]:
    """`url.parse`: scheme, host, port and the path with its query."""
    m = _PLAIN_URL.fullmatch(text)
    if m is None or len(m[2]) > 253 or (m[3] is not None and int(m[3]) > 65535):
        return url.parse(text)
    scheme, host, port, path = m.groups()
    path = path or "/"
    return (
        scheme.encode(),
        host.encode(),
        int(port) if port else (443 if scheme == "https" else 80),
        (path if path[0] == "/" else "/" + path).encode(),
    )


def _fields(headers: list[Any]) -> Fields:
    """har.fix_headers: {"name", "value"} objects, or [name, value] pairs."""
    return [
        (h["name"].encode(), h["value"].encode()) if isinstance(h, dict) else (h[0].encode(), h[1].encode())
        for h in headers
    ]


# The header helpers below take the fields' names lower-cased once (`_names`): a HAR entry's headers are looked
# up a few times each.


def _names(fields: Fields) -> list[bytes]:
    return [k.lower() for k, _ in fields]


def _get(fields: Fields, names: list[bytes], name: bytes) -> str:
    """Headers.get: every value of the field, joined."""
    if name not in names:
        return ""
    return ", ".join(v.decode("utf-8", "surrogateescape") for n, (_, v) in zip(names, fields, strict=True) if n == name)


def _set(fields: Fields, names: list[bytes], name: bytes, value: bytes) -> tuple[Fields, list[bytes]]:
    """Headers.__setitem__ (MultiDict.set_all with one value): the first field of that name takes the value in
    place, the others go; appended when there is none. Returns the fields and their names."""
    n = names.count(name)
    if n == 0:
        return [*fields, (name, value)], [*names, name]
    i = names.index(name)
    out = list(fields)
    out[i] = (out[i][0], value)
    if n == 1:
        return out, names
    keep = [j == i or names[j] != name for j in range(len(out))]
    return [f for f, k in zip(out, keep, strict=True) if k], [m for m, k in zip(names, keep, strict=True) if k]


def _with_length(fields: Fields, names: list[bytes], body: bytes) -> Fields:
    """What Message.set_content does to the head of a message whose body is set (and `decode` does again)."""
    if b"transfer-encoding" in names:
        return fields
    return _set(fields, names, b"content-length", b"%d" % len(body))[0]


def har_flow(entry: dict[str, Any]) -> http.HTTPFlow:
    """The flow `har.request_to_flow` makes of a HAR entry. Raises as it does on a malformed entry."""
    try:
        f = _har_flow(entry)
    except Exception:  # noqa: BLE001 - outside the common case: mitmproxy's reader decides, and raises its error
        f = None
    if f is None:
        f = har.request_to_flow(entry)
    f.id = f"har-{next(_ids)}"  # mitmproxy draws a random id; any id unique in this process does
    return f


def _har_flow(entry: dict[str, Any]) -> http.HTTPFlow | None:
    req_json, resp_json = entry["request"], entry["response"]
    started = datetime.fromisoformat(entry["startedDateTime"].replace("Z", "+00:00")).timestamp()
    ended = started + entry["time"] / 1000.0
    fields = _fields(req_json["headers"])
    resp_fields = _fields(resp_json["headers"])
    names, resp_names = _names(fields), _names(resp_fields)
    if b"content-encoding" in names or b"content-encoding" in resp_names:
        return None  # encoded then decoded by request_to_flow: its codecs decide
    text = req_json["postData"]["text"] if "postData" in req_json else ""
    method, status = req_json["method"], resp_json["status"]
    if not isinstance(text, str) or not isinstance(method, str) or type(status) is not int:
        return None
    try:
        body = encoding.encode(text, _charset(_get(fields, names, b"content-type")))
    except ValueError:
        return None  # Message.set_text falls back to UTF-8 and rewrites the content-type
    scheme, host_idna, port, path = _url(req_json["url"])
    host = host_idna.decode("idna") if b"xn--" in host_idna else host_idna.decode()
    if b"host" in names:  # Request.url's setter (`_update_host_and_authority`)
        hostport = url.hostport(scheme.decode(), host, port)
        fields, names = _set(fields, names, b"host", hostport.encode("utf-8", "surrogateescape"))
    if not isinstance(body, bytes):
        return None
    fields = _with_length(fields, names, body)
    content = resp_json["content"]
    coding = content.get("encoding", None)
    raw = content.get("text", "")
    answer: str | bytes
    if coding == "base64":
        answer = base64.b64decode(raw)
    elif coding is None and isinstance(raw, str):
        try:
            answer = encoding.encode(raw, _charset(_get(resp_fields, resp_names, b"content-type")))
        except ValueError:
            answer = raw.encode("utf-8", errors="surrogateescape")
    else:
        return None
    if not isinstance(answer, bytes):
        return None
    if answer:
        resp_fields = _with_length(resp_fields, resp_names, answer)  # Response.decode sets the body again
    r = request(
        {
            "http_version": _VERSIONS.get(req_json["httpVersion"], b"HTTP/1.1"),
            "headers": headers(fields),
            "content": body,
            "trailers": None,
            "timestamp_start": started,
            "timestamp_end": ended,
            "host": host,
            "port": port,
            "method": method.encode("utf-8", "surrogateescape"),
            "scheme": scheme,
            "authority": b"",
            "path": path,
        }
    )
    a = response(
        {
            "http_version": _VERSIONS.get(resp_json["httpVersion"], b"HTTP/1.1"),
            "headers": headers(resp_fields),
            "content": answer,
            "trailers": None,
            "timestamp_start": started,
            "timestamp_end": ended,
            "status_code": status,
            "reason": status_codes.RESPONSES.get(status, "").encode(),
        }
    )
    return new_flow(r, a)


# ---------------------------------------------------------------- flow files


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
    """Of the server connection's state (a dict from `at` to `end`), only its set-up times."""
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
        at = b + 1
    return times


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
    server = _SERVER
    if tcp is not None or tls is not None:
        server = connection.Server(address=None, timestamp_tcp_setup=tcp, timestamp_tls_setup=tls)
    f = new_flow(request(req), response(resp) if resp else None, server)
    f.id, f.metadata = state["id"], metadata
    f.is_replay = state.get("is_replay")
    if error is not None:
        f.error = flow.Error.from_state(error)
    return f
