"""The offline-replay core: pacing, what is not copied, the gate's verdicts and arguments, and recorded flows
through the addon's hooks with a real shadow server on loopback."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.addons import readfile
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons, tflow, tutils
from support import Upstream, loaded, mapping, wait_until, write_mappings

from shadow_addon import cli, gate, replaypolicy
from shadow_addon.shadow import Shadow


def test_pace_follows_the_recorded_clock_at_the_chosen_speed() -> None:
    clock = (1000.0, 50.0)  # the first flow was recorded at 1000 and played at loop time 50
    assert replaypolicy.pace_delay(1.0, clock, 1003.0, 51.0) == pytest.approx(2.0)
    assert replaypolicy.pace_delay(2.0, clock, 1003.0, 51.0) == pytest.approx(0.5)
    assert replaypolicy.pace_delay(1.0, clock, 999.0, 51.0) < 0  # stored late (flows are saved as they complete): due
    assert replaypolicy.pace_delay(0.0, clock, 5000.0, 51.0) == 0.0  # 0: as fast as the shadow allows
    assert replaypolicy.pace_delay(1.0, None, 5000.0, 51.0) == 0.0  # the first flow sets the clock


def test_the_window_of_copies_fits_the_senders_limits() -> None:
    assert replaypolicy.window(64, 256) == 64  # in flight once connected
    assert replaypolicy.window(64, 10) == 11  # one dialling, the rest waiting in the backlog
    assert replaypolicy.window(8, 0) == 1


def test_recorded_requests_not_copied_have_the_live_reasons() -> None:
    def req(
        method: str = "GET", headers: tuple[tuple[bytes, bytes], ...] = (), body: bytes | None = b""
    ) -> http.Request:
        r = tutils.treq(method=method.encode(), headers=http.Headers(headers))
        r.raw_content = body
        return r

    limit = 10
    assert replaypolicy.skip_reason(req(), limit) is None
    assert replaypolicy.skip_reason(req("CONNECT"), limit) == "upgrade"
    assert replaypolicy.skip_reason(req(headers=((b"Upgrade", b"websocket"),)), limit) == "upgrade"
    assert replaypolicy.skip_reason(req(headers=((b"X-Mitmproxy-Shadow", b"1"),)), limit) == "loop"
    assert replaypolicy.skip_reason(req(body=None), limit) == "streamed"
    assert replaypolicy.skip_reason(req("POST", body=b"x" * 11), limit) == "body_limit"
    assert replaypolicy.skip_reason(req("POST"), limit, frozenset({"GET", "HEAD"})) == "method"  # shadow_methods
    assert replaypolicy.skip_reason(req("GET"), limit, frozenset({"GET", "HEAD"})) is None


def test_verdicts_count_unanswered_copies_and_not_noise() -> None:
    counts = {
        "a-shadow": {"match": 8, "mismatch": 1, "noise": 1},
        "b-shadow": {"match": 9, "skipped": 1},
        "c-shadow": {"noise": 4},
    }
    v = {x.mapping: x for x in gate.verdicts(counts, 0.1)}
    assert (v["a-shadow"].differing, v["a-shadow"].total, v["a-shadow"].failed) == (1, 10, False)
    assert (v["b-shadow"].differing, v["b-shadow"].total, v["b-shadow"].failed) == (1, 10, False)
    assert v["c-shadow"].rate == 0.0 and not v["c-shadow"].failed
    strict = {x.mapping: x.failed for x in gate.verdicts(counts, 0.0)}
    assert strict == {"a-shadow": True, "b-shadow": True, "c-shadow": False}
    assert v["a-shadow"].line(0.1) == "ok: a-shadow: 1 of 10 pairs differ (10.0%; allowed 10.0%)"


def test_gate_arguments_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    args = gate.parser().parse_args(["c.mitm", "--mappings", "m", "--fail-on-mismatch", "2.5%", "--service", "a=b:1"])
    assert args.fail_on_mismatch == pytest.approx(0.025) and args.service == ["a=b:1"] and args.compare
    assert gate.parser().parse_args(["c", "--mappings", "m", "--fail-on-mismatch", "0.2"]).fail_on_mismatch == 0.2
    for bad in (["c", "--mappings", "m", "--fail-on-mismatch", "x"], ["c"], ["c", "--mappings", "m", "--nope"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["replay", *bad])
        assert e.value.code == 2
    assert "usage: mitmshadow replay" in capsys.readouterr().err


def test_cli_dispatches_subcommands_and_passes_the_rest_to_mitmdump() -> None:
    assert set(cli.SUBCOMMANDS) >= {"replay"}
    with pytest.raises(SystemExit) as e:
        cli.main(["replay", "/nonexistent/capture.mitm", "--mappings", "m.yaml"])
    assert e.value.code == gate.USAGE


def recorded_flow(path: bytes, body: bytes = b"") -> http.HTTPFlow:
    f = tflow.tflow(req=tutils.treq(path=path, content=body), resp=True, live=False)
    f.request.timestamp_start = 1000.0
    return f


@pytest.fixture
async def offline(tmp_path: Path) -> AsyncIterator[tuple[Shadow, Any, Upstream]]:
    """The addon in a mitmproxy test context, routing /api/ (rewritten to /v1/) and copying it to a real server."""
    shadow_app = Upstream("shadow")
    try:
        m = write_mappings(
            tmp_path / "m.yaml",
            mapping("api", prefix="/api/", service="prod:9000", rewrite="/v1/"),
            mapping("api-shadow", prefix="/api/", service="shadow", shadow=True),
        )
        sh = Shadow()
        with taddons.context(sh, Proxyserver(), readfile.ReadFile()) as tctx:
            tctx.configure(sh, mappings=str(m), mapping_services=[f"shadow={shadow_app.address}"], shadow_admin="")
            sh.running()  # starts the sender, as mitmdump does
            yield sh, tctx, shadow_app
            sh.done()
    finally:
        shadow_app.stop()


async def test_recorded_flows_are_copied_and_wait_for_the_shadow_to_have_room(offline) -> None:
    sh, tctx, shadow_app = offline
    shadow_app.behaviour.delay = 0.3
    tctx.configure(sh, shadow_max_inflight=1)
    first, second = recorded_flow(b"/api/a"), recorded_flow(b"/api/b", b"body")
    assert sh.request(first) is None  # room: copied at once, the capture reading goes on
    waiting = sh.request(second)
    assert inspect.isawaitable(waiting)  # no room: the reading of the capture waits
    await asyncio.wait_for(waiting, 30)  # type: ignore[arg-type]
    assert sh.replay.copies == 2
    assert await asyncio.to_thread(wait_until, lambda: shadow_app.count() == 2, 30)
    assert [(s.method, s.path, s.body) for s in shadow_app.seen] == [("GET", "/v1/a", b""), ("GET", "/v1/b", b"body")]
    assert first.request.path == "/api/a"  # the recorded flow stays as recorded
    prod = sum(n for (_, _, role, _), n in sh.metrics.upstream.items() if role == "production")
    assert prod == 2  # the recorded answers count as production's


async def test_recorded_pace_holds_back_flows_until_their_time(offline) -> None:
    sh, tctx, _ = offline
    with pytest.raises(Exception, match="shadow_replay_speed must be a number >= 0"):
        tctx.configure(sh, shadow_replay_speed="-1")
    tctx.configure(sh, shadow_replay_speed="4")
    first, later = recorded_flow(b"/api/a"), recorded_flow(b"/api/b")
    later.request.timestamp_start = 1000.4  # 0.4 s after the first, 0.1 s at speed 4
    assert sh.request(first) is None
    waiting = sh.request(later)
    assert inspect.isawaitable(waiting) and sh.replay.copies == 1  # not yet: its time has not come
    await asyncio.wait_for(waiting, 30)  # type: ignore[arg-type]
    assert sh.replay.copies == 2
    tctx.configure(sh, shadow_replay_speed="0")
    assert sh.request(recorded_flow(b"/api/c")) is None  # as fast as the shadow's room allows


def test_timeouts_are_counted_apart_from_differences_and_name_the_options() -> None:
    counts = {"a-shadow": {"match": 6, "mismatch": 1, "skipped": 3}, "b-shadow": {"match": 10}}
    v = {x.mapping: x for x in gate.verdicts(counts, 0.5, {"a-shadow": 2})}
    assert (v["a-shadow"].differing, v["a-shadow"].total, v["a-shadow"].timeouts) == (2, 8, 2)
    assert v["a-shadow"].failed and not v["b-shadow"].failed  # within the rate, but 2 requests went unchecked
    assert v["a-shadow"].line(0.5) == (
        "FAIL: a-shadow: 2 of 8 pairs differ (25.0%; allowed 50.0%); 2 copies timed out, not counted as "
        "differences, which fails the gate: raise --set shadow_timeout=SECONDS, or lower --set "
        "shadow_max_inflight=N for a server that takes few connections at once"
    )
    assert v["b-shadow"].line(0.5) == "ok: b-shadow: 0 of 10 pairs differ (0.0%; allowed 50.0%)"
    one = gate.verdicts({"c-shadow": {"match": 1}}, 0.0)[0]
    assert one.line(0.0) == "ok: c-shadow: 0 of 1 pair differ (0.0%; allowed 0.0%)"


def test_a_capture_takes_a_development_servers_concurrency_unless_set() -> None:
    assert replaypolicy.inflight(64, set_by_user=False) == replaypolicy.REPLAY_INFLIGHT == 4
    assert replaypolicy.inflight(64, set_by_user=True) == 64
    assert replaypolicy.inflight(2, set_by_user=False) == 2
    assert gate.parser().parse_args(["c", "--mappings", "m", "--every-request"]).every_request


async def test_every_request_copies_whatever_the_weight(offline, tmp_path: Path) -> None:
    sh, tctx, shadow_app = offline
    m = write_mappings(
        tmp_path / "w.yaml",
        mapping("api", prefix="/api/", service="prod:9000"),
        mapping("api-shadow", prefix="/api/", service="shadow", shadow=True, weight=1),
    )
    tctx.configure(sh, mappings=str(m), shadow_replay_every_request=True)
    await loaded(sh.files)
    for i in range(20):
        waiting = sh.request(recorded_flow(f"/api/{i}".encode()))
        if waiting is not None:
            await asyncio.wait_for(waiting, 30)  # type: ignore[arg-type]
    assert sh.replay.copies == 20  # at weight 1, about 1 in 100 would be
    assert await asyncio.to_thread(wait_until, lambda: shadow_app.count() == 20, 30)


async def test_when_nothing_goes_to_a_shadow_the_message_says_what_was_read(offline) -> None:
    sh, _, _ = offline
    for path in (b"/item/1", b"/item/2", b"/health"):
        assert sh.request(recorded_flow(path)) is None
    assert sh.replay.nothing_copied() == (
        "replay: no request of the capture went to a shadow: 3 read (e.g. GET /item/1); prefixes with a shadow: "
        "/api/. A capture taken in front of the service itself holds paths its Mapping already rewrote: record "
        "requests as clients send them (README: Test a release against recorded traffic)"
    )
    waiting = sh.request(recorded_flow(b"/api/x"))
    if waiting is not None:
        await asyncio.wait_for(waiting, 30)  # type: ignore[arg-type]
    assert sh.replay.copies == 1 and sh.replay.nothing_copied() is None


async def test_when_the_weight_samples_out_every_request_the_message_says_so(offline, tmp_path: Path) -> None:
    sh, tctx, _ = offline
    m = write_mappings(
        tmp_path / "w.yaml",
        mapping("api", prefix="/api/", service="prod:9000"),
        mapping("api-shadow", prefix="/api/", service="shadow", shadow=True, weight=0),
    )
    tctx.configure(sh, mappings=str(m))
    await loaded(sh.files)  # the proxy is running: the Mappings load off the event loop
    assert sh.request(recorded_flow(b"/api/a")) is None and sh.request(recorded_flow(b"/x")) is None
    assert sh.replay.nothing_copied() == (
        "replay: 1 of 2 recorded requests went to a route with a shadow, but its weight sampled none of them; "
        "shadow_replay_every_request=true (mitmshadow replay --every-request) copies every one, unless the weight "
        "is 0"
    )


def capture_file(tmp_path: Path, paths: list[bytes]) -> Path:
    from mitmproxy import io as mio

    path = tmp_path / "capture.mitm"
    with open(path, "wb") as fh:
        w = mio.FlowWriter(fh)
        for p in paths:
            w.add(recorded_flow(p))
    return path


async def test_a_capture_handed_to_the_replay_is_filtered_and_copied_as_with_r(offline, tmp_path: Path) -> None:
    """`Replay.play`'s reading (what `mitmshadow replay` uses instead of `-r`): the same filter, the same copies."""
    sh, tctx, shadow_app = offline
    tctx.configure(sh, readfile_filter="~u /api/keep")
    path = capture_file(tmp_path, [b"/api/keep/1", b"/api/skip", b"/other", b"/api/keep/2"])
    await asyncio.wait_for(sh.replay._read(str(path)), 30)
    assert sh.replay.read == 2 and sh.replay.copies == 2
    assert await asyncio.to_thread(wait_until, lambda: shadow_app.count() == 2, 30)
    assert sorted(s.path for s in shadow_app.seen) == ["/v1/keep/1", "/v1/keep/2"]


async def test_a_fault_while_a_capture_is_handed_over_is_logged_as_an_error(
    offline, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate gives no verdict when an error was logged: a fault must not read as a complete replay."""
    sh, _, _ = offline

    def broken(flow: http.HTTPFlow, own: bool = False) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(sh.replay, "recorded", broken)
    path = capture_file(tmp_path, [b"/api/a"])
    await asyncio.wait_for(sh.replay._read(str(path)), 30)
    assert [r.levelname for r in caplog.records if "stopped after" in r.getMessage()] == ["ERROR"]
