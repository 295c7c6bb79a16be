"""`mitmshadow`'s command line: which tool runs with which arguments, in-process (the processes themselves are started
by test_newcomer.py and test_readme.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy.tools import main as tools

from shadow_addon import ADDON, cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("argv", "command", "args"),
    [
        ([], "run", []),
        (["--mode", "reverse:http://h", "-p", "0"], "run", ["--mode", "reverse:http://h", "-p", "0"]),
        (["run", "-q", "--", "~u x"], "run", ["-q", "--", "~u x"]),  # passed on untouched, `--` included
        (["--web", "--web-port", "9000"], "web", ["--web-port", "9000"]),
        (["-p", "0", "--web"], "web", ["-p", "0"]),
        (["web", "-p", "0"], "web", ["-p", "0"]),
        (["explain", "a.yaml", "--json"], "explain", ["a.yaml", "--json"]),
        (["replay", "c.har", "--help"], "replay", ["c.har", "--help"]),
        (["-h"], "help", []),
        (["--help"], "help", []),
        (["--help-mitmdump"], "run", ["--help"]),
        (["run", "--help"], "run", ["--help"]),
        (["--web", "--help"], "web", ["--help"]),
    ],
)
def test_each_invocation_finds_its_command(argv: list[str], command: str, args: list[str]) -> None:
    assert cli.command_of(argv) == (command, args)


def test_the_parser_declares_every_command() -> None:
    p = cli.parser()
    for command in cli.COMMANDS:
        assert p.parse_args([command] + (["f.yaml"] if command == "explain" else [])).command == command
    with pytest.raises(SystemExit):
        p.parse_args(["nope"])


@pytest.mark.parametrize("tool", ["run", "web"])
def test_mitmdump_and_mitmweb_get_the_entry_script_and_every_argument(
    tool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(tools, "mitmdump", lambda args: seen.append(("mitmdump", args)))
    monkeypatch.setattr(tools, "mitmweb", lambda args: seen.append(("mitmweb", args)))
    monkeypatch.setattr(cli, "_web_port_busy", lambda args: None)
    argv = ["--mode", "reverse:http://127.0.0.1:1", "--set", "mappings=m.yaml"]
    cli.main([tool, *argv])
    cli.main(argv + (["--web"] if tool == "web" else []))
    name = "mitmweb" if tool == "web" else "mitmdump"
    assert seen == [(name, ["-s", ADDON, *argv])] * 2
    assert Path(ADDON).name == "addon.py" and Path(ADDON).is_file()


def test_mitmweb_ui_address_in_every_spelling() -> None:
    assert cli.web_address([]) == ("127.0.0.1", 8081)
    assert cli.web_address(["--web-port", "9000", "--web-host", "::1"]) == ("::1", 9000)
    assert cli.web_address(["--web-port=9001", "--web-host=127.0.0.2"]) == ("127.0.0.2", 9001)
    assert cli.web_address(["--set", "web_port=9002", "--set", "web_host=127.0.0.3"]) == ("127.0.0.3", 9002)
    assert cli.web_address(["--web-port", "x", "-p", "9003"]) == ("127.0.0.1", 8081)


def test_help_is_short_and_names_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["--help"])
    out = capsys.readouterr().out
    assert out == cli.HELP and len(out.splitlines()) < 40
    for command in ("explain", "replay", "web", "--help-mitmdump"):
        assert f"mitmshadow {command}" in out


def test_explain_runs_in_process_and_refuses_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["explain", str(ROOT / "mappings" / "shadow.yaml")])
    assert e.value.code == 0 and "myservice-shadow" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli.main(["explain"])
    assert e.value.code == 2 and "usage: mitmshadow explain" in capsys.readouterr().err
