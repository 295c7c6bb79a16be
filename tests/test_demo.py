"""scripts/demo end to end, as a newcomer runs it: the shop, the proxy, the traffic and the report; and that
every process it starts is gone when it ends (normally, by Ctrl-C in --keep mode, or after a failed start)."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ROOT, read_log_until, run_process, started, wait_until

DEMO = ROOT / "scripts" / "demo.py"
MARK = "SHADOW_DEMO_TEST_RUN"  # set in the demo's environment; every process it starts inherits it


def marked_processes(mark: str) -> list[int]:
    """Live processes whose environment carries MARK=mark: the demo and everything it started."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes()  # empty for a zombie: it is already gone
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(d.name))
    return found


@pytest.fixture
def demo_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The demo's environment: a unique mark, and TMPDIR in tmp_path (the demo keeps its logs there on errors).
    After the test: nothing carrying the mark may be alive (it is killed, then the test fails)."""
    mark = uuid.uuid4().hex
    yield dict(os.environ, TMPDIR=str(tmp_path), PYTHONUNBUFFERED="1", **{MARK: mark})
    if not wait_until(lambda: not marked_processes(mark), timeout=10):
        left = marked_processes(mark)
        details = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200] for pid in left}
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pytest.fail(f"the demo left processes running: {details}")


def test_demo_runs_and_reports(tmp_path: Path, demo_env: dict[str, str]) -> None:
    report = tmp_path / "report.json"
    n = 300
    r = run_process(
        [sys.executable, str(DEMO), "--requests", str(n), "--json-report", str(report)], 120, cwd=ROOT, env=demo_env
    )
    out = r.stdout
    assert r.returncode == 0, out + r.stderr

    # The printed table: a production row and a shadow row, both with requests.
    prod_row = re.search(r"^/api/\s+production\s+(\d+)\s+(\d+)", out, re.M)
    shadow_row = re.search(r"^\s+-> shop-v2\s+shadow\s+(\d+)\s+(\d+)", out, re.M)
    assert prod_row and shadow_row, out
    assert int(prod_row[1]) == n and int(shadow_row[1]) > 0
    assert "What you are looking at:" in out and "Dashboard: http://127.0.0.1:" in out

    # The numbers, from /report.json as the demo fetched it.
    rows = {r["shadow_mapping"]: r for r in json.loads(report.read_text())}
    assert set(rows) == {"shop-v2", "catalog-v2"}, rows
    row = rows["shop-v2"]
    prod, shadow = row["production"], row["shadow"]
    assert row["shadow_mapping"] == "shop-v2" and row["weight"] == 50
    assert prod["requests"] == n and prod["errors"] == 0
    # weight 50: a binomial(300, 0.5) sample has sd ~8.7; 0.3..0.7 is more than 6 sd either side.
    assert 0.3 * n <= shadow["requests"] + sum(row["drops"].values()) <= 0.7 * n, row
    assert shadow["errors"] > 0 and shadow["codes"].get("500", 0) > 0, shadow["codes"]
    # v2's search sleeps 40 ms and is ~35 % of the traffic: its p90 is past 35 ms, and slower than production's.
    assert shadow["p90"] >= 0.035 and shadow["p90"] > prod["p90"], (shadow, prod)
    hist = shadow["histogram"]
    slow = sum(c for le, c in zip([*hist["le"], float("inf")], hist["counts"], strict=True) if le > 0.025)
    assert slow >= 0.25 * shadow["requests"], hist

    # Each process's own count: the canary took some production traffic, and every store got only its orders.
    stats = {
        m[1]: (int(m[2]), int(m[3]))
        for m in re.finditer(r"^\s+(shop\S*)\s+v\d\s+(\d+) requests\s+(\d+) orders", out, re.M)
    }
    assert set(stats) == {"shop", "shop-canary", "shop-v2"}, out
    assert stats["shop"][0] + stats["shop-canary"][0] == n and stats["shop-canary"][0] > 0
    assert stats["shop"][1] + stats["shop-canary"][1] == prod["codes"].get("201", 0) > 0
    # v2 saw exactly the copies the report counts, give or take copies that timed out after reaching it.
    v2_requests, v2_orders = stats["shop-v2"]
    lost = shadow["codes"].get("error", 0)
    assert shadow["requests"] - lost <= v2_requests <= shadow["requests"], (stats, shadow)
    assert shadow["codes"].get("201", 0) <= v2_orders <= shadow["codes"].get("201", 0) + lost, (stats, shadow)

    # The gRPC price service: every call answered by v1 and copied over HTTP/2 to v2, whose grpc-status differs.
    grpc_prod, grpc_shadow = rows["catalog-v2"]["production"], rows["catalog-v2"]["shadow"]
    assert grpc_prod["requests"] == grpc_shadow["requests"] == 100, rows["catalog-v2"]
    assert re.search(r"^  100 gRPC calls .* grpc-status OK:100$", out, re.M), out
    assert re.search(r"^\s+-> catalog-v2\s+shadow\s+100 .*grpc OK:50 NOT_FOUND:50", out, re.M), out

    # The recorded traffic, replayed offline through the CI gate: v2's differences block it; production untouched.
    replay = out.split("replayed offline against v2 (mitmshadow replay):", 1)[1]
    gate = re.search(r"^  FAIL: shop-v2: (\d+) of (\d+) pairs differ", replay, re.M)
    assert gate and 0 < int(gate[1]) < int(gate[2]), replay
    status = re.search(
        r"exit status 1: the gate would block this release in CI; v2 got (\d+) copies, production 0 ", replay
    )
    assert status and 0 < int(status[1]) <= int(gate[2]), replay  # a copy that timed out may not have reached v2
    assert re.search(r"GET /api/cart/\w+ .*/total_cents: missing", replay), replay  # the renamed field
    assert re.search(r"^  FAIL: catalog-v2: 100 of 100 pairs differ", replay, re.M), replay


def test_demo_keep_web_until_ctrl_c(tmp_path: Path, demo_env: dict[str, str]) -> None:
    log = tmp_path / "demo.log"
    with started([sys.executable, str(DEMO), "--web", "--requests", "60"], log, cwd=ROOT, env=demo_env) as proc:
        out = read_log_until(log, "Press Ctrl-C to stop.", 90, proc)
        urls = dict(re.findall(r"^  (proxy|dashboard|mitmweb)\s+(http://127\.0\.0\.1:\d+/\S*)", out, re.M))
        assert set(urls) == {"proxy", "dashboard", "mitmweb"}, out
        for name, url in urls.items():
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert resp.status == 200, (name, url)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does, to the demo alone: it stops the rest
        proc.wait(30)
        assert proc.returncode == 0, log.read_text(errors="replace")


def test_demo_fails_clearly_when_the_proxy_cannot_start(tmp_path: Path, demo_env: dict[str, str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: shop}\n"
        "spec: {prefix: /api/, service: shop, weight: [lots}\n"  # not YAML: an invalid Mapping alone would load
    )
    # The bound only ends a demo that would wait for a proxy that never starts; a working one exits at once.
    r = run_process([sys.executable, str(DEMO), "--mappings", str(bad)], 60, cwd=ROOT, env=demo_env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "demo: error: mitmdump exited at start-up" in r.stderr and "YAML syntax error" in r.stderr
    assert "logs kept in " + str(tmp_path) in r.stderr
