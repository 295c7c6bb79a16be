"""A capture's flows kept on disk by a replay's first reading (`recorded.spill`) are read back as the flows the
capture gives when read again: field by field, ids included (a HAR's entries get new ones, as read again)."""

from __future__ import annotations

import copy
import io
import json
import os
from pathlib import Path

from mitmproxy import http
from mitmproxy import io as mio
from mitmproxy.test import tflow
from support import varied_http_flows

from shadow_addon import capture
from shadow_addon.recorded import spill
from shadow_addon.recorded.spill import Spill


def varied_flows() -> list[http.HTTPFlow]:
    return varied_http_flows()


def flow_file(flows: list[http.HTTPFlow]) -> bytes:
    buf = io.BytesIO()
    w = mio.FlowWriter(buf)
    for f in flows:
        w.add(f)
    return buf.getvalue()


def har(n: int) -> bytes:
    entries = [
        {
            "startedDateTime": "2024-05-01T12:00:01.250Z",
            "time": 2.5,
            "request": {
                "method": "POST" if i % 2 else "GET",
                "url": f"http://shop.example/api/items/{i}?view=full",
                "httpVersion": "HTTP/1.1",
                "headers": [{"name": "Host", "value": "shop.example"}, {"name": "Accept", "value": "*/*"}],
                **({"postData": {"mimeType": "application/json", "text": '{"n": "\\u00e9"}'}} if i % 2 else {}),
            },
            "response": {
                "status": 200 + i,
                "httpVersion": "HTTP/2",
                "headers": [{"name": "Content-Type", "value": "application/json"}],
                "content": {"text": json.dumps({"i": i})},
            },
        }
        for i in range(n)
    ]
    return json.dumps({"log": {"version": "1.2", "entries": entries}}).encode()


def state(f: http.HTTPFlow) -> tuple[object, ...]:
    sc = f.server_conn
    return (
        type(f),
        f.request.get_state(),
        f.response.get_state() if f.response else None,
        f.error.get_state() if f.error else None,
        f.metadata,
        f.is_replay,
        f.live,
        f.client_conn.get_state(),
        (sc.address, sc.timestamp_tcp_setup, sc.timestamp_tls_setup),
    )


def kept_and_read_again(data: bytes, fresh_ids: bool) -> tuple[Spill, list[http.HTTPFlow], list[http.HTTPFlow]]:
    kept = Spill(fresh_ids=fresh_ids)
    for f in capture.recorded_flows(io.BytesIO(data)):
        assert isinstance(f, http.HTTPFlow)
        assert kept.add(f)
    again = [f for f in capture.recorded_flows(io.BytesIO(data)) if isinstance(f, http.HTTPFlow)]
    return kept, list(kept.flows()), again


def test_a_flow_files_flows_come_back_as_read_again() -> None:
    kept, back, again = kept_and_read_again(flow_file(varied_flows()), fresh_ids=False)
    assert kept.usable and kept.count == len(again) == 7
    assert [state(f) for f in back] == [state(f) for f in again]
    assert [f.id for f in back] == [f.id for f in again]
    assert back[3].server_conn.timestamp_tcp_setup == 1000.5
    assert type(back[3].request.timestamp_start) is int  # as written, not made a float
    kept.close()


def test_a_hars_entries_come_back_as_read_again_with_new_ids() -> None:
    kept, back, again = kept_and_read_again(har(6), fresh_ids=True)
    assert [state(f) for f in back] == [state(f) for f in again]
    ids = [f.id for f in back] + [f.id for f in again]
    assert len(set(ids)) == len(ids) == 12  # every reading of an entry gets an id of its own
    kept.close()


def test_a_flow_changed_after_it_was_kept_comes_back_as_it_was() -> None:
    data = flow_file(varied_flows()[:1])
    kept = Spill()
    (f,) = capture.recorded_flows(io.BytesIO(data))
    assert isinstance(f, http.HTTPFlow) and f.response is not None
    before = copy.deepcopy(state(f))
    kept.add(f)
    f.request.path = "/rewritten"
    f.request.headers["x-added"] = "1"
    f.response.content = b"edited"
    f.metadata["x"] = 1
    (back,) = kept.flows()
    assert state(back) == before


def test_a_flow_it_did_not_build_or_cannot_write_gives_up_the_spill() -> None:
    mitmproxys = tflow.tflow(resp=True)  # built by mitmproxy, not by `recorded`: its connections are its own
    kept = Spill()
    assert not kept.add(mitmproxys) and not kept.usable
    assert not kept.add(mitmproxys)  # given up for good: the capture is read again
    (f,) = capture.recorded_flows(io.BytesIO(flow_file(varied_flows()[:1])))
    f.metadata["odd"] = object()  # not a value marshal writes
    kept = Spill()
    assert not kept.add(f) and not kept.usable
    assert spill.record_of(tflow.twebsocketflow()) is None


def test_the_flows_are_kept_beside_the_capture_else_in_the_temporary_directory(tmp_path: Path) -> None:
    """On the capture's disk, in a file no one sees (nothing is left behind); where that directory cannot be
    written, in the temporary directory."""
    data = flow_file(varied_flows()[:2])
    cap = tmp_path / "capture.mitm"
    cap.write_bytes(data)
    for beside, where in ((str(cap), tmp_path), (str(tmp_path / "missing" / "capture.mitm"), None)):
        kept = Spill(beside=beside)
        assert kept._file is not None
        held_in = Path(os.readlink(f"/proc/self/fd/{kept._file.fileno()}")).parent  # Linux: the unnamed file's
        assert held_in == where if where is not None else held_in != tmp_path
        for f in capture.recorded_flows(io.BytesIO(data)):
            assert kept.add(f)
        assert kept.usable and len(list(kept.flows())) == kept.count == 2
        kept.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["capture.mitm"]
