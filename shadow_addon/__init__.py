"""mitmproxy-shadow: traffic shadowing for mitmproxy, configured with Emissary-ingress Mapping files."""

import logging
import os

# The one `-s` entry script: what `mitmshadow` and `mitmshadow replay` give mitmdump.
ADDON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "addon.py")


def not_the_entry(path: str) -> None:
    """A package file given to `-s`: mitmproxy loads a script without `addons` silently, so say it in one line
    (an error, which ends mitmdump's start-up) and name the entry script."""
    logging.getLogger("shadow").error(
        "%s is a module of the addon, not its entry script: load the addon with -s %s", os.path.abspath(path), ADDON
    )


if __name__.startswith("__mitmproxy_script__"):  # `-s shadow_addon/__init__.py`
    not_the_entry(__file__)
