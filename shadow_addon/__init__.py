"""mitmproxy-shadow: traffic shadowing for mitmproxy, configured with Emissary-ingress Mapping files."""

if __name__.startswith("__mitmproxy_script__"):  # `-s shadow_addon/__init__.py`: load the addon all the same
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from shadow_addon.shadow import Shadow

    addons = [Shadow()]
