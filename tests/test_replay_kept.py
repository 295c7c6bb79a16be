"""`mitmshadow replay` reads its capture once: noise is learned from production's answers as they come, and the
pairs, judged at the end in the capture's order, are compared again then with all the noise the capture taught when
they differed. The outcome must be the one of knowing that noise before the first comparison: the same copies,
counts, judgements and stored mismatches, for a HAR and a flow file, with noise, mismatches, a shadow failing,
bodies and requests no shadow takes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import support
from mitmproxy.addons import readfile
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons
from support import Seen, Upstream, mapping, wait_until, write_mappings

from shadow_addon import capture
from shadow_addon.compare import ordered
from shadow_addon.compare.ordered import CaptureOrder
from shadow_addon.shadow import Shadow

ITEMS = 9


def production_answer(item: int, time: int) -> dict[str, Any]:
    """Production's document: `ts` differs between two answers to the same request (noise)."""
    return {"id": item, "ts": time, "price": item * 10, "tags": ["a", "b"][: 1 + item % 2]}


def shadow_answer(seen: Seen) -> tuple[int, dict[str, str], bytes]:
    """The shadow: its own `ts` (noise), a price that differs for every third item, a failure for item 4, an
    extra field for item 5."""
    item = int(seen.path.split("?")[0].rsplit("/", 1)[1])
    if item == 4:
        return 500, {"content-type": "application/json"}, b'{"error": "down"}'
    doc = production_answer(item, 10_000)
    doc["price"] += item % 3 == 0
    if item == 5:
        doc["new"] = True
    return 200, {"content-type": "application/json"}, json.dumps(doc).encode()


def entries() -> list[dict[str, Any]]:
    """Each item asked for three times (a GET, and a POST with a body for odd items), interleaved, and requests
    for a path no shadow takes."""
    out: list[dict[str, Any]] = []
    for round_ in range(3):
        for item in range(ITEMS):
            post = item % 2 == 1
            request: dict[str, Any] = {
                "method": "POST" if post else "GET",
                "url": f"http://shop.example/api/items/{item}?view=full",
                "httpVersion": "HTTP/1.1",
                "headers": [{"name": "Host", "value": "shop.example"}, {"name": "Accept", "value": "*/*"}],
            }
            if post:
                request["postData"] = {"mimeType": "application/json", "text": json.dumps({"qty": item})}
            out.append(
                {
                    "startedDateTime": f"2024-05-01T12:00:{round_:02d}.{item:03d}Z",
                    "time": 1.5,
                    "request": request,
                    "response": {
                        "status": 200,
                        "httpVersion": "HTTP/1.1",
                        "headers": [{"name": "Content-Type", "value": "application/json"}],
                        "content": {"text": json.dumps(production_answer(item, round_ * 100 + item))},
                    },
                }
            )
        other = dict(out[-1], request=dict(out[-1]["request"], url="http://shop.example/other/1", method="GET"))
        out.append(other)
    return out


def write_capture(tmp: Path, kind: str) -> Path:
    return support.write_capture(tmp, kind, entries())


@pytest.fixture
async def shadow_app() -> AsyncIterator[Upstream]:
    app = Upstream("shadow")
    app.behaviour.responder = shadow_answer
    try:
        yield app
    finally:
        app.stop()


def undated(record: Any) -> Any:
    """A stored mismatch without what tells when it was made (its time, the shadow's Date header)."""
    if isinstance(record, Mapping):
        return {k: undated(v) for k, v in record.items() if k not in ("time", "id", "at")}
    if isinstance(record, list | tuple):
        if len(record) == 2 and str(record[0]).lower() == "date":
            return None
        return [undated(v) for v in record]
    return record


async def replayed(
    tmp: Path, app: Upstream, cap: Path, inflight: int = 1, taught: dict[str, Any] | None = None, **options: Any
) -> dict[str, Any]:
    """`Replay.play`'s reading of `cap` with comparison on, `inflight` copies in flight at a time, its pairs judged
    at the end in the capture's order, and what came of it. `taught`: noise known before the first comparison."""
    m = write_mappings(
        tmp / "m.yaml",
        mapping("api", prefix="/api/", service="prod:9000", rewrite="/v1/"),
        mapping("api-shadow", prefix="/api/", service="shadow", shadow=True),
        mapping("other", prefix="/other/", service="prod:9000"),
    )
    sh = Shadow()
    with taddons.context(sh, Proxyserver(), readfile.ReadFile()) as tctx:
        tctx.configure(
            sh,
            mappings=str(m),
            mapping_services=[f"shadow={app.address}"],
            shadow_admin="",
            shadow_compare=True,
            shadow_max_inflight=inflight,
            **options,
        )
        sh.running()
        try:
            r = sh.replay
            assert sh.pairing is not None
            sh.pairing.offline()
            sh.pairing.in_capture_order(CaptureOrder())
            if taught is not None:
                sh.pairing.learner.teach(taught)
            await asyncio.wait_for(r._read(str(cap)), 60)
            settled = await asyncio.to_thread(
                wait_until, lambda: r.settled_copies == r.copies and not sh.pairing.pairs, 60
            )
            assert settled
            r.judge()
            return {
                "read": r.read,
                "copies": r.copies,
                "seen": sorted((s.method, s.path, s.body) for s in app.seen),
                "counts": sh.metrics.compare_counts(),
                "judge": sh.pairing.judge.summary(),
                "stored": [undated(rec) for rec in sh.pairing.store.records],
                "noise": sorted(str(p) for p in sh.pairing.learner.noise("api-shadow").paths),
                "learned": sh.pairing.learner.learned(),
            }
        finally:
            sh.done()


@pytest.mark.parametrize("kind", ["har", "flows"])
async def test_one_reading_judges_as_if_the_noise_were_known_from_the_start(
    kind: str, tmp_path: Path, shadow_app: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ts` differs in production's answers only from the second round on, so the first round's pairs are compared
    before it is known as noise: judged, they are noise all the same, as when it is known before the first one."""
    cap = write_capture(tmp_path, kind)
    reads: list[str] = []
    real = capture.recorded_flows

    def counted(fh: Any, whole: bool = False, keep: Any = None) -> Any:
        reads.append("capture")
        return real(fh, whole, keep)

    monkeypatch.setattr(capture, "recorded_flows", counted)
    once = await replayed(tmp_path, shadow_app, cap)
    assert reads == ["capture"]  # read once

    shadow_app.seen.clear()
    known = await replayed(tmp_path, shadow_app, cap, taught=once["learned"])
    assert {k: v for k, v in once.items() if k != "learned"} == {k: v for k, v in known.items() if k != "learned"}
    assert once["read"] == 3 * (ITEMS + 1) and once["copies"] == 3 * ITEMS
    assert once["seen"][0] == ("GET", "/v1/items/0?view=full", b"")  # rewritten once, from the flow as recorded
    counts = once["counts"]["api-shadow"]
    assert counts["mismatch"] > 0 and counts["noise"] > 0 and sum(counts.values()) == 3 * ITEMS
    assert once["noise"] == [str(("ts",))]  # learned from production's own answers
    assert once["stored"]


async def test_with_a_filter_the_capture_is_read_whole(
    tmp_path: Path, shadow_app: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filter may look at any part of a flow: mitmproxy's reader builds each whole, and the filter decides what
    is copied."""
    cap = write_capture(tmp_path, "har")
    reads: list[bool] = []
    real = capture.recorded_flows

    def counted(fh: Any, whole: bool = False, keep: Any = None) -> Any:
        reads.append(whole)
        return real(fh, whole, keep)

    monkeypatch.setattr(capture, "recorded_flows", counted)
    out = await replayed(tmp_path, shadow_app, cap, readfile_filter="~u /api/items/2")
    assert reads == [True]
    assert out["copies"] == 3 and {p for _, p, _ in out["seen"]} == {"/v1/items/2?view=full"}


async def test_answers_in_any_order_are_judged_as_the_capture_orders_them(tmp_path: Path, shadow_app: Upstream) -> None:
    """The judge re-judges each pair against the rates so far and the endpoint namer learns as it goes: a replay
    judges its pairs at the end in the capture's order, so answers that come in another order (many in flight,
    the shadow answering some late) give the same counts, judgements and stored mismatches."""
    cap = write_capture(tmp_path, "har")
    one = await replayed(tmp_path, shadow_app, cap)
    shadow_app.seen.clear()
    real = shadow_app.behaviour.responder

    def late_for_some(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        item = int(seen.path.split("?")[0].rsplit("/", 1)[1])
        if item % 4 == 0:
            time.sleep(0.05)  # answered after copies sent later
        return real(seen)

    shadow_app.behaviour.responder = late_for_some
    many = await replayed(tmp_path, shadow_app, cap, inflight=8)
    assert many["counts"] == one["counts"] and many["judge"] == one["judge"]
    assert many["stored"] == one["stored"]
    assert one["counts"]["api-shadow"]["mismatch"] > 0 and one["counts"]["api-shadow"]["noise"] > 0


async def test_pairs_held_behind_a_late_answer_are_bounded(
    tmp_path: Path, shadow_app: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pairs wait in memory only behind one still waiting for its answer; past `ordered.WAITING` of them the replay
    reads no further until that answer comes, and the outcome is the same."""
    cap = write_capture(tmp_path, "har")
    one = await replayed(tmp_path, shadow_app, cap)
    shadow_app.seen.clear()
    real = shadow_app.behaviour.responder

    def first_late(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        if seen.path.startswith("/v1/items/0?") and not any(s.path == seen.path for s in shadow_app.seen[:-1]):
            time.sleep(0.3)  # the capture's first copy answers last
        return real(seen)

    shadow_app.behaviour.responder = first_late
    held: list[int] = []
    add = CaptureOrder.add

    def counted(self: CaptureOrder, c: Any) -> None:
        add(self, c)
        held.append(self.waiting)

    monkeypatch.setattr(CaptureOrder, "add", counted)
    monkeypatch.setattr(ordered, "WAITING", 3)
    bounded = await replayed(tmp_path, shadow_app, cap, inflight=8)
    assert max(held) <= 3 + 8  # the bound, and the copies already in flight when it was reached
    assert max(held) >= 3  # it was reached: answers came in behind the late one
    assert bounded["counts"] == one["counts"] and bounded["stored"] == one["stored"]
