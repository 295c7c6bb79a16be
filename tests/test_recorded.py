"""Flows built for `mitmshadow replay` (`recorded`) are the flows mitmproxy's own readers build: every HAR entry,
in the common case and outside it, and every flow of a flow file, compared field by field with mitmproxy's."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mitmproxy import exceptions, flow, http, tcp
from mitmproxy import io as mio
from mitmproxy.io import har, tnetstring
from mitmproxy.test import tflow
from support import varied_http_flows

from shadow_addon import capture, recorded


def entry(url: str = "http://shop.example/api/items/1?view=full", **over: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "startedDateTime": "2024-05-01T12:00:01.250Z",
        "time": 2.5,
        "request": {
            "method": "GET",
            "url": url,
            "httpVersion": "HTTP/1.1",
            "headers": [{"name": "Host", "value": "shop.example"}, {"name": "Accept", "value": "*/*"}],
        },
        "response": {
            "status": 200,
            "httpVersion": "HTTP/1.1",
            "headers": [{"name": "Content-Type", "value": "application/json"}],
            "content": {"text": '{"ok": true, "name": "caf\\u00e9"}'},
        },
    }
    for path, value in over.items():
        *parents, last = path.split("__")
        d = e
        for p in parents:
            d = d[p]
        d[last] = value
    return e


def state(f: flow.Flow) -> tuple[object, ...]:
    """What a replay reads of a flow."""
    assert isinstance(f, http.HTTPFlow)
    sc = f.server_conn
    return (
        f.request.get_state(),
        f.response.get_state() if f.response else None,
        f.error.get_state() if f.error else None,
        f.metadata,
        f.is_replay,
        f.live,
        (sc.timestamp_tcp_setup, sc.timestamp_tls_setup),
    )


def same_as_mitmproxy(e: dict[str, Any]) -> http.HTTPFlow:
    try:
        theirs = har.request_to_flow(json.loads(json.dumps(e)))
    except Exception:  # noqa: BLE001
        with pytest.raises(Exception):  # noqa: B017 - whatever mitmproxy raises, ours raises too
            recorded.har_flow(json.loads(json.dumps(e)))
        return None  # type: ignore[return-value]
    ours = recorded.har_flow(json.loads(json.dumps(e)))
    assert state(ours) == state(theirs)
    return ours


CASES = {
    "plain GET": entry(),
    "https, a port, no path": entry("https://API.Example.com:8443"),
    "a query without a path": entry("http://shop.example?x=1"),
    "a fragment and odd characters": entry("http://shop.example/a;p/b?q=a%20b&c=[1]#frag"),
    "an IPv4 and an IPv6 host": entry("http://127.0.0.1:9000/x"),
    "IPv6": entry("http://[::1]:9000/x"),
    "an IDN host": entry("http://xn--caf-dma.example/x"),
    "a non-ASCII path": entry("http://shop.example/caf\u00e9"),
    "port 0 and a default port": entry("http://shop.example:0/x"),
    "no Host header": entry(request__headers=[["Accept", "*/*"], ["X-Two", "a"], ["x-two", "b"]]),
    "a JSON body": entry(
        request__method="POST",
        request__headers=[{"name": "Content-Type", "value": "application/json"}],
        request__postData={"mimeType": "application/json", "text": '{"sku": "a\u00e9\u20ac"}'},
    ),
    "a body its charset cannot hold": entry(
        request__method="PUT",
        request__headers=[{"name": "Content-Type", "value": "text/plain; charset=latin-1"}],
        request__postData={"text": "\u20ac"},
    ),
    "a body in a charset that does not exist": entry(
        request__headers=[{"name": "Content-Type", "value": "text/plain; charset=nope"}],
        request__postData={"text": "x"},
    ),
    "transfer-encoding": entry(
        request__headers=[{"name": "Transfer-Encoding", "value": "chunked"}], request__postData={"text": "abc"}
    ),
    "Host and Content-Length twice, in other cases": entry(
        request__headers=[
            ["HOST", "a"],
            ["Accept", "*/*"],
            ["host", "b"],
            ["content-length", "9"],
            ["Content-Length", "1"],
        ],
        request__postData={"text": "abc"},
        response__headers=[
            ["Content-Length", "1"],
            ["X-A", "1"],
            ["content-LENGTH", "2"],
            ["Content-Type", "text/plain"],
        ],
        response__content={"text": "hello"},
    ),
    "a content type given twice": entry(
        request__headers=[["Content-Type", "text/plain"], ["content-type", "charset=latin-1"]],
        request__postData={"text": "\u00e9"},
    ),
    "content-encoding on the request": entry(
        request__headers=[{"name": "Content-Encoding", "value": "identity"}], request__postData={"text": "abc"}
    ),
    "content-encoding on the answer": entry(
        response__headers=[{"name": "Content-Encoding", "value": "gzip"}], response__content={"text": "x"}
    ),
    "a base64 answer": entry(response__content={"text": "AAEC/w==", "encoding": "base64"}),
    "an answer of another charset": entry(
        response__headers=[{"name": "Content-Type", "value": "text/html; charset=latin-1"}],
        response__content={"text": "\u20ac <meta charset=utf-8>"},
    ),
    "an empty answer": entry(response__content={}),
    "an unknown status and HTTP/2": entry(response__status=299, response__httpVersion="HTTP/2"),
    "h2 and h3 requests": entry(request__httpVersion="http/2.0"),
    "HTTP/3": entry(request__httpVersion="HTTP/3", response__httpVersion="http/2.0"),
    "a status that is not a number": entry(response__status="200"),
    "a method that is not text": entry(request__method=7),
    "no request": {"startedDateTime": "2024-05-01T12:00:00Z", "time": 1, "response": {}},
    "a bad time": entry(startedDateTime="yesterday"),
    "a URL without a host": entry("http:///x"),
    "a bad port": entry("http://shop.example:99999/x"),
    "a header that is not a pair": entry(request__headers=[["Only"]]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_har_entry_gives_the_flow_mitmproxys_reader_gives(name: str) -> None:
    same_as_mitmproxy(CASES[name])


def test_plain_entries_are_built_without_mitmproxys_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common case does not fall back (which would be as slow as before): a HAR as browsers write it."""

    def refuse(_: object) -> http.HTTPFlow:
        raise AssertionError("mitmproxy's reader was used")

    ours = same_as_mitmproxy(CASES["a JSON body"])
    monkeypatch.setattr(har, "request_to_flow", refuse)
    for name in ("plain GET", "https, a port, no path", "a query without a path", "a JSON body", "a base64 answer"):
        assert state(recorded.har_flow(CASES[name])) is not None
    assert ours.request.headers["content-length"] == str(len(ours.request.raw_content or b""))


URL_CHARS = st.sampled_from(list("abcXYZ019-._~/?#;=&%[]:@!$'()*+, \t\u00e9"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "ftp"]),
    host=st.sampled_from(["shop.example", "Shop.Example", "a-b.c_d.example", "-bad.example", "127.0.0.1", "x" * 64]),
    port=st.sampled_from(["", ":80", ":443", ":8080", ":0", ":08", ":65536", ":x"]),
    rest=st.text(URL_CHARS, max_size=24),
    with_host=st.booleans(),
)
# urllib drops an empty query or parameters: found by this test
@example(scheme="http", host="shop.example", port="", rest="?", with_host=False)
@example(scheme="http", host="shop.example", port="", rest="/x;", with_host=False)
def test_any_url_gives_what_mitmproxys_reader_gives(
    scheme: str, host: str, port: str, rest: str, with_host: bool
) -> None:
    headers = [{"name": "Host", "value": "h"}] if with_host else []
    same_as_mitmproxy(entry(f"{scheme}://{host}{port}{rest}", request__headers=headers))


def flow_file(*flows: flow.Flow) -> bytes:
    buf = io.BytesIO()
    w = mio.FlowWriter(buf)
    for f in flows:
        w.add(f)
    return buf.getvalue()


def read_both(data: bytes) -> tuple[list[flow.Flow], list[flow.Flow]]:
    ours = [recorded.flow_of(d) for d in recorded.payloads(io.BytesIO(data))]
    theirs = list(mio.FlowReader(io.BytesIO(data)).stream())
    return ours, theirs


def varied_flows() -> list[flow.Flow]:
    return [*varied_http_flows(), tflow.twebsocketflow(), tflow.ttcpflow()]


def test_a_flow_file_gives_the_flows_mitmproxys_reader_gives() -> None:
    ours, theirs = read_both(flow_file(*varied_flows()))
    assert [type(f) for f in ours] == [type(f) for f in theirs] == [*[http.HTTPFlow] * 8, tcp.TCPFlow]
    assert [f.id for f in ours] == [f.id for f in theirs]
    for a, b in zip(ours[:-1], theirs[:-1], strict=True):
        assert state(a) == state(b)
    assert ours[7].websocket is not None  # outside the common case: mitmproxy's reader built it whole


def test_a_flow_of_an_older_format_is_migrated_as_mitmproxy_migrates_it() -> None:
    f = tflow.tflow(resp=True)
    s = f.get_state()
    s["version"] = 20  # what the converter from 20 to 21 accepts
    ours, theirs = read_both(tnetstring.dumps(s))
    assert state(ours[0]) == state(theirs[0])


@pytest.mark.parametrize(
    "order",
    [
        ("timestamp_tcp_setup", "timestamp_tls_setup", "sni", "id"),  # as mitmproxy writes them: read up to these
        ("id", "sni", "timestamp_tls_setup", "error", "timestamp_tcp_setup"),
        ("id", "timestamp_tls_setup", "sni"),  # one of them only: read to the end
        ("sni", "id"),
    ],
)
def test_the_servers_set_up_times_are_read_in_any_order_and_alone(order: tuple[str, ...]) -> None:
    f = tflow.tflow(resp=True)
    s = f.get_state()
    given = {"timestamp_tcp_setup": 1000.5, "timestamp_tls_setup": 1000.75, "sni": "shop.example"}
    s["server_conn"] = {k: given.get(k, s["server_conn"].get(k)) for k in order}  # the reader checks none of it
    ours = recorded.flow_of(next(recorded.payloads(io.BytesIO(tnetstring.dumps(s)))))
    assert isinstance(ours, http.HTTPFlow)
    sc = ours.server_conn
    wanted = (
        given["timestamp_tcp_setup"] if "timestamp_tcp_setup" in order else None,
        given["timestamp_tls_setup"] if "timestamp_tls_setup" in order else None,
    )
    assert (sc.timestamp_tcp_setup, sc.timestamp_tls_setup) == wanted
    assert state(ours)[:5] == state(f)[:5]  # the request, its answer, error, metadata and replay mark


def test_a_bad_or_cut_flow_file_fails_as_mitmproxys_reader_fails() -> None:
    data = flow_file(tflow.tflow(resp=True), tflow.tflow(resp=True))
    for bad in (data[: len(data) - 10], b"12:abc", b"x" + data, data[:3]):
        got: list[flow.Flow] = []
        with pytest.raises(exceptions.FlowReadException):
            for f in capture.recorded_flows(io.BufferedReader(io.BytesIO(bad))):  # type: ignore[arg-type]
                got.append(f)
        with pytest.raises(exceptions.FlowReadException):
            list(mio.FlowReader(io.BytesIO(bad)).stream())
    wrong = tflow.tflow(resp=True).get_state()
    wrong["request"]["port"] = "80"  # a field of the wrong type: mitmproxy's check refuses it
    with pytest.raises(exceptions.FlowReadException):
        list(capture.recorded_flows(io.BufferedReader(io.BytesIO(tnetstring.dumps(wrong)))))  # type: ignore[arg-type]


LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.binary(max_size=8)
VALUES = st.recursive(
    LEAVES | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(VALUES, min_size=1, max_size=3))
def test_tnetstrings_read_as_mitmproxy_reads_them(values: list[Any]) -> None:
    data = b"".join(tnetstring.dumps(v) for v in values)
    assert list(recorded.states(io.BytesIO(data))) == values
