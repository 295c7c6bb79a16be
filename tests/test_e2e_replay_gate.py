"""`mitmshadow replay` hands the capture to the addon alone (not through mitmproxy's reader and every addon's
hooks): each recorded request still goes to the shadow its Mapping names, sampled by the shadow's weight, from a
flow file as from a HAR, and a shadow that is down fails the gate with every copy counted."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from mitmproxy import http as mhttp
from mitmproxy import io
from mitmproxy.addons import savehar
from mitmproxy.test import tflow, tutils
from support import free_port, mapping, run_process, write_mappings

from shadow_addon import routing

MITMSHADOW = Path(sys.executable).parent / "mitmshadow"
WAIT = 120  # s: generous bound on a whole replay run on a loaded machine (never a timing assertion)
ANSWER = b'{"ok": true}'
USERS = [f"user-{i}" for i in range(24)]


def mappings_file(tmp: Path) -> Path:
    """/api/ copied whole (rewritten to /v1/), /img/ (rewritten to /, the default) copied at weight 50 (sticky on
    x-user), /other/ not copied."""
    return write_mappings(
        tmp / "mappings.yaml",
        mapping("api", prefix="/api/", service="prod", rewrite="/v1/"),
        mapping("api-next", prefix="/api/", service="api-candidate", shadow=True),
        mapping("img", prefix="/img/", service="prod"),
        mapping("img-next", prefix="/img/", service="img-candidate", shadow=True, weight=50),
        mapping("other", prefix="/other/", service="prod"),
    )


def capture(tmp: Path) -> tuple[Path, Path]:
    """The same recorded exchanges as a flow file (mitmproxy's writer) and a HAR (mitmproxy's HAR export)."""
    flows = []
    for i in range(10):
        flows.append(f"/api/items/{i}")
    for user in USERS:
        flows.append(f"/img/{user}.png")
    for i in range(5):
        flows.append(f"/other/{i}")
    recorded = []
    for path in flows:
        user = path.removeprefix("/img/").removesuffix(".png") if path.startswith("/img/") else "none"
        req = tutils.treq(path=path.encode(), host="shop.example", port=80, headers=mhttp.Headers(x_user=user))
        resp = tutils.tresp(content=ANSWER, headers=mhttp.Headers(content_type="application/json"))
        recorded.append(tflow.tflow(req=req, resp=resp))
    mitm = tmp / "capture.mitm"
    with open(mitm, "wb") as fh:
        w = io.FlowWriter(fh)
        for f in recorded:
            w.add(f)
    har = tmp / "capture.har"
    har.write_text(json.dumps(savehar.SaveHar().make_har(recorded)))
    return mitm, har


def gate(tmp: Path, cap: Path, api: str, img: str, *extra: str) -> tuple[int, str]:
    cmd = [str(MITMSHADOW), "replay", str(cap), "--mappings", str(mappings_file(tmp))]
    cmd += ["--service", f"prod=127.0.0.1:{free_port()}", "--service", f"api-candidate={api}"]
    cmd += ["--service", f"img-candidate={img}", "--set", "shadow_sample_key=x-user", *extra]
    run = run_process(cmd, WAIT, cwd=str(tmp))
    return run.returncode, run.stdout + run.stderr


def test_each_entry_goes_to_its_mappings_shadow_sampled_by_weight_from_a_flow_file_and_a_har(
    tmp_path: Path, upstream
) -> None:
    api, img = upstream("api-candidate"), upstream("img-candidate")
    api.behaviour.body = img.behaviour.body = ANSWER
    sampled = sorted(f"/{u}.png" for u in USERS if (routing.sample_draw(u) or 0.0) < 50)
    assert 0 < len(sampled) < len(USERS)  # the weight keeps some and drops others
    for cap in capture(tmp_path):
        code, out = gate(tmp_path, cap, api.address, img.address)
        assert code == 0, out
        assert sorted(s.path for s in api.seen) == sorted(f"/v1/items/{i}" for i in range(10))
        assert sorted(s.path for s in img.seen) == sampled
        assert "ok: api-next: 0 of 10 pairs differ (0.0%; allowed 0.0%)" in out
        assert f"ok: img-next: 0 of {len(sampled)} pairs differ (0.0%; allowed 0.0%)" in out
        assert f"{10 + len(USERS) + 5} recorded flows, {10 + len(sampled)} copies" in out
        api.seen.clear()
        img.seen.clear()
    # --every-request: every request a shadow's route gets, whatever the weight.
    code, out = gate(tmp_path, capture(tmp_path)[1], api.address, img.address, "--every-request")
    assert code == 0 and img.count() == len(USERS), out


def test_a_shadow_that_is_down_fails_the_gate_with_every_copy_counted(tmp_path: Path, upstream) -> None:
    img = upstream("img-candidate")
    img.behaviour.body = ANSWER
    down = f"127.0.0.1:{free_port()}"  # nothing listens: every connection is refused
    code, out = gate(tmp_path, capture(tmp_path)[0], down, img.address, "--every-request")
    assert code == 1, out
    assert "FAIL: api-next: 10 of 10 pairs differ (100.0%; allowed 0.0%)" in out
    assert f"ok: img-next: 0 of {len(USERS)} pairs differ" in out
    dropped = re.search(r"-> api-next .*\n(?:.*\n)*?\s+dropped\s+(\S+)\n", out)
    assert dropped and sum(int(n) for n in re.findall(r":(\d+)", dropped[1])) == 10, out
    assert "connect_error" in dropped[1], out


def test_copies_made_from_the_flows_kept_compare_as_the_capture_read_again(tmp_path: Path, upstream) -> None:
    """The replay parses the capture once: the learning of noise keeps the flows it reads on disk, beside the
    capture, and the copies are made from them. A filter makes it read the capture again, whole, through
    mitmproxy's reader: the same copies, verdicts and report either way, and nothing left beside the capture."""
    api, img = upstream("api-candidate"), upstream("img-candidate")
    img.behaviour.body = ANSWER
    differs = ("/v1/items/3", "/v1/items/7")
    api.behaviour.responder = lambda seen: (
        200,
        {"content-type": "application/json"},
        b'{"ok": false}' if seen.path in differs else ANSWER,
    )
    for cap in capture(tmp_path):
        outcomes = []
        for extra in ((), ("--set", "readfile_filter=~all")):
            report = tmp_path / f"report-{cap.suffix[1:]}-{len(outcomes)}.jsonl"
            options = ("--every-request", "--report", str(report), *extra)
            code, out = gate(tmp_path, cap, api.address, img.address, *options)
            lines = [json.loads(ln) for ln in report.read_text().splitlines()]
            outcomes.append(
                (
                    code,
                    [ln for ln in out.splitlines() if ln.startswith(("ok:", "FAIL:"))],
                    sorted(s.path for s in api.seen + img.seen),
                    sorted((r["request"]["path"], r["result"], r["diffs"]) for r in lines),
                )
            )
            api.seen.clear()
            img.seen.clear()
        assert outcomes[0] == outcomes[1]
        code, verdicts, seen, mismatches = outcomes[0]
        assert code == 1 and "FAIL: api-next: 2 of 10 pairs differ (20.0%; allowed 0.0%)" in verdicts
        assert len(seen) == 10 + len(USERS) and [m[0] for m in mismatches] == list(differs)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("report-")) == [
        "capture.har",
        "capture.mitm",
        "mappings.yaml",
    ]
