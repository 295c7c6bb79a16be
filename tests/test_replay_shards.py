"""A replay split over processes (`replayshards`, `replayjobs`), in-process: which process plays which recorded
request (every one exactly once, identical requests together, at the same place in the capture for all), what
the processes hand each other (noise learned, figures), and how many processes `--jobs` starts."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import flow, http
from mitmproxy import io as mio
from mitmproxy.test import tflow, tutils
from support import varied_http_flows

from shadow_addon import capture, recorded, replayjobs, replayshards
from shadow_addon.compare.noise import NoiseLearner
from shadow_addon.compare.reply import Reply
from shadow_addon.metrics import Metrics
from shadow_addon.replayshards import Reading, Shard, ShardGone, position_of, shard_of


def test_a_request_goes_to_the_same_process_in_every_process_and_run() -> None:
    # zlib.crc32, not Python's hash (seeded per process): pinned, as every process must compute the same.
    assert [shard_of(b"GET", f"/api/items/{i}".encode(), 2) for i in range(8)] == [1, 1, 1, 1, 0, 0, 0, 0]
    assert shard_of(b"POST", b"/x", 3) == 2
    assert shard_of(b"get", b"/api/items/1", 2) == shard_of(b"GET", b"/api/items/1", 2)  # methods in any case
    assert Shard(0, 2, "d").keeps(None) and not Shard(1, 2, "d").keeps(None)  # no request line: the first
    assert [Shard(k, 3, "d").window(4) for k in range(3)] == [2, 2, 2]
    assert Shard(0, 4, "d").window(1) == 1
    assert Shard.parse("1/3", "d") == Shard(1, 3, "d")
    for bad in ("3/3", "-1/2", "x"):
        with pytest.raises(ValueError):
            Shard.parse(bad, "d")


def har_entries() -> list[dict[str, Any]]:
    out = []
    for n in range(40):
        item = n % 13  # identical requests recorded several times
        method = "POST" if n % 5 == 0 else "GET"
        out.append(
            {
                "startedDateTime": f"2024-05-01T12:00:00.{n:03d}Z",
                "time": 1.0,
                "request": {
                    "method": method,
                    "url": f"http://shop.example/api/items/{item}?view=full" if n % 7 else "http://shop.example",
                    "httpVersion": "HTTP/1.1",
                    "headers": [{"name": "Host", "value": "shop.example"}],
                },
                "response": {"status": 200, "httpVersion": "HTTP/1.1", "headers": [], "content": {"text": "ok"}},
            }
        )
    return out


def captures(tmp: Path) -> dict[str, Path]:
    har = tmp / "c.har"
    har.write_text(json.dumps({"log": {"version": "1.2", "entries": har_entries()}}))
    mitm = tmp / "c.mitm"
    flows: list[flow.Flow] = [recorded.har_flow(e) for e in har_entries()]
    flows[3:3] = [*varied_http_flows(), tflow.ttcpflow(), tflow.twebsocketflow()]
    with open(mitm, "wb") as fh:
        w = mio.FlowWriter(fh)
        for f in flows:
            w.add(f)
    return {"har": har, "mitm": mitm}


def read_part(path: Path, shard: Shard | None, whole: bool = False) -> list[tuple[int, str]]:
    """(position, a description) of each flow a process reads, marked as `play` marks them."""
    reading = Reading(shard)
    out = []
    with open(path, "rb") as fh:
        for f in capture.recorded_flows(fh, whole=whole, keep=reading.keep):
            reading.mark(f)
            what = f"{f.request.method} {f.request.path}" if isinstance(f, http.HTTPFlow) else type(f).__name__
            out.append((position_of(f, -1), what))
    return out


@pytest.mark.parametrize("kind", ["har", "mitm"])
@pytest.mark.parametrize("whole", [False, True])
def test_the_parts_read_every_flow_once_at_its_place_identical_requests_together(
    kind: str, whole: bool, tmp_path: Path
) -> None:
    path = captures(tmp_path)[kind]
    one = read_part(path, None, whole)
    assert [p for p, _ in one] == list(range(1, len(one) + 1))  # the place in the capture, counted from 1
    parts = [read_part(path, Shard(k, 3, "d"), whole) for k in range(3)]
    assert sorted(x for part in parts for x in part) == sorted(one)  # each flow once, at its place
    assert all(part for part in parts)
    owners: dict[str, set[int]] = {}
    for k, part in enumerate(parts):
        for _, what in part:
            owners.setdefault(what, set()).add(k)
    assert all(len(ks) == 1 for ks in owners.values()), owners  # identical requests in one process
    if kind == "mitm":
        assert "TCPFlow" in {w for _, w in parts[0]}  # a flow without a request: read by the first process


def test_a_flows_request_line_is_read_without_building_it() -> None:
    for f in [*varied_http_flows(), tflow.tflow(req=tutils.treq(method=b"PATCH", path=b"/a/b?c=d"))]:
        buf = io.BytesIO()
        mio.FlowWriter(buf).add(f)
        (data,) = list(recorded.payloads(io.BytesIO(buf.getvalue())))
        assert recorded.request_line(data) == (f.request.data.method, f.request.data.path)
    buf = io.BytesIO()
    mio.FlowWriter(buf).add(tflow.ttcpflow())
    assert recorded.request_line(next(recorded.payloads(io.BytesIO(buf.getvalue())))) is None
    assert capture.har_request_line({"request": {"method": "GET", "url": "http://h:8080/a/b?x=1"}}) == (
        b"GET",
        b"/a/b?x=1",
    )
    assert capture.har_request_line({"request": {"method": "GET", "url": "http://h"}}) == (b"GET", b"/")
    assert capture.har_request_line({"request": {"method": 3, "url": "http://h"}}) is None
    assert capture.har_request_line({}) is None


def test_metrics_of_several_processes_add_up() -> None:
    a, b, whole = Metrics(), Metrics(), Metrics()
    outcomes: list[tuple[int | str, float | None]] = [
        (200, 0.001),
        (500, 0.2),
        (200, 0.03),
        ("error", None),
        (200, 2.0),
    ]
    for i, (code, seconds) in enumerate(outcomes):
        for m in (a if i % 2 else b, whole):
            m.record_upstream("s", "svc", "shadow", code, seconds)
            m.record_drop("s", "timeout")
            m.record_compare("s", "mismatch" if i % 2 else "match", ["body"])
    a.add(b)
    assert (a.upstream, a.dropped, a.compared, a.mismatches) == (
        whole.upstream,
        whole.dropped,
        whole.compared,
        whole.mismatches,
    )
    h, hw = a.durations[("s", "svc", "shadow")], whole.durations[("s", "svc", "shadow")]
    assert h.counts == hw.counts and h.total == pytest.approx(hw.total) and h.quantile(0.5) == hw.quantile(0.5)


def reply(doc: dict[str, Any], ctype: str = "application/json", status: int = 200) -> Reply:
    return Reply.of(status, [(b"content-type", ctype.encode())], json.dumps(doc).encode())


def test_noise_learned_in_one_process_is_taught_to_another() -> None:
    one = NoiseLearner(headers=("content-type", "etag"))
    one.observe("m", "k", reply({"ts": 1, "items": [{"id": 1, "at": 5}], "n": 1}))
    one.observe("m", "k", reply({"ts": 2, "items": [{"id": 1, "at": 6}], "n": 1, "extra": True}))
    one.observe("other", "k", reply({"a": 1}, status=200))
    one.observe("other", "k", reply({"a": 1}, status=404))
    learned = one.learned()
    assert learned["m"] and learned["other"] == [("status", None)]
    two = NoiseLearner(headers=("content-type", "etag"))
    two.teach(learned)
    assert two.learned() == learned
    assert two.noise("m").covers(("ts",)) and two.noise("m").covers(("items", "7", "at"))
    assert not two.noise("m").covers(("n",))


async def test_waiting_for_another_process_ends_when_it_is_gone(tmp_path: Path) -> None:
    me, other = Shard(0, 2, str(tmp_path)), Shard(1, 2, str(tmp_path))
    replayshards.write(other.path("noise"), {"m": [("body", None)]})
    assert await asyncio.wait_for(replayshards.read(me, "noise", 1), 5) == {"m": [("body", None)]}
    waiting = asyncio.ensure_future(replayshards.read(me, "result", 1))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # still running: it waits
    Path(replayshards.gone(str(tmp_path), 1)).touch()  # the parent saw it end without its result
    with pytest.raises(ShardGone):
        await asyncio.wait_for(waiting, 5)


def test_jobs_auto_is_one_per_cpu_for_a_large_capture_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small, large = tmp_path / "small.har", tmp_path / "large.har"
    small.write_bytes(b"x")
    large.write_bytes(b"x" * (replayjobs.AUTO_MIN_MIB * 2**20))
    monkeypatch.setattr(replayjobs, "usable_cpus", lambda: 8)
    assert replayjobs.jobs_for("auto", str(large), 0.0) == replayjobs.MAX_AUTO
    assert replayjobs.jobs_for("auto", str(small), 0.0) == 1
    assert replayjobs.jobs_for("auto", str(large), 1.0) == 1  # paced: the recording's time whatever the processes
    assert replayjobs.jobs_for(3, str(small), 0.0) == 3
    monkeypatch.setattr(replayjobs, "usable_cpus", lambda: 2)
    assert replayjobs.jobs_for("auto", str(large), 0.0) == 2
    assert replayjobs.jobs_arg("auto") == "auto" and replayjobs.jobs_arg("2") == 2
    with pytest.raises(Exception, match="number of processes"):
        replayjobs.jobs_arg("0")


async def test_the_processes_keep_pace_within_a_span_and_none_waits_for_ever(tmp_path: Path) -> None:
    replayshards.make_progress(str(tmp_path), 2)
    a, b = (replayshards.Progress(Shard(k, 2, str(tmp_path))) for k in range(2))
    try:
        span = replayshards.SPAN
        assert not a.ahead(span) and a.ahead(span + 1)  # b has played nothing yet: a may go SPAN entries ahead
        b.publish(10)
        assert not a.ahead(span + 10) and a.ahead(span + 11)
        waiting = asyncio.ensure_future(a.wait(span + 30))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        b.publish(29)
        await asyncio.sleep(0.05)
        assert not waiting.done()
        b.publish(30)  # b has got to where a may play
        await asyncio.wait_for(waiting, 5)
        b.done()  # b has read the whole capture: a never waits again
        assert not a.ahead(10**9)
        waiting = asyncio.ensure_future(b.wait(span + 100))  # a is far behind and then ends without getting there
        await asyncio.sleep(0.05)
        Path(replayshards.gone(str(tmp_path), 0)).touch()
        with pytest.raises(ShardGone):
            await asyncio.wait_for(waiting, 5)
    finally:
        a.close()
        b.close()
