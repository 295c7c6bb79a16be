"""Endpoint names that group requests to the same handler: `GET /users/{id}/orders/{id}`."""

from __future__ import annotations

import re

from .fields import is_index

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]{8,}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{10,}")
_SWITCH = re.compile(r"[A-Za-z](?=[0-9])|[0-9](?=[A-Za-z])")
_PREFIXED = re.compile(r"[A-Za-z]+[_-][0-9]{3,}")


def _id_like(seg: str) -> bool:
    """Conservative: digits; a UUID; 8+ hex characters with a digit; a prefixed number (`usr_123`, 3+ digits);
    a 10+ character token switching between letters and digits 3+ times (random ids do, words and versions such
    as `v1`, `oauth2`, `v1beta1`, `sha256` do not)."""
    if is_index(seg) or _UUID.fullmatch(seg) or _PREFIXED.fullmatch(seg):
        return True
    if _HEX.fullmatch(seg) and any(c.isdigit() for c in seg):
        return True
    return bool(_TOKEN.fullmatch(seg)) and len(_SWITCH.findall(seg)) >= 3


def endpoint(method: str, path: str) -> str:
    """`GET /users/{id}/orders/{id}`: method and path without query, id-like segments collapsed."""
    path = path.split("?", 1)[0].split("#", 1)[0] or "/"
    return f"{method.upper()} " + "/".join("{id}" if _id_like(s) else s for s in path.split("/"))
