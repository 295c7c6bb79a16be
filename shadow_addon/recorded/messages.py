"""Messages and flows without mitmproxy's per-field type check (`MessageData.__post_init__`): built from fields
already of their types, as the readers here have them."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from mitmproxy import connection, http
from mitmproxy.net.http.headers import infer_content_encoding

# One client and one server connection for every flow built here: replay reads neither but the server's set-up
# times (production's latency), which a HAR does not record; a flow file's are given per flow.
CLIENT = connection.Client(peername=("127.0.0.1", 0), sockname=("127.0.0.1", 0), timestamp_start=0.0)
SERVER = connection.Server(address=None)


def _built[M: http.Message](cls: type[M], data_cls: type[http.MessageData], data: dict[str, Any]) -> M:
    """A message of `cls` holding `data` (its `data_cls` fields, already of their types), no check run."""
    d = data_cls.__new__(data_cls)
    d.__dict__.update(data)
    m = cls.__new__(cls)
    m.data = d
    return m


def request(data: dict[str, Any]) -> http.Request:
    """A Request holding `data` (RequestData's fields, already of their types)."""
    return _built(http.Request, http.RequestData, data)


def response(data: dict[str, Any]) -> http.Response:
    """A Response holding `data` (ResponseData's fields, already of their types)."""
    return _built(http.Response, http.ResponseData, data)


def headers(fields: Iterable[tuple[bytes, bytes]]) -> http.Headers:
    """Headers of fields already bytes (http.Headers checks each)."""
    h = http.Headers.__new__(http.Headers)
    h.fields = tuple(fields)
    return h


# What HTTPFlow.__init__ sets, but the id (a random UUID each, a few microseconds) and the metadata.
_FLOW = vars(http.HTTPFlow(CLIENT, SERVER))


def new_flow(req: http.Request, resp: http.Response | None, server: connection.Server = SERVER) -> http.HTTPFlow:
    f = http.HTTPFlow.__new__(http.HTTPFlow)
    f.__dict__.update(_FLOW)
    f.server_conn, f.metadata = server, {}
    f.request, f.response = req, resp
    return f


@functools.lru_cache(maxsize=256)
def charset(content_type: str) -> str:
    return infer_content_encoding(content_type)
