"""Every command in the README's shell blocks is run here, as written, so the README cannot rot."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import (
    ROOT,
    Process,
    Upstream,
    read_log_until,
    readme_commands,
    run_process,
    spawn,
    started,
    stop,
    wait_until,
)

README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent


def run(cmd: str, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A README command as a shell runs it, from the checkout."""
    return run_process(cmd, timeout, cwd=ROOT, env={**os.environ, **(env or {})}, shell=True)


def test_every_readme_command_is_exercised_here() -> None:
    handled = {"scripts/test", "scripts/test --all", "scripts/demo", "scripts/demo --keep"}
    for cmd in readme_commands():
        assert cmd in handled or cmd.startswith(
            (".venv/bin/mitmdump -s shadow_addon/addon.py", ".venv/bin/python -c", CURL, *MITMSHADOW, *RECORDED_TRAFFIC)
        ), f"README command not exercised by tests/test_readme.py: {cmd}"
    assert {"scripts/test", "scripts/test --all", "scripts/demo"} <= set(readme_commands())


def test_scripts_test_is_what_ci_runs_and_it_bootstraps() -> None:
    assert "exec scripts/test --all" in (ROOT / ".ci" / "run").read_text()  # CI runs every tier through it
    r = run("scripts/test --collect-only -q tests/test_routing.py", 300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tests collected" in r.stdout


def test_scripts_demo_as_written() -> None:
    r = run("scripts/demo", 240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "production vs shadow" in r.stdout and "Dashboard: http://127.0.0.1:" in r.stdout


def test_scripts_demo_keep_runs_until_ctrl_c(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    with started(["scripts/demo", "--keep"], log, cwd=ROOT) as proc:
        read_log_until(log, "Press Ctrl-C to stop.", 240, proc)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        proc.wait(60)
        assert proc.returncode == 0, log.read_text(errors="replace")[-4000:]


def _mitmdump_command() -> str:
    cmds = [
        c
        for c in readme_commands()
        if c.startswith(".venv/bin/mitmdump -s shadow_addon/addon.py") and "mappings/grpc.yaml" not in c
    ]  # the gRPC quick start runs in test_e2e_grpc.py::test_the_readme_grpc_example_as_written
    assert len(cmds) == 1, cmds
    return cmds[0]


def _start_listening(cmd: list[str], cwd: Path, log: Path) -> Process:
    """A README mitmdump command on a free loopback port (read from its output with `_listen_port`)."""
    return spawn(cmd + ["--listen-host", "127.0.0.1", "-p", "0"], log, cwd=cwd)


def _listen_port(proc: Process, log: Path) -> int:
    """The port mitmdump says it listens at."""
    listening = re.compile(r"listening at 127\.0\.0\.1:(\d+)\D")  # \D: the whole number written
    m = listening.search(read_log_until(log, listening, 60, proc))
    assert m is not None
    return int(m.group(1))


def _get_items(port: int, n: int = 100) -> http.client.HTTPConnection:
    """GET /myservice/item/0..n-1 through the proxy at this port; returns the open connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(n):
        conn.request("GET", f"/myservice/item/{i}")
        r = conn.getresponse()
        r.read()
        assert r.status == 200
    return conn


def test_shadow_your_own_service_command_as_written(tmp_path: Path) -> None:
    cmd = _mitmdump_command()
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", cmd)]
    assert len(ports) == 3, cmd  # the reverse target, the service and its shadow
    servers: list[Upstream] = []
    try:
        for name, port in zip(("reverse-target", "myservice", "myservice-v2"), ports, strict=True):
            try:
                servers.append(Upstream(name, port=port))
            except OSError:
                pytest.skip(f"port {port} from the README is in use on this machine")
        reverse, svc, shadow = servers
        log = tmp_path / "mitmdump.log"
        proc = _start_listening(cmd.split() + ["--set", "shadow_admin="], ROOT, log)
        try:
            port = _listen_port(proc, log)
            curls = [c for c in readme_commands() if c.startswith(CURL)]
            assert curls  # the quick start's step 3
            for curl in curls:  # as written, sent to the port this run listens at instead of 8080
                r = run(curl.replace("127.0.0.1:8080", f"127.0.0.1:{port}"), 60)
                assert r.returncode == 0, r.stdout + r.stderr
            assert [s.path for s in svc.seen] == ["/hello"] * len(curls)  # routed, the prefix rewritten to "/"
            svc.seen.clear()
            conn = _get_items(port)
            conn.request("GET", "/other")
            conn.getresponse().read()
            conn.close()
            assert svc.count() == 100 and svc.seen[0].path == "/item/0"  # rewrite "/" by default
            assert reverse.count() == 1  # the implicit production service
            assert wait_until(lambda: shadow.count() >= 1, 10)  # weight 10: ~10 of 100 copied
            assert shadow.count() < 40
        finally:
            stop(proc, grace=15)
    finally:
        for s in servers:
            s.stop()


def test_addon_path_command_for_installed_packages() -> None:
    cmds = [c for c in readme_commands() if c.startswith(".venv/bin/python -c")]
    assert cmds
    for cmd in cmds:
        r = run(cmd, 60)
        assert r.returncode == 0, r.stderr
        assert Path(r.stdout.strip()).is_file() and r.stdout.strip().endswith("shadow_addon/addon.py")


def test_every_test_the_guarantees_name_exists() -> None:
    """`file.py::test_name` (and `::test_name`, same file as the one before) in docs/guarantees.md's table."""
    named: list[tuple[str, str]] = []
    for row in (ROOT / "docs" / "guarantees.md").read_text().splitlines():
        current = ""
        for file, name in re.findall(r"`(?:(test_\w+\.py))?::(test_\w+)`", row):
            current = file or current
            assert current, f"{name} is named without its file: {row[:80]}"
            named.append((current, name))
    assert len(named) >= 10
    missing = [
        f"{f}::{n}" for f, n in named if not re.search(rf"^(async )?def {n}\(", (ROOT / "tests" / f).read_text(), re.M)
    ]
    assert not missing


CURL = "curl http://127.0.0.1:8080/"
MITMSHADOW = (".venv/bin/mitmshadow --help", ".venv/bin/mitmshadow explain ")

# "Test a release against recorded traffic": record, replay, gate (run by the test below).
RECORDED_TRAFFIC = (
    ".venv/bin/mitmshadow --mode reverse:",
    ".venv/bin/mitmdump -n -r ",
    ".venv/bin/mitmshadow replay ",
)


def test_record_replay_and_gate_commands_as_written(tmp_path: Path) -> None:
    """Recorded as clients send the requests (`/myservice/...`), which production gets rewritten (`/item/...`):
    the replay routes them by the Mapping that routed each, and the gate copies every one."""
    record, replay, gate = (next(c for c in readme_commands() if c.startswith(prefix)) for prefix in RECORDED_TRAFFIC)
    for name in (".venv", "shadow_addon", "mappings"):  # the commands' relative paths, from a scratch directory
        (tmp_path / name).symlink_to(ROOT / name)
    ports = sorted({int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", record + replay + gate)})
    servers: list[Upstream] = []
    try:
        for name, port in zip(("reverse-target", "production", "myservice-shadow"), ports, strict=True):
            try:
                servers.append(Upstream(name, port=port))
            except OSError:
                pytest.skip(f"port {port} from the README is in use on this machine")
        _, production, shadow = servers
        production.behaviour.body = shadow.behaviour.body = b'{"ok": true}'
        log = tmp_path / "mitmdump.log"
        proc = _start_listening(record.split() + ["--set", "shadow_admin="], tmp_path, log)
        try:
            _get_items(_listen_port(proc, log)).close()
        finally:
            stop(proc, grace=30)  # SIGINT: mitmdump writes out the recording and exits
        assert production.count() == 100 and (tmp_path / "prod.mitm").stat().st_size > 0
        assert production.seen[0].path == "/item/0"  # rewritten by the Mapping: what the service itself sees
        assert wait_until(lambda: shadow.count() >= 1, 10)  # recording shadows live too (weight 10)
        shadow.seen.clear()

        def in_scratch(cmd: str) -> subprocess.CompletedProcess[str]:
            return run_process(cmd, 240, cwd=tmp_path, shell=True)

        r = in_scratch(replay + " --set shadow_admin=")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        copied = shadow.count()
        assert 1 <= copied < 40  # weight 10: ~10 of 100 copied
        assert all(s.path.startswith("/item/") and "-shadow" in (s.header("host") or "") for s in shadow.seen)
        assert production.count() == 100  # never contacted by a replay
        shadow.seen.clear()
        r = in_scratch(gate)
        assert r.returncode == 0 and "ok: myservice-shadow: 0 of 100 pairs differ" in r.stdout, r.stdout[-3000:]
        assert shadow.count() == 100  # --every-request: the weight does not sample
        shadow.behaviour.body = b'{"ok": false}'
        r = in_scratch(gate)
        assert r.returncode == 1 and "FAIL: myservice-shadow:" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    finally:
        for s in servers:
            s.stop()


def test_mitmshadow_commands_as_written() -> None:
    """`mitmshadow --help` and `mitmshadow explain` as the README shows them."""
    cmds = [c for c in readme_commands() if c.startswith(MITMSHADOW)]
    assert {c.split()[1] for c in cmds} == {"--help", "explain"}, cmds
    for cmd in cmds:
        r = run(cmd, 60)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
        if " explain " in f"{cmd} ":
            # the quick start's shadow: the Mapping myservice-shadow copies to the service myservice-v2
            assert "shadow myservice-shadow.default -> myservice-v2.default" in r.stdout, r.stdout
        else:
            assert "usage:" in r.stdout and "--help-mitmdump" in r.stdout, r.stdout


class _Loader:
    """Records what `settings.declare` registers, as mitmproxy's loader would receive it."""

    def __init__(self) -> None:
        self.options: dict[str, object] = {}

    def add_option(self, name: str, typespec: object, default: object, help: str, choices: object = None) -> None:
        self.options[name] = default


def _readme_options() -> dict[str, str]:
    """The README's Options table: option name -> its default column."""
    section = README.read_text().split("\n## Options\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `(\w+)` \| ([^|]*?) \|", section, re.M))


def test_every_option_is_in_the_readme_table_with_its_default() -> None:
    from shadow_addon import settings

    loader = _Loader()
    settings.declare(loader)
    table = _readme_options()
    assert len(loader.options) >= 20
    assert sorted(set(loader.options) - set(table)) == []  # declared, not documented
    assert sorted(set(table) - set(loader.options)) == []  # documented, not declared
    for name, default in loader.options.items():
        shown = table[name].strip("`")
        if isinstance(default, bool):
            assert shown == str(default).lower(), name
        elif isinstance(default, int):
            assert shown == str(default), name
        elif isinstance(default, str):
            assert shown == (default or "empty"), name
        else:  # a list
            assert shown == (", ".join(default) or "none"), name  # type: ignore[call-overload]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_in_the_readme_and_docs_resolve() -> None:
    """Every relative link names a file that exists, and every #anchor a heading of that file."""
    docs = [README, *sorted((ROOT / "docs").glob("*.md"))]
    checked = 0
    for doc in docs:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # an absolute URL
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            assert file.exists(), f"{doc.name}: link to missing {target}"
            if anchor:
                headings = re.findall(r"^#+ (.*)$", file.read_text(), re.M)
                assert anchor in {_anchor(h) for h in headings}, f"{doc.name}: no heading for {target}"
            checked += 1
    assert checked >= 5
