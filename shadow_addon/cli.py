"""`mitmshadow`: mitmdump (or mitmweb with --web) with the shadow addon loaded; other arguments pass through.

`mitmshadow SUBCOMMAND ...` runs one of SUBCOMMANDS instead (e.g. `mitmshadow replay capture.mitm ...`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

ADDON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "addon.py")


def _replay(argv: Sequence[str]) -> int:
    from . import gate

    return gate.main(argv)


# Each subcommand takes its own arguments and returns the exit code.
SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"replay": _replay}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        sys.exit(SUBCOMMANDS[args[0]](args[1:]))
    web = "--web" in args
    if web:
        args.remove("--web")
    from mitmproxy.tools import main as tools

    (tools.mitmweb if web else tools.mitmdump)(["-s", ADDON, *args])


if __name__ == "__main__":
    main()
