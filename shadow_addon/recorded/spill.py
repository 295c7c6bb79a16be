"""A capture's flows kept on disk as they were read, for a second reading that does not parse the capture again.

`mitmshadow replay` reads its capture twice (noise is learned from all of it before the first comparison). The
first reading writes each flow here, as `recorded` built it and before anything changes it, as a marshalled
record of its fields; the second reads the records back and builds the same flows from them: a few microseconds
a flow instead of parsing a HAR entry (~50 us) or a flow file's tnetstrings (~120 us) again. The records stay on
disk, in an unnamed file (removed when closed, or when the process ends) beside the capture, on the disk that holds
it (a temporary directory may be memory: tmpfs), else in the temporary directory: memory does not grow with the
capture. They take about as much room as the capture.

Only flows `recorded` built itself are kept (its shared client connection says so); a capture with any other
(mitmproxy's reader built it: an entry or a flow outside the common case), or a value marshal cannot write,
gives up the spill, and the second reading reads the capture again, as without it.
"""

from __future__ import annotations

import marshal
import os
import struct
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from mitmproxy import connection, flow, http

from .harentries import new_id
from .messages import CLIENT, SERVER, headers, new_flow, request, response

_LENGTH = struct.Struct("<I")
MAX_RECORD = 2**32 - 1  # a record's length is written in 4 bytes: a flow past it gives up the spill


def record_of(f: flow.Flow) -> tuple[Any, ...] | None:
    """The fields of a flow `recorded` built (`new_flow` and what its readers set after it), or None for any
    other flow."""
    if type(f) is not http.HTTPFlow or f.client_conn is not CLIENT:
        return None
    s = f.server_conn
    server = None if s is SERVER else (s.timestamp_tcp_setup, s.timestamp_tls_setup)
    resp = None if f.response is None else _message(f.response.data)
    error = None if f.error is None else f.error.get_state()
    return (f.id, f.metadata, f.is_replay, error, server, _message(f.request.data), resp)


def _message(data: Any) -> dict[str, Any]:
    d = dict(vars(data))
    d["headers"] = d["headers"].fields
    if d["trailers"] is not None:
        d["trailers"] = d["trailers"].fields
    return d


def flow_from(record: tuple[Any, ...], fresh_id: bool = False) -> http.HTTPFlow:
    """The flow `record_of` took the fields of; `fresh_id`: with a new id, as a HAR entry read again gets."""
    fid, metadata, is_replay, error, server, req, resp = record
    srv = SERVER
    if server is not None:
        srv = connection.Server(address=None, timestamp_tcp_setup=server[0], timestamp_tls_setup=server[1])
    f = new_flow(request(_fields(req)), None if resp is None else response(_fields(resp)), srv)
    f.id, f.metadata, f.is_replay = new_id() if fresh_id else fid, metadata, is_replay
    if error is not None:
        f.error = flow.Error.from_state(error)
    return f


def _fields(d: dict[str, Any]) -> dict[str, Any]:
    d["headers"] = headers(d["headers"])
    if d["trailers"] is not None:
        d["trailers"] = headers(d["trailers"])
    return d


class Spill:
    """The flows of one reading of a capture, in order (`add`), read back once it is complete (`flows`).
    `fresh_ids`: the flows read back get new ids (a HAR's entries get a new id each time they are read);
    `beside`: the capture's path, whose directory holds the file if it can."""

    def __init__(self, fresh_ids: bool = False, beside: str | None = None) -> None:
        self.fresh_ids = fresh_ids
        self.count = 0
        self._file: IO[bytes] | None = None
        for where in ([os.path.dirname(os.path.abspath(beside))] if beside else []) + [None]:
            try:
                self._file = tempfile.TemporaryFile(prefix=".shadow-replay-", dir=where)
                return
            except OSError:
                continue  # not writable: the temporary directory, else the capture is read again

    @property
    def usable(self) -> bool:
        """Whether every flow added so far is kept."""
        return self._file is not None

    def add(self, f: flow.Flow) -> bool:
        """Keep `f` as it is now; False (and the spill given up) when it cannot be."""
        if self._file is None:
            return False
        record = record_of(f)
        try:
            data = marshal.dumps(record) if record is not None else None
            if data is None or len(data) > MAX_RECORD:
                self.close()
                return False
            self._file.write(_LENGTH.pack(len(data)))
            self._file.write(data)
        except (ValueError, OSError):  # a value marshal cannot write (in a flow file's metadata), a full disk
            self.close()
            return False
        self.count += 1
        return True

    def flows(self) -> Iterator[http.HTTPFlow]:
        """The flows kept, in the order they were added. Raises OSError as reading a file does."""
        fo = self._file
        if fo is None:
            return
        fo.flush()
        fo.seek(0)
        read, size = fo.read, _LENGTH.size
        for _ in range(self.count):
            head = read(size)
            if len(head) != size:
                raise OSError("replay: the flows kept on disk end early")
            (n,) = _LENGTH.unpack(head)
            data = read(n)
            if len(data) != n:
                raise OSError("replay: the flows kept on disk end early")
            yield flow_from(marshal.loads(data), self.fresh_ids)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
