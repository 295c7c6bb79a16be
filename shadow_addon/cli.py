"""`mitmshadow`: mitmdump (or mitmweb with --web) with the shadow addon loaded, and its subcommands."""

from __future__ import annotations

import argparse
import itertools
import socket
import sys
from collections.abc import Callable, Sequence

from . import ADDON

HELP = """\
mitmshadow: traffic shadowing for mitmproxy, configured with Emissary-ingress Mapping files.
Production requests pass through; a copy of each goes to the shadow service its Mapping names.

usage:
  mitmshadow [run] --mode reverse:URL --set mappings=FILE [--set OPTION=VALUE ...] [MITMDUMP ARGS]
  mitmshadow web ...                   the same in mitmweb (shadow exchanges shown as flows); also --web
  mitmshadow explain FILES...          print the route table the Mapping files make, with their traps
  mitmshadow replay CAPTURE --mappings FILE [--service NAME=ADDR ...] [--fail-on-mismatch RATE]
                                       shadow a recorded capture offline, and gate CI on the comparison
  mitmshadow --help-mitmdump           mitmdump's own help (every mitmdump argument passes through)

options that matter (--set NAME=VALUE):
  mappings                Mapping YAML file or directory (hot-reloaded)
  mapping_services        NAME=[scheme://]HOST:PORT, where a Mapping's `service` really is (repeatable)
  shadow_compare          true: compare shadow and production answers (/diffs, report at exit)
  shadow_admin            dashboard, /metrics and /diag address (default 127.0.0.1:8877; empty: off)
  shadow_remove_headers   headers the copy must not carry; @credentials strips Authorization and cookies
  (every option: mitmshadow --options, or the README)

example:
  mitmshadow --mode reverse:http://127.0.0.1:9000 -p 8080 --set mappings=mappings/shadow.yaml \\
      --set mapping_services=myservice=127.0.0.1:9001 --set mapping_services=myservice-v2=127.0.0.1:9002
  curl http://127.0.0.1:8080/myservice/hello     # answered by myservice; a copy goes to myservice-v2
"""


def parser() -> argparse.ArgumentParser:
    """The subcommands. `run`, `web` and `replay` hand their arguments on untouched (to mitmdump, mitmweb and the
    replay gate, which parse them), so only the command word is parsed here for them."""
    p = argparse.ArgumentParser(prog="mitmshadow", add_help=False)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", add_help=False, help="mitmdump with the addon (the default: `mitmshadow [MITMDUMP ARGS]`)")
    sub.add_parser("web", add_help=False, help="mitmweb with the addon (also `mitmshadow --web ...`)")
    explain = sub.add_parser("explain", help="the route table Mapping files make", description=EXPLAIN)
    explain.add_argument("files", nargs="+", help="Mapping files or directories")
    explain.add_argument("--ambassador-id", default="default", help="this instance's ambassador_id")
    explain.add_argument("--json", action="store_true", help="the same data as /diag's routes, as JSON")
    sub.add_parser("replay", add_help=False, help="shadow a recorded capture offline and gate on the comparison")
    return p


EXPLAIN = "Show how Mapping files route."


def command_of(argv: Sequence[str]) -> tuple[str, list[str]]:
    """The subcommand and its arguments. Without one, the arguments are mitmdump's (`run`), or mitmweb's when they
    hold `--web`; `-h`/`--help` is this command's help and `--help-mitmdump` mitmdump's."""
    args = list(argv)
    if args[:1] in (["-h"], ["--help"]):
        return "help", []
    if args[:1] == ["--help-mitmdump"]:
        return "run", ["--help"]
    if args[:1] and args[0] in COMMANDS:
        command, rest = args[0], args[1:]
    else:
        command, rest = "run", args
    if "--web" in rest and command in ("run", "web"):
        rest.remove("--web")
        command = "web"
    return command, rest


def _explain(args: Sequence[str]) -> int:
    """`explain [--ambassador-id ID] [--json] FILES...`: 0 when every file loads, 1 otherwise."""
    import json

    from . import explain, mappings, routing

    ns = parser().parse_args(["explain", *args])  # exits 2 on a usage error
    loaded = mappings.LoadResult()
    for path in ns.files:
        one = mappings.load_path(path)
        for name in ("mappings", "notices", "errors", "files", "file_errors"):
            getattr(loaded, name).extend(getattr(one, name))
    mappings.check_duplicates(loaded)
    table = routing.build_table(loaded.mappings, (), ns.ambassador_id)
    if ns.json:
        print(json.dumps(explain.Explanation.of(table, loaded).to_json(), indent=1))
    else:
        print(explain.text(table, loaded), end="")
    return 1 if loaded.file_errors else 0


def _replay(args: Sequence[str]) -> int:
    from . import gate

    return gate.main(args)


def _mitmproxy(tool: str, args: list[str]) -> int:
    if tool == "web" and (busy := _web_port_busy(args)):
        sys.exit(busy)
    from mitmproxy.tools import main as tools

    (tools.mitmweb if tool == "web" else tools.mitmdump)(["-s", ADDON, *args])
    return 0


# Each subcommand takes its own arguments and returns the exit code.
SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"explain": _explain, "replay": _replay}
COMMANDS = ("run", "web", "explain", "replay")


def web_address(args: Sequence[str]) -> tuple[str, int]:
    """mitmweb's UI address as its arguments set it (`--web-port 9000`, `--web-port=9000`, `--set web_port=9000`;
    the same for the host); mitmweb's defaults otherwise. The last one given wins, as in mitmweb."""
    words: list[str] = []
    for a in args:  # `--opt=value` as two words, as argparse reads it
        words += a.split("=", 1) if a.startswith("--") and "=" in a else [a]
    port, host = 8081, "127.0.0.1"
    for name, value in itertools.pairwise(words):
        if name == "--set":
            name, _, value = value.partition("=")
            name = "--" + name.replace("_", "-")
        if name == "--web-port" and value.isdigit():
            port = int(value)
        elif name == "--web-host":
            host = value
    return host, port


def _web_port_busy(args: list[str]) -> str | None:
    """mitmweb answers a busy UI port with a traceback: say it in one line before starting it."""
    host, port = web_address(args)
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as e:
        return (
            f"mitmshadow: mitmweb's UI port {host}:{port} is not free ({e.strerror}); choose one with --web-port PORT"
        )
    return None


def main(argv: list[str] | None = None) -> None:
    command, args = command_of(sys.argv[1:] if argv is None else argv)
    if command == "help":
        print(HELP, end="")
        return
    if command in SUBCOMMANDS:
        sys.exit(SUBCOMMANDS[command](args))
    _mitmproxy(command, args)


if __name__ == "__main__":
    main()
