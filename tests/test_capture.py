"""Captures read one flow at a time: a HAR entry by entry gives the flows mitmproxy's reader gives, without reading
the file whole; a flow file goes through mitmproxy's reader."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from mitmproxy import exceptions, http
from mitmproxy import io as mio
from mitmproxy.test import tflow

from shadow_addon import capture


def entry(i: int, body: str = '{"ok": true}') -> dict[str, object]:
    return {
        "startedDateTime": f"2024-05-01T12:00:{i % 60:02d}.{i % 1000:03d}Z",
        "time": 2.5,
        "request": {
            "method": "POST" if i % 3 == 0 else "GET",
            "url": f"https://shop.example:8443/api/items/{i}?view=full&n={i}",
            "httpVersion": "HTTP/1.1",
            "headers": [{"name": "Host", "value": "shop.example"}, {"name": "X-N", "value": str(i)}],
            "queryString": [],
            "postData": {"mimeType": "application/json", "text": f'{{"n": {i}, "s": "caf\\u00e9"}}'},
            "headersSize": -1,
            "bodySize": -1,
        },
        "response": {
            "status": 200 + i % 5,
            "statusText": "OK",
            "httpVersion": "HTTP/1.1",
            "headers": [{"name": "Content-Type", "value": "application/json"}],
            "content": {"size": len(body), "mimeType": "application/json", "text": body},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": len(body),
        },
        "cache": {},
        "timings": {"send": 0.5, "wait": 1.5, "receive": 0.5},
    }


def har_bytes(n: int, bom: bool = False) -> bytes:
    doc = {"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": [entry(i) for i in range(n)]}}
    return (b"\xef\xbb\xbf" if bom else b"") + json.dumps(doc).encode()


def state(f: http.HTTPFlow) -> tuple[object, ...]:
    assert f.response is not None
    return (f.request.get_state(), f.response.get_state(), f.server_conn.address)


@pytest.mark.parametrize("bom", [False, True])
def test_a_har_read_entry_by_entry_gives_the_flows_mitmproxys_reader_gives(bom: bool) -> None:
    data = har_bytes(40, bom)
    ours = list(capture.read_flows(io.BufferedReader(io.BytesIO(data))))
    theirs = list(mio.FlowReader(io.BufferedReader(io.BytesIO(data))).stream())
    assert len(ours) == len(theirs) == 40
    assert [state(a) for a in ours] == [state(b) for b in theirs]  # type: ignore[arg-type]


def test_a_har_is_not_read_whole() -> None:
    """The first flow comes while most of the file is still unread, and a file cut short still yields the entries
    before the cut, then the error mitmproxy's reader gives."""
    data = har_bytes(2_000)
    fh = io.BufferedReader(io.BytesIO(data))
    flows = capture.read_flows(fh)
    first = next(flows)
    assert isinstance(first, http.HTTPFlow) and first.request.path == "/api/items/0?view=full&n=0"
    assert fh.raw.tell() < len(data) // 10  # type: ignore[attr-defined]
    cut = data[: len(data) // 2]
    got = []
    with pytest.raises(exceptions.FlowReadException, match="Unable to read HAR file"):
        for f in capture.read_flows(io.BufferedReader(io.BytesIO(cut))):
            got.append(f)
    assert 900 < len(got) < 1_100  # about half the entries: those before the cut


def test_a_bad_entry_is_reported_as_mitmproxy_reports_it() -> None:
    doc = json.dumps({"log": {"entries": [entry(0), {"request": {}}]}}).encode()
    with pytest.raises(exceptions.FlowReadException, match="Unable to read HAR file"):
        list(capture.read_flows(io.BufferedReader(io.BytesIO(doc))))


def test_a_flow_file_goes_through_mitmproxys_reader(tmp_path: Path) -> None:
    path = tmp_path / "flows.mitm"
    written = [tflow.tflow(resp=True) for _ in range(3)]
    with open(path, "wb") as fh:
        w = mio.FlowWriter(fh)
        for f in written:
            w.add(f)
    with open(path, "rb") as fh:
        read = list(capture.read_flows(fh))
    assert [f.id for f in read] == [f.id for f in written]
    assert not capture.is_har(str(path))
    har = tmp_path / "c.har"
    har.write_bytes(har_bytes(1, bom=True))
    assert capture.is_har(str(har)) and not capture.is_har(str(tmp_path / "missing.har"))
