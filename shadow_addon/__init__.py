"""mitmproxy-shadow: traffic shadowing for mitmproxy, configured with Emissary-ingress Mapping files."""

import os

# The `-s` entry script: what `mitmshadow` and `mitmshadow replay` give mitmdump.
ADDON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "addon.py")

if __name__.startswith("__mitmproxy_script__"):  # `-s shadow_addon/__init__.py`: load the addon all the same
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from shadow_addon.shadow import Shadow

    addons = [Shadow()]
