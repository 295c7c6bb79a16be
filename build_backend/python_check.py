"""setuptools' build backend, with one check first: pip on an older Python would otherwise report only that no
mitmproxy>=12 can be found, when the reason is the interpreter."""

from __future__ import annotations

import sys

NEEDED = (3, 12)

if tuple(sys.version_info[:2]) < NEEDED:
    _have = ".".join(map(str, sys.version_info[:3]))
    raise SystemExit(
        f"mitmproxy-shadow needs Python >= {NEEDED[0]}.{NEEDED[1]} (as mitmproxy 12 does); this is Python {_have}. "
        "Run pip with a newer interpreter (e.g. python3.12 -m pip install .), or use scripts/test, "
        "which finds one by itself."
    )

from setuptools.build_meta import *  # noqa: E402, F403 (every hook is setuptools' own)
