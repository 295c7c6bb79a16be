"""`mitmshadow`: mitmdump (or mitmweb with --web) with the shadow addon loaded; other arguments pass through.

`mitmshadow explain FILES...` prints the routing table the Mapping files make, with a warning for each trap.
"""

from __future__ import annotations

import os
import sys

ADDON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "addon.py")


def explain_main(args: list[str]) -> int:
    """`explain [--ambassador-id ID] [--json] FILES...`: 0 when every file loads, 1 otherwise."""
    import argparse
    import json

    from . import explain, mappings, routing

    parser = argparse.ArgumentParser(prog="mitmshadow explain", description="Show how Mapping files route.")
    parser.add_argument("files", nargs="+", help="Mapping files or directories")
    parser.add_argument("--ambassador-id", default="default", help="this instance's ambassador_id")
    parser.add_argument("--json", action="store_true", help="the same data as /diag's routes, as JSON")
    ns = parser.parse_args(args)
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


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["explain"]:
        sys.exit(explain_main(args[1:]))
    web = "--web" in args
    if web:
        args.remove("--web")
    from mitmproxy.tools import main as tools

    (tools.mitmweb if web else tools.mitmdump)(["-s", ADDON, *args])


if __name__ == "__main__":
    main()
