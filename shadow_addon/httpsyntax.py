"""HTTP's grammar where this addon checks or reads it: RFC 9110's token (a field name, a method) and the characters
that would end or split an HTTP/1 line. One definition, used by Mapping validation, options, comparison and the
answer reader."""

from __future__ import annotations

import re

# RFC 9110 section 5.6.2: token = 1*tchar; tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
# "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
TOKEN_BYTES = TOKEN.encode()
_TOKEN_RE = re.compile(TOKEN)
_LINE_BREAKERS = frozenset("\r\n\0")


def is_field_name(name: str) -> bool:
    """An RFC 9110 field-name token: nothing that could end a header line or change its meaning."""
    return bool(_TOKEN_RE.fullmatch(name))


def breaks_line(v: str) -> bool:
    """Whether a header value holds CR, LF or NUL, which would end or split an HTTP/1 line."""
    return any(c in _LINE_BREAKERS for c in v)


def has_field(fields: tuple[tuple[bytes, bytes], ...], name: bytes) -> bool:
    """Whether a header of this lower-case name is among `fields`: `name in Headers`, without Headers' encoding
    and lower-casing of the name for every field (this runs several times per request)."""
    for k, _ in fields:
        if k.lower() == name:
            return True
    return False


def field_value(fields: tuple[tuple[bytes, bytes], ...], name: bytes) -> str | None:
    """`Headers.get(name)` over raw fields (`name` in lower case): the values joined by `, ` and decoded as
    Headers decode them, or None without one."""
    values = [v for k, v in fields if k.lower() == name]
    if not values:
        return None
    return (values[0] if len(values) == 1 else b", ".join(values)).decode("utf-8", "surrogateescape")


def field_values(fields: tuple[tuple[bytes, bytes], ...], names: tuple[bytes, ...]) -> list[str]:
    """`field_value` of each of `names` (lower case), "" for one without a field: one pass over the fields."""
    found: dict[bytes, list[bytes]] = {}
    for k, v in fields:
        k = k.lower()
        if k in names:
            found.setdefault(k, []).append(v)
    return [b", ".join(found[n]).decode("utf-8", "surrogateescape") if n in found else "" for n in names]


class FieldView:
    """`Headers.get` over raw fields, for a reader that asks for a header or two of a request (`field_value`)."""

    __slots__ = ("fields",)

    def __init__(self, fields: tuple[tuple[bytes, bytes], ...]) -> None:
        self.fields = fields

    def get(self, name: str, /) -> str | None:
        key = _KEYS.get(name)
        if key is None:
            key = name.encode("utf-8", "surrogateescape").lower()
            if len(_KEYS) < MAX_KEYS:  # the few names code asks for, not names from traffic
                _KEYS[name] = key
        return field_value(self.fields, key)


MAX_KEYS = 256
_KEYS: dict[str, bytes] = {}  # a header name as `FieldView.get` looks it up (asked for every request compared)
