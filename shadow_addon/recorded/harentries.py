"""HAR entries as flows: the fields `io.har.request_to_flow` reads, built without its per-field cost."""

from __future__ import annotations

import base64
import itertools
import re
from datetime import datetime
from typing import Any

from mitmproxy import http
from mitmproxy.io import har
from mitmproxy.net import encoding
from mitmproxy.net.http import status_codes, url

from .messages import charset, headers, new_flow, request, response

_VERSIONS = {"http/2.0": b"HTTP/2", "HTTP/2": b"HTTP/2", "HTTP/3": b"HTTP/3"}  # har.request_to_flow's mapping
_ids = itertools.count(1)

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
    # urllib drops an empty query or parameters (`/x?` and `/x;` are `/x` to mitmproxy): such paths go to it.
    if (
        m is None
        or len(m[2]) > 253
        or (m[3] is not None and int(m[3]) > 65535)
        or (m[4] is not None and (m[4].endswith("?") or ";" in m[4]))
    ):
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
    f.id = new_id()  # mitmproxy draws a random id; any id unique in this process does
    return f


def new_id() -> str:
    """A HAR entry's flow id: unique in this process, each time an entry is read."""
    return f"har-{next(_ids)}"


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
        body = encoding.encode(text, charset(_get(fields, names, b"content-type")))
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
            answer = encoding.encode(raw, charset(_get(resp_fields, resp_names, b"content-type")))
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
