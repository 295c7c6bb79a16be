"""Entry point for `mitmdump -s shadow_addon/addon.py` (and mitmweb, mitmproxy).

mitmproxy runs this one file as a script with its folder on sys.path, not as part of the package, so the
package is imported by name: from site-packages when installed, else from this checkout.
"""

import os
import sys

try:
    from shadow_addon.shadow import Shadow
except ImportError:  # a checkout that is not pip-installed: the package's parent folder is the repo root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from shadow_addon.shadow import Shadow

addons = [Shadow()]
