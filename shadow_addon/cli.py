"""`mitmshadow`: mitmdump (or mitmweb with --web) with the shadow addon loaded, and its subcommands."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Sequence

from .addresses import parse_port, split_host_port

ADDON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "addon.py")

HELP = """\
mitmshadow: traffic shadowing for mitmproxy, configured with Emissary-ingress Mapping files.
Production requests pass through; a copy of each goes to the shadow service its Mapping names.

usage:
  mitmshadow --mode reverse:URL --set mappings=FILE [--set OPTION=VALUE ...] [MITMDUMP ARGS]
  mitmshadow --web ...                 the same in mitmweb (shadow exchanges shown as flows)
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


def _explain(args: Sequence[str]) -> int:
    """`explain [--ambassador-id ID] [--json] FILES...`: 0 when every file loads, 1 otherwise."""
    import argparse
    import json

    from . import explain, mappings, routing

    parser = argparse.ArgumentParser(prog="mitmshadow explain", description="Show how Mapping files route.")
    parser.add_argument("files", nargs="+", help="Mapping files or directories")
    parser.add_argument("--ambassador-id", default="default", help="this instance's ambassador_id")
    parser.add_argument("--json", action="store_true", help="the same data as /diag's routes, as JSON")
    ns = parser.parse_args(list(args))
    loaded = mappings.LoadResult()
    for path in ns.files:
        one = mappings.load_path(path)
        for name in ("mappings", "notices", "errors", "files", "file_errors"):
            getattr(loaded, name).extend(getattr(one, name))
    mappings.check_duplicates(loaded)
    table = routing.build_table(loaded.mappings, (), ns.ambassador_id)
    if ns.json:
        doc = {"routes": explain.routes(table), "warnings": explain.warnings(table), "errors": loaded.errors}
        print(json.dumps(doc, indent=1))
    else:
        print(explain.text(table, loaded), end="")
    return 1 if loaded.file_errors else 0


def _replay(argv: Sequence[str]) -> int:
    from . import gate

    return gate.main(argv)


# Each subcommand takes its own arguments and returns the exit code.
SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"explain": _explain, "replay": _replay}


def _argv_option(args: list[str], flag: str, option: str) -> str | None:
    """The last value mitmweb would take for `option`: `FLAG VALUE`, `FLAG=VALUE`, `--set OPTION=VALUE` or
    `--set=OPTION=VALUE`."""
    value = None
    for i, a in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else None
        if a == flag and nxt is not None:
            value = nxt
        elif a.startswith(flag + "="):
            value = a[len(flag) + 1 :]
        elif a == "--set" and nxt is not None and nxt.startswith(option + "="):
            value = nxt[len(option) + 1 :]
        elif a.startswith(f"--set={option}="):
            value = a[len(f"--set={option}=") :]
    return value


def _web_port_busy(args: list[str]) -> str | None:
    """mitmweb answers a busy UI port with a traceback: say it in one line before starting it."""
    port = parse_port(_argv_option(args, "--web-port", "web_port")) or 8081
    host = split_host_port(_argv_option(args, "--web-host", "web_host") or "127.0.0.1")[0]
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as e:
        return (
            f"mitmshadow: mitmweb's UI port {host}:{port} is not free ({e.strerror}); choose one with --web-port PORT"
        )
    return None


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        sys.exit(SUBCOMMANDS[args[0]](args[1:]))
    if args[:1] in (["-h"], ["--help"]):
        print(HELP, end="")
        return
    if args[:1] == ["--help-mitmdump"]:
        args = ["--help"]
    web = "--web" in args
    if web:
        args.remove("--web")
        if busy := _web_port_busy(args):
            sys.exit(busy)
    from mitmproxy.tools import main as tools

    (tools.mitmweb if web else tools.mitmdump)(["-s", ADDON, *args])


if __name__ == "__main__":
    main()
