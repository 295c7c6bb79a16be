"""The dashboard page as a function of a snapshot (see Shadow.snapshot). Work in progress: a plain listing."""

from __future__ import annotations

import html
import json
from typing import Any


def render(snapshot: dict[str, Any]) -> str:
    body = html.escape(json.dumps(snapshot, indent=1))
    return f"<!doctype html><html><head><title>mitmproxy-shadow</title></head><body><pre>{body}</pre></body></html>"
