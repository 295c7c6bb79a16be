"""Option parsing in the addon, with mitmproxy's own test context (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons, tflow, tutils
from support import ADDON, MITMDUMP, loaded, mapping, run_process, started, wait_until, write_mappings

from shadow_addon import settings
from shadow_addon.shadow import Shadow


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("mapping_services", ["nonsense"], "mapping_services: expected NAME=[scheme://]HOST:PORT, got 'nonsense'"),
        ("mapping_services", ["a=ftp://h:1"], "mapping_services: service scheme must be http or https, got 'ftp'"),
        ("shadow_add_headers", ["no colon"], "shadow_add_headers: expected 'Name: value', got 'no colon'"),
        ("shadow_remove_headers", ["bad name:"], "shadow_remove_headers: expected a header name, got 'bad name:'"),
        ("shadow_remove_headers", ["x(y)"], "shadow_remove_headers: expected a header name, got 'x(y)'"),
        (
            "shadow_add_headers",
            ["x-a: 1\r\nInjected: yes"],
            "shadow_add_headers: expected 'Name: value', got 'x-a: 1\\r\\nInjected: yes'",
        ),
        ("shadow_add_headers", ["x(y): 1"], "shadow_add_headers: expected 'Name: value', got 'x(y): 1'"),
        ("shadow_timeout", "soon", "shadow_timeout must be a number of seconds, got 'soon'"),
        ("shadow_timeout", "-1", "shadow_timeout must be a number of seconds, got '-1'"),
        ("shadow_body_limit", "lots", "shadow_body_limit: expected a size such as 512k or 1m, got 'lots'"),
        ("shadow_max_inflight", 0, "shadow_max_inflight must be >= 1 and shadow_max_backlog >= 0"),
        ("shadow_admin", "8877", "shadow_admin: expected HOST:PORT, got '8877'"),
        (
            "shadow_compare_secondary",
            ["orders=ftp://h:1"],
            "shadow_compare_secondary: service scheme must be http or https, got 'ftp'",
        ),
        (
            "shadow_compare_endpoints",
            ["cart/{user}"],
            "shadow_compare_endpoints: endpoint pattern 'cart/{user}': expected [METHOD ]/path with {name} segments",
        ),
        ("shadow_methods", ["GET,POST"], "shadow_methods: expected a method such as GET, got 'GET,POST'"),
        (
            "shadow_compare_relative_threshold",
            "a lot",
            "shadow_compare_relative_threshold must be a percentage, got 'a lot'",
        ),
        ("shadow_compare_absolute_threshold", "-1", "shadow_compare_absolute_threshold must be a percentage, got '-1'"),
        (
            "shadow_admin",
            "0.0.0.0:8877",
            "shadow_admin: 0.0.0.0 is not a loopback address; the admin server has no "
            "authentication (set shadow_admin_allow_remote=true to allow it)",
        ),
    ],
)
def test_bad_options_are_one_line_option_errors(option: str, value: object, message: str) -> None:
    sh = Shadow()
    with taddons.context(sh, Proxyserver()) as tctx:
        tctx.configure(sh)  # start-up: an error is logged as one line, and mitmdump exits (see the e2e test)
        sh.files.running = True  # at run time, `set` raises: mitmproxy rolls the option back
        with pytest.raises(exceptions.OptionsError) as e:
            tctx.configure(sh, **{option: value})
        assert str(e.value) == message


@pytest.mark.e2e
def test_a_bad_option_at_start_up_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """Raised from `configure` while the script loads, an OptionsError was printed as a traceback."""
    cmd = [str(MITMDUMP), "-s", str(ADDON), "--listen-host", "127.0.0.1", "-p", "0", "--set", "shadow_timeout=soon"]
    r = run_process(cmd, 60, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "Traceback" not in out, out
    assert "shadow_timeout must be a number of seconds, got 'soon'" in out


def test_remote_admin_needs_explicit_consent() -> None:
    sh = Shadow()
    with taddons.context(sh, Proxyserver()) as tctx:
        tctx.configure(sh)
        assert sh.settings.admin == ("127.0.0.1", 8877)  # loopback by default
        sh.files.running = True  # at run time a refused value raises (at start-up it is logged and mitmdump exits)
        for remote in ("0.0.0.0:8877", "[::]:8877", "192.0.2.1:8877"):
            with pytest.raises(exceptions.OptionsError, match="not a loopback address"):
                tctx.configure(sh, shadow_admin=remote)
            assert sh.settings.admin == ("127.0.0.1", 8877)
        tctx.configure(sh, shadow_admin_allow_remote=True, shadow_admin="0.0.0.0:8877")
        assert sh.settings.admin == ("0.0.0.0", 8877)
        tctx.configure(sh, shadow_admin="[::1]:8878", shadow_admin_allow_remote=False)  # loopback needs none
        assert sh.settings.admin == ("::1", 8878)


def test_request_headers_hook_routes_replays_once(tmp_path: Path) -> None:
    m = write_mappings(tmp_path / "m.yaml", mapping("api", prefix="/api/", service="api-svc:9000", rewrite="/v1/"))
    sh = Shadow()
    with taddons.context(sh, Proxyserver()) as tctx:
        tctx.configure(sh, mappings=str(m), mapping_keep_host=False)  # Host follows the routed service
        f = tflow.tflow(req=tutils.treq(path=b"/api/x?y=1"))
        sh.requestheaders(f)
        assert (f.request.host, f.request.port, f.request.path) == ("api-svc", 9000, "/v1/x?y=1")
        assert f.request.host_header == "api-svc:9000" and f.metadata["shadow_mapping"] == "api"
        routed = f.copy()  # a flow this addon routed, replayed (mitmweb's replay, or -C of its capture)
        routed.is_replay, routed.live = "request", True  # as mitmproxy's client replay runs it
        sh.requestheaders(routed)
        assert routed.request.path == "/v1/x?y=1" and sh.pending[routed.id].route.mapping.name == "api"  # once
        captured = tflow.tflow(req=tutils.treq(path=b"/api/x"))  # a capture's flow, replayed with -C
        captured.is_replay = "request"
        sh.requestheaders(captured)
        assert captured.request.path == "/v1/x" and captured.metadata["shadow_mapping"] == "api"


async def test_set_mappings_to_a_bad_file_after_start_keeps_the_table_and_puts_the_option_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """At run time the load runs off the event loop, so `--set` cannot raise: the error is logged and counted,
    the last good table keeps serving, and the option is put back to the value of the table serving."""
    good = write_mappings(tmp_path / "good.yaml", mapping("a", prefix="/a/", service="a"))
    bad = write_mappings(tmp_path / "bad.yaml", mapping("a", prefix="/a/"))
    sh = Shadow()
    with taddons.context(sh, Proxyserver()) as tctx:
        tctx.configure(sh, mappings=str(good), mappings_strict=True)  # any invalid Mapping fails the load
        sh.files.running = True  # as after the `running` hook
        tctx.configure(sh, mappings=str(bad))  # returns at once: nothing raised into mitmproxy
        assert sh.files.loading and tctx.options.mappings == str(bad)
        await loaded(sh.files)
        assert [m.name for m in sh.table.mappings] == ["a"] and sh.table.groups[0].label == "/a/"
        assert tctx.options.mappings == str(good) and sh.settings.mappings == str(good)
        assert sh.metrics.reloads == {"success": 1, "failure": 1}
        assert sh.files.errors == [f"{bad} doc 1 (Mapping a.default): service is required"]  # /diag shows them
        assert f"{bad} doc 1 (Mapping a.default): service is required" in caplog.text
        assert not sh.files.loading  # putting the option back loaded nothing again


async def test_commands_report_and_reload(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    m = write_mappings(
        tmp_path / "m.yaml",
        mapping("a", prefix="/a/", service="a"),
        mapping("a-shadow", prefix="/a/", service="b", shadow=True),
    )
    sh = Shadow()
    with taddons.context(sh, Proxyserver()) as tctx:
        tctx.configure(sh, mappings=str(m))
        sh.metrics.record_upstream("a", "a", "production", 200, 0.004)
        sh.metrics.record_upstream("a-shadow", "b", "shadow", 500, 0.02)
        text = tctx.master.commands.call("shadow.report")
        assert "/a/" in text and "-> a-shadow" in text and "500:1" in text
        sh.files.running = True  # serving: the reload command starts the load and returns
        write_mappings(m, mapping("a", prefix="/b/", service="a"))
        assert tctx.master.commands.call("shadow.reload") == f"reloading {m}"
        await loaded(sh.files)
        assert [g.label for g in sh.table.groups] == ["/b/"]
        m.write_text("kind: [")
        assert tctx.master.commands.call("shadow.reload") == f"reloading {m}"  # its failure is logged
        await loaded(sh.files)
        assert [g.label for g in sh.table.groups] == ["/b/"]  # the last good configuration keeps serving
        assert sh.files.errors and "m.yaml doc 1: YAML syntax error" in sh.files.errors[0]
        assert "reload failed; the previous configuration keeps serving" in caplog.text
        assert sh.metrics.reloads == {"success": 2, "failure": 1}
        assert tctx.options.mappings == str(m)


def test_unknown_options_name_the_closest_declared_one() -> None:
    sh = Shadow()
    with taddons.context(sh, Proxyserver()) as tctx:
        known = list(tctx.options.keys())
    lines = settings.unknown_options(["shadow_compre", "mapping_service", "shadow_nonsense", "web_port"], known)
    assert lines == [
        "option mapping_service is not known to mitmproxy or any addon and does nothing; did you mean "
        "mapping_services?",
        "option shadow_compre is not known to mitmproxy or any addon and does nothing; did you mean shadow_compare?",
        "option shadow_nonsense is not known to mitmproxy or any addon and does nothing",
    ]  # web_port: mitmweb's, from a config.yaml mitmdump shares; no option of this addon is near it


@pytest.mark.e2e
def test_an_option_typo_is_warned_at_start_up(tmp_path: Path) -> None:
    """mitmproxy keeps an unknown `--set` aside silently; mitmdump's log now names it and the option meant."""
    cmd = [str(MITMDUMP), "-s", str(ADDON), "--listen-host", "127.0.0.1", "-p", "0", "--set", "shadow_admin="]
    cmd += ["--set", "shadow_compre=true", "--set", "mapping_service=api=127.0.0.1:9"]
    log = tmp_path / "mitmdump.log"
    with started(cmd, log, cwd=tmp_path) as proc:
        assert wait_until(lambda: "listening at" in log.read_text() or proc.poll() is not None, 30)
        want = "option mapping_service is not known to mitmproxy or any addon and does nothing; did you mean "
        assert wait_until(lambda: want in log.read_text(), 10), log.read_text()
    out = log.read_text()
    assert want + "mapping_services?" in out, out
    assert (
        "option shadow_compre is not known to mitmproxy or any addon and does nothing; did you mean "
        "shadow_compare?" in out
    ), out
