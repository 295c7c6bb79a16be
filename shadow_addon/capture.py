"""A recorded capture read one flow at a time, so memory does not grow with the capture.

A flow file goes through mitmproxy's own reader, which already yields flow by flow. A HAR is read entry by entry
with ijson (mitmproxy's reader parses the whole JSON document first: a 62 MB HAR takes over 600 MiB that way) and
each entry becomes a flow with mitmproxy's own `request_to_flow`, so both readers give the same flows.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import ijson
from mitmproxy import exceptions, flow, flowfilter, http, io, master
from mitmproxy.addons import readfile
from mitmproxy.io import har

from . import recorded

logger = logging.getLogger("shadow")

BOM = b"\xef\xbb\xbf"
HAR_ERROR = "Unable to read HAR file. Please provide a valid HAR file"  # mitmproxy's words (io.FlowReader.stream)


def is_har(path: str) -> bool:
    """Whether mitmproxy would read `path` as a HAR: a JSON object, after an optional byte order mark."""
    try:
        with open(os.path.expanduser(path), "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False  # mitmproxy's reader reports the problem
    return head.removeprefix(BOM).startswith(b"{")


def reads_rfile(m: master.Master) -> bool:
    """Whether mitmproxy's readfile addon (mitmdump's ReadFileStdin, mitmweb's ReadFile) reads `rfile` here."""
    return any(isinstance(a, readfile.ReadFile) for a in m.addons.chain)


def _opened(fo: BinaryIO) -> tuple[io.FlowReader, bool]:
    """mitmproxy's reader on `fo`, and whether the capture is a HAR (a JSON object, after an optional byte order
    mark, which is skipped as mitmproxy's reader does: Fiddler writes one)."""
    reader = io.FlowReader(fo)
    if reader.peek(4).startswith(BOM + b"{"):
        fo.read(len(BOM))
    return reader, reader.peek(1).startswith(b"{")


# Which recorded requests a reader makes flows of (a replay split over processes plays a part of the capture
# each): told each request's method and path as recorded, or None for a flow that is no HTTP request.
Keep = Callable[[tuple[bytes, bytes] | None], bool]


def har_request_line(entry: Any) -> tuple[bytes, bytes] | None:
    """A HAR entry's method and path (with its query) as recorded, without building its flow; None if it has none."""
    try:
        method, u = entry["request"]["method"], entry["request"]["url"]
    except (KeyError, TypeError):
        return None
    if not isinstance(method, str) or not isinstance(u, str):
        return None
    start = u.find("://")
    start = start + 3 if start >= 0 else 0
    ends = [i for i in (u.find("/", start), u.find("?", start)) if i >= 0]
    path = u[min(ends) :] if ends else "/"
    return method.encode("utf-8", "surrogateescape"), path.encode("utf-8", "surrogateescape")


def _har_flows(fo: BinaryIO, to_flow: Callable[[Any], flow.Flow], keep: Keep | None = None) -> Iterator[flow.Flow]:
    """A HAR's entries, read one at a time with ijson, each made a flow by `to_flow` (those `keep` keeps)."""
    entries = ijson.items(fo, "log.entries.item", use_float=True)
    while True:
        try:
            entry = next(entries, None)
            if entry is None:
                return
            if keep is not None and not keep(har_request_line(entry)):
                continue
            f = to_flow(entry)
        except Exception as e:  # noqa: BLE001 - any malformed entry, as mitmproxy's reader treats it
            raise exceptions.FlowReadException(HAR_ERROR) from e
        yield f


def read_flows(fo: BinaryIO, keep: Keep | None = None) -> Iterator[flow.Flow]:
    """The flows of a capture (flow file or HAR), one at a time (those `keep` keeps). Raises FlowReadException as
    mitmproxy's reader does."""
    reader, har_file = _opened(fo)
    if har_file:
        yield from _har_flows(fo, har.request_to_flow, keep)
    elif keep is None:
        yield from reader.stream()
    else:
        for f in reader.stream():
            if keep((f.request.data.method, f.request.data.path) if isinstance(f, http.HTTPFlow) else None):
                yield f


def _request_line(data: bytes) -> tuple[bytes, bytes] | None:
    try:
        return recorded.request_line(data)
    except ValueError:
        return None  # not a flow: read (and refused) where the capture's first part is read


async def feed(path: str, master: master.Master, readfile_filter: str | None) -> int:
    """Hand every flow of the capture at `path` to the addons, as mitmproxy's readfile addon does
    (`Master.load_flow`, which waits for the hooks: a slow consumer holds back the reading). Returns the count;
    a capture that cannot be read is logged as mitmproxy logs it."""
    match = flowfilter.parse(readfile_filter) if readfile_filter else None
    n = 0
    try:
        with open(os.path.expanduser(path), "rb") as fh:
            for f in read_flows(fh):
                if match is None or match(f):
                    await master.load_flow(f)
                    n += 1
    except (OSError, exceptions.FlowReadException) as e:
        if n:
            logger.warning("Flow file corrupted - loaded %i flows.", n)
        logger.error("Failed to read %s: %s", path, e)
    return n


def recorded_flows(fo: BinaryIO, whole: bool = False, keep: Keep | None = None) -> Iterator[flow.Flow]:
    """The flows of a capture as `read_flows` gives them, built by `recorded` (a fraction of the cost); `whole`:
    through mitmproxy's own reader, every part of each flow restored (what a filter may look at)."""
    if whole:
        yield from read_flows(fo, keep)
        return
    if _opened(fo)[1]:
        yield from _har_flows(fo, recorded.har_flow, keep)
        return
    try:
        for data in recorded.payloads(fo):
            if keep is not None and not keep(_request_line(data)):
                continue
            try:
                yield recorded.flow_of(data)
            except ValueError as e:
                raise exceptions.FlowReadException(e) from e
    except (ValueError, TypeError, IndexError) as e:  # as mitmproxy's FlowReader.stream words it
        raise exceptions.FlowReadException("Invalid data format.") from e
