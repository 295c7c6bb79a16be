"""`mitmshadow`: mitmdump (or mitmweb with --web) with the shadow addon loaded; other arguments pass through."""

from __future__ import annotations

import os
import sys

ADDON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "addon.py")


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    web = "--web" in args
    if web:
        args.remove("--web")
    from mitmproxy.tools import main as tools

    (tools.mitmweb if web else tools.mitmdump)(["-s", ADDON, *args])


if __name__ == "__main__":
    main()
