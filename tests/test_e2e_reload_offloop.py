"""A run-time change of `mappings` in mitmweb loads off the event loop: production keeps being answered by the
table serving while the new one is built, and a bad file keeps that table and puts the option back."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from support import (
    ADDON,
    MITMDUMP,
    WATCH_INTERVAL,
    Proxy,
    free_port,
    mapping,
    metric_sum,
    metrics_of,
    spawn,
    stop,
    wait_until,
    write_mappings,
)

from shadow_addon import mappingfiles

PASSWORD = "shadow-test"
XSRF = "shadow-test-xsrf"  # tornado's double-submit check: the same value as cookie and header
FILLER = 3000  # Mappings besides /a/ in the large file


def web(port: int, method: str, path: str, body: object = None) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {
        "Authorization": f"Bearer {PASSWORD}",
        "Cookie": f"_mitmproxy_xsrf={XSRF}",
        "X-XSRFToken": XSRF,
        "Content-Type": "application/json",
    }
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data.strip().startswith((b"{", b"[")) else data
    finally:
        conn.close()


def option(port: int, name: str) -> object:
    status, options = web(port, "GET", "/options")
    assert status == 200 and isinstance(options, dict), (status, options)
    return options[name]["value"]


def test_a_run_time_load_answers_production_meanwhile_and_a_bad_one_is_put_back(
    tmp_path: Path, upstream, proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    prod, one, two = upstream("prod"), upstream("one"), upstream("two")
    small = write_mappings(tmp_path / "small.yaml", mapping("a", prefix="/a/", service="one"))
    large = write_mappings(
        tmp_path / "large.yaml",
        mapping("a", prefix="/a/", service="two"),
        *(mapping(f"f{i}", prefix=f"/f-{i}/", service="one") for i in range(FILLER)),
    )
    bad = write_mappings(tmp_path / "bad.yaml", mapping("x", prefix="/x/"))
    gate = tmp_path / "gate"
    monkeypatch.setenv(mappingfiles.LOAD_GATE_ENV, str(gate))  # run-time loads wait, built, until it exists
    web_port = free_port()
    p = proxy(
        f"http://{prod.address}",
        web=True,
        sets={
            "mappings": str(small),
            "mappings_strict": "true",
            "mapping_services": [f"one={one.address}", f"two={two.address}"],
            "web_port": str(web_port),
            "web_host": "127.0.0.1",
            "web_password": PASSWORD,
            "confdir": str(tmp_path / "conf"),
        },
    )

    def served_by() -> str:
        status, _, body = p.request("GET", "/a/x")
        assert status == 200, (status, body)
        return json.loads(body)["name"]

    assert served_by() == "one"
    assert web(web_port, "PUT", "/options", {"mappings": str(large)})[0] == 200  # returns before the load ends
    assert wait_until(lambda: Path(f"{gate}.waiting").exists(), 60, 0.05), p.log
    # The worker holds the large table it built; the event loop answers meanwhile, from the table serving.
    assert [served_by() for _ in range(5)] == ["one"] * 5
    installed = f"mappings: {FILLER + 1} Mappings in {FILLER + 1} groups (0 with a shadow) from {large}"
    assert installed not in p.log and option(web_port, "mappings") == str(large)
    gate.touch()
    assert wait_until(lambda: served_by() == "two", 60, 0.05), p.log[-2000:]
    assert installed in p.log

    # A bad file at run time: nothing raised into mitmweb; logged, counted, the last table kept, the option back.
    assert web(web_port, "PUT", "/options", {"mappings": str(bad)})[0] == 200
    error = f"{bad} doc 1 (Mapping x.default): service is required"
    assert wait_until(lambda: error in p.log, 60, 0.05), p.log[-2000:]
    assert wait_until(lambda: option(web_port, "mappings") == str(large), 30, 0.05), p.log[-2000:]
    assert served_by() == "two"
    diag = json.loads(p.admin("/diag")[1])
    assert any(e["message"].endswith("service is required") for e in diag["errors"]), diag["errors"]
    assert metric_sum(metrics_of(p), "shadow_config_reloads_total", result="failure") == 1
    assert "Traceback" not in p.log

    # The reload command from mitmweb starts a load and returns.
    status, answer = web(web_port, "POST", "/commands/shadow.reload", {"arguments": []})
    assert status == 200 and answer == {"value": f"reloading {large}"}, answer
    assert wait_until(
        lambda: metric_sum(metrics_of(p), "shadow_config_reloads_total", result="success") == 3, 60, 0.05
    ), p.log[-2000:]
    assert served_by() == "two" and prod.count() == 0


def test_an_addon_reloaded_by_s_keeps_routing_while_it_loads(tmp_path: Path, upstream) -> None:
    """mitmproxy reloads a `-s` script when it changes: the new addon's first `configure` comes while the proxy
    serves, so it loads off the loop, and meanwhile routes with the table the process was serving."""
    prod, one = upstream("prod"), upstream("one")
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("a", prefix="/a/", service="one"),
        *(mapping(f"f{i}", prefix=f"/f-{i}/", service="one") for i in range(FILLER)),
    )
    script = tmp_path / "addon.py"
    shutil.copy(ADDON, script)  # a copy to touch: it imports the installed package, as the original does
    gate = tmp_path / "gate"
    port = free_port()
    cmd = [str(MITMDUMP), "-s", str(script), "--mode", f"reverse:http://{prod.address}", "--listen-host", "127.0.0.1"]
    cmd += ["-p", str(port), "--set", f"mappings={m}", "--set", f"mapping_services=one={one.address}"]
    cmd += ["--set", "shadow_admin="]
    env = dict(os.environ, PYTHONUNBUFFERED="1", MITMSHADOW_WATCH_INTERVAL=WATCH_INTERVAL)
    env[mappingfiles.LOAD_GATE_ENV] = str(gate)
    log = tmp_path / "mitmdump.log"
    p = Proxy(spawn(cmd, log, cwd=tmp_path, env=env), port, log)
    try:

        def served_by() -> str:
            status, _, body = p.request("GET", "/a/x")
            assert status == 200, (status, body)
            return json.loads(body)["name"]

        assert wait_until(lambda: "Mappings in" in p.log, 60, 0.05), p.log
        assert served_by() == "one"
        later = time.time() + 5
        os.utime(script, (later, later))  # mitmproxy polls its scripts' mtime every second
        assert wait_until(lambda: Path(f"{gate}.waiting").exists(), 60, 0.05), p.log[-2000:]
        # The new addon's load is held in its worker; requests are still routed, by the process's table.
        assert [served_by() for _ in range(5)] == ["one"] * 5 and prod.count() == 0
        gate.touch()
        assert wait_until(lambda: "reloaded" in p.log, 60, 0.05), p.log[-2000:]
        assert served_by() == "one" and prod.count() == 0
        assert "Traceback" not in p.log
    finally:
        stop(p.proc)
