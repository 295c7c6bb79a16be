"""`mitmshadow replay --jobs N`: the capture replayed by N processes, each its part of the requests. The outcome must
be the one of a single process: every request copied once, the same verdict and counts, the same mismatches in the
JSON-lines report, and noise that one process learned applied in the others (a request recorded once cannot teach
noise by itself)."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import support
from support import Seen, Upstream, free_port, mapping, run_process, write_mappings

from shadow_addon.replayshards import SPAN, shard_of

MITMSHADOW = Path(sys.executable).parent / "mitmshadow"
WAIT = 180  # s: generous bound on a whole replay run on a loaded machine (never a timing assertion)
JOBS = 2
ROUNDS = 3


def _item(path: str) -> int:
    return int(path.split("?")[0].rsplit("/", 1)[1])


def items() -> tuple[list[int], list[int]]:
    """Items asked for ROUNDS times, all of them played by the first process, and items asked for once, played by
    the second: those can only be judged with the noise the first process learned."""
    part = {i: shard_of(b"GET", f"/api/items/{i}?view=full".encode(), JOBS) for i in range(60)}
    repeated = [i for i, k in part.items() if k == 0][:8]
    once = [i for i, k in part.items() if k == 1][:8]
    assert len(repeated) == len(once) == 8
    return repeated, once


def production_answer(item: int, time: int) -> dict[str, Any]:
    """`ts` differs between production's answers to the same request: noise."""
    return {"id": item, "ts": time, "price": item * 10}


def shadow_answer(seen: Seen) -> tuple[int, dict[str, str], bytes]:
    """The shadow: its own `ts` (noise) always; a price that differs for items divisible by 3; a failure for
    items divisible by 7."""
    item = _item(seen.path)
    if item % 7 == 0:
        return 500, {"content-type": "application/json"}, b'{"error": "down"}'
    doc = production_answer(item, 10_000)
    doc["price"] += item % 3 == 0
    return 200, {"content-type": "application/json"}, json.dumps(doc).encode()


def entries() -> list[dict[str, Any]]:
    repeated, once = items()
    asked = [(r, i) for r in range(ROUNDS) for i in repeated] + [(0, i) for i in once]
    return [
        {
            "startedDateTime": f"2024-05-01T12:00:{r:02d}.{n:03d}Z",
            "time": 1.5,
            "request": {
                "method": "GET",
                "url": f"http://shop.example/api/items/{i}?view=full",
                "httpVersion": "HTTP/1.1",
                "headers": [{"name": "Host", "value": "shop.example"}],
            },
            "response": {
                "status": 200,
                "httpVersion": "HTTP/1.1",
                "headers": [{"name": "Content-Type", "value": "application/json"}],
                "content": {"text": json.dumps(production_answer(i, r * 100 + i))},
            },
        }
        for n, (r, i) in enumerate(asked)
    ]


def write_capture(tmp: Path, kind: str) -> Path:
    return support.write_capture(tmp, kind, entries())


def replay(tmp: Path, cap: Path, shadow: Upstream, jobs: int, *extra: str) -> tuple[int, str, list[dict[str, Any]]]:
    """Exit code, output and the report's mismatches (request and kinds) of a replay by `jobs` processes."""
    m = write_mappings(
        tmp / "m.yaml",
        mapping("api", prefix="/api/", service="prod", rewrite="/v1/"),
        mapping("api-shadow", prefix="/api/", service="shadow", shadow=True),
    )
    report = tmp / f"report-{jobs}.jsonl"
    cmd = [str(MITMSHADOW), "replay", str(cap), "--mappings", str(m), "--jobs", str(jobs), "--report", str(report)]
    cmd += ["--service", f"prod=127.0.0.1:{free_port()}", "--service", f"shadow={shadow.address}", *extra]
    run = run_process(cmd, WAIT, cwd=str(tmp))
    lines = report.read_text().splitlines() if report.exists() else []
    mismatches = [{k: v for k, v in json.loads(ln).items() if k not in ("at", "time")} for ln in lines]
    return run.returncode, run.stdout + run.stderr, mismatches


def figures(out: str) -> list[str]:
    """The lines of the output that hold the outcome (the log's lines left out, and the latency columns)."""
    lines = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("[")]
    return [re.sub(r"(\s+\d+\s+\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+", r"\1", ln) for ln in lines]


@pytest.mark.parametrize("kind", ["har", "flows"])
def test_parts_replayed_at_once_give_the_outcome_of_one_process(kind: str, tmp_path: Path, upstream) -> None:
    shadow = upstream("shadow")
    shadow.behaviour.responder = shadow_answer
    cap = write_capture(tmp_path, kind)
    repeated, once = items()
    copies = ROUNDS * len(repeated) + len(once)

    code1, out1, report1 = replay(tmp_path, cap, shadow, 1)
    seen1 = sorted(s.path for s in shadow.seen)
    shadow.seen.clear()
    code2, out2, report2 = replay(tmp_path, cap, shadow, JOBS)
    seen2 = sorted(s.path for s in shadow.seen)

    assert len(seen1) == copies and seen2 == seen1  # every request copied once, by one process or the other
    assert code1 == code2 == 1, out1 + out2  # the prices that differ fail the gate
    assert figures(out2) == figures(out1), out1 + out2
    # The same mismatches, each with the same differences, noise and judgement: the items recorded once (the
    # second process) compared with the noise the first process learned from the repeated ones.
    assert report2 == report1 and report1
    compared = next(ln for ln in out2.splitlines() if ln.strip().startswith("compared"))
    assert "mismatch:" in compared and "noise:" in compared, out2
    assert f"{len(entries())} recorded flows, {copies} copies" in out2, out2


def test_the_shadow_gets_the_captures_requests_in_its_order_within_a_span(tmp_path: Path, upstream) -> None:
    """The processes keep pace (`replayshards.Progress`): one whose shadow answers slowly holds the other back, so a
    stateful shadow gets the capture's requests in their order to within SPAN entries and the copies in flight."""
    n = 4 * SPAN
    part = {i: shard_of(b"GET", f"/api/items/{i}?view=full".encode(), JOBS) for i in range(n)}

    def slow_for_one_part(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        if part[_item(seen.path)] == 1:
            time.sleep(0.01)
        return 200, {"content-type": "application/json"}, b"{}"

    shadow = upstream("shadow")
    shadow.behaviour.responder = slow_for_one_part
    cap = support.write_capture(tmp_path, "har", [dict(entries()[0], request=_get(i)) for i in range(n)])
    code, out, _ = replay(tmp_path, cap, shadow, JOBS, "--no-compare")
    assert code == 0, out
    order = [_item(s.path) for s in shadow.seen]
    assert sorted(order) == list(range(n))
    drift = max(abs(at - i) for at, i in enumerate(order))
    assert drift <= SPAN + 8, (drift, order)  # the span, and the copies in flight (4, shared)
    assert drift > 4  # the slow part did hold the other back: more than one process's window apart


def _get(i: int) -> dict[str, Any]:
    return {
        "method": "GET",
        "url": f"http://shop.example/api/items/{i}?view=full",
        "httpVersion": "HTTP/1.1",
        "headers": [{"name": "Host", "value": "shop.example"}],
    }


def test_a_capture_no_part_can_read_is_said_once(tmp_path: Path, upstream) -> None:
    """Every part fails the same way before reading the capture: the first part's error is the one shown, and the
    others are a line each, not their output again."""
    cap = tmp_path / "not-a-capture.har"
    cap.write_bytes(b"this is not a capture\n" * 100)
    code, out, _ = replay(tmp_path, cap, upstream("shadow"), JOBS)
    assert code != 0
    assert out.count("Failed to read") == 1, out
    assert f"part 2 of {JOBS} failed before reading the capture too" in out
    assert "exited with" not in out


def test_a_part_that_failed_on_its_own_shows_its_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A part that read the capture and then failed, or failed while the first part did not: its output is
    shown (the first part's, on the terminal, does not say why)."""
    from shadow_addon import replayjobs

    log = tmp_path / "output-1.log"
    log.write_text("[12:00:00.000] replay: something only this part saw\n")
    replayjobs._explain([2, 1], [True, True], [None, log])
    replayjobs._explain([0, 1], [False, False], [None, log])
    err = capsys.readouterr().err
    assert err.count("part 2 of 2 exited with 1:") == 2 and err.count("something only this part saw") == 2
    replayjobs._explain([2, 1], [False, False], [None, log])
    assert "failed before reading the capture too" in capsys.readouterr().err
